"""evaluate(): a detector's mAP on a dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._model import SSDDetector
from ..errors import InputError
from ._metric import DetectionMetric

__all__ = ["evaluate"]


def evaluate(detector: SSDDetector, data: Any, *, batch_size: int = 32, progress: bool = False) -> dict[str, Any]:
    """Detect on every image of ``data`` and score the detections against its labels.

    Images go through the validation pipeline (resize to ``detector.data_shape``,
    mean subtraction, no augmentation) and the detector's post-processor.

    Parameters
    ----------
    detector : SSDDetector
    data : DetectionDataset
        Anything with ``loader(batch_size, data_shape, *, train=False)`` and ``classes``.
    batch_size : int, default 32
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    dict
        ``map_50`` (VOC area under the precision envelope at IoU 0.5),
        ``map_50_voc07`` (VOC2007 11-point), ``map_50_95`` (COCO-style over IoU
        0.50:0.05:0.95), ``per_class`` (per class name: ``ap_50``, ``ap_50_voc07``,
        ``ap_50_95``, ``num_ground_truth``, ``num_difficult``, ``num_detections``),
        ``map_per_iou`` (the COCO-style mAP at each IoU threshold) and ``num_images``.
        See :class:`DetectionMetric` for the exact conventions.

    Raises
    ------
    InputError
        For bad arguments, or when the detections hold NaN or infinity (a
        diverged detector; the message says so and names the batch).
    """
    if not isinstance(detector, SSDDetector):
        raise InputError(f"The 'detector' argument must be an SSDDetector; got {type(detector).__name__} instead.")
    if not hasattr(data, "loader"):
        raise InputError(
            f"The 'data' argument must be a detection dataset such as detkit.data.DetectionDataset; "
            f"got {type(data).__name__} instead."
        )
    classes = list(getattr(data, "classes", detector.classes))
    if classes != detector.classes:
        raise InputError(
            f"The dataset's classes {classes} differ from the detector's {detector.classes}; "
            "evaluate a detector on data with the same classes."
        )
    from tqdm.auto import tqdm

    metric = DetectionMetric(detector.num_classes, detector.classes)
    loader = data.loader(batch_size, detector.data_shape, train=False, last_batch="pad")
    previous = None
    for index, batch in enumerate(tqdm(loader, desc="evaluate", unit="batch", leave=False, disable=not progress)):
        # Queue this batch on the device before reading the previous one back, so that
        # the device works while the host scores.
        current = (detector.detect(batch.data), batch, index)
        if previous is not None:
            _score(metric, *previous)
        previous = current
    if previous is not None:
        _score(metric, *previous)
    return metric.compute()


class NonFiniteDetectionsError(InputError):
    """The detector's detections hold NaN or infinity (its weights diverged); ``batch`` is the 0-based batch."""

    def __init__(self, message: str, batch: int) -> None:
        super().__init__(message)
        self.batch = batch


def _score(metric: DetectionMetric, detections: Any, batch: Any, index: int) -> None:
    rows = detections.asnumpy()
    # A detection (class id >= 0) with a non-finite score or box, or a non-finite class id: the network's
    # outputs overflowed, which is divergence, not bad input to the metric.
    bad = ~np.isfinite(rows[..., 0]) | ((rows[..., 0] >= 0) & ~np.isfinite(rows[..., 1:]).all(axis=-1))
    if bad.any():
        raise NonFiniteDetectionsError(
            f"The detector's detections hold NaN or infinite values (batch {index + 1} of the evaluation): its "
            "weights have diverged, or overflow on these images. Retrain with a lower learning rate.", batch=index
        )
    keep = rows.shape[0] - batch.pad  # padding images repeat earlier ones: score them once
    metric.update(rows[:keep], batch.label.asnumpy()[:keep])
