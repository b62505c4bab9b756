"""detkit-resnet: conformance, discovery, feature maps, and the weights options."""

from __future__ import annotations

from importlib import metadata

import pytest

# These tests run against the installed package: `pip install ./plugins/detkit-resnet`.
pytest.importorskip("detkit_resnet", reason="the plugin is not installed: pip install ./plugins/detkit-resnet")

import detkit_resnet
import mxnet as mx
import numpy as np
from detkit_resnet import ResNet18V1, ResNet18V2, ResNetBackbone
from mxnet.gluon.model_zoo import vision

import detkit
from detkit.errors import DownloadError, InputError
from detkit.testing import parametrize_with_checks, serve_model_store, yield_checks


@parametrize_with_checks([ResNet18V1(), ResNet18V2()])
def test_detkit_conformance(component, check) -> None:
    check(component)


def test_a_backbone_of_two_later_stages_conforms() -> None:
    backbone = ResNetBackbone(depth=18, version=1, stages=[3, 4])
    for check in yield_checks(backbone):
        if check.__name__ in ("check_config_round_trip", "check_backbone_outputs", "check_backbone_gradients"):
            check(backbone)


def test_the_installed_distribution_is_discovered() -> None:
    distribution = metadata.distribution("gluon-detkit-resnet")  # pip install ./plugins/detkit-resnet
    (plugin,) = [p for p in detkit.list_plugins() if p.name == "resnet"]
    assert (plugin.status, plugin.distribution, plugin.version) == ("active", "gluon-detkit-resnet", distribution.version)
    assert plugin.api == detkit_resnet.DETKIT_PLUGIN_API
    assert plugin.components == {"backbone": ["resnet", *detkit_resnet.VARIANTS]}


def test_a_detector_by_name_has_the_seed_anchor_layout_and_trains_a_step() -> None:
    detector = detkit.SSDDetector(classes=["pikachu"], backbone="resnet18_v1", ctx=mx.cpu())
    assert isinstance(detector.backbone, ResNet18V1) and detector.min_input_size == 64
    anchors, class_preds, box_preds = detector(mx.nd.zeros((1, 3, 256, 256)))
    # Maps of 32, 16 and 8 pixels from the backbone, then 4 and 1 from the detector: as the toy SSD.
    assert (anchors.shape, class_preds.shape, box_preds.shape) == ((1, 5444, 4), (1, 5444, 2), (1, 21776))
    assert detector.get_config()["components"]["backbone"]["provided_by"]["distribution"] == "gluon-detkit-resnet"
    images = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    labels = mx.nd.array([[[0, 0.2, 0.2, 0.7, 0.8]]])
    trainer = mx.gluon.Trainer(detector.network.collect_params(), "sgd", {"learning_rate": 0.01})
    with mx.autograd.record():
        anchors, class_preds, box_preds = detector.network(images)
        box_targets, box_mask, class_targets = detector.target_assigner(anchors, labels, class_preds)
        loss = detector.loss(class_preds, box_preds, class_targets, box_targets, box_mask)[0]
    loss.backward()
    trainer.step(1)
    assert np.isfinite(loss.asnumpy()).all()


@pytest.mark.parametrize(
    ("name", "channels"),
    [("resnet18_v1", (128, 256, 512)), ("resnet34_v1", (128, 256, 512)), ("resnet50_v1", (512, 1024, 2048)),
     ("resnet18_v2", (128, 256, 512)), ("resnet50_v2", (512, 1024, 2048))],
)
def test_feature_maps_at_strides_8_16_32(name, channels) -> None:
    backbone = detkit.build_component("backbone", name)
    assert tuple(backbone.out_channels) == channels and tuple(backbone.out_strides) == (8, 16, 32)
    backbone.initialize()
    maps = backbone(mx.nd.zeros((1, 3, 64, 96)))
    assert [m.shape for m in maps] == [(1, c, 64 // s, 96 // s) for c, s in zip(channels, (8, 16, 32))]


@pytest.mark.parametrize("name", ["resnet101_v1", "resnet152_v1", "resnet101_v2", "resnet152_v2"])
def test_deep_variants_declare_their_maps(name) -> None:
    backbone = detkit.build_component("backbone", name)
    assert backbone.model_name == name
    assert tuple(backbone.out_channels) == (512, 1024, 2048) and tuple(backbone.out_strides) == (8, 16, 32)


def test_stages_choose_the_maps() -> None:
    backbone = ResNetBackbone(depth=34, version=2, stages=[1, 4])
    assert tuple(backbone.out_channels) == (64, 512) and tuple(backbone.out_strides) == (4, 32)
    assert backbone.get_config() == {"depth": 34, "version": 2, "stages": [1, 4]}
    detector = detkit.SSDDetector(classes=["a"], backbone=("resnet", backbone.get_config()), ctx=mx.cpu())
    assert detector.min_input_size == 32 * 2 ** (5 - 2 - 1)


@pytest.fixture
def weights_file(tmp_path):
    """A model zoo ResNet-18 v1 saved with random weights, standing in for the ImageNet file."""
    network = vision.get_resnet(1, 18)
    network.initialize(mx.init.Uniform(1.0))
    network(mx.nd.zeros((1, 3, 32, 32)))
    path = tmp_path / "resnet18_v1-test.params"
    network.save_parameters(str(path))
    return network, path


def test_weights_from_a_file_survive_the_detector_initialisation(weights_file) -> None:
    network, path = weights_file
    backbone = ResNet18V1(weights=str(path))
    assert backbone.pretrained and backbone.get_config() == {"stages": [2, 3, 4]}
    detector = detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())
    detector(mx.nd.zeros((1, 3, 64, 64)))
    expected = [p.data().asnumpy() for p in network.features[:8].collect_params().values()]
    actual = [p.data().asnumpy() for p in detector.backbone.collect_params().values()]
    assert len(actual) == len(expected) and all(np.array_equal(a, e) for a, e in zip(actual, expected))


def test_a_saved_detector_loads_without_the_weights_file(weights_file, tmp_path) -> None:
    _, path = weights_file
    detector = detkit.SSDDetector(classes=["a"], backbone=ResNet18V1(weights=str(path)), ctx=mx.cpu())
    images = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    expected = detector(images)[1].asnumpy()
    detector.save(tmp_path / "model")
    path.unlink()
    loaded = detkit.SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    np.testing.assert_allclose(loaded(images)[1].asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_pretrained_downloads_the_model_store_file_once(weights_file, tmp_path) -> None:
    network, path = weights_file
    root = tmp_path / "models"
    # The server stands in for MXNet's repository; it makes the model store expect the served
    # file's SHA-1 (the real ImageNet file's sum cannot match a file made in a test).
    with serve_model_store({"resnet18_v1": path}) as store:
        backbone = ResNet18V1(pretrained=True, root=root)
        assert store.requests == [] and not root.exists()  # building the backbone reads nothing
        detector = detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())
        assert (root / store.file_names["resnet18_v1"]).is_file() and len(store.requests) == 1
        detkit.SSDDetector(classes=["a"], backbone=ResNet18V1(pretrained=True, root=root), ctx=mx.cpu())
        assert len(store.requests) == 1  # the file in root is used: no second download
    detector(mx.nd.zeros((1, 3, 64, 64)))
    expected = [p.data().asnumpy() for p in network.features[:8].collect_params().values()]
    actual = [p.data().asnumpy() for p in detector.backbone.collect_params().values()]
    assert len(actual) == len(expected) and all(np.array_equal(a, e) for a, e in zip(actual, expected))


def test_a_served_file_of_another_sha1_is_refused(weights_file, tmp_path) -> None:
    _, path = weights_file
    backbone = ResNet18V1(pretrained=True, root=str(tmp_path))
    with serve_model_store({"resnet18_v1": path}, accept=False), pytest.raises(DownloadError) as caught:
        backbone.initialize()
    assert "the downloaded resnet18_v1-a0666292.params has the SHA-1 sum" in str(caught.value)
    assert f"put resnet18_v1-a0666292.params in {tmp_path}" in str(caught.value)
    assert list(tmp_path.iterdir()) == [path]  # nothing saved beside the test's own file


def test_offline_the_pretrained_weights_error_says_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")  # nothing listens there: the download fails
    backbone = ResNet18V1(pretrained=True, root=str(tmp_path))  # reads nothing yet
    with pytest.raises(DownloadError) as caught:
        detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())
    message = str(caught.value)
    assert isinstance(caught.value, OSError)
    assert f"resnet18_v1-a0666292.params is not in {tmp_path}" in message
    assert "http://127.0.0.1:9/gluon/models/resnet18_v1-a0666292.zip" in message
    assert f"put resnet18_v1-a0666292.params in {tmp_path}" in message
    assert "weights='/path/to/resnet18_v1-a0666292.params'" in message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"depth": 19}, "'depth' argument of ResNetBackbone must be one of (18, 34, 50, 101, 152); got 19"),
        ({"version": 3}, "'version' argument of ResNetBackbone must be 1 or 2; got 3"),
        ({"stages": [4, 2]}, "'stages' argument of ResNetBackbone must be increasing stage numbers from 1 to 4"),
        ({"stages": [0, 1]}, "got [0, 1] instead"),
        ({"stages": []}, "got [] instead"),
        ({"weights": "/nowhere/w.params"}, "'weights' argument must be a .params file of resnet18_v1; "
                                           "/nowhere/w.params does not exist"),
    ],
)
def test_bad_arguments_raise_and_explain(kwargs, fragment) -> None:
    with pytest.raises(InputError) as caught:
        ResNetBackbone(**kwargs)
    assert fragment in str(caught.value)


def test_weights_of_another_network_are_refused_when_read(weights_file) -> None:
    _, path = weights_file
    backbone = ResNetBackbone(depth=34, weights=str(path))  # the file exists: read when the detector initialises
    with pytest.raises(InputError, match=f"The weights file {path} does not hold the parameters of resnet34_v1"):
        detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())


def test_building_a_pretrained_backbone_reads_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")  # nothing listens there
    backbone = detkit.build_component("backbone", "resnet50_v2", pretrained=True, root=str(tmp_path))
    assert backbone.pretrained and list(tmp_path.iterdir()) == []
    # The shapes are known without the file, so that the detector's initialize() reads it, not its first forward.
    assert all(0 not in p.shape for p in backbone.collect_params().values())


@pytest.mark.parametrize("version", [1, 2])
def test_a_pretrained_body_on_detkit_input_is_the_model_zoo_network_on_imagenet_input(version, tmp_path) -> None:
    store = f"resnet18_v{version}"
    network = vision.get_model(store)
    network.initialize(mx.init.Xavier())
    network(mx.nd.zeros((1, 3, 32, 32)))
    path = tmp_path / f"{store}.params"
    network.save_parameters(str(path))
    with serve_model_store({store: path}) as served:
        backbone = ResNetBackbone(version=version, stages=[1], pretrained=True, root=tmp_path / "models")
        detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu(), data_shape=128)
    assert len(served.requests) == 1
    rgb = np.random.default_rng(version).uniform(0, 255, size=(1, 3, 64, 64)).astype("float32")
    mean = np.array(detkit.ImageNetInput.MEAN, "float32").reshape(1, 3, 1, 1)
    std = np.array(detkit.ImageNetInput.STD, "float32").reshape(1, 3, 1, 1)
    (features,) = backbone(mx.nd.array(rgb - np.array(detkit.data.RGB_MEAN, "float32").reshape(1, 3, 1, 1)))
    stem = 4 if version == 1 else 5  # v2: the data BatchNorm first
    expected = network.features[: stem + 1](mx.nd.array((rgb / 255 - mean) / std))  # the stem and stage 1
    assert features.shape == expected.shape == (1, 64, 16, 16)
    np.testing.assert_allclose(features.asnumpy(), expected.asnumpy(), rtol=1e-4, atol=1e-4)
    assert isinstance(backbone.input, detkit.ImageNetInput) and list(backbone.input.collect_params()) == []
