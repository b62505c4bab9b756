"""fit(): the training loop, its metrics, checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ._detector import SSDDetector
from ._history import History
from ._io import PathLike, atomic_write_text
from .components._backbone import _can_fuse_batch_norm_relu, _fused_batch_norm_relu
from .errors import CheckpointError, InputError, NonFiniteLossError

__all__ = ["Callback", "fit"]

Devices = Union[str, mx.Context, Sequence[mx.Context]]

_CHECKPOINT_FORMAT = "detkit-checkpoint/1"
_STATE_FILE = "state.json"
_TRAINER_FILE = "trainer.states"
# Progress and the non-finite check read the per-batch sums back this many
# batches at a time, once as many later batches are queued: the device never
# waits for the host, and the host never runs more than a few batches ahead.
_READ_EVERY = 4
_SCHEDULES = ("constant", "cosine", "step")


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


class _TrainingGraph(gluon.HybridBlock):
    """One static graph for a training step: network, targets, loss and the seed's metric sums.

    ``(images (B, 3, H, W), labels (B, M, 5))`` -> ``(loss (B,), stats (6 + k,))`` where
    ``stats`` = ``[B, sum of loss, sum of each of the k terms, correct anchors,
    counted anchors, sum of |box error|, box offsets]``.
    """

    def __init__(self, detector: SSDDetector, fuse_batch_norm_relu: bool = False) -> None:
        super().__init__()
        self._fuse_batch_norm_relu = fuse_batch_norm_relu
        with self.name_scope():
            self.network = detector.network
            self.target_assigner = detector.target_assigner
            self.loss = detector.loss

    def hybrid_forward(self, F: Any, images: Any, labels: Any) -> tuple[Any, Any]:
        # Only into this graph's own symbols: run imperatively, the step would build (and keep)
        # the network's separately hybridized graph with the CPU-only operator.
        fuse = self._fuse_batch_norm_relu and F is mx.sym
        with _fused_batch_norm_relu(self.network) if fuse else contextlib.nullcontext():
            anchors, class_preds, box_preds = self.network(images)
        box_targets, box_mask, class_targets = self.target_assigner(anchors, labels, class_preds)
        losses = self.loss(class_preds, box_preds, class_targets, box_targets, box_mask)
        # The seed's metrics: class accuracy over the counted anchors, and the mean
        # absolute error of the masked box predictions over every offset.
        predicted = F.argmax(F.BlockGrad(class_preds), axis=-1)  # (B, N)
        counted = class_targets >= 0
        stats = [F.sum(F.ones_like(losses[0]))]  # B
        stats += [F.sum(F.BlockGrad(term)) for term in losses]
        stats += [
            F.sum((predicted == class_targets) * counted),
            F.sum(counted),
            F.sum(F.abs(F.BlockGrad(box_preds) * box_mask - box_targets)),
            F.sum(F.ones_like(box_targets)),
        ]
        return losses[0], F.concat(*[F.reshape(value, (1,)) for value in stats], dim=0)


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
                  warmup_epochs: float) -> mx.lr_scheduler.LRScheduler | None:
    if isinstance(schedule, mx.lr_scheduler.LRScheduler):
        return schedule
    if schedule is None or schedule == "constant":
        if warmup_epochs:
            raise InputError("The 'warmup_epochs' argument needs lr_schedule 'cosine' or 'step'.")
        return None
    if schedule not in _SCHEDULES:
        raise InputError(
            f"The 'lr_schedule' argument must be one of {', '.join(_SCHEDULES)}, an "
            f"mxnet.lr_scheduler.LRScheduler or None; got {schedule!r} instead."
        )
    total = max(epochs * batches_per_epoch, 1)
    warmup = int(round(warmup_epochs * batches_per_epoch))
    if warmup >= total:
        raise InputError(
            f"The 'warmup_epochs' argument ({warmup_epochs}) must be shorter than the training ({epochs} "
            f"epoch{'s' if epochs != 1 else ''}); lower it or train longer."
        )
    if schedule == "cosine":
        return mx.lr_scheduler.CosineScheduler(max_update=total, base_lr=base_lr, final_lr=0.0, warmup_steps=warmup)
    # "step": divide by 10 at 2/3 and 5/6 of training.
    steps = sorted({max(int(total * 2 / 3), warmup + 1), max(int(total * 5 / 6), warmup + 2)})
    return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=0.1, base_lr=base_lr, warmup_steps=warmup)


def _epoch_seed(seed: int, epoch: int) -> int:
    # Every epoch's randomness derives from (seed, epoch) alone, so that a resumed
    # run draws exactly what the uninterrupted run would have drawn.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class _Checkpoints:
    """``epoch-NNNN/`` directories (detector, trainer states, state) with ``last`` and ``best`` pointers.

    A directory is complete before it gets its final name (written under a
    temporary name, then renamed), and a pointer is replaced atomically after
    it, so an interrupted write leaves the previous checkpoint as it was.
    """

    def __init__(self, directory: PathLike) -> None:
        self.directory = Path(directory)

    def _pointer(self, which: str) -> Path:
        return self.directory / f"{which}.json"

    def path(self, which: str) -> Path | None:
        pointer = self._pointer(which)
        if not pointer.is_file():
            return None
        try:
            name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{pointer} is not a checkpoint pointer: {error}") from error
        path = self.directory / name
        if not (path / _STATE_FILE).is_file():
            raise CheckpointError(f"{pointer} points to {path}, which holds no complete checkpoint")
        return path

    def write(self, epoch: int, detector: SSDDetector, trainer: gluon.Trainer, state: dict[str, Any],
              best: bool) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1:04d}"
        final = self.directory / name
        temporary = self.directory / f".{name}.partial"
        shutil.rmtree(temporary, ignore_errors=True)
        detector.save(temporary)
        trainer.save_states(str(temporary / _TRAINER_FILE))
        atomic_write_text(temporary / _STATE_FILE, json.dumps(state, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        temporary.rename(final)
        keep = {name}
        atomic_write_text(self._pointer("last"), json.dumps({"checkpoint": name, "epoch": epoch}))
        if best:
            atomic_write_text(self._pointer("best"), json.dumps({"checkpoint": name, "epoch": epoch}))
        best_path = self.path("best")
        if best_path is not None:
            keep.add(best_path.name)
        for old in self.directory.glob("epoch-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return final


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = json.loads((path / _STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path / _STATE_FILE} cannot be read: {error}") from error
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a detkit training checkpoint")
    return state


def fit(
    detector: SSDDetector,
    train_data: Any,
    val_data: Any = None,
    *,
    epochs: int,
    batch_size: int = 32,
    optimizer: str = "sgd",
    optimizer_params: Mapping[str, Any] | None = None,
    lr_schedule: Any = None,
    warmup_epochs: float = 0.0,
    devices: Devices = "auto",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: PathLike | None = None,
    resume: bool = False,
    seed: int | None = None,
    quiet: bool = False,
    kvstore: str | None = None,
) -> History:
    """Train ``detector`` on ``train_data``; return the per-epoch :class:`History`.

    The seed's recipe is the default: SGD, learning rate 0.1, weight decay 5e-4,
    batch 32, the seed's random-crop augmentation. Each step is one static
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
        Images per step, split evenly over the devices.
    optimizer : str, default "sgd"
        An MXNet optimizer name (``"sgd"``, ``"nag"``, ``"adam"``, ...).
    optimizer_params : mapping, optional
        Its settings; default ``{"learning_rate": 0.1, "wd": 5e-4}`` (the seed).
    lr_schedule : {"constant", "cosine", "step"} or mxnet.lr_scheduler.LRScheduler, optional
        ``"cosine"`` decays to 0 over training; ``"step"`` divides by 10 at 2/3 and 5/6.
    warmup_epochs : float, default 0
        Linear warm-up from 0, in epochs (with ``"cosine"`` or ``"step"``).
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
        uninterrupted run. The batch size, optimizer, schedule, warm-up, input
        size and detector must be those of the checkpointed run; ``epochs`` may
        grow only with the constant schedule (a schedule is sized by it). A
        ``checkpoint_dir`` that already holds checkpoints needs ``resume=True``,
        so that an earlier run is never overwritten by accident.
    seed : int, optional
        Makes training reproducible (data order, crops, MXNet's random state); a
        random one is drawn (and checkpointed) when not given.
    quiet : bool, default False
        No progress bar and no summary lines.
    kvstore : str, optional
        MXNet's kvstore for the gradients: default ``"device"`` for several
        devices, none for one; ``"dist_sync"`` and friends train across machines
        (launched with MXNet's ``tools/launch.py``), each machine reading its own
        share of every epoch (``loader(num_parts=..., part_index=...)``).

    Returns
    -------
    History
        One record per epoch: ``epoch``, ``loss`` and each loss term, ``class_accuracy``,
        ``box_mae``, ``learning_rate``, ``seconds``, ``images_per_second``, and with
        ``val_data`` the validation ``map_50``, ``map_50_voc07`` and ``map_50_95``.

    Raises
    ------
    InputError
        For bad arguments, or data whose classes differ from the detector's.
    CheckpointError
        When ``checkpoint_dir`` holds an earlier run and ``resume`` is off, or the
        checkpoint does not fit the detector or the settings.
    NonFiniteLossError
        When the loss (or, at the end of an epoch, a weight) becomes NaN or
        infinite; names the epoch and batch. The checkpoints on disk stay as
        they were after the last good epoch.
    """
    if not isinstance(detector, SSDDetector):
        raise InputError(f"The 'detector' argument must be an SSDDetector; got {type(detector).__name__} instead.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"The '{name}' argument must be a positive int; got {value!r} instead.")
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is not None and not hasattr(data, "loader"):
            raise InputError(
                f"The '{name}' argument must be a detection dataset such as detkit.data.DetectionDataset; "
                f"got {type(data).__name__} instead."
            )
    if resume and checkpoint_dir is None:
        raise InputError("The 'resume' argument needs a 'checkpoint_dir' to resume from.")
    contexts = _contexts(devices)
    if batch_size % len(contexts):
        raise InputError(
            f"The 'batch_size' argument must be a multiple of the number of devices ({len(contexts)}); "
            f"got {batch_size} instead."
        )
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        classes = list(getattr(data, "classes", detector.classes)) if data is not None else detector.classes
        if classes != detector.classes:
            raise InputError(
                f"The '{name}' classes {classes} differ from the detector's {detector.classes}; "
                "train a detector built with the data's classes (SSDDetector(classes=data.classes))."
            )
    if kvstore is None:
        kvstore = "device" if len(contexts) > 1 else None
    shard: dict[str, int] = {}
    store: Any = kvstore
    if isinstance(kvstore, str) and kvstore.startswith("dist"):
        # Each machine of a distributed run reads its own share of every epoch.
        store = mx.kv.create(kvstore)
        shard = {"num_parts": store.num_workers, "part_index": store.rank}
    params = {"learning_rate": 0.1, "wd": 5e-4, **dict(optimizer_params or {})}
    _check_optimizer(optimizer, params)
    checkpoints = _Checkpoints(checkpoint_dir) if checkpoint_dir is not None else None
    num_objects = max(getattr(train_data, "max_objects", 0), getattr(val_data, "max_objects", 0) if val_data else 0, 3)
    # What must not change between a run and its resumption, as the checkpoint records it.
    settings = {
        "batch_size": batch_size, "optimizer": optimizer, "lr_schedule": _schedule_name(lr_schedule),
        "warmup_epochs": warmup_epochs, "data_shape": list(detector.data_shape),
        "epochs": epochs if _schedule_name(lr_schedule) != "constant" else None,
    }

    history = History()
    start_epoch = 0
    resume_from = None
    if checkpoints is not None:
        resume_from = checkpoints.path("last")
        if resume_from is not None and not resume:
            raise CheckpointError(
                f"{checkpoints.directory} holds the checkpoints of an earlier run (last: {resume_from.name}); "
                "pass resume=True to continue it, or choose another checkpoint directory."
            )
        if resume and resume_from is None and not quiet:
            _print(f"no checkpoint in {checkpoints.directory}: training starts at epoch 1")
    if resume_from is not None:
        state = _read_checkpoint(resume_from)
        _check_resumable(resume_from, state, detector, settings)
        detector.network.load_parameters(str(resume_from / "network.params"), ctx=detector.ctx)
        seed = state["seed"]
        start_epoch = state["epoch"] + 1
        history = History(state["history"])
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])

    graph = _TrainingGraph(detector, fuse_batch_norm_relu=_can_fuse_batch_norm_relu(contexts))
    if detector.hybridized:
        graph.hybridize(static_alloc=True, static_shape=True)
    loader = train_data.loader(batch_size, detector.data_shape, train=True, seed=_epoch_seed(seed, 0),
                               num_objects=num_objects, last_batch="discard", **shard)
    batches_per_epoch = len(loader)
    if batches_per_epoch == 0:
        raise InputError(
            f"The training set has {len(train_data)} images, fewer than one batch of {batch_size}; "
            "lower batch_size or add images."
        )
    params["lr_scheduler"] = _lr_scheduler(lr_schedule, params["learning_rate"], epochs, batches_per_epoch,
                                           warmup_epochs)
    if params["lr_scheduler"] is None:
        del params["lr_scheduler"]
    # Every trainable weight of the step: the network's, and any a target assigner or loss has.
    detector._materialize()
    weights = graph.collect_params()
    home = detector.ctx
    term_names = ["loss", *detector.loss.term_names]
    best_score = max((_score(r) for r in history.records), default=-math.inf)
    try:
        weights.reset_ctx(contexts)
        detector.ctx = contexts[0]  # evaluation and checkpoints run where the weights now are
        trainer = gluon.Trainer(weights, optimizer, params, kvstore=store)
        if resume_from is not None:
            trainer.load_states(str(resume_from / _TRAINER_FILE))
        for callback in callbacks:
            callback.on_train_begin(detector, history)
        for epoch in range(start_epoch, epochs):
            mx.random.seed(_epoch_seed(seed, epoch) % (2**31))
            loader = train_data.loader(batch_size, detector.data_shape, train=True, seed=_epoch_seed(seed, epoch),
                                       num_objects=num_objects, last_batch="discard", **shard)
            record = _train_epoch(graph, trainer, loader, contexts, epoch, epochs, term_names, quiet)
            record["learning_rate"] = float(trainer.learning_rate)
            _check_weights_finite(weights, epoch)
            if val_data is not None:
                from ._evaluate import evaluate

                # Evaluate on the first device; the weights are equal on all of them.
                scores = evaluate(detector, val_data, batch_size=batch_size)
                record.update({key: scores[key] for key in ("map_50", "map_50_voc07", "map_50_95")})
            history.append(record)
            if not quiet:
                _print(_summary(record, epochs))
            score = _score(record)
            is_best = score > best_score
            best_score = max(best_score, score)
            if checkpoints is not None:
                checkpoints.write(epoch, detector, trainer, {
                    "format": _CHECKPOINT_FORMAT, "epoch": epoch, "seed": seed, "history": history.records,
                    "settings": settings,
                }, best=is_best)
            stop = False
            for callback in callbacks:
                stop = bool(callback.on_epoch_end(epoch, dict(record), detector)) or stop
            if stop:
                break
    finally:
        weights.reset_ctx(home)
        detector.ctx = home
    for callback in callbacks:
        callback.on_train_end(history)
    return history


def _schedule_name(schedule: Any) -> str:
    if schedule is None:
        return "constant"
    return schedule if isinstance(schedule, str) else type(schedule).__name__


def _check_optimizer(optimizer: str, params: Mapping[str, Any]) -> None:
    """Name an unknown optimizer or setting here rather than deep inside MXNet."""
    import inspect

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


def _check_resumable(path: Path, state: Mapping[str, Any], detector: SSDDetector,
                     settings: Mapping[str, Any]) -> None:
    import yaml

    saved = yaml.safe_load((path / "detector.yaml").read_text(encoding="utf-8"))
    current = detector.get_config()
    for key in ("classes", "scale_filters", "data_shape", "components"):
        if _without_provenance(saved.get(key)) != _without_provenance(current.get(key)):
            raise CheckpointError(
                f"The checkpoint {path} was trained with another detector ({key} differs); build the "
                "detector as it was (SSDDetector.load of the checkpoint shows it) or start afresh."
            )
    for key, value in (state.get("settings") or {}).items():
        if key == "epochs" and value is None:
            continue
        if settings.get(key) != value:
            raise CheckpointError(
                f"The checkpoint {path} was trained with {key}={value!r}, not {settings.get(key)!r}; "
                f"resume with the same {key}, or start afresh in another checkpoint directory."
            )


def _without_provenance(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_provenance(v) for k, v in value.items() if k != "provided_by"}
    return value


def _check_weights_finite(weights: gluon.ParameterDict, epoch: int) -> None:
    """The loss is checked before each update; this catches what the epoch's last updates did."""
    total = sum(p.data().norm() for p in weights.values() if p.grad_req != "null")
    value = float(total.asscalar()) if isinstance(total, mx.nd.NDArray) else float(total)
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"The weights became non-finite in the last steps of epoch {epoch + 1}; training stopped. "
            "The checkpoints on disk are intact. Lower the learning rate, add warm-up, or check the labels.",
            epoch=epoch, batch=-1,
        )


def _score(record: Mapping[str, Any]) -> float:
    """Higher is better: validation mAP@0.5 when there is one, else minus the loss."""
    value = record.get("map_50")
    if value is not None and not math.isnan(value):
        return float(value)
    return -float(record["loss"])


def _train_epoch(graph: _TrainingGraph, trainer: gluon.Trainer, loader: Any, contexts: list[mx.Context],
                 epoch: int, epochs: int, term_names: list[str], quiet: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
               disable=quiet, dynamic_ncols=True, file=sys.stderr)
    sums = mx.nd.zeros((len(term_names) + 5,), ctx=contexts[0])  # see _TrainingGraph's stats
    unchecked: list[tuple[int, mx.nd.NDArray]] = []  # (batch, stats) not yet read back
    images_done = 0.0  # images whose results were read back
    started = time.perf_counter()
    for index, batch in enumerate(loader):
        data = gluon.utils.split_and_load(batch.data, contexts, even_split=True)
        labels = gluon.utils.split_and_load(batch.label, contexts, even_split=True)
        with autograd.record():
            outputs = [graph(x, y) for x, y in zip(data, labels)]
        autograd.backward([loss for loss, _ in outputs])
        trainer.step(batch.data.shape[0])
        for _, stats in outputs:
            stats = stats.as_in_context(contexts[0])
            sums += stats
            unchecked.append((index, stats))
        # Read back what the device finished a few batches ago, never the batch in flight.
        if len(unchecked) >= 2 * _READ_EVERY * len(contexts):
            ready = unchecked[: _READ_EVERY * len(contexts)]
            unchecked = unchecked[len(ready):]
            seen = _check_finite(ready, epoch)
            images_done += seen[0]
            # The loss of the batches just read; the speed since the epoch started.
            bar.set_postfix_str(f"loss {seen[1] / seen[0]:.4g}, {_rate(images_done, started):.1f} img/s",
                                refresh=False)
        bar.update(1)
    _check_finite(unchecked, epoch)
    totals = sums.asnumpy()
    bar.close()
    seconds = time.perf_counter() - started
    images = totals[0]
    record: dict[str, Any] = {"epoch": epoch + 1}
    for position, name in enumerate(term_names):
        record[name] = float(totals[1 + position] / images)
    correct, counted, box_error, offsets = totals[-4:]
    record["class_accuracy"] = float(correct / max(counted, 1))
    record["box_mae"] = float(box_error / max(offsets, 1))
    record["seconds"] = seconds
    record["images_per_second"] = float(images / seconds) if seconds > 0 else float("nan")
    return record


def _rate(images: float, started: float) -> float:
    elapsed = time.perf_counter() - started
    return images / elapsed if elapsed > 0 else 0.0


def _check_finite(stats: list[tuple[int, mx.nd.NDArray]], epoch: int) -> np.ndarray:
    """Read ``stats`` back; raise on a non-finite loss; return their column sums."""
    if not stats:
        return np.zeros(2)
    values = mx.nd.stack(*[value for _, value in stats]).asnumpy()
    bad = np.flatnonzero(~np.isfinite(values[:, 1]))
    if bad.size:
        batch = stats[int(bad[0])][0]
        raise NonFiniteLossError(
            f"The loss became {values[bad[0], 1]} in epoch {epoch + 1}, batch {batch + 1}; training stopped. "
            "The checkpoints on disk are intact. Lower the learning rate, add warm-up, or check the labels.",
            epoch=epoch, batch=batch,
        )
    return values.sum(axis=0)


def _summary(record: Mapping[str, Any], epochs: int) -> str:
    terms = ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                      if k not in ("epoch", "loss", "class_accuracy", "box_mae", "seconds", "images_per_second",
                                   "learning_rate", "map_50", "map_50_voc07", "map_50_95"))
    line = (f"epoch {record['epoch']:>3}/{epochs}  loss {record['loss']:.4g} ({terms})  "
            f"class acc {record['class_accuracy']:.4f}  box MAE {record['box_mae']:.3g}")
    if "map_50" in record:
        line += f"  val mAP@0.5 {record['map_50']:.4f}"
    return line + f"  {record['seconds']:.1f} s, {record['images_per_second']:.1f} img/s"


def _print(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stdout)
