"""SSDDetector: the seed's shapes, composition, hybridization, save/load, export, bad input."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
import yaml

import detkit
from detkit import SSDDetector
from detkit.components import FocalSmoothL1Loss, ToyBackbone
from detkit.errors import CheckpointError, ComponentNotFoundError, InputError


@pytest.fixture(scope="module")
def detector() -> SSDDetector:
    return SSDDetector(classes=["pikachu"], ctx=mx.cpu())


@pytest.mark.parametrize("batch", [1, 2])
def test_the_seeds_shapes_at_256(detector: SSDDetector, batch: int) -> None:
    anchors, class_preds, box_preds = detector(mx.nd.random.uniform(shape=(batch, 3, 256, 256)))
    assert anchors.shape == (1, 5444, 4)
    assert class_preds.shape == (batch, 5444, 2)
    assert box_preds.shape == (batch, 21776)


def test_the_seeds_feature_maps_are_32_16_8_4_1(detector: SSDDetector) -> None:
    # 4 anchors per position on maps of 32, 16, 8, 4 and 1 pixels: 4 * (1024 + 256 + 64 + 16 + 1) = 5444.
    assert list(detector.anchor_generator.num_anchors) == [4] * 5
    features = list(detector.backbone(mx.nd.zeros((1, 3, 256, 256))))
    for block in detector.network.scale_blocks:
        features.append(block(features[-1]))
    assert [f.shape[2:] for f in features] == [(32, 32), (16, 16), (8, 8), (4, 4), (1, 1)]
    assert [f.shape[1] for f in features] == [64, 128, 128, 128, 128]


def test_non_square_input_and_more_classes() -> None:
    detector = SSDDetector(classes=["a", "b", "c"], ctx=mx.cpu())
    anchors, class_preds, box_preds = detector(mx.nd.zeros((2, 3, 128, 192)))
    # maps 16x24, 8x12, 4x6, 2x3, 1x1 -> positions 384 + 96 + 24 + 6 + 1 = 511, 4 anchors each
    assert anchors.shape == (1, 2044, 4)
    assert class_preds.shape == (2, 2044, 4)
    assert box_preds.shape == (2, 2044 * 4)


def test_default_detector_is_the_seed_model(detector: SSDDetector) -> None:
    config = detector.get_config()
    names = {kind: entry["name"] for kind, entry in config["components"].items()}
    assert names == {
        "backbone": "toy",
        "anchor_generator": "multibox_prior",
        "target_assigner": "multibox_target",
        "loss": "focal_smooth_l1",
        "post_processor": "multibox_detection",
    }
    assert config["components"]["anchor_generator"]["kwargs"]["sizes"] == [
        [0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]
    ]
    assert config["components"]["post_processor"]["kwargs"]["force_suppress"] is True
    assert config["components"]["backbone"]["provided_by"]["distribution"] == "gluon-detkit"
    assert detector.min_input_size == 64


def test_components_as_names_pairs_mappings_and_instances_build_the_same() -> None:
    variants = [
        {"backbone": ("toy", {"filters": [8, 16, 32]}), "loss": "focal_smooth_l1"},
        {"backbone": {"name": "toy", "kwargs": {"filters": [8, 16, 32]}}, "loss": ("focal_smooth_l1", {})},
        {"backbone": {"name": "toy", "filters": [8, 16, 32]}, "loss": {"name": "focal_smooth_l1"}},
        {"backbone": ToyBackbone(filters=[8, 16, 32]), "loss": FocalSmoothL1Loss()},
    ]
    configs = [SSDDetector(classes=["x"], ctx=mx.cpu(), **variant).get_config() for variant in variants]
    assert all(config == configs[0] for config in configs)
    assert configs[0]["components"]["backbone"]["kwargs"] == {"filters": [8, 16, 32]}


def test_hybridized_and_imperative_outputs_are_equal(tmp_path) -> None:
    hybrid = SSDDetector(classes=["pikachu"], ctx=mx.cpu(), hybridize=True)
    x = mx.nd.random.uniform(shape=(2, 3, 128, 128))
    hybrid(x)  # materialise deferred parameters before saving
    hybrid.save(tmp_path)
    imperative = SSDDetector.load(tmp_path, ctx=mx.cpu(), hybridize=False)
    for h, i in zip(hybrid(x), imperative(x)):
        np.testing.assert_allclose(h.asnumpy(), i.asnumpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hybrid.detect(x).asnumpy(), imperative.detect(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_save_and_load_round_trip_weights_and_configuration(tmp_path) -> None:
    detector = SSDDetector(
        classes=["cat", "dog"], ctx=mx.cpu(), backbone=("toy", {"filters": [8, 16, 32]}),
        post_processor=("multibox_detection", {"nms_threshold": 0.4}),
    )
    x = mx.nd.random.uniform(shape=(1, 3, 96, 96))
    before = detector.detect(x).asnumpy()
    detector.save(tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "detector.yaml").read_text())
    assert saved["classes"] == ["cat", "dog"] and saved["detkit_version"] == detkit.__version__
    loaded = SSDDetector.load(tmp_path / "run", ctx=mx.cpu())
    assert loaded.get_config() == detector.get_config()
    np.testing.assert_array_equal(loaded.detect(x).asnumpy(), before)


def test_export_runs_without_detkit_and_matches_detect(tmp_path) -> None:
    detector = SSDDetector(classes=["pikachu"], ctx=mx.cpu())
    x = mx.nd.random.uniform(shape=(2, 3, 128, 128))
    expected = detector.detect(x).asnumpy()
    symbol_file, params_file = detector.export(tmp_path, data_shape=128)
    block = mx.gluon.SymbolBlock.imports(str(symbol_file), ["data"], str(params_file), ctx=mx.cpu())
    np.testing.assert_allclose(block(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    # The detector still works, hybridized, after exporting.
    np.testing.assert_allclose(detector.detect(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "detector.json").is_file()


def test_an_image_without_objects_gives_a_finite_loss_and_zero_box_loss(detector: SSDDetector) -> None:
    anchors, class_preds, box_preds = detector(mx.nd.random.uniform(shape=(2, 3, 128, 128)))
    labels = -mx.nd.ones((2, 3, 5))  # only padding rows
    box_targets, box_mask, class_targets = detector.target_assigner(anchors, labels, class_preds)
    assert box_mask.sum().asscalar() == 0
    assert (class_targets.asnumpy() == 0).all()  # every anchor is background
    loss, focal, box = detector.loss(class_preds, box_preds, class_targets, box_targets, box_mask)
    assert np.isfinite(loss.asnumpy()).all() and (focal.asnumpy() > 0).all()
    np.testing.assert_array_equal(box.asnumpy(), [0.0, 0.0])


def test_gradients_reach_every_weight(detector: SSDDetector) -> None:
    x = mx.nd.random.uniform(shape=(2, 3, 128, 128))
    # One square object per anchor scale (the seed's first size of each), so every box head has positives.
    sizes = [0.2, 0.37, 0.54, 0.71, 0.88]
    labels = mx.nd.array([[[0, 0.05, 0.05, 0.05 + s, 0.05 + s] for s in sizes]] * 2)
    with mx.autograd.record():
        anchors, class_preds, box_preds = detector(x)
        box_targets, box_mask, class_targets = detector.target_assigner(anchors, labels, class_preds)
        loss = detector.loss(class_preds, box_preds, class_targets, box_targets, box_mask)[0]
    loss.backward()
    for name, parameter in detector.network.collect_params().items():
        if parameter.grad_req != "null":
            assert np.abs(parameter.grad().asnumpy()).sum() > 0, name


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"classes": []}, ["'classes'", "at least one", "empty"]),
        ({"classes": "pikachu"}, ["'classes'", "list", "'pikachu'"]),
        ({"classes": ["a", "b", "a"]}, ["'classes'", "repeat", "'a'"]),
        ({"classes": ["a", ""]}, ["class name", "''", "classes[1]"]),
        ({"classes": [" a"]}, ["class name", "surrounding spaces", "' a'"]),
        ({"classes": ["a"], "post_processor": ("multibox_detection", {"variances": [0.1, 0.1, 0.1, 0.1]})},
         ["variances", "[0.1, 0.1, 0.2, 0.2]", "[0.1, 0.1, 0.1, 0.1]"]),
        ({"classes": ["a"], "anchor_generator": ("multibox_prior", {"sizes": [[0.2], [0.3]], "ratios": [[1]] * 3})},
         ["'sizes'", "'ratios'", "2", "3"]),
        ({"classes": ["a"], "anchor_generator": ("multibox_prior", {"sizes": [[1.2]] * 5})}, ["(0, 1]", "1.2"]),
        ({"classes": ["a"], "backbone": ("toy", {"depth": 3})}, ["'depth'", "filters"]),
        ({"classes": ["a"], "loss": 42}, ["'loss'", "42"]),
        ({"classes": ["a"], "loss": ToyBackbone()}, ["'loss'", "Loss", "ToyBackbone"]),
        ({"classes": ["a"], "ctx": "gpu"}, ["'ctx'", "'gpu'"]),
        ({"classes": ["a"], "scale_filters": 0}, ["'scale_filters'", "0"]),
    ],
)
def test_bad_constructor_arguments_raise_and_explain(kwargs, fragments) -> None:
    with pytest.raises(InputError) as caught:
        SSDDetector(**{"ctx": mx.cpu(), **kwargs})
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message


def test_unknown_component_name_lists_the_registered_names(builtins_only) -> None:
    with pytest.raises(ComponentNotFoundError) as caught:
        SSDDetector(classes=["a"], ctx=mx.cpu(), backbone="toys")
    assert isinstance(caught.value, KeyError)
    assert "Registered backbone names: toy" in str(caught.value) and "Did you mean 'toy'" in str(caught.value)


@pytest.mark.parametrize(
    ("images", "fragments"),
    [
        (mx.nd.zeros((3, 64, 64)), ["(B, 3, H, W)", "(3, 64, 64)"]),
        (mx.nd.zeros((1, 1, 64, 64)), ["(B, 3, H, W)", "(1, 1, 64, 64)"]),
        (mx.nd.zeros((1, 64, 64, 3)), ["(B, 3, H, W)", "(1, 64, 64, 3)"]),
        (mx.nd.zeros((1, 3, 63, 256)), ["at least 64x64", "63x256"]),
        ([[1, 2, 3]], ["'images'", "list"]),
    ],
)
def test_bad_images_raise_and_explain(detector: SSDDetector, images, fragments) -> None:
    for run in (detector, detector.detect):
        with pytest.raises(InputError) as caught:
            run(images)
        for fragment in fragments:
            assert fragment in str(caught.value)


def test_numpy_images_are_accepted(detector: SSDDetector) -> None:
    x = np.random.uniform(size=(1, 3, 64, 64)).astype("float32")
    np.testing.assert_allclose(detector.detect(x).asnumpy(), detector.detect(mx.nd.array(x)).asnumpy())


def test_save_before_any_forward_pass(tmp_path) -> None:
    detector = SSDDetector(classes=["a"], ctx=mx.cpu(), data_shape=64)
    detector.save(tmp_path)  # parameters are still deferred: save infers their shapes first
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_array_equal(SSDDetector.load(tmp_path, ctx=mx.cpu()).detect(x).asnumpy(),
                                  detector.detect(x).asnumpy())


def test_load_errors(builtins_only, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no saved detector"):
        SSDDetector.load(tmp_path)
    detector = SSDDetector(classes=["a"], ctx=mx.cpu())
    detector(mx.nd.zeros((1, 3, 64, 64)))
    detector.save(tmp_path)
    config = yaml.safe_load((tmp_path / "detector.yaml").read_text())
    config["components"]["backbone"].update(
        name="vgg16", provided_by={"plugin": "vgg", "distribution": "detkit-vggplug", "version": "0.1.0"}
    )
    (tmp_path / "detector.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ComponentNotFoundError, match="pip install detkit-vggplug"):
        SSDDetector.load(tmp_path)
    (tmp_path / "detector.yaml").write_text("format: something-else\n")
    with pytest.raises(CheckpointError, match="not a detkit detector"):
        SSDDetector.load(tmp_path)


def test_default_context_is_the_first_gpu_when_mxnet_sees_one(monkeypatch) -> None:
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    assert detkit.default_context() == mx.cpu()
    assert SSDDetector(classes=["a"]).ctx == mx.cpu()
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    assert detkit.default_context() == mx.gpu(0)


def test_load_says_which_file_is_missing_and_where_the_detector_is(tmp_path) -> None:
    detector = SSDDetector(classes=["pikachu"], data_shape=64)
    detector.save(tmp_path / "run" / "model")
    with pytest.raises(CheckpointError, match=r"run holds no saved detector: detector.yaml is missing\. It holds a "
                                              r"training's output: pass .*run/model, the detector inside it"):
        SSDDetector.load(tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"elsewhere does not exist"):
        SSDDetector.load(tmp_path / "elsewhere")
    (tmp_path / "run" / "model" / "network.params").unlink()
    with pytest.raises(CheckpointError, match=r"has the detector's detector.yaml but not its weights, network.params"):
        SSDDetector.load(tmp_path / "run" / "model")


def test_load_swaps_the_components_without_weights_of_their_own(tmp_path) -> None:
    detector = SSDDetector(classes=["pikachu"], data_shape=64,
                           post_processor={"name": "multibox_detection", "nms_threshold": 0.45, "nms_topk": 100})
    detector.save(tmp_path / "saved")
    # A mapping without "name": the saved component with other arguments.
    tuned = SSDDetector.load(tmp_path / "saved", post_processor={"nms_threshold": 0.3})
    assert (tuned.post_processor.nms_threshold, tuned.post_processor.nms_topk) == (0.3, 100)
    # A whole spec replaces it; the network's weights are the saved ones.
    other = SSDDetector.load(tmp_path / "saved", post_processor=("multibox_detection", {"clip": True}),
                             loss=("focal_smooth_l1", {"normalization": "positives"}))
    assert other.post_processor.clip and other.post_processor.nms_topk != 100
    assert other.get_config()["components"]["loss"]["kwargs"]["normalization"] == "positives"
    saved = list(SSDDetector.load(tmp_path / "saved").network.collect_params().values())
    swapped = list(other.network.collect_params().values())
    assert len(saved) == len(swapped)
    for a, b in zip(saved, swapped):  # in order: Gluon's prefixes differ between instances
        assert np.array_equal(a.data().asnumpy(), b.data().asnumpy()), a.name
    with pytest.raises(InputError, match="nms_threshold"):
        SSDDetector.load(tmp_path / "saved", post_processor={"nms_threshold": 2})
    with pytest.raises(InputError, match="swaps only target_assigner, loss, post_processor .* got backbone"):
        SSDDetector.load(tmp_path / "saved", backbone="toy")  # the backbone shapes the weights: not swappable


def test_an_unknown_name_suggests_the_names_it_begins() -> None:
    with pytest.raises(ComponentNotFoundError, match=r"Did you mean 'toy'\?"):
        detkit.build_component("backbone", "to")
    from detkit._plugins._registry import _close_names

    assert _close_names("resnet18", ["resnet", "resnet18_v1", "resnet18_v2", "resnet34_v1"]) == \
        ["resnet18_v1", "resnet18_v2"]
    assert _close_names("tyo", ["resnet", "toy"]) == ["toy"]
