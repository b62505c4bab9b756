"""Values, not only types: every numeric setting of the API, the configuration and the command line is
checked to be finite, in range and of the right type, and refused with an InputError (ConfigError) naming it."""

from __future__ import annotations


import mxnet as mx
import numpy as np
import pytest

import detkit
from detkit import SSDDetector
from detkit.cli import main
from detkit.components import (
    FocalSmoothL1Loss,
    MultiBoxDetectionPostProcessor,
    MultiBoxPriorAnchors,
    MultiBoxTargetAssigner,
    ToyBackbone,
)
from detkit.config import load_config
from detkit.errors import ConfigError, InputError

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("values")
    return detkit.data.synthetic_pikachu(root, num_train=8, num_val=4, image_size=32, seed=3, progress=False)


@pytest.fixture(scope="module")
def detector():
    return SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())


# (what is given, the name the message must contain)
FIT = [
    ({"epochs": NAN}, "'epochs'"), ({"epochs": 1.5}, "'epochs'"), ({"epochs": "2"}, "'epochs'"),
    ({"batch_size": -8}, "'batch_size'"), ({"batch_size": INF}, "'batch_size'"),
    ({"warmup_epochs": NAN, "lr_schedule": "cosine"}, "'warmup_epochs'"),
    ({"warmup_epochs": -1, "lr_schedule": "cosine"}, "'warmup_epochs'"),
    ({"warmup_epochs": "1", "lr_schedule": "cosine"}, "'warmup_epochs'"),
    ({"seed": -1}, "'seed'"), ({"seed": 1.5}, "'seed'"), ({"seed": "0"}, "'seed'"),
    ({"optimizer_params": {"learning_rate": NAN}}, "learning_rate"),
    ({"optimizer_params": {"learning_rate": INF}}, "learning_rate"),
    ({"optimizer_params": {"learning_rate": -0.1}}, "learning_rate"),
    ({"optimizer_params": {"learning_rate": 0}}, "learning_rate"),
    ({"optimizer_params": {"learning_rate": "0.1"}}, "learning_rate"),
    ({"optimizer_params": {"learning_rate": True}}, "learning_rate"),
    ({"optimizer_params": {"learning_rate": None}}, "learning_rate"),
    ({"optimizer_params": {"wd": -1e-4}}, "wd"), ({"optimizer_params": {"wd": NAN}}, "wd"),
    ({"optimizer_params": {"momentum": 1.5}}, "momentum"), ({"optimizer_params": {"momentum": -0.5}}, "momentum"),
    ({"optimizer_params": {"momentum": NAN}}, "momentum"),
    ({"optimizer_params": {"clip_gradient": NAN}}, "clip_gradient"),
    ({"optimizer_params": {"rescale_grad": "1"}}, "rescale_grad"),
    ({"optimizer": "adam", "optimizer_params": {"beta1": 1.0}}, "beta1"),
    ({"optimizer": "adam", "optimizer_params": {"epsilon": -1e-8}}, "epsilon"),
    ({"optimizer_params": ["learning_rate", 0.1]}, "optimizer_params"),
    ({"quiet": "no"}, "'quiet'"), ({"resume": "yes", "checkpoint_dir": "TMP"}, "'resume'"),
]


@pytest.mark.parametrize("given, name", FIT, ids=[repr(g) for g, _ in FIT])
def test_fit_refuses_bad_values(tiny, detector, tmp_path, given, name) -> None:
    train, _ = tiny
    arguments = {"epochs": 1, "batch_size": 8, "quiet": True, **given}
    if arguments.get("checkpoint_dir") == "TMP":
        arguments["checkpoint_dir"] = tmp_path / "checkpoints"
    with pytest.raises(InputError, match=name):
        detkit.fit(detector, train, **arguments)
    assert not (tmp_path / "checkpoints").exists()  # refused before anything was written


DETECTOR = [
    ({"scale_filters": 0}, "'scale_filters'"), ({"scale_filters": NAN}, "'scale_filters'"),
    ({"scale_filters": "16"}, "'scale_filters'"), ({"scale_filters": 16.0}, "'scale_filters'"),
    ({"data_shape": NAN}, "'data_shape'"), ({"data_shape": -64}, "'data_shape'"),
    ({"data_shape": "64"}, "'data_shape'"), ({"data_shape": (64, INF)}, "'data_shape'"),
    ({"hybridize": "no"}, "'hybridize'"),
]


@pytest.mark.parametrize("given, name", DETECTOR, ids=[repr(g) for g, _ in DETECTOR])
def test_the_detector_refuses_bad_values(given, name) -> None:
    with pytest.raises(InputError, match=name):
        SSDDetector(classes=["pikachu"], ctx=mx.cpu(), **given)


@pytest.mark.parametrize("threshold", [NAN, -0.1, 1.5, INF, "0.5", None, True])
def test_predict_refuses_a_bad_threshold(detector, threshold) -> None:
    with pytest.raises(InputError, match="'threshold'"):
        detector.predict(np.zeros((64, 64, 3), np.uint8), threshold=threshold)


@pytest.mark.parametrize("batch_size", [0, -1, NAN, 2.5, "8"])
def test_predict_and_evaluate_refuse_a_bad_batch_size(tiny, detector, batch_size) -> None:
    _, val = tiny
    with pytest.raises(InputError, match="'batch_size'"):
        detector.predict(np.zeros((64, 64, 3), np.uint8), batch_size=batch_size)
    with pytest.raises(InputError, match="'batch_size'"):
        detkit.evaluate(detector, val, batch_size=batch_size)


COMPONENTS = [
    (FocalSmoothL1Loss, {"alpha": NAN}, "alpha"), (FocalSmoothL1Loss, {"gamma": INF}, "gamma"),
    (FocalSmoothL1Loss, {"sigma": -1}, "sigma"), (FocalSmoothL1Loss, {"box_weight": "1"}, "box_weight"),
    (FocalSmoothL1Loss, {"alpha": 1.5}, "alpha"),
    (MultiBoxDetectionPostProcessor, {"nms_threshold": NAN}, "nms_threshold"),
    (MultiBoxDetectionPostProcessor, {"score_threshold": INF}, "score_threshold"),
    (MultiBoxDetectionPostProcessor, {"nms_topk": 2.5}, "nms_topk"),
    (MultiBoxDetectionPostProcessor, {"nms_topk": NAN}, "nms_topk"),
    (MultiBoxDetectionPostProcessor, {"variances": (0.1, NAN, 0.2, 0.2)}, "variances"),
    (MultiBoxDetectionPostProcessor, {"force_suppress": "yes"}, "force_suppress"),
    (MultiBoxPriorAnchors, {"sizes": ((0.2, NAN),)}, "sizes"),
    (MultiBoxPriorAnchors, {"sizes": ((0.2, -0.1),)}, "sizes"),
    (MultiBoxPriorAnchors, {"ratios": (1.0, INF)}, "ratios"),
    (MultiBoxPriorAnchors, {"ratios": (1.0, 0.0)}, "ratios"),
    (MultiBoxTargetAssigner, {"overlap_threshold": NAN}, "overlap_threshold"),
    (MultiBoxTargetAssigner, {"negative_mining_ratio": NAN}, "negative_mining_ratio"),
    (MultiBoxTargetAssigner, {"negative_mining_thresh": INF}, "negative_mining_thresh"),
    (MultiBoxTargetAssigner, {"minimum_negative_samples": -1}, "minimum_negative_samples"),
    (MultiBoxTargetAssigner, {"minimum_negative_samples": 1.5}, "minimum_negative_samples"),
    (ToyBackbone, {"filters": (16, NAN, 64)}, "filters"),
    (ToyBackbone, {"filters": (16, 0, 64)}, "filters"),
]


@pytest.mark.parametrize("component, given, name", COMPONENTS, ids=[f"{c.__name__}-{g!r}" for c, g, _ in COMPONENTS])
def test_components_refuse_bad_values(component, given, name) -> None:
    with pytest.raises(InputError, match=name):
        component(**given)


CONFIGS = [
    ("train.optimizer_params={learning_rate: .nan}", "train.optimizer_params"),
    ("train.optimizer_params={learning_rate: .inf}", "train.optimizer_params"),
    ("train.optimizer_params={learning_rate: -0.1}", "train.optimizer_params"),
    ("train.optimizer_params={learning_rate: fast}", "train.optimizer_params"),
    ("train.optimizer_params={learning_rate: '0.1'}", "train.optimizer_params"),
    ("train.optimizer_params={momentum: 2}", "train.optimizer_params"),
    ("train.warmup_epochs=.nan", "train.warmup_epochs"),
    ("train.warmup_epochs=.inf", "train.warmup_epochs"),
    ("train.threshold=.nan", "train.threshold"),
    ("train.epochs=.nan", "train.epochs"),
    ("train.epochs=1e400", "train.epochs"),
    ("train.warmup_epochs=" + "9" * 400, "train.warmup_epochs"),  # an int beyond any float
    ("train.seed=-3", "train.seed"),
    ("model.data_shape=.nan", "model.data_shape"),
    ("model.data_shape=[64, -1]", "model.data_shape"),
    ("model.loss={name: focal_smooth_l1, gamma: .nan}", "model.loss"),
    ("data.num_train=0", "data.num_train"),
]


def test_an_int_beyond_any_float_is_refused_as_a_number() -> None:
    from detkit._base import check_number

    with pytest.raises(InputError, match="finite number"):
        check_number("learning_rate", 10 ** 400)


@pytest.mark.parametrize("override, key", CONFIGS)
def test_the_configuration_refuses_bad_values(override, key) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert caught.value.key == key


@pytest.mark.parametrize("argv, name", [
    (["predict", "MODEL", "IMAGE", "--threshold", "nan"], "threshold"),
    (["predict", "MODEL", "IMAGE", "--threshold", "inf"], "threshold"),
    (["predict", "MODEL", "IMAGE", "--threshold", "-1"], "threshold"),
    (["evaluate", "MODEL", "DATA", "--batch-size", "0"], "batch"),
    (["evaluate", "MODEL", "DATA", "--batch-size", "-4"], "batch"),
])
def test_the_command_line_refuses_bad_values_before_loading_anything(tmp_path, capsys, argv, name) -> None:
    model = tmp_path / "model"
    SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu()).save(model)
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "image.png")
    (tmp_path / "data.rec").write_bytes(b"")
    argv = [str(model) if a == "MODEL" else str(tmp_path / "image.png") if a == "IMAGE"
            else str(tmp_path / "data.rec") if a == "DATA" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err
