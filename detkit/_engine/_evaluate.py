"""evaluate(): a detector's mAP on a dataset."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .._base import PathLike, check_output
from .._model import OnnxDetector, SSDDetector, as_numpy
from ..data._truth import GroundTruth, TruthImage, read_sidecar, sidecar_path
from ..errors import InputError
from ._detections import (check_results_path, coco_options, coco_results, metric_for, score_detections,
                          to_truth_format, write_coco_results)
from ._metric import DetectionMetric

__all__ = ["evaluate"]


def evaluate(
    detector: SSDDetector | OnnxDetector,
    data: Any,
    *,
    batch_size: int = 32,
    progress: bool = False,
    plot: PathLike | None = None,
    save_detections: PathLike | None = None,
    iou_thresholds: Sequence[float] | None = None,
    max_detections: Sequence[int] | None = None,
    recall_thresholds: Sequence[float] | None = None,
    area_ranges: Mapping[str, Sequence[float]] | None = None,
    class_agnostic: bool = False,
    missing: float = math.nan,
    detailed: bool = False,
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
    save_detections : str or os.PathLike, optional
        Also write every detection to this COCO results JSON file (atomically):
        image ids and category ids of the dataset's sidecar (else record positions
        and 1, 2, ...), boxes ``[x, y, w, h]`` in pixels of the original image,
        what :func:`evaluate_detections` and pycocotools' ``loadRes`` read back to
        the same numbers.
    iou_thresholds, max_detections, recall_thresholds, area_ranges, class_agnostic, missing
        COCOeval's parameters, as :class:`DetectionMetric` takes them.
    detailed : bool, default False
        Also return pycocotools' precision, recall and score arrays under
        ``"detailed"`` (see :meth:`DetectionMetric.compute`).

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
        exact conventions. Beware the name ``map_50``: at the top level it is
        VOC's area AP at IoU 0.5; torchmetrics' ``map_50`` (pycocotools' AP at
        IoU 0.50) is ``["coco"]["map_50"]``.

    Notes
    -----
    A dataset packed by ``detkit data pack`` has a ``PREFIX.eval.json`` sidecar
    with the annotation's own boxes and areas in float64 and its image ids: the
    detections are then scored in pixels of the original images against those,
    as pycocotools scores the COCO file (the VOC devkit the XML files), exactly;
    score ties across images are ranked by image id, as pycocotools ranks them.
    A stale sidecar (the ``.rec`` changed since) raises :class:`~detkit.errors.DataError`.
    Without one, the boxes are the ``.rec``'s normalised float32 values.

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
    if plot is not None:  # before the evaluation: never onto the data it reads
        rec = getattr(data, "rec_path", None)
        idx = getattr(data, "idx_path", None)
        check_output(plot, {"data set": rec, "index": idx}, what="plot")
    if save_detections is not None:
        rec_path = getattr(data, "rec_path", None)
        check_results_path(save_detections, [rec_path, sidecar_path(rec_path)] if rec_path is not None else [])
    options = coco_options(iou_thresholds=iou_thresholds, max_detections=max_detections,
                           recall_thresholds=recall_thresholds, area_ranges=area_ranges,
                           class_agnostic=class_agnostic, missing=missing)
    return evaluate_with(detector, data, sidecar_truth(data, classes), batch_size=batch_size, progress=progress,
                         plot=plot, save_detections=save_detections, options=options, detailed=detailed)


def sidecar_truth(data: Any, classes: Sequence[str]) -> GroundTruth | None:
    """The exact ground truth of ``data``'s evaluation sidecar (``PREFIX.eval.json``), checked against its
    ``.rec`` (a stale one raises :class:`~detkit.errors.DataError`); None without a sidecar or a ``.rec``."""
    return read_sidecar(data.rec_path, classes, len(data)) if hasattr(data, "rec_path") else None


def evaluate_with(detector: SSDDetector | OnnxDetector, data: Any, truth: GroundTruth | None, *, batch_size: int,
                  progress: bool = False, plot: PathLike | None = None, save_detections: PathLike | None = None,
                  options: Mapping[str, Any] | None = None, detailed: bool = False) -> dict[str, Any]:
    """:func:`evaluate` once its arguments are checked, with the ground truth ``truth`` of
    :func:`sidecar_truth` read already (validation during training reads it once, before the first epoch)."""
    from tqdm.auto import tqdm

    classes = list(getattr(data, "classes", detector.classes))
    options = dict(options or {})
    if truth is not None:
        metric = metric_for(truth, options)
    else:
        metric = DetectionMetric(detector.num_classes, detector.classes, **options)
    collected: list[np.ndarray] | None = [] if truth is not None or save_detections is not None else None
    sizes: list[tuple[int, int]] = []
    loader = data.loader(batch_size, detector.data_shape, train=False, last_batch="pad")
    previous = None
    for index, batch in enumerate(tqdm(loader, desc="evaluate", unit="batch", leave=False, disable=not progress)):
        # Queue this batch on the device before reading the previous one back, so that
        # the device works while the host scores.
        current = (detector.detect(batch.data), batch, index)
        if previous is not None:
            _score(metric, *previous, collected=collected, sizes=sizes, score=truth is None)
        previous = current
    if previous is not None:
        _score(metric, *previous, collected=collected, sizes=sizes, score=truth is None)
    truth_for_file: GroundTruth | None = truth
    if truth is None and collected is not None:
        # no sidecar: pixels of the images as stored, ids their positions, categories 1, 2, ...
        if len(sizes) != len(collected):
            raise InputError("The data's batches give no image sizes (DetectionBatch.image_size), so the detections "
                             "cannot be written in pixels; evaluate a detkit.data.DetectionDataset to save them.")
        images = [TruthImage(i, "", width, height, np.zeros((0, 7))) for i, (width, height) in enumerate(sizes)]
        truth_for_file = GroundTruth(str(getattr(data, "rec_path", "")), list(classes),
                                     list(range(1, len(classes) + 1)), "xyxy", images, exact=False)
    if truth is not None and collected is not None:
        collected = [to_truth_format(rows, image, truth.box_format) for rows, image in zip(collected, truth.images)]
        score_detections(truth, collected, metric)
    elif collected is not None and truth_for_file is not None:
        collected = [to_truth_format(rows, image, "xyxy") for rows, image in zip(collected, truth_for_file.images)]
    if save_detections is not None and collected is not None and truth_for_file is not None:
        write_coco_results(save_detections, coco_results([image.image_id for image in truth_for_file.images],
                                                         truth_for_file.category_ids, collected,
                                                         truth_for_file.box_format))
    if plot is not None:
        metric.plot_precision_recall(plot)
    return metric.compute(detailed=detailed)


class NonFiniteDetectionsError(InputError):
    """The detector's detections hold NaN or infinity (its weights diverged); ``batch`` is the 0-based batch."""

    def __init__(self, message: str, batch: int) -> None:
        super().__init__(message)
        self.batch = batch


def _score(metric: DetectionMetric, detections: Any, batch: Any, index: int, *,
           collected: list[np.ndarray] | None = None, sizes: list[tuple[int, int]] | None = None,
           score: bool = True) -> None:
    """Check one batch's detections; score them (``score``), and append each image's valid rows
    (normalised) to ``collected`` and its stored size to ``sizes``."""
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
    if collected is not None:
        collected.extend(image_rows[image_rows[:, 0] >= 0] for image_rows in rows[:keep])
        if sizes is not None and getattr(batch, "image_size", None) is not None:
            sizes.extend((int(w), int(h)) for w, h in batch.image_size.asnumpy()[:keep])
    if not score:
        return
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
