"""An exponential moving average of the network's weights, for validation, checkpoints and the trained model.

On a small real data set the weights of one step land anywhere in a wide
valley: validation mAP swings by a fifth from one epoch to the next
(``ssd`` on cards-voc, see the training guide). Their running average sits
near the valley's middle and moves slowly, so it scores higher and steadier.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, NamedTuple

import mxnet as mx
from mxnet import gluon

from .._base import storage_errors
from ..errors import CheckpointError

__all__ = ["FOLD_EVERY", "TRAINING_WEIGHTS_FILE", "RestoredAverage", "WeightAverage", "averaging_decay",
           "load_weights_file", "save_weights_file"]

#: The weights being trained, beside the averaged ones (``network.params``) of a checkpoint.
TRAINING_WEIGHTS_FILE = "training.params"
#: Steps between two folds of the weights into the average (see :class:`WeightAverage`).
FOLD_EVERY = 4


class RestoredAverage(NamedTuple):
    """The average a checkpoint holds (name -> array) and the steps already in it."""

    weights: dict[str, mx.nd.NDArray]
    steps: int


def averaging_decay(ema_epochs: float, steps_per_epoch: int) -> float:
    """The decay per step of an average over about ``ema_epochs`` epochs: ``1 - 1 / (ema_epochs * steps)``."""
    return 1.0 - 1.0 / max(ema_epochs * steps_per_epoch, 1.0)


class WeightAverage:
    """An exponential moving average of every array of ``network`` (BatchNorm's running statistics
    included), kept on ``ctx`` (the first training device).

    Step ``t`` (from 1) has the decay ``d_t = min(decay, (1 + t) / (10 + t))``:
    the first steps, whose weights move most, are hardly averaged (TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so that the average never
    holds much of the random start. The trained weights are folded in every
    ``FOLD_EVERY`` steps and at the end of each epoch (:meth:`end_epoch`):
    ``average = D * average + (1 - D) * weights``, ``D`` the product of the
    decays of the steps since their last fold. Folding reads and writes every
    weight (ResNet-18's SSD: 12 million, about 7 % of a training step on one
    CPU thread); every fourth step, the average costs under 2 %. BatchNorm's
    running statistics are folded in at the end of each epoch alone, once
    every step is done: a hybridized (static_alloc) step writes them without
    ordering that write against other reads in MXNet's engine (read after
    each step, the average differed between two identical runs).

    ``start`` (name -> array, the names of ``network.save_parameters``): the
    average to continue from, with ``updates`` steps already in it (a resumed run).
    """

    def __init__(self, network: gluon.Block, decay: float, ctx: mx.Context, *,
                 start: dict[str, mx.nd.NDArray] | None = None, updates: int = 0) -> None:
        self.decay = float(decay)
        self.updates = int(updates)
        # The product of the decays of the steps not yet folded in: of the trained weights, of the statistics.
        self._pending = {"trained": 1.0, "statistics": 1.0}
        self._parameters = dict(network._collect_params_with_prefix())
        self._groups = {"trained": [name for name, p in self._parameters.items() if p.grad_req != "null"],
                        "statistics": [name for name, p in self._parameters.items() if p.grad_req == "null"]}
        if start is not None:
            missing = sorted(set(self._parameters) - set(start))
            if missing:
                raise CheckpointError(f"The averaged weights lack {', '.join(missing[:3])}; the checkpoint is "
                                      "damaged (resume from another one, or start afresh).")
        # astype copies: the average never shares memory with the network or the loaded file.
        self._average = {name: (start[name] if start is not None else p.data(ctx)).astype("float32").as_in_context(ctx)
                         for name, p in self._parameters.items()}
        for name, array in self._average.items():
            if array.shape != self._parameters[name].shape:
                raise CheckpointError(f"The averaged weight {name} has the shape {array.shape}, not "
                                      f"{self._parameters[name].shape}; the checkpoint does not fit the detector.")
        self._ctx = ctx
        self._training: dict[str, mx.nd.NDArray] | None = None

    def update(self) -> None:
        """Count the step just taken; fold the weights in every ``FOLD_EVERY`` steps (queued, no wait)."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for group in self._pending:
            self._pending[group] *= decay
        if self.updates % FOLD_EVERY == 0:
            self._fold("trained")

    def end_epoch(self) -> None:
        """Fold in the weights and the statistics (every step of the epoch must be done: ``mx.nd.waitall``)."""
        self._fold("trained")
        self._fold("statistics")

    def _fold(self, group: str) -> None:
        keep, self._pending[group] = self._pending[group], 1.0
        if keep == 1.0:
            return
        for name in self._groups[group]:
            average = self._average[name]
            # average = keep * average + (1 - keep) * weights, in place in one pass (no temporary array):
            # SGD's update w - lr * (rescale * g + wd * w) with lr = 1 - keep, rescale -1 and wd 1.
            mx.nd.sgd_update(average, self._parameters[name].data(self._ctx), lr=1.0 - keep, wd=1.0,
                             rescale_grad=-1.0, out=average)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Put the average into the network on every device, and the weights being trained back on exit
        (also on an error; what the block changed in the weights is lost). Within it,
        :meth:`training_weights` gives the weights being trained."""
        training = {name: [array.copy() for array in p.list_data()] for name, p in self._parameters.items()}
        self._training = {name: arrays[0] for name, arrays in training.items()}
        try:
            self.apply()
            yield
        finally:
            self._training = None
            for name, parameter in self._parameters.items():
                for array, saved in zip(parameter.list_data(), training[name]):
                    saved.copyto(array)
            # Before the next hybridized step, which does not order its writes of the statistics after these.
            mx.nd.waitall()

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
        mx.nd.waitall()  # before anything else (a hybridized step) writes the statistics


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
    return loaded  # named as network.save_parameters and save_weights_file name them
