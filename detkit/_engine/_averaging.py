"""An exponential moving average of the network's weights, for validation, checkpoints and the trained model.

On a small real data set the weights of one step land anywhere in a wide
valley: validation mAP swings by a fifth from one epoch to the next
(``ssd`` on cards-voc, see the training guide). Their running average sits
near the valley's middle and moves slowly, so it scores higher and steadier.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import mxnet as mx
from mxnet import gluon

from .._base import storage_errors
from ..errors import CheckpointError

__all__ = ["TRAINING_WEIGHTS_FILE", "WeightAverage", "averaging_decay", "load_weights_file", "save_weights_file"]

#: The weights being trained, beside the averaged ones (``network.params``) of a checkpoint.
TRAINING_WEIGHTS_FILE = "training.params"


def averaging_decay(ema_epochs: float, steps_per_epoch: int) -> float:
    """The decay per step of an average over about ``ema_epochs`` epochs: ``1 - 1 / (ema_epochs * steps)``."""
    return 1.0 - 1.0 / max(ema_epochs * steps_per_epoch, 1.0)


class WeightAverage:
    """An exponential moving average of every array of ``network`` (BatchNorm's running statistics
    included), kept on ``ctx`` (the first training device).

    After step ``t`` (from 1): ``average = d * average + (1 - d) * weights`` with
    ``d = min(decay, (1 + t) / (10 + t))``: the first steps, whose weights move
    most, are hardly averaged (TensorFlow's ``ExponentialMovingAverage`` with
    ``num_updates``), so that the average never holds much of the random start.

    ``start`` (name -> array, the names of ``network.save_parameters``): the
    average to continue from, with ``updates`` steps already in it (a resumed run).
    """

    def __init__(self, network: gluon.Block, decay: float, ctx: mx.Context, *,
                 start: dict[str, mx.nd.NDArray] | None = None, updates: int = 0) -> None:
        self.decay = float(decay)
        self.updates = int(updates)
        self._parameters = dict(network._collect_params_with_prefix())
        if start is not None:
            missing = sorted(set(self._parameters) - set(start))
            if missing:
                raise CheckpointError(f"The averaged weights lack {', '.join(missing[:3])}; the checkpoint is "
                                      "damaged (resume from another one, or start afresh).")
        self._average = {name: (start[name] if start is not None else p.data(ctx)).astype("float32").copyto(ctx)
                         for name, p in self._parameters.items()}
        for name, array in self._average.items():
            if array.shape != self._parameters[name].shape:
                raise CheckpointError(f"The averaged weight {name} has the shape {array.shape}, not "
                                      f"{self._parameters[name].shape}; the checkpoint does not fit the detector.")
        self._ctx = ctx
        self._training: dict[str, mx.nd.NDArray] | None = None

    def update(self) -> None:
        """Fold the weights of the step just taken into the average (queued on the device, no wait)."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for name, parameter in self._parameters.items():
            average = self._average[name]
            average *= decay
            average += parameter.data(self._ctx) * (1.0 - decay)

    def statistics(self) -> list[mx.nd.NDArray]:
        """The averages of the arrays without a gradient (BatchNorm's running statistics), in a fixed order."""
        return [self._average[name] for name, p in self._parameters.items() if p.grad_req == "null"]

    @contextlib.contextmanager
    def applied(self) -> Iterator[dict[str, mx.nd.NDArray]]:
        """Put the average into the network on every device; yield the weights being trained (name -> array,
        the first device's), put back on exit."""
        training = {name: [array.copy() for array in p.list_data()] for name, p in self._parameters.items()}
        self.apply()
        self._training = {name: arrays[0] for name, arrays in training.items()}
        try:
            yield self._training
        finally:
            self._training = None
            for name, parameter in self._parameters.items():
                for array, saved in zip(parameter.list_data(), training[name]):
                    saved.copyto(array)

    def training_weights(self) -> dict[str, mx.nd.NDArray]:
        """Within :meth:`applied`: the weights being trained (name -> array), which a checkpoint keeps to resume."""
        if self._training is None:
            raise RuntimeError("WeightAverage.training_weights() is only valid within applied()")
        return self._training

    def apply(self) -> None:
        """Put the average into the network, on every device, for good."""
        for name, parameter in self._parameters.items():
            for array in parameter.list_data():
                self._average[name].copyto(array)


def save_weights_file(weights: dict[str, mx.nd.NDArray], path: Path, shown: Path) -> None:
    """Write ``weights`` (name -> array) as a Gluon parameter file at ``path`` (errors name ``shown``)."""
    with storage_errors(shown):
        mx.nd.save(str(path), {name: array.copyto(mx.cpu()) for name, array in weights.items()})


def load_weights_file(path: Path) -> dict[str, mx.nd.NDArray]:
    """The arrays of the Gluon parameter file ``path`` (MXNet's binary format, no code), by name."""
    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError as error:
        raise CheckpointError(f"The weights in {path} cannot be read: {str(error).splitlines()[0]}; the checkpoint "
                              "is damaged (resume from another one, or start afresh).") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds no named weights; the checkpoint is damaged (resume from another "
                              "one, or start afresh).")
    # Gluon's own files may prefix the names with "arg:" or "aux:".
    return {name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name: array
            for name, array in loaded.items()}
