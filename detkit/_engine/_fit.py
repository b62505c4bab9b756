"""fit(): a short training loop; validation, history, progress and checkpoints are callbacks."""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from .._base import PathLike, check_bool, check_int, check_number, check_positive_int, folder_lock
from .._blocks import can_fuse_batch_norm_relu
from .._model import SSDDetector
from ..errors import CheckpointError, InputError, PerformanceWarning
from ._averaging import WeightAverage, averaging_decay
from ._callbacks import Callback, Checkpointing, Progress, Recorder, Validation
from ._checkpoints import CHECKPOINT_FORMAT
from ._distributed import (KEY_BASE, Coordinator, dist_store, is_distributed, note_failure, note_trained,
                           timeout_seconds)
from ._history import History
from ._optimizer_state import initialize_trainer
from ._step import TrainingGraph, check_weights_finite, train_epoch

__all__ = ["CHECKPOINT_FORMAT", "DEFAULT_BATCH_SIZE", "SEED_OPTIMIZER_PARAMS", "Callback", "check_optimizer", "fit"]

Devices = Union[str, mx.Context, Sequence[mx.Context]]

#: The seed's optimizer settings: SGD at learning rate 0.1 with weight decay 5e-4, batch 32.
SEED_OPTIMIZER_PARAMS: Mapping[str, float] = {"learning_rate": 0.1, "wd": 5e-4}
DEFAULT_BATCH_SIZE = 32
_SCHEDULES = ("constant", "cosine", "step")


def fit(
    detector: SSDDetector,
    train_data: Any,
    val_data: Any = None,
    *,
    epochs: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    optimizer: str = "sgd",
    optimizer_params: Mapping[str, Any] | None = None,
    lr_schedule: Any = None,
    warmup_epochs: float = 0.0,
    warmup_steps: int = 0,
    clip_gradient_norm: float | None = None,
    ema_epochs: float = 0.0,
    val_every: int = 1,
    devices: Devices = "auto",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: PathLike | None = None,
    resume: bool = False,
    seed: int | None = None,
    quiet: bool = False,
    kvstore: Any = None,
) -> History:
    """Train ``detector`` on ``train_data``; return the per-epoch :class:`History`.

    The seed's recipe is the default: SGD, learning rate 0.1, weight decay 5e-4,
    batch 32, the seed's random-crop augmentation (``train_data.augment``:
    ``DetectionDataset(..., augment="ssd")`` trains with SSD's). Each step is one static
    graph (network, target assignment, loss and metrics) on every device; the
    loop reads results back from the device only every few batches.

    Parameters
    ----------
    detector : SSDDetector
        Trained in place.
    train_data : DetectionDataset
        Anything with ``loader(batch_size, data_shape, *, train, seed, num_objects, last_batch)``
        and ``max_objects``, such as :class:`detkit.data.DetectionDataset`.
    val_data : DetectionDataset, optional
        Evaluated after every epoch (VOC mAP@0.5 and friends, see :func:`evaluate`).
    epochs : int
        The total number of epochs (when resuming, including those already done).
    batch_size : int, default 32
        Images per step, split evenly over the devices; in a distributed run, per
        worker (the global batch is ``batch_size`` times the number of workers).
    optimizer : str, default "sgd"
        An MXNet optimizer name (``"sgd"``, ``"nag"``, ``"adam"``, ...).
    optimizer_params : mapping, optional
        Its settings; default ``{"learning_rate": 0.1, "wd": 5e-4}`` (the seed).
    lr_schedule : {"constant", "cosine", "step"} or mxnet.lr_scheduler.LRScheduler, optional
        ``"cosine"`` decays to 0 over training; ``"step"`` divides by 10 at 2/3 and 5/6.
    warmup_epochs : float, default 0
        Linear warm-up from 0, in epochs (with ``"cosine"`` or ``"step"``).
    warmup_steps : int, default 0
        The least warm-up, in steps (updates): the warm-up lasts
        ``max(warmup_epochs * steps per epoch, min(warmup_steps, total steps // 4))``
        steps, so that a small data set (a few steps an epoch) still warms up for
        long enough, and a short training is not all warm-up.
    clip_gradient_norm : float, optional
        Scale each step's gradient (the mean over the batch, of every weight
        together) down to this global L2 norm when it is larger: one bad batch
        early in training cannot throw the weights far. Default: no clipping.
        The history then records each epoch's mean norm before clipping
        (``grad_norm``) and the fraction of steps clipped (``clipped``); a
        :class:`~detkit.errors.PerformanceWarning` says when clipping shortens
        nearly every step of an epoch after the first more than ten times (the
        limit is too low for this network, and training runs many times slower
        than its learning rate says).
    ema_epochs : float, default 0
        Above 0: keep an exponential moving average of the network's weights
        (BatchNorm's statistics included) over about this many epochs (decay
        ``1 - 1 / (ema_epochs * steps per epoch)`` per step, less in the first
        steps), and validate, checkpoint and return the average instead of
        the last step's weights (the callbacks see the average too). On small
        real data sets the weights of one step swing from epoch to epoch;
        their average scores higher and steadier. A checkpoint keeps both
        (the average as its detector, the weights being trained in
        ``training.params``), so a resumed run continues exactly. ``0``: no
        average (the seed).
    val_every : int, default 1
        Validate ``val_data`` after every ``val_every``-th epoch and always after
        the last; the other epochs' records have no mAP (the best checkpoint is
        chosen among the validated epochs).
    devices : "auto", Context or list of Context, default "auto"
        ``"auto"``: every GPU MXNet sees, else the CPU. Several devices train data-parallel.
    callbacks : sequence of Callback
        Called at the start, after each epoch and at the end.
    checkpoint_dir : path, optional
        Where checkpoints go after each epoch: the last and the best (highest
        validation mAP@0.5, else lowest loss), written atomically.
    resume : bool, default False
        Continue from the last checkpoint in ``checkpoint_dir``: weights, optimizer
        state, epoch, history and random state, so that the result equals an
        uninterrupted run. The batch size, optimizer and every one of its settings
        (learning rate, momentum, ...), schedule, warm-up, input size and
        detector must be those of the checkpointed run (a change is refused
        with a :class:`~detkit.errors.CheckpointError` naming it, never applied silently); ``epochs`` may
        grow only with the constant schedule (a schedule is sized by it). A
        ``checkpoint_dir`` that already holds checkpoints needs ``resume=True``,
        so that an earlier run is never overwritten by accident.
    seed : int, optional
        Makes training reproducible (data order, crops, MXNet's random state); a
        random one is drawn (and checkpointed) when not given.
    quiet : bool, default False
        No progress bar and no summary lines.
    kvstore : str or mxnet.kvstore.KVStore, optional
        MXNet's kvstore for the gradients: default ``"device"`` for several
        devices, none for one. ``"dist_sync"`` (or ``"dist_device_sync"``, or such
        a KVStore object) trains on several processes or machines started by
        ``detkit launch`` (see the guide "Training on several machines"): each
        worker reads an equal share of every epoch, the update equals that of one
        process at the global batch with the same learning rate, the seed is rank
        0's, the BatchNorm statistics are averaged at each epoch's end, the history
        and validation are the whole job's, and rank 0 writes the checkpoints (in
        a folder every worker reads). One distributed fit per process.

    Returns
    -------
    History
        One record per epoch: ``epoch``, ``loss`` and each loss term, ``class_accuracy``,
        ``box_mae``, ``learning_rate``, ``seconds``, ``images_per_second``, and with
        ``val_data`` ``validated`` (see ``val_every``) and, when true, the validation
        ``map_50``, ``map_50_voc07`` and ``map_50_95`` (of the averaged weights with
        ``ema_epochs``); with ``clip_gradient_norm``, ``grad_norm`` and ``clipped``.
        The detector holds the trained weights afterwards: the average with
        ``ema_epochs`` (after an error or an interruption, the last step's; the
        checkpoints hold the average of each epoch).

    Raises
    ------
    InputError
        For bad arguments, or data whose classes differ from the detector's.
    CheckpointError
        When ``checkpoint_dir`` holds an earlier run and ``resume`` is off, or the
        checkpoint does not fit the detector or the settings.
    StorageError
        When another process trains into ``checkpoint_dir`` (the message names
        its pid and host), or a checkpoint cannot be written (a full disk, a
        read-only folder).
    NonFiniteLossError
        When the loss (or, at the end of an epoch, a weight) becomes NaN or
        infinite; names the epoch and batch. The checkpoints on disk stay as
        they were after the last good epoch.
    """
    plan = _plan(detector, train_data, val_data, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                 optimizer_params=optimizer_params, lr_schedule=lr_schedule, warmup_epochs=warmup_epochs,
                 warmup_steps=warmup_steps, clip_gradient_norm=clip_gradient_norm, ema_epochs=ema_epochs,
                 val_every=val_every, devices=devices, checkpoint_dir=checkpoint_dir, resume=resume, kvstore=kvstore,
                 seed=seed)
    check_bool("quiet", quiet)
    with contextlib.ExitStack() as held:
        # One training at a time in a checkpoint directory; in a distributed run, its writer: rank 0.
        if checkpoint_dir is not None and (plan.coordinator is None or plan.coordinator.rank == 0):
            held.enter_context(folder_lock(checkpoint_dir, "training checkpoints"))
        try:
            history = _fit(detector, train_data, val_data, plan, epochs=epochs, batch_size=batch_size,
                           optimizer=optimizer, lr_schedule=lr_schedule, warmup_epochs=warmup_epochs,
                           warmup_steps=warmup_steps, clip_gradient_norm=clip_gradient_norm, ema_epochs=ema_epochs,
                           val_every=val_every, callbacks=callbacks, checkpoint_dir=checkpoint_dir, resume=resume,
                           seed=seed, quiet=quiet)
        except BaseException as error:
            if plan.coordinator is not None:  # the job cannot go on: this worker leaves it at once on exit
                note_failure(error)
            raise
    if plan.coordinator is not None:
        note_trained()
    return history


def _fit(detector: SSDDetector, train_data: Any, val_data: Any, plan: _Plan, *, epochs: int, batch_size: int,
         optimizer: str, lr_schedule: Any, warmup_epochs: float, warmup_steps: int,
         clip_gradient_norm: float | None, ema_epochs: float, val_every: int, callbacks: Sequence[Callback],
         checkpoint_dir: PathLike | None, resume: bool, seed: int | None, quiet: bool) -> History:
    """:func:`fit` once its arguments are checked (and its checkpoint directory locked)."""
    coordinator = plan.coordinator
    history = History()
    checkpointing = (Checkpointing(checkpoint_dir, plan.settings, resume=resume, quiet=quiet, coordinator=coordinator,
                                   validating=val_data is not None)
                     if checkpoint_dir is not None else None)
    start_epoch = 0
    restored = checkpointing.restore(detector) if checkpointing is not None else None
    if restored is not None:
        seed, start_epoch, history = restored
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    if coordinator is not None:
        seed, start_epoch = _start_of_rank_zero(coordinator, seed, start_epoch, checkpoint_dir)
        quiet = quiet or coordinator.rank != 0  # one progress display for the job: rank 0's
    built_in: list[Callback] = ([Validation(val_data, batch_size, coordinator, every=val_every, epochs=epochs)]
                                if val_data is not None else [])
    built_in += [Recorder(history)] + ([] if quiet else [Progress(epochs)])
    built_in += [checkpointing] if checkpointing is not None else []

    graph = TrainingGraph(detector, fuse_batch_norm_relu=can_fuse_batch_norm_relu(plan.contexts),
                          ignore_flagged=_has_flagged_objects(train_data))
    if detector.hybridized:
        graph.hybridize(static_alloc=True, static_shape=True)

    def loader(epoch: int) -> Any:
        return train_data.loader(batch_size, detector.data_shape, train=True, seed=_epoch_seed(seed, epoch),
                                 num_objects=plan.num_objects, last_batch="discard", **plan.shard)

    batches_per_epoch = len(loader(0))
    if batches_per_epoch == 0:
        raise InputError(
            f"The training set has {len(train_data)} images, fewer than one batch of {batch_size}; "
            "lower batch_size or add images."
        )
    params = dict(plan.optimizer_params)
    scheduler = _lr_scheduler(lr_schedule, params["learning_rate"], epochs, batches_per_epoch, warmup_epochs,
                              warmup_steps)
    if scheduler is not None:
        params["lr_scheduler"] = scheduler
    detector._materialize()
    # Every trainable weight of the step: the network's, and any a target assigner or loss has.
    weights = graph.collect_params()
    home = detector.ctx
    term_names = ["loss", *detector.loss.term_names]
    try:
        weights.reset_ctx(plan.contexts)
        detector.ctx = plan.contexts[0]  # evaluation and checkpoints run where the weights now are
        # The optimizer state stays in the trainer's updaters (not a kvstore), where checkpoints read it
        # (asynchronous distributed training would need it on the kvstore; _plan refuses it). Distributed:
        # the servers add the gradients up and every worker applies the same update, so that all hold
        # the same optimizer state, which rank 0 checkpoints.
        if coordinator is not None and len(list(weights.values())) >= KEY_BASE:
            raise InputError(f"A distributed fit trains at most {KEY_BASE} parameters (MXNet's keys); this "
                             f"detector has {len(list(weights.values()))}.")
        # Distributed: the kvstore's initialisation is a barrier of the job, under the watchdog.
        with coordinator.watchdog.armed() if coordinator is not None else contextlib.nullcontext():
            trainer = gluon.Trainer(weights, optimizer, params, kvstore=plan.store, update_on_kvstore=False)
            initialize_trainer(trainer)
        average = None
        if ema_epochs > 0:
            resumed = checkpointing.take_restored_average() if checkpointing is not None else None
            average = WeightAverage(detector.network, averaging_decay(ema_epochs, batches_per_epoch), plan.contexts[0],
                                    start=resumed.weights if resumed is not None else None,
                                    updates=resumed.steps if resumed is not None else 0)
        if checkpointing is not None:
            checkpointing.attach(trainer, seed, history, images_per_epoch=len(train_data), average=average)
        for callback in (*built_in, *callbacks):
            callback.on_train_begin(detector, history)
        warned_clipping = False
        for epoch in range(start_epoch, epochs):
            mx.random.seed(_epoch_seed(seed, epoch) % (2**31))
            record = train_epoch(graph, trainer, loader(epoch), plan.contexts, epoch, epochs, term_names, quiet,
                                 coordinator=coordinator, clip_gradient_norm=clip_gradient_norm, average=average)
            record["learning_rate"] = float(trainer.learning_rate)
            lead = coordinator is None or coordinator.rank == 0  # one warning for the job
            if lead and not warned_clipping and _warn_if_always_clipped(record, clip_gradient_norm):
                warned_clipping = True
            if coordinator is not None:
                _average_statistics(coordinator, weights)
            if average is not None:
                # Every step is done (train_epoch waited), the statistics are the job's: every worker folds the
                # same weights into the same average.
                average.end_epoch()
            check_weights_finite(weights, epoch)
            # The callbacks (validation, checkpoints, the user's) see the weights that training yields.
            with average.applied() if average is not None else contextlib.nullcontext():
                for callback in built_in:
                    callback.on_epoch_end(epoch, record, detector)
                # Every user callback sees the epoch, even when an earlier one asks to stop.
                stops = [bool(callback.on_epoch_end(epoch, dict(record), detector)) for callback in callbacks]
            if coordinator is not None:  # rank 0 decides for the job
                stops = [bool(coordinator.broadcast([any(stops)])[0])]
            if any(stops):
                break
        if average is not None:
            average.apply()
    finally:
        weights.reset_ctx(home)
        detector.ctx = home
    for callback in (*built_in, *callbacks):
        callback.on_train_end(history)
    return history


def _warn_if_always_clipped(record: Mapping[str, Any], clip_gradient_norm: float | None) -> bool:
    """Warn (and return True) when clipping shortened nearly every step of an epoch after the first
    more than ten times (``_CLIPPED_FAR``) on average.

    Clipping is meant for the rare large step; when it shortens them all, the steps are
    ``grad_norm / clip_gradient_norm`` times shorter than the learning rate says, which
    trains that much slower without a word (a body with more weights has a larger norm).
    A few times shorter is a choice a recipe may make (``fast`` trains well so), and the
    epoch line shows it; ten times is a limit meant for another network.
    """
    if clip_gradient_norm is None or record["epoch"] < 2 or record.get("clipped", 0.0) < 0.9:
        return False
    norm = record["grad_norm"]
    if not norm >= _CLIPPED_FAR * clip_gradient_norm:
        return False
    warnings.warn(
        f"Gradient clipping shortened {record['clipped']:.0%} of epoch {record['epoch']}'s steps: the gradient's "
        f"mean norm was {norm:.3g}, over train.clip_gradient_norm {clip_gradient_norm:g}, so the steps were "
        f"about {norm / clip_gradient_norm:.3g} times shorter than the learning rate says. Raise "
        f"clip_gradient_norm to {_round_up(2 * norm)} (twice that norm), or turn it off (null).",
        PerformanceWarning, stacklevel=3)
    return True


_CLIPPED_FAR = 10.0  # the mean norm over the limit from which clipping is taken for a mistake


def _round_up(value: float) -> str:
    """``value`` rounded up to two significant digits, as a plain number (``287.4`` -> ``"290"``)."""
    if not math.isfinite(value) or value <= 0:
        return f"{value:g}"
    step = 10 ** (math.floor(math.log10(value)) - 1)
    return f"{math.ceil(value / step) * step:.10g}"


@dataclass
class _Plan:
    """What :func:`fit` derives from its arguments once they are checked."""

    contexts: list[mx.Context]
    store: Any  # the kvstore name or object the trainer gets
    shard: dict[str, int]  # this machine's share of every epoch, in a distributed run
    optimizer_params: dict[str, Any]
    num_objects: int
    settings: dict[str, Any]  # what must not change between a run and its resumption
    coordinator: Coordinator | None = None  # in a distributed run


def _plan(detector: SSDDetector, train_data: Any, val_data: Any, *, epochs: int, batch_size: int, optimizer: str,
          optimizer_params: Mapping[str, Any] | None, lr_schedule: Any, warmup_epochs: float, devices: Devices,
          warmup_steps: int = 0, clip_gradient_norm: float | None = None, ema_epochs: float = 0.0,
          val_every: int = 1, checkpoint_dir: PathLike | None, resume: bool, kvstore: Any,
          seed: int | None = None) -> _Plan:
    """Check every argument of :func:`fit` before anything runs; return what the loop needs."""
    if not isinstance(detector, SSDDetector):
        raise InputError(f"The 'detector' argument must be an SSDDetector; got {type(detector).__name__} instead.")
    if detector.precision != "float32":
        raise InputError(
            f"The 'detector' argument is an {detector.precision.upper()} detector, made for inference; train its "
            "float32 original and quantize it again afterwards."
        )
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_number("warmup_epochs", warmup_epochs, minimum=0)
    check_int("warmup_steps", warmup_steps, minimum=0)
    check_positive_int("val_every", val_every)
    check_number("ema_epochs", ema_epochs, minimum=0)
    if clip_gradient_norm is not None:
        check_number("clip_gradient_norm", clip_gradient_norm, minimum=0, exclusive_minimum=True)
    check_bool("resume", resume)
    if seed is not None:
        check_int("seed", seed, minimum=0)
    if optimizer_params is not None and not isinstance(optimizer_params, Mapping):
        raise InputError(
            "The 'optimizer_params' argument must be a mapping such as {'learning_rate': 0.1}; "
            f"got {optimizer_params!r} instead."
        )
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is not None and not hasattr(data, "loader"):
            raise InputError(
                f"The '{name}' argument must be a detection dataset such as detkit.data.DetectionDataset; "
                f"got {type(data).__name__} instead."
            )
        classes = list(getattr(data, "classes", detector.classes)) if data is not None else detector.classes
        if classes != detector.classes:
            raise InputError(
                f"The '{name}' classes {classes} differ from the detector's {detector.classes}; "
                "train a detector built with the data's classes (SSDDetector(classes=data.classes))."
            )
    if resume and checkpoint_dir is None:
        raise InputError("The 'resume' argument needs a 'checkpoint_dir' to resume from.")
    contexts = _contexts(devices)
    if batch_size % len(contexts):
        raise InputError(
            f"The 'batch_size' argument must be a multiple of the number of devices ({len(contexts)}); "
            f"got {batch_size} instead."
        )
    store: Any = kvstore if kvstore is not None else ("device" if len(contexts) > 1 else None)
    if is_distributed(store) and "async" in (store if isinstance(store, str) else store.type):
        raise InputError(
            f"The 'kvstore' argument must be a synchronous kvstore such as 'dist_sync' (every worker the same "
            f"weights, an exact resume); got {store if isinstance(store, str) else store.type!r} instead."
        )
    params = {**SEED_OPTIMIZER_PARAMS, **dict(optimizer_params or {})}
    check_optimizer(optimizer, params)
    num_objects = max(getattr(train_data, "max_objects", 0),
                      getattr(val_data, "max_objects", 0) if val_data is not None else 0, 3)
    schedule = _schedule_name(lr_schedule)
    settings = {
        "batch_size": batch_size, "optimizer": optimizer, "lr_schedule": schedule,
        "warmup_epochs": warmup_epochs, "warmup_steps": warmup_steps, "data_shape": list(detector.data_shape),
        "clip_gradient_norm": None if clip_gradient_norm is None else float(clip_gradient_norm),
        "ema_epochs": float(ema_epochs),
        "epochs": epochs if schedule != "constant" else None,
        # Every optimizer setting (the seed's defaults included): resuming with another one is refused.
        "optimizer_params": {key: _plain(value) for key, value in sorted(params.items()) if key != "lr_scheduler"},
    }
    shard: dict[str, int] = {}
    coordinator = None
    if is_distributed(store):
        # Each worker reads its own, equal share of every epoch (whatever form the kvstore takes).
        timeout = timeout_seconds()
        store = dist_store(store)
        coordinator = Coordinator(store, timeout)
        shard = {"num_parts": coordinator.num_workers, "part_index": coordinator.rank}
    settings["workers"] = coordinator.num_workers if coordinator is not None else 1
    return _Plan(contexts, store, shard, params, num_objects, settings, coordinator)


def _plain(value: Any) -> Any:
    """A setting as JSON keeps it, so that a checkpoint's settings compare equal to the same ones given again."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return repr(value)


def _contexts(devices: Devices) -> list[mx.Context]:
    if isinstance(devices, str):
        if devices != "auto":
            raise InputError(f"The 'devices' argument must be 'auto', a Context or a list of them; got {devices!r} instead.")
        gpus = mx.context.num_gpus()
        return [mx.gpu(i) for i in range(gpus)] if gpus else [mx.cpu()]
    if isinstance(devices, mx.Context):
        return [devices]
    contexts = list(devices)
    if not contexts or not all(isinstance(c, mx.Context) for c in contexts):
        raise InputError(
            f"The 'devices' argument must be 'auto', a Context or a non-empty list of them; got {devices!r} instead."
        )
    return contexts


def _lr_scheduler(schedule: Any, base_lr: float, epochs: int, batches_per_epoch: int,
                  warmup_epochs: float, warmup_steps: int = 0) -> mx.lr_scheduler.LRScheduler | None:
    if isinstance(schedule, mx.lr_scheduler.LRScheduler):
        return schedule
    if schedule is None or schedule == "constant":
        if warmup_epochs or warmup_steps:
            raise InputError("The 'warmup_epochs' and 'warmup_steps' arguments need lr_schedule 'cosine' or 'step'.")
        return None
    if schedule not in _SCHEDULES:
        raise InputError(
            f"The 'lr_schedule' argument must be one of {', '.join(_SCHEDULES)}, an "
            f"mxnet.lr_scheduler.LRScheduler or None; got {schedule!r} instead."
        )
    total = max(epochs * batches_per_epoch, 1)
    # The floor in steps is at most a quarter of the training, so that a short run still has one.
    warmup = max(int(round(warmup_epochs * batches_per_epoch)), min(int(warmup_steps), total // 4))
    if warmup >= total:
        # Only warmup_epochs can reach it: the floor in steps is capped at a quarter of the training.
        raise InputError(
            f"The 'warmup_epochs' argument ({warmup_epochs}) must be shorter than the training ({epochs} "
            f"epoch{'s' if epochs != 1 else ''}); lower it or train longer."
        )
    if schedule == "cosine":
        return mx.lr_scheduler.CosineScheduler(max_update=total, base_lr=base_lr, final_lr=0.0, warmup_steps=warmup)
    # "step": divide by 10 at 2/3 and 5/6 of training.
    steps = sorted({max(int(total * 2 / 3), warmup + 1), max(int(total * 5 / 6), warmup + 2)})
    return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=0.1, base_lr=base_lr, warmup_steps=warmup)


def _start_of_rank_zero(coordinator: Coordinator, seed: int, start_epoch: int,
                        checkpoint_dir: PathLike | None) -> tuple[int, int]:
    """Rank 0's seed and first epoch for every worker; an error on all when a worker resumed elsewhere."""
    seed_zero, start_zero = (int(v) for v in coordinator.broadcast([seed, start_epoch]))
    differ = coordinator.allreduce([start_epoch != start_zero])[0]
    if differ:
        raise CheckpointError(
            f"The workers found different checkpoints in {checkpoint_dir} (rank 0 starts at epoch "
            f"{start_zero + 1}, {int(differ)} worker(s) elsewhere): the checkpoint directory must be one folder "
            "that every worker reads, on a shared file system."
        )
    return seed_zero, start_zero


def _average_statistics(coordinator: Coordinator, weights: gluon.ParameterDict) -> None:
    """Every parameter without a gradient (BatchNorm's running statistics): the mean over workers and devices."""
    statistics = [p for p in weights.values() if p.grad_req == "null"]
    if not statistics:
        return
    # train_epoch waited for every step of the epoch; the new values are in place before the next step
    # (below): a hybridized (static_alloc) step on several devices does not order its statistics' updates
    # against other reads and writes of them in MXNet's engine (measured: 4-65 % off on the second device).
    local = [sum(d.asnumpy().astype(np.float64) for d in p.list_data()) for p in statistics]
    # The device count travels with the sums: workers may hold different numbers of devices.
    devices = float(len(statistics[0].list_data()))
    total = coordinator.allreduce(np.concatenate([value.ravel() for value in local] + [np.array([devices])]))
    count = total[-1]
    offset = 0
    for parameter, value in zip(statistics, local):
        mean = total[offset: offset + value.size].reshape(value.shape) / count
        parameter.set_data(mx.nd.array(mean, dtype=parameter.dtype))
        offset += value.size
    mx.nd.waitall()


def _has_flagged_objects(data: Any) -> bool:
    """Whether ``data`` (with ``flags(i)``, as :class:`~detkit.data.DetectionDataset`) marks any object
    difficult or crowd: only then does the training graph take the flags (and pay for the overlaps)."""
    flags = getattr(data, "flags", None)
    if not callable(flags):
        return False
    return any(bool(np.any(flags(i) != 0)) for i in range(len(data)))


def _epoch_seed(seed: int, epoch: int) -> int:
    # Every epoch's randomness derives from (seed, epoch) alone, so that a resumed
    # run draws exactly what the uninterrupted run would have drawn.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _schedule_name(schedule: Any) -> str:
    if schedule is None:
        return "constant"
    return schedule if isinstance(schedule, str) else type(schedule).__name__


# Ranges of the optimizer settings that MXNet leaves unchecked: (minimum, maximum, minimum excluded).
_OPTIMIZER_BOUNDS: dict[str, tuple[float | None, float | None, bool]] = {
    "learning_rate": (0.0, None, True), "wd": (0.0, None, False), "momentum": (0.0, 1.0, False),
    "rescale_grad": (0.0, None, True), "clip_gradient": (0.0, None, True), "epsilon": (0.0, None, True),
    "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False), "gamma1": (0.0, 1.0, False),
    "gamma2": (0.0, 1.0, False), "rho": (0.0, 1.0, False), "lamda1": (0.0, None, False),
}
_NONE_ALLOWED = {"clip_gradient"}  # None: no clipping
_BELOW_ONE = {"beta1", "beta2"}  # Adam divides by 1 - beta ** t


def check_optimizer(optimizer: str, params: Mapping[str, Any]) -> None:
    """Name an unknown optimizer or setting, or a setting's bad value, here rather than deep inside MXNet.

    Every number must be finite; the learning rate above 0, weight decay and
    momentum not negative (a negative learning rate trains by gradient ascent).
    """
    registry = mx.optimizer.Optimizer.opt_registry
    if not isinstance(optimizer, str) or optimizer.lower() not in registry:
        raise InputError(
            f"The 'optimizer' argument must be an MXNet optimizer name such as sgd, nag or adam; "
            f"got {optimizer!r} instead. Known: {', '.join(sorted(registry))}."
        )
    accepted = set()
    for cls in inspect.getmro(registry[optimizer.lower()]):
        if cls is not object:
            accepted |= {p for p in inspect.signature(cls).parameters if p != "kwargs"}
    unknown = sorted(set(params) - accepted - {"lr_scheduler"})
    if unknown:
        raise InputError(
            f"The optimizer {optimizer!r} does not take the setting(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(sorted(accepted))}."
        )
    for key, value in params.items():
        if key == "lr_scheduler":
            continue
        name = f"optimizer_params['{key}']"
        if key in _OPTIMIZER_BOUNDS:
            if key in _NONE_ALLOWED and value is None:
                continue
            low, high, strict = _OPTIMIZER_BOUNDS[key]
            check_number(name, value, minimum=low, maximum=high, exclusive_minimum=strict)
            if key in _BELOW_ONE and value >= 1:
                raise InputError(f"The '{name}' argument must be a finite number >= 0 and < 1; got {value!r} instead.")
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            check_number(name, value)  # any other number: finite

