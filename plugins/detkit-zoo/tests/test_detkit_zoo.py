"""detkit-zoo: conformance, discovery, feature maps, the SSD paper's VGG-16 conversion, and the weights options."""

from __future__ import annotations

import socket
from importlib import metadata

import pytest

# These tests run against the installed package: `pip install ./plugins/detkit-zoo`.
pytest.importorskip("detkit_zoo", reason="the plugin is not installed: pip install ./plugins/detkit-zoo")

import detkit_zoo
import mxnet as mx
import numpy as np
from detkit_zoo import MobileNet0_25, MobileNetBackbone, MobileNetV2_0_25, VGG16Atrous, reduce_fc_layers
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import model_store, vision

import detkit
from detkit.errors import DownloadError, InputError
from detkit.testing import parametrize_with_checks, serve_model_store, yield_checks


@parametrize_with_checks([MobileNet0_25(), MobileNetV2_0_25(), VGG16Atrous()])
def test_detkit_conformance(component, check) -> None:
    check(component)


def test_a_generic_mobilenet_of_other_stages_conforms() -> None:
    backbone = MobileNetBackbone(multiplier=0.5, version=2, stages=[1, 3])
    for check in yield_checks(backbone):
        if check.__name__ in ("check_config_round_trip", "check_backbone_outputs", "check_backbone_gradients"):
            check(backbone)


def test_the_installed_distribution_is_discovered() -> None:
    distribution = metadata.distribution("gluon-detkit-zoo")  # pip install ./plugins/detkit-zoo
    (plugin,) = [p for p in detkit.list_plugins() if p.name == "zoo"]
    assert (plugin.status, plugin.distribution, plugin.version) == ("active", "gluon-detkit-zoo", distribution.version)
    assert plugin.api == detkit_zoo.DETKIT_PLUGIN_API
    assert plugin.components == {"backbone": ["mobilenet", *detkit_zoo.VARIANTS, "vgg16_atrous", "gluoncv_features"]}


@pytest.mark.parametrize(
    ("name", "store", "channels"),
    [("mobilenet0_25", "mobilenet0.25", (64, 128, 256)), ("mobilenet0_5", "mobilenet0.5", (128, 256, 512)),
     ("mobilenet0_75", "mobilenet0.75", (192, 384, 768)), ("mobilenet1_0", "mobilenet1.0", (256, 512, 1024)),
     ("mobilenetv2_0_25", "mobilenetv2_0.25", (8, 24, 1280)), ("mobilenetv2_0_5", "mobilenetv2_0.5", (16, 48, 1280)),
     ("mobilenetv2_0_75", "mobilenetv2_0.75", (24, 72, 1280)), ("mobilenetv2_1_0", "mobilenetv2_1.0", (32, 96, 1280))],
)
def test_feature_maps_at_strides_8_16_32(name, store, channels) -> None:
    backbone = detkit.build_component("backbone", name)
    assert backbone.model_name == store and store in model_store._model_sha1  # a network with ImageNet weights
    assert tuple(backbone.out_channels) == channels and tuple(backbone.out_strides) == (8, 16, 32)
    backbone.initialize()
    maps = backbone(mx.nd.zeros((1, 3, 64, 96)))
    assert [m.shape for m in maps] == [(1, c, 64 // s, 96 // s) for c, s in zip(channels, (8, 16, 32))]


def test_stages_choose_the_maps() -> None:
    backbone = MobileNetBackbone(multiplier=0.75, version=1, stages=[1, 4])
    assert tuple(backbone.out_channels) == (96, 768) and tuple(backbone.out_strides) == (4, 32)
    assert backbone.get_config() == {"multiplier": 0.75, "version": 1, "stages": [1, 4]}
    assert len(backbone.body) == 4 and MobileNet0_25(stages=[2]).body.__len__() == 2  # unused stages are not built
    detector = detkit.SSDDetector(classes=["a"], backbone=("mobilenet", backbone.get_config()), ctx=mx.cpu())
    assert detector.min_input_size == 32 * 2 ** (5 - 2 - 1)


@pytest.mark.parametrize(("name", "maps"), [("mobilenet0_25", (32, 16, 8)), ("mobilenetv2_0_25", (32, 16, 8)),
                                            ("vgg16_atrous", (32, 16))])
def test_a_detector_by_name_trains_a_step(name, maps) -> None:
    detector = detkit.SSDDetector(classes=["pikachu"], backbone=name, ctx=mx.cpu())
    assert detector.min_input_size == 64
    anchors, class_preds, _ = detector(mx.nd.zeros((1, 3, 256, 256)))
    # The backbone's maps, then the detector's halving blocks and its global pool: 5 scales, 4 anchors a position.
    sides = list(maps) + [maps[-1] // 2 ** k for k in range(1, 5 - len(maps))] + [1]
    assert anchors.shape == (1, 4 * sum(s * s for s in sides), 4) and class_preds.shape[-1] == 2
    assert detector.get_config()["components"]["backbone"]["provided_by"]["distribution"] == "gluon-detkit-zoo"
    images = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    labels = mx.nd.array([[[0, 0.2, 0.2, 0.7, 0.8]], [[0, 0.1, 0.3, 0.5, 0.9]]])
    trainer = mx.gluon.Trainer(detector.network.collect_params(), "sgd", {"learning_rate": 0.01})
    before = detector.backbone.collect_params()
    first = {k: p.data().asnumpy().copy() for k, p in before.items()}
    with mx.autograd.record():
        anchors, class_preds, box_preds = detector.network(images)
        box_targets, box_mask, class_targets = detector.target_assigner(anchors, labels, class_preds)
        loss = detector.loss(class_preds, box_preds, class_targets, box_targets, box_mask)[0]
    loss.backward()
    trainer.step(2)
    assert np.isfinite(loss.asnumpy()).all()
    changed = [k for k, p in before.items() if p.grad_req != "null" and not np.array_equal(p.data().asnumpy(), first[k])]
    assert changed  # the body's parameters learn


# -- the SSD paper's VGG-16 -----------------------------------------------------------------


def test_vgg16_atrous_maps_at_300_pixels_are_the_papers() -> None:
    backbone = VGG16Atrous()
    backbone.initialize()
    conv4_3, fc7 = backbone(mx.nd.zeros((1, 3, 300, 300)))
    assert (conv4_3.shape, fc7.shape) == ((1, 512, 38, 38), (1, 1024, 19, 19))  # the pools round up, as Caffe's
    assert backbone.get_config() == {}
    assert backbone.fc6._kwargs["dilate"] == (6, 6) and backbone.fc6.weight.shape == (1024, 512, 3, 3)
    assert backbone.fc7.weight.shape == (1024, 1024, 1, 1)
    np.testing.assert_array_equal(backbone.conv4_3_scale.data().asnumpy(), np.full((1, 512, 1, 1), 20.0))


def test_conv4_3_is_l2_normalised_with_a_learnable_scale() -> None:
    backbone = VGG16Atrous()
    detector = detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())  # Xavier elsewhere; the scale stays 20
    np.testing.assert_array_equal(backbone.conv4_3_scale.data().asnumpy().ravel(), np.full(512, 20.0))
    images = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    normalised, _ = backbone(images)
    raw = backbone.conv4_3(backbone.input(images)).asnumpy()
    norms = np.sqrt((raw ** 2).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(normalised.asnumpy(), 20.0 * raw / np.maximum(norms, 1e-10), rtol=1e-4, atol=1e-5)
    with mx.autograd.record():
        loss = backbone(images)[0].sum()
    loss.backward()
    assert np.abs(backbone.conv4_3_scale.grad().asnumpy()).sum() > 0
    assert detector.backbone is backbone


def _dense(units: int, inputs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    return (generator.normal(size=(units, inputs)).astype("float32"), generator.normal(size=units).astype("float32"))


def test_the_reduced_fc7_as_a_1x1_convolution_is_the_subsampled_dense_layer() -> None:
    units, channels = 16, 8  # VGG-16: 4096 and 512; the reduction does not depend on the sizes
    fc6_w, fc6_b = _dense(units, channels * 49, 0)
    fc7_w, fc7_b = _dense(units, units, 1)
    reduced = reduce_fc_layers(fc6_w, fc6_b, fc7_w, fc7_b)
    assert reduced["fc7_weight"].shape == (units // 4, units // 4, 1, 1)
    fc7 = nn.Conv2D(units // 4, 1, in_channels=units // 4)
    fc7.initialize()
    fc7.weight.set_data(reduced["fc7_weight"])
    fc7.bias.set_data(reduced["fc7_bias"])
    # A vector of fc6's kept units, zero at the others: the dense fc7's kept units see the same inputs.
    kept = np.random.default_rng(2).normal(size=units // 4).astype("float32")
    full = np.zeros(units, "float32")
    full[::4] = kept
    expected = (fc7_w @ full + fc7_b)[::4]
    actual = fc7(mx.nd.array(kept.reshape(1, -1, 1, 1))).asnumpy().ravel()
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_the_reduced_fc6_as_a_dilated_convolution_reads_the_dense_layers_taps() -> None:
    units, channels = 16, 8
    fc6_w, fc6_b = _dense(units, channels * 49, 3)
    fc7_w, fc7_b = _dense(units, units, 4)
    reduced = reduce_fc_layers(fc6_w, fc6_b, fc7_w, fc7_b)
    assert reduced["fc6_weight"].shape == (units // 4, channels, 3, 3) and reduced["fc6_bias"].shape == (units // 4,)
    fc6 = nn.Conv2D(units // 4, 3, padding=6, dilation=6, in_channels=channels)  # as VGG16Atrous.fc6
    fc6.initialize()
    fc6.weight.set_data(reduced["fc6_weight"])
    fc6.bias.set_data(reduced["fc6_bias"])
    # At the centre of a 13 x 13 map the dilated convolution reads rows and columns 0, 6 and 12;
    # the dense fc6 on a 7 x 7 map holding those values at 0, 3 and 6 (zero elsewhere) sees the same.
    generator = np.random.default_rng(5)
    values = generator.normal(size=(channels, 3, 3)).astype("float32")
    big = generator.normal(size=(1, channels, 13, 13)).astype("float32")  # other positions: outside the taps
    big[0][:, 0::6, 0::6] = values
    window = np.zeros((channels, 7, 7), "float32")
    window[:, 0::3, 0::3] = values
    expected = (fc6_w @ window.ravel() + fc6_b)[::4]  # the dense layer flattens channel-major, as Gluon's Flatten
    actual = fc6(mx.nd.array(big)).asnumpy()[0, :, 6, 6]
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_reduce_fc_layers_refuses_another_shape() -> None:
    with pytest.raises(InputError, match=r"must have the shape \(U, C \* 7 \* 7\).*got \(16, 50\)"):
        reduce_fc_layers(np.zeros((16, 50)), np.zeros(16), np.zeros((16, 16)), np.zeros(16))


def test_vgg16_atrous_starts_from_the_converted_model_zoo_weights(monkeypatch) -> None:
    # vgg16's file is 528 MB: here the values come from a vgg16 of the model zoo with random
    # weights instead of a file, through the function VGG16Atrous calls.
    network = vision.get_vgg(16)
    network.initialize(mx.init.Uniform(0.01))
    network(mx.nd.zeros((1, 3, 32, 32)))
    values = {key[len(network.prefix):]: p.data() for key, p in network.collect_params().items()}
    # fc6 as at 224 x 224 pixels, where pool5 is 7 x 7 (the network above ran on 32 x 32: 1 x 1).
    values["dense0_weight"] = mx.nd.random.uniform(-1, 1, shape=(4096, 512 * 7 * 7))
    asked = []

    def fake(name, *, weights=None, root=None):
        asked.append((name, weights, root))
        return values

    # What detkit.initialize_pretrained reads through, when the parameters are initialised.
    monkeypatch.setattr(detkit._pretrained, "pretrained_parameters", fake)
    backbone = VGG16Atrous(pretrained=True, root="/models")
    assert asked == [] and backbone.pretrained and backbone.get_config() == {}  # nothing read yet
    detector = detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())
    assert asked == [("vgg16", None, "/models")]  # read once, for the convolutions and fc6 and fc7
    convs = [p for k, p in backbone.collect_params().items() if "_conv" in k and "scale" not in k]
    expected = [p for k, p in network.collect_params().items() if "_conv" in k]
    assert len(convs) == 26 and all(np.array_equal(a.data().asnumpy(), e.data().asnumpy())
                                    for a, e in zip(convs, expected))
    dense0 = values["dense0_weight"].asnumpy().reshape(4096, 512, 7, 7)
    keep, taps = np.arange(0, 4096, 4), np.array([0, 3, 6])
    np.testing.assert_array_equal(backbone.fc6.weight.data().asnumpy(), dense0[np.ix_(keep, np.arange(512), taps, taps)])
    np.testing.assert_array_equal(backbone.fc6.bias.data().asnumpy(), values["dense0_bias"].asnumpy()[keep])
    np.testing.assert_array_equal(backbone.fc7.weight.data().asnumpy()[:, :, 0, 0],
                                  values["dense1_weight"].asnumpy()[np.ix_(keep, keep)])
    np.testing.assert_array_equal(backbone.fc7.bias.data().asnumpy(), values["dense1_bias"].asnumpy()[keep])
    assert float(backbone.conv4_3_scale.data().asnumpy().mean()) == 20.0
    assert detector(mx.nd.zeros((1, 3, 64, 64)))[1].shape[-1] == 2


def test_vgg16_atrous_refuses_weights_of_another_network(tmp_path, mobilenet_file) -> None:
    _, path = mobilenet_file
    backbone = VGG16Atrous(weights=path)  # the file exists: it is read when the detector initialises
    with pytest.raises(InputError, match=f"The weights file {path} does not hold the parameters of vgg16"):
        detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())


# -- weights --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    """A model zoo mobilenet0.25 saved with random weights, standing in for the ImageNet file."""
    network = vision.get_model("mobilenet0.25")
    network.initialize(mx.init.Uniform(1.0))
    network(mx.nd.zeros((1, 3, 32, 32)))
    path = tmp_path_factory.mktemp("weights") / "mobilenet0.25-test.params"
    network.save_parameters(str(path))
    return network, path


def _body_values(network) -> list[np.ndarray]:
    # The body holds the model zoo's features up to stage 4 (81 blocks), in order.
    return [p.data().asnumpy() for p in network.features[:81].collect_params().values()]


def test_pretrained_downloads_the_model_store_file_once(mobilenet_file, tmp_path) -> None:
    network, path = mobilenet_file
    root = tmp_path / "models"
    # The server stands in for MXNet's repository; it makes the model store expect the served
    # file's SHA-1 (the real ImageNet file's sum cannot match a file made in a test).
    with serve_model_store({"mobilenet0.25": path}) as store:
        backbone = MobileNet0_25(pretrained=True, root=root)
        assert store.requests == [] and not root.exists()  # building the backbone reads nothing
        detector = detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())
        assert [p.name for p in root.iterdir()] == [store.file_names["mobilenet0.25"]] and len(store.requests) == 1
        detector(mx.nd.zeros((1, 3, 64, 64)))
        detkit.SSDDetector(classes=["a"], backbone=MobileNet0_25(pretrained=True, root=root), ctx=mx.cpu())
        assert len(store.requests) == 1  # the file in root is used: no second download
    detector(mx.nd.zeros((1, 3, 64, 64)))
    actual = [p.data().asnumpy() for p in detector.backbone.collect_params().values()]
    expected = _body_values(network)
    assert len(actual) == len(expected) and all(np.array_equal(a, e) for a, e in zip(actual, expected))


def test_a_served_file_of_another_sha1_is_refused(mobilenet_file, tmp_path) -> None:
    _, path = mobilenet_file
    file_name = f"mobilenet0.25-{model_store.short_hash('mobilenet0.25')}.params"
    backbone = MobileNetBackbone(multiplier=0.25, pretrained=True, root=tmp_path)
    with serve_model_store({"mobilenet0.25": path}, accept=False), pytest.raises(DownloadError) as caught:
        backbone.initialize()
    assert f"the downloaded {file_name} has the SHA-1 sum" in str(caught.value)
    assert f"put {file_name} in {tmp_path}" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_offline_the_pretrained_weights_error_says_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{port}/")
    backbone = MobileNetV2_0_25(pretrained=True, root=str(tmp_path))  # reads nothing yet
    with pytest.raises(DownloadError) as caught:
        detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())
    message = str(caught.value)
    file_name = f"mobilenetv2_0.25-{model_store.short_hash('mobilenetv2_0.25')}.params"
    assert f"{file_name} is not in {tmp_path}" in message
    assert f"http://127.0.0.1:{port}/gluon/models/{file_name[:-len('.params')]}.zip" in message
    assert f"put {file_name} in {tmp_path}" in message and f"weights='/path/to/{file_name}'" in message


def test_a_saved_detector_loads_without_the_weights_file(mobilenet_file, tmp_path) -> None:
    network, source = mobilenet_file
    path = tmp_path / "copy.params"
    path.write_bytes(source.read_bytes())
    backbone = MobileNet0_25(weights=path)
    assert backbone.pretrained and backbone.get_config() == {"stages": [2, 3, 4]}
    detector = detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())
    images = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    expected = detector(images)[1].asnumpy()
    assert np.array_equal(next(iter(detector.backbone.collect_params().values())).data().asnumpy(),
                          _body_values(network)[0])
    detector.save(tmp_path / "model")
    path.unlink()
    loaded = detkit.SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    np.testing.assert_allclose(loaded(images)[1].asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_saved_vgg16_atrous_detector_loads(tmp_path) -> None:
    detector = detkit.SSDDetector(classes=["a"], backbone="vgg16_atrous", ctx=mx.cpu())
    images = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    expected = detector(images)[1].asnumpy()
    detector.save(tmp_path / "model")
    loaded = detkit.SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    np.testing.assert_allclose(loaded(images)[1].asnumpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"multiplier": 0.3}, "'multiplier' argument of MobileNetBackbone must be one of (0.25, 0.5, 0.75, 1.0); got 0.3"),
        ({"multiplier": True}, "got True instead"),
        ({"version": 3}, "'version' argument of MobileNetBackbone must be 1 or 2; got 3"),
        ({"stages": [4, 2]}, "'stages' argument of MobileNetBackbone must be increasing stage numbers from 1 to 4"),
        ({"stages": []}, "got [] instead"),
        ({"weights": "/nowhere/w.params"}, "'weights' argument must be a .params file of mobilenet1.0; "
                                           "/nowhere/w.params does not exist"),
    ],
)
def test_bad_arguments_raise_and_explain(kwargs, fragment) -> None:
    with pytest.raises(InputError) as caught:
        MobileNetBackbone(**kwargs)
    assert fragment in str(caught.value)


def test_weights_of_another_width_are_refused_when_read(mobilenet_file) -> None:
    _, path = mobilenet_file
    backbone = MobileNetBackbone(multiplier=0.5, weights=path)
    with pytest.raises(InputError, match=f"The weights file {path} does not hold the parameters of mobilenet0.5"):
        detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu())


# -- lazy loading: validating or printing a configuration reads nothing --------------------------


def _closed_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_validating_a_config_with_a_pretrained_backbone_downloads_nothing(mobilenet_file, tmp_path,
                                                                         monkeypatch) -> None:
    from detkit.config import load_config, preset

    _, path = mobilenet_file
    spec = f"model.backbone={{name: mobilenet0_25, pretrained: true, root: {tmp_path / 'models'}}}"
    with serve_model_store({"mobilenet0.25": path}) as store:
        assert preset("fast", [spec]).model.backbone["pretrained"] is True
        config = tmp_path / "config.yaml"
        config.write_text(f"model:\n  backbone: {{name: vgg16_atrous, pretrained: true, root: {tmp_path}}}\n")
        assert load_config(config).model.backbone["name"] == "vgg16_atrous"
        assert store.requests == []  # served, and never asked
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{_closed_port()}/")
    assert preset("seed", [spec.replace("mobilenet0_25", "mobilenetv2_1_0")]).model.backbone["pretrained"] is True
    assert not (tmp_path / "models").exists()


def test_train_offline_with_a_pretrained_backbone_is_one_error_line(tmp_path, capsys, monkeypatch) -> None:
    from detkit.cli import main

    port = _closed_port()
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{port}/")
    root = tmp_path / "models"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"model:\n  backbone: {{name: mobilenet0_25, pretrained: true, root: {root}}}\n  data_shape: 64\n"
        f"data:\n  root: {tmp_path / 'data'}\n  num_train: 2\n  num_val: 1\n  image_size: 64\n"
        f"train:\n  epochs: 1\n  output_dir: {tmp_path / 'run'}\n  quiet: true\n"
    )
    assert main(["train", str(config), "--print-config"]) == 0  # checked and printed: nothing read
    capsys.readouterr()
    assert main(["train", str(config)]) != 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    file_name = f"mobilenet0.25-{model_store.short_hash('mobilenet0.25')}.params"
    assert len(lines) == 1 and lines[0].startswith("detkit: error: The ImageNet weights of mobilenet0.25 are missing")
    assert f"put {file_name} in {root}" in lines[0] and f"http://127.0.0.1:{port}/gluon/models/" in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_resuming_a_run_reads_no_imagenet_weights(tmp_path, monkeypatch) -> None:
    import shutil

    from detkit.config import load_config, run_config

    network = vision.get_model("mobilenet0.25")
    network.initialize(mx.init.Xavier())  # weights a short training can start from
    network(mx.nd.zeros((1, 3, 32, 32)))
    path = tmp_path / "mobilenet0.25-test.params"
    network.save_parameters(str(path))
    root = tmp_path / "models"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"model:\n  backbone: {{name: mobilenet0_25, pretrained: true, root: {root}}}\n  data_shape: 64\n"
        f"data:\n  root: {tmp_path / 'data'}\n  num_train: 4\n  num_val: 2\n  image_size: 64\n"
        f"train:\n  epochs: 1\n  batch_size: 2\n  num_pictures: 0\n  output_dir: {tmp_path / 'run'}\n  quiet: true\n"
    )
    with serve_model_store({"mobilenet0.25": path}) as store:
        run_config(load_config(config))
        assert len(store.requests) == 1
    # Offline, without the ImageNet file: the checkpoint holds every weight the run needs.
    shutil.rmtree(root)
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{_closed_port()}/")
    _, history = run_config(load_config(config, ["train.epochs=2", "train.resume=true"]))
    assert history["epoch"] == [1, 2] and not root.exists()
    # A new run (nothing to resume) still needs the weights, and says so.
    with pytest.raises(DownloadError, match="The ImageNet weights of mobilenet0.25 are missing"):
        run_config(load_config(config, [f"train.output_dir={tmp_path / 'other'}"]))


# -- the ImageNet input --------------------------------------------------------------------------


def _imagenet_image(seed: int) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
    """One image as detkit's readers give it (RGB minus RGB_MEAN) and as the model zoo expects it."""
    rgb = np.random.default_rng(seed).uniform(0, 255, size=(1, 3, 64, 64)).astype("float32")
    mean = np.array(detkit.ImageNetInput.MEAN, "float32").reshape(1, 3, 1, 1)
    std = np.array(detkit.ImageNetInput.STD, "float32").reshape(1, 3, 1, 1)
    detkit_input = rgb - np.array(detkit.data.RGB_MEAN, "float32").reshape(1, 3, 1, 1)
    return mx.nd.array(detkit_input), mx.nd.array((rgb / 255 - mean) / std)


@pytest.mark.parametrize(("cls", "store", "end"), [(MobileNet0_25, "mobilenet0.25", 21),
                                                   (MobileNetV2_0_25, "mobilenetv2_0.25", 6)])
def test_a_pretrained_body_on_detkit_input_is_the_model_zoo_network_on_imagenet_input(
        cls, store, end, tmp_path) -> None:
    network = vision.get_model(store)
    network.initialize(mx.init.Xavier())
    network(mx.nd.zeros((1, 3, 32, 32)))
    path = tmp_path / f"{store}.params"
    network.save_parameters(str(path))
    with serve_model_store({store: path}) as served:
        backbone = cls(stages=[1], pretrained=True, root=tmp_path / "models")  # stride 4: the zoo's features[:end]
        detkit.SSDDetector(classes=["a"], backbone=backbone, ctx=mx.cpu(), data_shape=128)
    assert len(served.requests) == 1
    detkit_input, imagenet_input = _imagenet_image(0)
    (features,) = backbone(detkit_input)
    expected = network.features[:end](imagenet_input)
    assert features.shape == expected.shape
    np.testing.assert_allclose(features.asnumpy(), expected.asnumpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backbone", [MobileNet0_25(), MobileNetV2_0_25(), VGG16Atrous()],
                         ids=["mobilenet0_25", "mobilenetv2_0_25", "vgg16_atrous"])
def test_every_zoo_body_starts_with_the_imagenet_input(backbone) -> None:
    assert isinstance(backbone.input, detkit.ImageNetInput)
    assert list(backbone.input.collect_params()) == []  # nothing to train, decay or save
    backbone.initialize()
    detkit_input, imagenet_input = _imagenet_image(1)
    np.testing.assert_allclose(backbone.input(detkit_input).asnumpy(), imagenet_input.asnumpy(), rtol=1e-5, atol=1e-5)


def test_a_detector_with_a_zoo_body_quantizes() -> None:
    detector = detkit.SSDDetector(classes=["a"], backbone="mobilenet0_25", data_shape=64, ctx=mx.cpu())
    images = [mx.nd.random.uniform(-100, 100, shape=(2, 3, 64, 64))]
    try:
        quantized = detector.quantize(images, num_batches=1)
    except detkit.errors.MissingDependencyError:
        pytest.skip("this MXNet build has no MKL-DNN INT8 backend")
    assert quantized.precision == "int8" and detector.precision == "float32"
    anchors, class_preds, _ = quantized(images[0])
    expected = detector(images[0])[1]
    assert class_preds.shape == expected.shape and np.isfinite(class_preds.asnumpy()).all()


def test_gluoncv_features_append_gluoncv_extra_layers_to_a_registered_body() -> None:
    from detkit_zoo import VGG300_EXTRAS, GluonCVFeatures, expander_extras

    features = GluonCVFeatures({"name": "mobilenet0_25", "stages": [3, 4]}, expander_extras([64, 32]),
                               batch_norm=True)
    assert features.out_channels == (128, 256, 64, 32) and features.out_strides == (16, 32, 64, 128)
    features.initialize()
    maps = features(mx.nd.zeros((1, 3, 96, 96)))
    assert [m.shape[1:] for m in maps] == [(128, 6, 6), (256, 3, 3), (64, 2, 2), (32, 1, 1)]
    rebuilt = detkit.build_component("backbone", "gluoncv_features", **features.get_config())
    assert rebuilt.get_config() == features.get_config()
    # FeatureExpander's batch norm: MXNet's symbol defaults (eps 1e-3, gamma fixed at 1).
    norm = features.layers[0][1]
    assert isinstance(norm, nn.BatchNorm) and norm._kwargs["eps"] == 1e-3 and norm._kwargs["fix_gamma"]
    # SSD300's unpadded last layers need 257 pixels: said before MXNet would fail.
    vgg = GluonCVFeatures({"name": "vgg16_atrous", "caffe_input": True, "l2_eps": 1e-5}, VGG300_EXTRAS)
    assert vgg.min_input_size == 257
    with pytest.raises(InputError, match="at least 257"):
        detkit.SSDDetector(["a"], backbone=vgg, anchor_generator={
            "name": "gluoncv_anchors", "sizes": [30, 60, 111, 162, 213, 264, 315], "ratios": [[1, 2]] * 6,
            "steps": [8, 16, 32, 64, 100, 300], "image_size": 256}, data_shape=256)
    with pytest.raises(InputError, match="'extras' argument of GluonCVFeatures"):
        GluonCVFeatures("mobilenet0_25", [[[64, 3, 2]]])


def test_the_extra_layers_are_those_import_gluoncv_builds() -> None:
    # detkit keeps its own copy in a private module (this plugin imports detkit's public API alone): the same specs.
    from detkit._model._gluoncv import GLUONCV_MODELS

    for name, extras in (("ssd_300_vgg16_atrous", detkit_zoo.VGG300_EXTRAS),
                         ("ssd_512_vgg16_atrous", detkit_zoo.VGG512_EXTRAS)):
        assert [[list(conv) for conv in layer] for layer in extras] == GLUONCV_MODELS[name]["extras"]
    expanded = [spec for spec in GLUONCV_MODELS.values() if spec["batch_norm"]]
    assert len(expanded) == 4
    for spec in expanded:
        assert detkit_zoo.expander_extras([layer[-1][0] for layer in spec["extras"]]) == spec["extras"]
