"""evaluate(): a detector's mAP on a dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._base import PathLike
from .._model import OnnxDetector, SSDDetector, as_numpy
from ..errors import InputError
from ._metric import DetectionMetric

__all__ = ["evaluate"]


def evaluate(
    detector: SSDDetector | OnnxDetector, data: Any, *, batch_size: int = 32, progress: bool = False, plot: PathLike | None = None
) -> dict[str, Any]:
    """Detect on every image of ``data`` and score the detections against its labels.

    Images go through the validation pipeline (resize to ``detector.data_shape``,
    mean subtraction, no augmentation) and the detector's post-processor.

    Parameters
    ----------
    detector : SSDDetector or OnnxDetector
        A detector in MXNet, or one exported to ONNX and run by ONNX Runtime.
    data : DetectionDataset
        Anything with ``loader(batch_size, data_shape, *, train=False)`` and ``classes``.
    batch_size : int, default 32
    progress : bool, default False
        Show a progress bar.
    plot : str or os.PathLike, optional
        Also draw each class's precision–recall curve (IoU 0.5) into this PNG
        (:meth:`DetectionMetric.plot_precision_recall`), written atomically.

    Returns
    -------
    dict
        ``map_50`` (VOC area under the precision envelope at IoU 0.5),
        ``map_50_voc07`` (VOC2007 11-point), ``map_50_95`` (COCO-style over IoU
        0.50:0.05:0.95), COCO's 12-number summary under ``coco`` (``map``,
        ``map_50``, ``map_75``, ``map_small``, ``map_medium``, ``map_large``,
        ``mar_1``, ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``,
        ``mar_large``) and the same at the top level but ``map_50``, ``per_class``
        (per class name: ``ap_50``, ``ap_50_voc07``, ``ap_50_95``,
        ``num_ground_truth``, ``num_difficult``, ``num_crowd``, ``num_detections``
        and its own ``coco`` summary), ``map_per_iou`` (the COCO-style mAP at each
        IoU threshold) and ``num_images``. See :class:`DetectionMetric` for the
        exact conventions.

    Notes
    -----
    The dataset's difficult objects and crowd regions (``DetectionBatch.flags``)
    are handed to the metric, and object sizes are measured in pixels of each
    image as stored (``DetectionBatch.image_size``), using the areas the file
    stores (COCO's annotation ``"area"``) where it has them.

    Raises
    ------
    InputError
        For bad arguments, or when the detections hold NaN or infinity (a
        diverged detector; the message says so and names the batch).
    """
    if not isinstance(detector, (SSDDetector, OnnxDetector)):
        raise InputError(f"The 'detector' argument must be an SSDDetector or an OnnxDetector; got "
                         f"{type(detector).__name__} instead.")
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
    if plot is not None:
        metric.plot_precision_recall(plot)
    return metric.compute()


class NonFiniteDetectionsError(InputError):
    """The detector's detections hold NaN or infinity (its weights diverged); ``batch`` is the 0-based batch."""

    def __init__(self, message: str, batch: int) -> None:
        super().__init__(message)
        self.batch = batch


def _score(metric: DetectionMetric, detections: Any, batch: Any, index: int) -> None:
    rows = as_numpy(detections)
    # A detection (class id >= 0) with a non-finite score or box, or a non-finite class id: the network's
    # outputs overflowed, which is divergence, not bad input to the metric.
    bad = ~np.isfinite(rows[..., 0]) | ((rows[..., 0] >= 0) & ~np.isfinite(rows[..., 1:]).all(axis=-1))
    if bad.any():
        raise NonFiniteDetectionsError(
            f"The detector's detections hold NaN or infinite values (batch {index + 1} of the evaluation): its "
            "weights have diverged, or overflow on these images. Retrain with a lower learning rate.", batch=index
        )
    keep = rows.shape[0] - batch.pad  # padding images repeat earlier ones: score them once
    labels = batch.label.asnumpy()[:keep]
    extra: dict[str, Any] = {}
    flags = getattr(batch, "flags", None)  # batches of other loaders may have no flags
    if flags is not None:
        flags = flags.asnumpy()[:keep]
        extra["difficult"] = flags == 1
        extra["crowd"] = flags == 2
    if getattr(batch, "image_size", None) is not None:
        extra["image_size"] = batch.image_size.asnumpy()[:keep]
        if getattr(batch, "areas", None) is not None:
            extra["areas"] = batch.areas.asnumpy()[:keep]
    metric.update(rows[:keep], labels, **extra)
