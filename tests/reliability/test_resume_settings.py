"""Resuming with other optimizer settings is refused with a message that names the setting; nothing changes silently."""

from __future__ import annotations

import json

import mxnet as mx
import pytest

import detkit
from detkit import SSDDetector
from detkit.errors import CheckpointError

TRAINED_WITH = {"learning_rate": 0.05, "momentum": 0.9}


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    train, _ = detkit.data.synthetic_pikachu(root / "data", num_train=8, num_val=4, image_size=32, seed=3,
                                             progress=False)
    detkit.fit(_detector(), train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=root / "checkpoints",
               optimizer_params=TRAINED_WITH)
    return train, root / "checkpoints"


def _detector() -> SSDDetector:
    mx.random.seed(1)
    return SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())


CHANGES = [
    ({"learning_rate": 0.5, "momentum": 0.9}, "learning_rate=0.05, not 0.5"),
    ({"learning_rate": 0.05, "momentum": 0.0}, "momentum=0.9, not 0.0"),
    ({"learning_rate": 0.05}, "momentum=0.9, not None"),
    ({"learning_rate": 0.05, "momentum": 0.9, "wd": 1e-3}, "wd=0.0005, not 0.001"),  # the seed's default wd
    ({"learning_rate": 0.05, "momentum": 0.9, "clip_gradient": 5.0}, "clip_gradient=None, not 5.0"),
]


@pytest.mark.parametrize("params, message", CHANGES)
def test_resume_with_another_optimizer_setting_is_refused(checkpointed, params, message) -> None:
    train, directory = checkpointed
    with pytest.raises(CheckpointError, match=f"optimizer setting {message}.*never applied"):
        detkit.fit(_detector(), train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=directory, resume=True,
                   optimizer_params=params)
    assert json.loads((directory / "last.json").read_text())["checkpoint"] == "epoch-0001"


def test_resume_with_the_same_settings_given_as_other_number_types_goes_on(checkpointed, tmp_path) -> None:
    import shutil

    train, directory = checkpointed
    copy = tmp_path / "checkpoints"
    shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".detkit.lock"))
    import numpy as np

    history = detkit.fit(_detector(), train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=copy, resume=True,
                         optimizer_params={"learning_rate": np.float64(0.05), "momentum": np.float64(0.9)})
    assert history["epoch"] == [1, 2]
