"""GluonCV's SSDs imported as detkit detectors: same detections as GluonCV's net(x), downloads, fine-tuning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("detkit_zoo", reason="needs gluon-detkit-zoo: pip install ./plugins/detkit-zoo")
pytest.importorskip("detkit_resnet", reason="needs gluon-detkit-resnet: pip install ./plugins/detkit-resnet")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    gluoncv = pytest.importorskip("gluoncv", reason="the parity tests build GluonCV's networks (the test extra)")

import mxnet as mx

import detkit
from detkit import SSDDetector
from detkit.data import RGB_MEAN
from detkit.errors import CheckpointError, DownloadError, InputError
from detkit.testing import serve_model_store

MEAN, STD = np.array(detkit.ImageNetInput.MEAN), np.array(detkit.ImageNetInput.STD)


def gluoncv_network(name: str, size: int, seed: int = 0) -> mx.gluon.HybridBlock:
    """A GluonCV SSD with random weights, scaled as a trained network's are.

    Random weights alone give outputs no trained network gives: activations
    that grow layer by layer, so that every score is 0 or 1 and boxes are
    thousands of pixels wide. Here each head's weights are scaled so that its
    outputs have a standard deviation of 1 (class scores spread between 0 and 1,
    box offsets of about one anchor), on other images than those compared.
    """
    mx.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = gluoncv.model_zoo.get_model(name, pretrained_base=False)
    net.initialize()
    images = mx.nd.random.normal(0, 1, (1, 3, size, size))
    net(images)  # every shape known
    for key, parameter in net.collect_params().items():  # and biases that are not zero, so that they count
        if key.endswith(("_bias", "_beta")):
            parameter.set_data(mx.nd.random.normal(0, 0.1, parameter.shape))
    features = net.features(images)
    for heads in (net.class_predictors, net.box_predictors):
        for head, feature in zip(heads, features):
            spread = float(head(feature).asnumpy().std())
            head.predictor.weight.set_data(head.predictor.weight.data() / spread)
    net.hybridize()
    return net


def images(size: int, count: int = 2) -> np.ndarray:
    return np.random.RandomState(1).randint(0, 256, (count, size, size, 3)).astype(np.float32)


def gluoncv_input(pixels: np.ndarray) -> mx.nd.NDArray:
    """GluonCV's own preprocessing (presets.ssd: to_tensor, normalize) of RGB images (B, H, W, 3)."""
    batch = [mx.nd.image.normalize(mx.nd.image.to_tensor(mx.nd.array(p, dtype="uint8")), mean=tuple(MEAN),
                                   std=tuple(STD)) for p in pixels]
    return mx.nd.stack(*batch)


def detkit_input(pixels: np.ndarray) -> mx.nd.NDArray:
    """detkit's preprocessing: RGB minus RGB_MEAN, channels first."""
    return mx.nd.array((pixels - np.array(RGB_MEAN, dtype=np.float32)).transpose(0, 3, 1, 2))


def assert_same_detections(detector: SSDDetector, net: mx.gluon.HybridBlock, size: int) -> None:
    """detect equals GluonCV's net(x), its boxes clipped to the image as detkit's contract asks.

    GluonCV's SSDs do not clip; the imported decoder clips after the same
    suppression, so a box clipping leaves without area is no detection.
    """
    pixels = images(size)
    ids, scores, boxes = (a.asnumpy() for a in net(gluoncv_input(pixels)))
    detections = detector.detect(detkit_input(pixels)).asnumpy()
    assert detections.shape == (2, 100, 6)
    assert (ids[..., 0] >= 0).sum() > 20  # enough detections to compare
    inside = np.clip(boxes, 0, size)
    has_area = (inside[..., 2] > inside[..., 0]) & (inside[..., 3] > inside[..., 1])
    expected_ids = np.where(has_area, ids[..., 0], -1)
    np.testing.assert_array_equal(detections[..., 0], expected_ids)
    np.testing.assert_allclose(detections[..., 1], scores[..., 0], rtol=0, atol=1e-5)
    valid = expected_ids >= 0
    assert valid.sum() > 20
    np.testing.assert_allclose(detections[..., 2:][valid] * size, inside[valid], rtol=0, atol=1e-4 * size)
    assert (detections[..., 2:][valid] >= 0).all() and (detections[..., 2:][valid] <= 1).all()


@pytest.mark.parametrize("name, size", [
    ("ssd_300_vgg16_atrous_voc", 264),  # SSD300's unpadded last layers need 257 pixels at least
    ("ssd_300_vgg16_atrous_coco", 264),
    ("ssd_512_resnet50_v1_voc", 128),
    ("ssd_512_resnet50_v1_coco", 128),
    ("ssd_512_mobilenet1.0_voc", 128),
    ("ssd_512_mobilenet1.0_coco", 128),
])
def test_an_imported_ssd_detects_as_gluoncv(tmp_path, name, size) -> None:
    net = gluoncv_network(name, size)
    net.save_parameters(str(tmp_path / "net.params"))
    detector = detkit.import_gluoncv(tmp_path / "net.params", name=name, data_shape=size, ctx=mx.cpu())
    assert detector.classes == list(net.classes)
    assert_same_detections(detector, net, size)
    if name.endswith("_coco"):
        return
    # Saved and loaded, it is the same detector.
    loaded = SSDDetector.load(detector.save(tmp_path / "model"), ctx=mx.cpu())
    assert_same_detections(loaded, net, size)


def test_a_zoo_name_downloads_gluoncv_file_and_verifies_it(tmp_path) -> None:
    name = "ssd_512_mobilenet1.0_voc"
    net = gluoncv_network(name, 128)
    net.save_parameters(str(tmp_path / "net.params"))
    root = tmp_path / "models"
    with serve_model_store({name: tmp_path / "net.params"}) as store:
        detector = detkit.import_gluoncv(name, root=root, data_shape=128, ctx=mx.cpu())
        assert len(store.requests) == 1
        assert (root / store.file_names[name]).is_file()
        detkit.import_gluoncv(name, root=root, data_shape=128, ctx=mx.cpu())  # read from root, not downloaded
        assert len(store.requests) == 1
    assert_same_detections(detector, net, 128)
    # A file that is not GluonCV's (its SHA-1 sum differs from the table's) is refused, nothing is saved.
    with serve_model_store({name: tmp_path / "net.params"}, accept=False), pytest.raises(DownloadError) as caught:
        detkit.import_gluoncv(name, root=tmp_path / "other", ctx=mx.cpu())
    assert "SHA-1" in str(caught.value) and "detkit import gluoncv" in str(caught.value)
    assert not list((tmp_path / "other").glob("*.params"))


def test_wrong_files_and_names_are_refused_in_one_sentence(tmp_path) -> None:
    net = gluoncv_network("ssd_512_mobilenet1.0_voc", 128)
    net.save_parameters(str(tmp_path / "net.params"))
    with pytest.raises(InputError, match="Name the GluonCV model"):
        detkit.import_gluoncv(tmp_path / "net.params")
    with pytest.raises(InputError, match="must name a GluonCV SSD that detkit imports"):
        detkit.import_gluoncv(tmp_path / "net.params", name="ssd_512_resnet101_v2_voc")
    with pytest.raises(CheckpointError, match="not a network of this model|has no parameter"):
        detkit.import_gluoncv(tmp_path / "net.params", name="ssd_512_resnet50_v1_voc", data_shape=128)
    with pytest.raises(InputError, match="network of 20 classes, but 2 classes"):
        detkit.import_gluoncv(tmp_path / "net.params", name="ssd_512_mobilenet1.0_custom", classes=["a", "b"],
                              data_shape=128)
    (tmp_path / "junk.params").write_bytes(b"not parameters")
    with pytest.raises(CheckpointError, match="not an MXNet parameters file"):
        detkit.import_gluoncv(tmp_path / "junk.params", name="ssd_512_mobilenet1.0_voc")
    with pytest.raises(InputError, match="publishes no weights"):
        detkit.import_gluoncv("ssd_512_resnet18_v1_voc")


def test_the_command_imports_a_file_and_never_overwrites_it(tmp_path, capsys) -> None:
    from detkit.cli import main

    name = "ssd_512_mobilenet1.0_voc"
    net = gluoncv_network(name, 128)
    net.save_parameters(str(tmp_path / f"{name}-0123abcd.params"))  # the name is read from the file name
    out = tmp_path / "model"
    assert main(["import", "gluoncv", str(tmp_path / f"{name}-0123abcd.params"), "--data-shape", "128",
                 "--out", str(out)]) == 0
    assert f"saved to {out}" in capsys.readouterr().out
    assert_same_detections(SSDDetector.load(out, ctx=mx.cpu()), net, 128)
    # A file named as the detector's weights, imported into its own folder, is refused before anything is written.
    (tmp_path / "mine").mkdir()
    net.save_parameters(str(tmp_path / "mine" / "network.params"))
    before = (tmp_path / "mine" / "network.params").read_bytes()
    assert main(["import", "gluoncv", str(tmp_path / "mine" / "network.params"), "--name", name,
                 "--out", str(tmp_path / "mine")]) == 2
    assert "would overwrite the file being imported" in capsys.readouterr().err
    assert (tmp_path / "mine" / "network.params").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["network.params"]


def test_reset_classes_keeps_the_rows_of_classes_in_both_as_gluoncv(tmp_path) -> None:
    name = "ssd_512_mobilenet1.0_voc"
    net = gluoncv_network(name, 128)
    net.save_parameters(str(tmp_path / "net.params"))
    detector = detkit.import_gluoncv(tmp_path / "net.params", name=name, data_shape=128, ctx=mx.cpu())
    classes = ["dog", "card", "person"]
    tuned = detector.with_classes(classes)
    net.reset_class(classes, reuse_weights=[c for c in classes if c in net.classes])
    old_heads, new_heads = detector.network.class_heads, tuned.network.class_heads
    for index, (old, new) in enumerate(zip(old_heads, new_heads)):
        reference = net.class_predictors[index].predictor.weight.data().asnumpy()
        weight = new.weight.data().asnumpy()
        assert weight.shape == reference.shape
        for row in (0, 1, 3):  # background, dog, person: GluonCV's rows
            np.testing.assert_array_equal(weight[row::4], reference[row::4])
        assert not np.array_equal(weight[2::4], old.weight.data().asnumpy()[2::4][: len(weight[2::4])])
    # Everything else is the imported detector's, and the original is unchanged.
    np.testing.assert_array_equal(tuned.network.box_heads[0].weight.data().asnumpy(),
                                  detector.network.box_heads[0].weight.data().asnumpy())
    assert len(detector.classes) == 20 and tuned.classes == classes
    pixels = images(128)
    assert tuned.detect(detkit_input(pixels)).shape == (2, 100, 6)


def test_train_fine_tunes_an_imported_detector_from_model_init(tmp_path) -> None:
    from detkit.config import preset, run_config
    from detkit.errors import ConfigError

    name = "ssd_512_mobilenet1.0_voc"
    net = gluoncv_network(name, 128)
    net.save_parameters(str(tmp_path / "net.params"))
    imported = detkit.import_gluoncv(tmp_path / "net.params", name=name, data_shape=128, ctx=mx.cpu())
    imported.save(tmp_path / "imported")
    out = tmp_path / "run"
    settings = ["data.num_train=4", "data.num_val=2", "data.image_size=128", f"data.root={tmp_path / 'data'}",
                f"train.output_dir={out}", "train.quiet=true", "train.batch_size=4", "train.epochs=1",
                "train.num_pictures=0", "train.warmup_epochs=0", f"model.init={tmp_path / 'imported'}"]
    detector, history = run_config(preset("fast", settings))
    assert len(history) == 1 and np.isfinite(history.last["loss"])
    assert detector.classes == ["pikachu"] and detector.data_shape == (128, 128)
    assert detector._specs["post_processor"][0] == "gluoncv_decoder"
    assert detector._specs["loss"][1]["normalization"] == "positives"  # the preset's loss, not the imported one
    # The fine-tuned detector is saved as any other.
    loaded = SSDDetector.load(out / "model", ctx=mx.cpu())
    assert loaded.classes == ["pikachu"]
    with pytest.raises(ConfigError) as caught:
        run_config(preset("fast", settings[:-1] + [f"model.init={tmp_path / 'nothing'}"]))
    assert caught.value.key == "model.init"


def test_a_class_list_given_as_one_string_is_refused(tmp_path) -> None:
    (tmp_path / "net.params").write_bytes(b"")  # refused before it is read
    with pytest.raises(InputError, match="classes"):
        detkit.import_gluoncv(tmp_path / "net.params", name="ssd_512_mobilenet1.0_custom", classes="dog")
