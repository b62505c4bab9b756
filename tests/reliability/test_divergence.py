"""Divergence is named as divergence: NaN detections at validation are a NonFiniteLossError with epoch and batch."""

from __future__ import annotations

import json

import mxnet as mx
import pytest

import detkit
from detkit import SSDDetector
from detkit._engine._callbacks import Validation
from detkit.errors import InputError, NonFiniteLossError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("divergence")
    return detkit.data.synthetic_pikachu(root, num_train=16, num_val=8, image_size=32, seed=3, progress=False)


def _detector() -> SSDDetector:
    mx.random.seed(1)
    return SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())


def _overflowing(detector: SSDDetector) -> SSDDetector:
    """Finite weights whose outputs overflow: a box head of 1e37, as a diverging run leaves it."""
    detector._materialize()
    head = detector.network.box_heads[0].weight
    head.set_data(mx.nd.ones(head.shape) * 1e37)
    return detector


def test_nan_detections_at_validation_are_a_non_finite_loss_error_with_epoch_and_batch(tiny) -> None:
    _, val = tiny
    with pytest.raises(NonFiniteLossError, match=r"diverged: after epoch 4, the detections on validation batch 1") \
            as caught:
        Validation(val, batch_size=4).on_epoch_end(3, {}, _overflowing(_detector()))
    assert (caught.value.epoch, caught.value.batch) == (3, 0)


def test_evaluate_of_a_diverged_detector_says_so(tiny) -> None:
    _, val = tiny
    with pytest.raises(InputError, match="NaN or infinite.*diverged"):
        detkit.evaluate(_overflowing(_detector()), val, batch_size=4)


class _Overflow(detkit.Callback):
    """After the first epoch, leaves the box head overflowing (finite), as a huge learning rate does."""

    def on_epoch_end(self, epoch, record, detector):
        _overflowing(detector)


def test_overflowing_outputs_after_an_epoch_stop_fit_with_a_non_finite_loss_error(tiny, tmp_path):
    train, val = tiny
    with pytest.raises(NonFiniteLossError, match=r"epoch 2") as caught:
        detkit.fit(_detector(), train, val, epochs=3, batch_size=8, seed=0, quiet=True, checkpoint_dir=tmp_path,
                   callbacks=[_Overflow()])
    assert caught.value.epoch == 1
    assert json.loads((tmp_path / "last.json").read_text())["checkpoint"] == "epoch-0001"


@pytest.mark.parametrize("learning_rate", [1e12, 1e30])
def test_a_huge_learning_rate_with_validation_stops_with_a_non_finite_loss_error(tiny, tmp_path, learning_rate):
    train, val = tiny
    with pytest.raises(NonFiniteLossError, match=r"epoch \d+") as caught:
        detkit.fit(_detector(), train, val, epochs=4, batch_size=8, seed=0, quiet=True, checkpoint_dir=tmp_path,
                   optimizer_params={"learning_rate": learning_rate})
    assert caught.value.epoch >= 0
    last = tmp_path / "last.json"
    if last.exists():  # only good epochs were checkpointed
        assert json.loads(last.read_text())["epoch"] < caught.value.epoch or caught.value.batch == -1
