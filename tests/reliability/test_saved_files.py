"""Schema validation of the files detkit reads back: a hand-edited or damaged file is a clear error naming it."""

from __future__ import annotations

import json
import shutil

import mxnet as mx
import pytest
import yaml

import detkit
from detkit import SSDDetector
from detkit.data._classes import read_classes
from detkit.errors import CheckpointError, DataError

DELETE = object()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    train, _ = detkit.data.synthetic_pikachu(root / "data", num_train=8, num_val=4, image_size=32, seed=3,
                                             progress=False)
    detkit.fit(_detector(), train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=root / "checkpoints")
    _detector().save(root / "model")
    return train, root


def _detector() -> SSDDetector:
    mx.random.seed(1)
    return SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())


def _set(mapping: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        mapping = mapping[key]
    if value is DELETE:
        del mapping[last]
    else:
        mapping[last] = value


DETECTOR_EDITS = [
    ("classes", DELETE), ("classes", []), ("classes", "pikachu"), ("classes", [1]),
    ("components", DELETE), ("components", ["toy"]), ("components.loss", DELETE), ("components.loss.name", DELETE),
    ("components.loss.name", 3), ("components.loss.kwargs", [1]), ("components.backbone.provided_by", "x"),
    ("components.loss.kwargs", {"gamma": -1.0}), ("components.loss.kwargs", {"no_such_argument": 1}),
    ("data_shape", [64]), ("data_shape", "64"), ("data_shape", [64, -64]), ("scale_filters", "many"),
    ("scale_filters", 0), ("format", DELETE),
]


@pytest.mark.parametrize("key, value", DETECTOR_EDITS, ids=[f"{k}={v!r}" for k, v in DETECTOR_EDITS])
def test_a_hand_edited_detector_yaml_is_a_checkpoint_error_naming_it(saved, tmp_path, key, value) -> None:
    _, root = saved
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    config = yaml.safe_load((model / "detector.yaml").read_text())
    _set(config, key, value)
    (model / "detector.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match="detector.yaml"):
        SSDDetector.load(model, ctx=mx.cpu())


STATE_EDITS = [("epoch", DELETE), ("epoch", "0"), ("epoch", -1), ("seed", DELETE), ("seed", 1.5),
               ("history", DELETE), ("history", {}), ("history", [{"epoch": 1}]),
               ("history", [{"epoch": 1, "loss": 1.0, "map_50": "high"}]),
               ("history", [{"epoch": 1, "loss": 1.0, "map_50": True}]), ("settings", DELETE), ("settings", [])]


@pytest.mark.parametrize("key, value", STATE_EDITS, ids=[f"{k}={v!r}" for k, v in STATE_EDITS])
def test_a_damaged_checkpoint_state_is_a_checkpoint_error_naming_it(saved, tmp_path, key, value) -> None:
    train, root = saved
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(root / "checkpoints", checkpoints)
    path = checkpoints / "epoch-0001" / "state.json"
    state = json.loads(path.read_text())
    _set(state, key, value)
    path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="state.json|not a detkit training checkpoint"):
        detkit.fit(_detector(), train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=checkpoints, resume=True)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"), (b"\n \n", "empty"), (b"cat\ncat\n", "repeats"), (b"\xff\xfecat", "not UTF-8"),
])
def test_a_bad_class_list_is_a_data_error_naming_it(tmp_path, content, message) -> None:
    path = tmp_path / "classes.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"classes.txt.*{message}"):
        read_classes(path)
