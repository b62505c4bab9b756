"""Callbacks: the public :class:`Callback` base, and the built-in ones that :func:`fit` runs before the user's.

:func:`fit` calls, after every epoch and in this order: validation (adds the
mAP figures to the epoch's record), the history (stores the record), progress
(prints the epoch's line) and checkpointing (writes the epoch's checkpoint,
knows the best one, and resumes); then the user's callbacks. A built-in
callback receives the epoch's record itself and may add to it; the user's
receive a copy.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, cast

import mxnet as mx
from mxnet import gluon
from tqdm.auto import tqdm

from .._base import FolderSnapshot, PathLike, read_consistent
from .._model import SSDDetector, check_saved_weights, file_sha256
from ..data._truth import GroundTruth
from ..errors import CheckpointError, NonFiniteLossError
from ._averaging import TRAINING_WEIGHTS_FILE, RestoredAverage, WeightAverage, load_weights_file
from ._checkpoints import CHECKPOINT_FORMAT, Checkpoints, check_resumable, read_checkpoint
from ._distributed import lead_alone
from ._evaluate import NonFiniteDetectionsError, evaluate_with, sidecar_truth
from ._history import History
from ._optimizer_state import load_optimizer_state

if TYPE_CHECKING:
    from ._distributed import Coordinator

__all__ = ["Callback", "Checkpointing", "Progress", "Recorder", "Validation", "print_line"]

_SEED_METRICS = ("epoch", "loss", "class_accuracy", "box_mae", "seconds", "images_per_second",
                 "learning_rate", "map_50", "map_50_voc07", "map_50_95", "validated", "grad_norm", "clipped")


class Callback:
    """Hooks into :func:`fit`; subclass and override what you need.

    Every method does nothing by default. ``on_epoch_end`` may return ``True``
    to stop training after that epoch (early stopping).
    """

    def on_train_begin(self, detector: SSDDetector, history: History) -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_epoch_end(self, epoch: int, record: Mapping[str, Any], detector: SSDDetector) -> bool | None:
        """Called after each epoch with its :class:`History` record; return ``True`` to stop.

        ``epoch`` is the 0-based index of the epoch (``record["epoch"]`` is ``epoch + 1``).
        """
        return None

    def on_train_end(self, history: History) -> None:
        """Called once after the last epoch."""


def print_line(line: str) -> None:
    """Print ``line`` to stdout without breaking a progress bar on stderr."""
    tqdm.write(line, file=sys.stdout)


class Validation(Callback):
    """Evaluates ``data`` after every ``every``-th epoch and after the last (of ``epochs``), and adds VOC
    mAP@0.5 (area and 11-point) and COCO mAP to the record; the other epochs' records get ``validated: False``.

    In a distributed run (a ``coordinator``) every worker holds rank 0's figures.

    The evaluation sidecar of ``data`` (``PREFIX.eval.json``) is read and checked once, before the
    first epoch (:meth:`on_train_begin`): a stale one stops the run before any training.
    """

    def __init__(self, data: Any, batch_size: int, coordinator: Coordinator | None = None, *, every: int = 1,
                 epochs: int | None = None) -> None:
        self.data = data
        self.batch_size = batch_size
        self.coordinator = coordinator
        self.every = every
        self.epochs = epochs
        self._truth: tuple[GroundTruth | None] | None = None  # (the sidecar's ground truth,) once read

    def on_train_begin(self, detector: SSDDetector, history: History) -> None:
        self._sidecar(detector)

    def _sidecar(self, detector: SSDDetector) -> GroundTruth | None:
        """The ground truth of the data's sidecar (None without one), read and checked the first time alone."""
        if self._truth is None:
            self._truth = (sidecar_truth(self.data, list(getattr(self.data, "classes", detector.classes))),)
        return self._truth[0]

    def on_epoch_end(self, epoch: int, record: Mapping[str, Any], detector: SSDDetector) -> None:
        if (epoch + 1) % self.every and (self.epochs is None or epoch + 1 < self.epochs):
            cast(Dict[str, Any], record)["validated"] = False
            return
        keys = ("map_50", "map_50_voc07", "map_50_95")
        if self.coordinator is None:
            values = self._scores(epoch, detector, keys)
        else:  # rank 0 alone evaluates; every worker gets its figures, or stops with its failure
            values = lead_alone(self.coordinator, lambda: self._scores(epoch, detector, keys), size=len(keys),
                                failed=f"Rank 0 could not validate epoch {epoch + 1} (its own message says why); "
                                       "training stopped. The checkpoints on disk are intact.")
        # fit hands built-in callbacks the epoch's record itself (a dict), to add to.
        cast(Dict[str, Any], record).update(zip(keys, values), validated=True)

    def _scores(self, epoch: int, detector: SSDDetector, keys: tuple[str, ...]) -> list[float]:
        # On the first device; the weights are equal on all of them.
        truth = self._sidecar(detector)
        try:
            scores = evaluate_with(detector, self.data, truth, batch_size=self.batch_size)
        except NonFiniteDetectionsError as error:
            raise NonFiniteLossError(
                f"Training diverged: after epoch {epoch + 1}, the detections on validation batch {error.batch + 1} "
                "are NaN or infinite; training stopped. The checkpoints on disk are intact. Lower the learning "
                "rate, add warm-up, or check the labels.", epoch=epoch, batch=error.batch,
            ) from None
        return [float(scores[key]) for key in keys]


class Recorder(Callback):
    """Appends every epoch's record to ``history``."""

    def __init__(self, history: History) -> None:
        self.history = history

    def on_epoch_end(self, epoch: int, record: Mapping[str, Any], detector: SSDDetector) -> None:
        self.history.append(record)


class Progress(Callback):
    """Prints one line per epoch: the loss and its terms, the seed's metrics, validation mAP, time and speed."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, record: Mapping[str, Any], detector: SSDDetector) -> None:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in _SEED_METRICS)
        line = (f"epoch {record['epoch']:>3}/{self.epochs}  loss {record['loss']:.4g} ({terms})  "
                f"class acc {record['class_accuracy']:.4f}  box MAE {record['box_mae']:.3g}")
        if "map_50" in record:
            line += f"  val mAP@0.5 {record['map_50']:.4f}"
        elif record.get("validated") is False:
            line += "  (not validated)"
        if record.get("clipped", 0.0) >= 0.5:  # clipping that shortens most steps slows training: say so
            line += f"  clipped {record['clipped']:.0%} (grad norm {record['grad_norm']:.3g})"
        print_line(line + f"  {record['seconds']:.1f} s, {record['images_per_second']:.1f} img/s")


class Checkpointing(Callback):
    """Writes a checkpoint after every epoch (the last and the best kept), and resumes from the last one.

    :meth:`restore` (before the trainer exists) loads the weights and returns
    the seed, the next epoch and the history of the run to resume;
    :meth:`attach` (once it exists) gives the trainer and loads its states.

    In a distributed run (a ``coordinator``) every worker restores from the
    same folder (a checkpoint holds nothing of one rank: the weights, the
    optimizer state and the history are equal on all workers, so ranks may
    change between runs), and rank 0 alone writes; the others wait until the
    checkpoint is complete, and stop with it when rank 0 cannot write it.
    """

    def __init__(self, directory: PathLike, settings: Mapping[str, Any], *, resume: bool, quiet: bool,
                 coordinator: Coordinator | None = None, validating: bool = False) -> None:
        self.checkpoints = Checkpoints(directory)
        #: With validation, the best checkpoint is chosen among the validated epochs alone.
        self.validating = validating
        self.settings = dict(settings)
        self.resume = resume
        self.quiet = quiet
        self.coordinator = coordinator
        self._resume_from: Any = None
        self._epochs_done = 0
        self._trainer: gluon.Trainer | None = None
        self._seed = 0
        self._history: History | None = None
        self._best = -math.inf
        self._average: WeightAverage | None = None
        # After restore() of a run that averages its weights: the average to continue from (until taken).
        self._restored_average: RestoredAverage | None = None
        self._resumed_with_average = False  # whether the checkpoint resumed from holds an average

    def restore(self, detector: SSDDetector) -> tuple[int, int, History] | None:
        """Load the last checkpoint's weights into ``detector``; return ``(seed, next epoch, history)``."""
        if self.coordinator is None or self.coordinator.rank == 0:  # the writer, who holds the lock
            self.checkpoints.settle()  # a write of a run that was killed: finished or cleaned (fit holds the lock)
        # The pointer, the checkpoint's state, configuration and weights: all of one generation of the directory.
        loaded = read_consistent(self.checkpoints.directory, lambda snapshot: self._read_last(snapshot, detector))
        if loaded is None:
            if self.resume and not self.quiet:
                print_line(f"no checkpoint in {self.checkpoints.directory}: training starts at epoch 1")
            return None
        last, state = loaded
        self._resume_from = last
        self._epochs_done = int(state["epoch"]) + 1
        history = History(state["history"])
        self._best = max((_score(r, self.validating) for r in history.records), default=-math.inf)
        return int(state["seed"]), int(state["epoch"]) + 1, history

    def _read_last(self, snapshot: FolderSnapshot, detector: SSDDetector) -> tuple[Path, dict[str, Any]] | None:
        """The last checkpoint (as ``snapshot`` of the checkpoint directory saw it) and its state, its weights
        loaded into ``detector``; ``None`` without one."""
        last = self.checkpoints.path("last", snapshot)
        if last is not None and not self.resume:
            raise CheckpointError(
                f"{self.checkpoints.directory} holds the checkpoints of an earlier run (last: {last.name}); "
                "pass resume=True to continue it, or choose another checkpoint directory."
            )
        if last is None:
            return None
        state = read_checkpoint(last)
        check_resumable(last, state, detector, self.settings)
        checkpoint = FolderSnapshot(last)  # the checkpoint's own folder: its weights and their checksums together
        check_saved_weights(last, checkpoint)
        weights = checkpoint.path("network.params")
        averaged = state.get("average")
        self._resumed_with_average = averaged is not None
        if averaged is not None:  # the detector is the average; training goes on from the weights beside it
            self._restored_average = RestoredAverage(load_weights_file(weights), int(averaged["steps"]))
            weights = checkpoint.path(TRAINING_WEIGHTS_FILE)
            try:
                intact = weights.is_file() and file_sha256(weights).lower() == averaged["sha256"].lower()
            except OSError as error:
                raise CheckpointError(f"{last / TRAINING_WEIGHTS_FILE} cannot be read ({error.strerror or error}); "
                                      "make it readable, or resume from another checkpoint.") from None
            if not intact:
                raise CheckpointError(f"{last / TRAINING_WEIGHTS_FILE} is missing or differs from its recorded "
                                      "SHA-256; the checkpoint is damaged (resume from another one, or start afresh).")
        try:
            detector.network.load_parameters(str(weights), ctx=detector.ctx)
        except (mx.base.MXNetError, AssertionError, ValueError) as error:
            raise CheckpointError(f"The weights in {weights} cannot be read: {error}") from error
        return last, state

    def take_restored_average(self) -> RestoredAverage | None:
        """The average of the checkpoint that :meth:`restore` loaded (``None`` without one); handed over once."""
        restored, self._restored_average = self._restored_average, None
        return restored

    def attach(self, trainer: gluon.Trainer, seed: int, history: History, images_per_epoch: int | None = None,
               average: WeightAverage | None = None) -> None:
        """Use ``trainer`` for the checkpoints of this run (seeded ``seed``); load its states when resuming.

        ``images_per_epoch`` bounds the update counters that a resumed state may hold (one update
        takes at least one image). With ``average`` (applied to the network when an epoch ends), a
        checkpoint's detector is the average and ``training.params`` the weights being trained.
        """
        self._trainer, self._seed, self._history, self._average = trainer, seed, history, average
        # (A change of ema_epochs is named by check_resumable; this is a checkpoint of an earlier detkit, or damage.)
        if self._resume_from is not None and (average is not None) != self._resumed_with_average:
            raise CheckpointError(
                f"The checkpoint {self._resume_from} was trained "
                + ("with a moving average of its weights, which it lacks now; the checkpoint is damaged (resume "
                   "from another one, or start afresh)." if self._resumed_with_average else
                   "without a moving average of the weights; resume it with ema_epochs=0 (--set "
                   "train.ema_epochs=0), or start afresh in another checkpoint directory."))
        if self._resume_from is not None:
            limit = None if images_per_epoch is None else self._epochs_done * max(1, int(images_per_epoch))
            load_optimizer_state(trainer, self._resume_from, limit)

    def on_epoch_end(self, epoch: int, record: Mapping[str, Any], detector: SSDDetector) -> None:
        if self._trainer is None or self._history is None:
            raise RuntimeError("Checkpointing.attach() must be called before the first epoch ends")
        score = _score(record, self.validating)
        is_best = score > self._best
        self._best = max(self._best, score)
        state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "seed": self._seed, "history": self._history.records,
                 "settings": self.settings}
        average = self._average
        trained = (average.training_weights(), average.updates) if average is not None else None
        if self.coordinator is None:
            self.checkpoints.write(epoch, detector, self._trainer, state, best=is_best, trained=trained)
            return
        trainer = self._trainer

        def write() -> list[float]:
            self.checkpoints.write(epoch, detector, trainer, state, best=is_best, trained=trained)
            return []

        # Also the barrier: no worker goes on before the checkpoint is complete.
        lead_alone(self.coordinator, write,
                   failed=f"Rank 0 could not write the checkpoint of epoch {epoch + 1} in {self.checkpoints.directory} "
                          "(its own message says why); training stopped. The previous checkpoints are intact.")


def _score(record: Mapping[str, Any], validating: bool = False) -> float:
    """Higher is better: validation mAP@0.5 when there is one, else minus the loss (without validation) or
    never the best (an epoch that was not validated, in a run that validates)."""
    value = record.get("map_50")
    if value is not None and not math.isnan(value):
        return float(value)
    if validating:
        return -math.inf
    return -float(record["loss"])
