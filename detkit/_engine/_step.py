"""One training step as one static graph, and an epoch of steps with its progress bar and metric sums."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import TYPE_CHECKING, Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm.auto import tqdm

from .._blocks import fused_batch_norm_relu
from .._model import SSDDetector
from ..errors import NonFiniteLossError

if TYPE_CHECKING:
    from ._averaging import WeightAverage
    from ._distributed import Coordinator

__all__ = ["TrainingGraph", "check_weights_finite", "train_epoch"]

# Progress and the non-finite check read the per-batch sums back this many
# batches at a time, once as many later batches are queued: the device never
# waits for the host, and the host never runs more than a few batches ahead.
_READ_EVERY = 4


class TrainingGraph(gluon.HybridBlock):
    """One static graph for a training step: network, targets, loss and the seed's metric sums.

    ``(images (B, 3, H, W), labels (B, M, 5)[, flags (B, M)])`` -> ``(loss (B,), stats (6 + k,))``
    where ``stats`` = ``[B, sum of loss, sum of each of the k terms, correct anchors,
    counted anchors, sum of |box error|, box offsets]``.

    With ``flags`` (:attr:`DetectionBatch.flags <detkit.data.DetectionBatch.flags>`:
    1 difficult, 2 crowd region), the objects that evaluation ignores are not
    taught as background, within the ``TargetAssigner`` contract: the target
    assigner sees the ordinary objects only (the difficult and crowd rows become
    padding; the loader puts them after the ordinary ones, and ``MultiBoxTarget``
    reads rows up to the first padding), and afterwards every anchor it made
    background that overlaps a difficult object with an IoU, or a crowd region
    with an intersection over the anchor's area, of at least ``overlap_threshold``
    (the assigner's, else 0.5) gets the class target -1, which every ``Loss``
    ignores. Positives stay positives.
    """

    def __init__(self, detector: SSDDetector, fuse_batch_norm_relu: bool = False, *,
                 ignore_flagged: bool = False) -> None:
        super().__init__()
        self._fuse_batch_norm_relu = fuse_batch_norm_relu
        #: Whether the graph takes a third input, the flags, and ignores anchors on flagged objects.
        self.ignore_flagged = bool(ignore_flagged)
        self._overlap_threshold = float(getattr(detector.target_assigner, "overlap_threshold", 0.5))
        with self.name_scope():
            self.network = detector.network
            self.target_assigner = detector.target_assigner
            self.loss = detector.loss

    def hybrid_forward(self, F: Any, images: Any, labels: Any, flags: Any = None) -> tuple[Any, Any]:
        # Only into this graph's own symbols: run imperatively, the step would build (and keep)
        # the network's separately hybridized graph with the CPU-only operator.
        fuse = self._fuse_batch_norm_relu and F is mx.sym
        with fused_batch_norm_relu(self.network) if fuse else contextlib.nullcontext():
            anchors, class_preds, box_preds = self.network(images)
        assigned = labels
        if flags is not None:
            # Difficult and crowd rows become padding for the assigner.
            flagged = F.broadcast_like(F.expand_dims(flags > 0, axis=2), labels)  # (B, M, 5)
            assigned = F.where(flagged, F.ones_like(labels) * -1, labels)
        box_targets, box_mask, class_targets = self.target_assigner(anchors, assigned, class_preds)
        if flags is not None:
            class_targets = self._ignore_near_flagged(F, anchors, labels, flags, class_targets)
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

    def _ignore_near_flagged(self, F: Any, anchors: Any, labels: Any, flags: Any, class_targets: Any) -> Any:
        """``class_targets`` (B, N) with -1 for background anchors on difficult objects or crowd regions."""
        corners = F.split(F.reshape(anchors, shape=(0, -1, 1, 4)), num_outputs=4, axis=3, squeeze_axis=True)
        ax0, ay0, ax1, ay1 = corners  # (1, N, 1) each
        boxes = F.expand_dims(F.slice_axis(labels, axis=2, begin=1, end=5), axis=1)  # (B, 1, M, 4)
        bx0, by0, bx1, by1 = F.split(boxes, num_outputs=4, axis=3, squeeze_axis=True)  # (B, 1, M) each
        width = F.relu(F.broadcast_minimum(ax1, bx1) - F.broadcast_maximum(ax0, bx0))  # (B, N, M)
        height = F.relu(F.broadcast_minimum(ay1, by1) - F.broadcast_maximum(ay0, by0))  # (B, N, M)
        intersection = width * height  # (B, N, M)
        anchor_area = F.maximum((ax1 - ax0) * (ay1 - ay0), 1e-12)  # (1, N, 1)
        box_area = F.relu(bx1 - bx0) * F.relu(by1 - by0)  # (B, 1, M)
        iou = intersection / F.maximum(F.broadcast_add(anchor_area, box_area) - intersection, 1e-12)  # (B, N, M)
        ioa = F.broadcast_div(intersection, anchor_area)  # (B, N, M), pycocotools' crowd overlap
        difficult = F.expand_dims(flags == 1, axis=1)  # (B, 1, M)
        crowd = F.expand_dims(flags == 2, axis=1)  # (B, 1, M)
        overlap = F.broadcast_mul(iou, difficult) + F.broadcast_mul(ioa, crowd)  # (B, N, M), 0 elsewhere
        near = F.max(overlap, axis=2) >= self._overlap_threshold  # (B, N)
        return F.where(near * (class_targets == 0), F.ones_like(class_targets) * -1, class_targets)


def train_epoch(graph: TrainingGraph, trainer: gluon.Trainer, loader: Any, contexts: list[mx.Context],
                epoch: int, epochs: int, term_names: list[str], quiet: bool,
                coordinator: Coordinator | None = None, clip_gradient_norm: float | None = None,
                average: WeightAverage | None = None) -> dict[str, Any]:
    """Run one epoch of steps; return its record (the loss terms, the seed's metrics, time and speed).

    With ``average``, every step is counted into that moving average (:meth:`WeightAverage.update`).

    With ``clip_gradient_norm`` the record also has ``grad_norm``, the mean over the
    steps of the mean gradient's global norm before clipping, and ``clipped``, the
    fraction of the steps that clipping shortened.

    With a ``coordinator`` (a distributed run) every step is normalised by the
    global batch, the watchdog counts the epoch, and the record is the whole
    job's: sums over the workers, ``seconds`` their mean.
    """
    with coordinator.watchdog.armed() if coordinator is not None else contextlib.nullcontext():
        totals, clipping, seconds = _steps(graph, trainer, loader, contexts, epoch, epochs, term_names, quiet,
                                           coordinator, clip_gradient_norm, average)
        # Every step done, BatchNorm's statistics included, before anything reads the weights: a hybridized
        # (static_alloc) step on several devices does not order those updates against later reads.
        mx.nd.waitall()
    if coordinator is not None:
        summed = coordinator.allreduce(np.concatenate([totals, clipping, [seconds]]))
        # Every worker clips the same summed gradient: its clipping figures are the job's, counted once.
        totals, clipping = summed[:len(totals)], summed[len(totals):-1] / coordinator.num_workers
        seconds = float(summed[-1]) / coordinator.num_workers
    images = totals[0]
    record: dict[str, Any] = {"epoch": epoch + 1}
    for position, name in enumerate(term_names):
        record[name] = float(totals[1 + position] / images)
    correct, counted, box_error, offsets = totals[-4:]
    record["class_accuracy"] = float(correct / max(counted, 1))
    record["box_mae"] = float(box_error / max(offsets, 1))
    record["seconds"] = seconds
    record["images_per_second"] = float(images / seconds) if seconds > 0 else float("nan")
    if clip_gradient_norm is not None:
        steps = max(float(clipping[2]), 1.0)
        record["grad_norm"] = float(clipping[0] / steps)
        record["clipped"] = float(clipping[1] / steps)
    return record


def _steps(graph: TrainingGraph, trainer: gluon.Trainer, loader: Any, contexts: list[mx.Context], epoch: int,
           epochs: int, term_names: list[str], quiet: bool,
           coordinator: Coordinator | None, clip_gradient_norm: float | None = None,
           average: WeightAverage | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The epoch's steps; return the column sums of the stats (see :class:`TrainingGraph`), the clipping
    sums ``[norms of the mean gradient, steps clipped, steps]`` and the seconds."""
    # Trainer.step divides the summed gradients by the images they come from: all workers' images.
    workers = coordinator.num_workers if coordinator is not None else 1
    bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
               disable=quiet, dynamic_ncols=True, file=sys.stderr)
    sums = mx.nd.zeros((len(term_names) + 5,), ctx=contexts[0])  # see TrainingGraph's stats
    clipping = mx.nd.zeros((2,), ctx=contexts[0])  # norms, clipped steps: read once, at the end
    unchecked: list[tuple[int, mx.nd.NDArray]] = []  # (batch, stats) not yet read back
    images_done = 0.0  # images whose results were read back
    started = time.perf_counter()
    steps = 0
    for index, batch in enumerate(loader):
        steps += 1
        data = gluon.utils.split_and_load(batch.data, contexts, even_split=True)
        labels = gluon.utils.split_and_load(batch.label, contexts, even_split=True)
        inputs = [data, labels]
        if graph.ignore_flagged:
            flags = getattr(batch, "flags", None)
            if flags is None:  # a loader without flags: every object is ordinary
                flags = mx.nd.zeros(batch.label.shape[:2])
            inputs.append(gluon.utils.split_and_load(flags, contexts, even_split=True))
        with autograd.record():
            outputs = [graph(*arrays) for arrays in zip(*inputs)]
        autograd.backward([loss for loss, _ in outputs])
        if clip_gradient_norm is None:
            trainer.step(batch.data.shape[0] * workers)
        else:
            trainer.allreduce_grads()  # every device (and worker) now holds the batch's summed gradient
            total = batch.data.shape[0] * workers
            norm = _clip_global_norm(trainer, contexts, clip_gradient_norm * total)
            clipping += mx.nd.concat(norm / total, norm > clip_gradient_norm * total, dim=0)  # on contexts[0]
            trainer.update(total)
        if average is not None:
            average.update()
        if coordinator is not None:
            coordinator.watchdog.beat()
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
            elapsed = time.perf_counter() - started
            bar.set_postfix_str(f"loss {seen[1] / seen[0]:.4g}, {images_done / max(elapsed, 1e-9):.1f} img/s",
                                refresh=False)
        bar.update(1)
    _check_finite(unchecked, epoch)
    totals = sums.asnumpy()
    bar.close()
    return totals, np.append(clipping.asnumpy().astype(np.float64), steps), time.perf_counter() - started


def _clip_global_norm(trainer: gluon.Trainer, contexts: list[mx.Context], max_norm: float) -> mx.nd.NDArray:
    """Scale every gradient on every device by ``min(1, max_norm / global norm)``, without waiting for the device;
    return the norm before clipping, shape ``(1,)``, on the first device.

    The gradients are the batch's sums (the update divides them by the batch), so ``max_norm``
    is the limit on the mean gradient times the batch. Every device holds the same summed gradient.
    """
    weights = [p for p in trainer._params if p.grad_req != "null"]
    first = None
    for position in range(len(contexts)):
        grads = [p.list_grad()[position] for p in weights]
        norm = mx.nd.sqrt(mx.nd.add_n(*[mx.nd.sum(mx.nd.square(g)).reshape((1,)) for g in grads]))
        scale = mx.nd.minimum(max_norm / (norm + 1e-12), mx.nd.ones_like(norm))
        for grad in grads:
            grad *= scale
        first = norm if first is None else first
        # A non-finite norm leaves non-finite gradients: the loss check stops training, as without clipping.
    assert first is not None
    return first


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


def check_weights_finite(weights: gluon.ParameterDict, epoch: int) -> None:
    """The loss is checked before each update; this catches what the epoch's last updates did."""
    total = sum(p.data().norm() for p in weights.values() if p.grad_req != "null")
    value = float(total.asscalar()) if isinstance(total, mx.nd.NDArray) else float(np.asarray(total))
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"The weights became non-finite in the last steps of epoch {epoch + 1}; training stopped. "
            "The checkpoints on disk are intact. Lower the learning rate, add warm-up, or check the labels.",
            epoch=epoch, batch=-1,
        )
