"""Detection metrics: Pascal VOC and COCO-style mean average precision, in numpy.

:class:`DetectionMetric` is the metric core of ``detkit.evaluate``: it takes
detections and ground truth batch by batch, matches them per image, and computes
Pascal VOC mAP@0.5 (the 11-point VOC2007 and the area VOC2010+ variants) and
COCO-style mAP@[.5:.95]. The conventions are those of the Pascal VOC devkit and
of pycocotools; every place where detkit has to choose is stated in the class
docstring.

The references followed:

- M. Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge",
  IJCV 88 (2010), section 4.2, and the VOC devkit (``VOCevaldet.m``, ``VOCap.m``);
- T.-Y. Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014, and
  pycocotools ``cocoeval.py`` (``COCOeval.evaluateImg``, ``COCOeval.accumulate``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["DetectionMetric"]

#: IoU threshold of the Pascal VOC metrics; a match needs IoU strictly greater (VOC devkit).
_VOC_IOU_THRESHOLD = 0.5
#: COCO's ten IoU thresholds 0.50:0.05:0.95, computed exactly as pycocotools does
#: (so 0.9 is 0.8999999999999999, as there).
_COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: COCO's 101 recall levels 0:0.01:1, the floats of pycocotools' ``recThrs`` (so level 35 is
#: 0.35000000000000003, and a recall of exactly 0.35 does not reach it, as in pycocotools).
_COCO_RECALL_LEVELS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: VOC2007's 11 recall levels i/10, i = 0..10, compared exactly (see ``_voc07_level_counts``).
_VOC07_RECALL_STEPS = 10
#: Most elements of one (images, thresholds, detections, objects) temporary of the COCO matching.
_CHUNK_ELEMENTS = 4_000_000


class DetectionMetric:
    """Pascal VOC and COCO-style mean average precision of object detections.

    Feed it batches with :meth:`update`, read the metrics with :meth:`compute`,
    start again with :meth:`reset`. Everything is plain numpy, vectorised over
    the images of a batch: 100 images of 100 detections take about 20 ms.

    Parameters
    ----------
    num_classes : int
        Number of object classes ``C`` (background excluded). Class ids are
        0-based: ``0 <= class_id < num_classes``.
    class_names : sequence of str, optional
        ``C`` distinct names, the keys of ``compute()["per_class"]``. Default:
        ``"0"``, ``"1"``, ... ``str(C - 1)``.
    iou_thresholds : sequence of float, optional
        IoU thresholds of the COCO-style metric, each in (0, 1]. Default: COCO's
        ten thresholds 0.50:0.05:0.95, computed as pycocotools does
        (``np.linspace(0.5, 0.95, 10)``). The VOC metrics always use IoU 0.5.
    coco_max_detections : int or None, optional
        For the COCO-style metric only, keep the ``coco_max_detections``
        highest-scoring detections of each class in each image, as pycocotools'
        ``maxDets=100`` does (default 100). ``None`` keeps all. The VOC metrics
        keep all detections, as the VOC devkit does.

    Attributes
    ----------
    num_classes : int
    class_names : tuple of str
    iou_thresholds : numpy.ndarray, shape (T,)
        The COCO-style IoU thresholds (read-only).
    coco_max_detections : int or None

    Notes
    -----
    **Boxes** are corner format ``(xmin, ymin, xmax, ymax)`` in continuous
    coordinates, normalised to [0, 1] or in any unit shared by detections and
    ground truth. IoU is intersection over union of the areas, with no "+1
    pixel" (the VOC devkit adds 1 because its boxes are in integer pixels; detkit's
    are not). A box with ``xmax <= xmin`` or ``ymax <= ymin`` has zero area and
    IoU 0 with every box (pycocotools would give it a negative area).

    **Skipped rows.** Detection and label rows whose ``class_id`` is -1 are
    padding and are skipped; any other class id must be an integer in
    ``[0, num_classes)``.

    **Order and ties.** Detections are ranked by score, descending, with a
    *stable* sort: detections with equal scores keep their arrival order
    (earlier :meth:`update` call first, then lower image index in the batch,
    then lower row index in the image). The same order decides which of two
    tied detections is matched first. Results are therefore deterministic and do
    not depend on how the images are split into batches.

    **Matching, VOC metrics** (``ap_50``, ``ap_50_voc07``), as the VOC devkit
    ``VOCevaldet.m``: per image and class, in score order, a detection is
    compared with the ground-truth box of its class of highest IoU (all boxes,
    difficult or not; on equal IoU the lower row index). If that IoU is not
    strictly greater than 0.5 the detection is a false positive. Otherwise, if
    that box is difficult the detection is ignored (neither true nor false
    positive); if it is already matched the detection is a false positive (a
    duplicate), even when another box above 0.5 is free; else it is a true
    positive and the box is matched.

    **Matching, COCO-style metric** (``ap_50_95``), as pycocotools
    ``evaluateImg``, separately at each IoU threshold ``t``: per image and class,
    in score order, a detection is matched to the *unmatched* non-difficult box
    of highest IoU with ``IoU >= t`` (on equal IoU the higher row index, as
    pycocotools' loop does); if there is none, to a difficult box with
    ``IoU >= t``, and the detection is ignored; if there is none either, it is a
    false positive. A difficult box acts like a pycocotools crowd region (it is
    ignored, and any number of detections may match it), but with the ordinary
    IoU.

    **Difficult objects** (VOC semantics) count for no ground truth: they are
    not in ``num_ground_truth``, and detections matched to them are neither true
    nor false positives.

    **Average precision.** Detections of one class from all images are ranked
    as above; precision ``TP / (TP + FP)`` and recall ``TP / num_ground_truth``
    follow each rank, ignored detections left out.

    - ``ap_50`` (VOC2010+): the area under the precision envelope (precision
      made monotonically decreasing from the right), summed over the recall
      steps, as ``VOCap.m``.
    - ``ap_50_voc07`` (VOC2007): the mean, over the 11 recall levels
      0, 0.1, ..., 1, of the highest precision at a recall at least that level
      (0 where the recall is never reached).
    - ``ap_50_95`` (COCO): for each IoU threshold, the mean over COCO's 101
      recall levels 0, 0.01, ..., 1 of the precision envelope at the first rank
      whose recall reaches that level (0 where it is never reached), as
      pycocotools ``accumulate``; then the mean over the IoU thresholds.

    **Recall levels.** The VOC2007 levels are compared exactly (recall
    ``TP / N >= i / 10`` as ``10 * TP >= i * N``), as the VOC paper defines them.
    The common Python ports (py-faster-rcnn's ``voc_eval``, GluonCV's
    ``VOC07MApMetric``) compare with ``np.arange(0, 1.1, 0.1)``, whose floats
    ``0.30000000000000004``, ``0.6000000000000001`` and ``0.7000000000000001``
    miss a recall of exactly 0.3, 0.6 or 0.7; there they report a lower
    11-point AP than detkit.
    The COCO levels are pycocotools' own floats (``np.linspace(0, 1, 101)``)
    compared with the floating-point recall, exactly as pycocotools does, so that
    ``ap_50_95`` is pycocotools' number (``bbox``, area ``all``, ``maxDets=100``):
    a recall of exactly 0.35 does not reach the level ``0.35000000000000003``.
    detkit leaves out pycocotools' ``eps`` in the precision's denominator, so a
    perfect result is exactly 1.0 rather than ``1 - 2e-16``; nothing else changes.

    **Classes without ground truth.** A class with no non-difficult ground-truth
    object in any image has AP ``nan`` and is left out of every mean (VOC and
    pycocotools leave such a class out too); its detections are counted in
    ``num_detections`` but change nothing else. A class with ground truth and no
    detection has AP 0. When no class has ground truth, every mean is ``nan``
    (no exception, no warning).

    Examples
    --------
    Two classes; one image with a cat (class 0) and a dog (class 1). The cat is
    found exactly, the dog box overlaps the dog with IoU 0.72, and a second cat
    detection is a duplicate.

    >>> import numpy as np
    >>> from detkit import DetectionMetric
    >>> metric = DetectionMetric(num_classes=2, class_names=["cat", "dog"])
    >>> labels = np.array([[[0, 0.0, 0.0, 0.5, 0.5],       # [class_id, xmin, ymin, xmax, ymax]
    ...                     [1, 0.5, 0.0, 1.0, 1.0],
    ...                     [-1, 0, 0, 0, 0]]])            # padding; shape (1, 3, 5)
    >>> detections = np.array([[[0, 0.9, 0.0, 0.0, 0.5, 0.5],   # [class_id, score, box]
    ...                         [1, 0.8, 0.5, 0.0, 1.0, 0.72],
    ...                         [0, 0.3, 0.0, 0.0, 0.5, 0.5],
    ...                         [-1, 0, 0, 0, 0, 0]]])          # none; shape (1, 4, 6)
    >>> metric.update(detections, labels)
    >>> result = metric.compute()
    >>> result["map_50"], result["map_50_voc07"]
    (1.0, 1.0)

    The dog box counts at the IoU thresholds 0.50 to 0.70, five of COCO's ten:

    >>> result["per_class"]["dog"]["ap_50_95"]
    0.5
    >>> result["map_50_95"]
    0.75
    >>> result["per_class"]["cat"]
    {'ap_50': 1.0, 'ap_50_voc07': 1.0, 'ap_50_95': 1.0, 'num_ground_truth': 1, 'num_difficult': 0, 'num_detections': 2}

    A class without ground truth is reported as ``nan`` and left out of the mean:

    >>> metric = DetectionMetric(num_classes=2)
    >>> metric.update(detections, labels[:, :1])   # only the cat is annotated
    >>> result = metric.compute()
    >>> result["per_class"]["1"]["ap_50"], result["map_50"]
    (nan, 1.0)
    >>> metric.reset()
    >>> metric.compute()["map_50"]
    nan
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        iou_thresholds: Sequence[float] | None = None,
        *,
        coco_max_detections: int | None = 100,
    ) -> None:
        self.num_classes = _positive_int(num_classes, "num_classes")
        if class_names is None:
            names = tuple(str(i) for i in range(self.num_classes))
        else:
            if isinstance(class_names, str):
                raise InputError(
                    "The 'class_names' argument of DetectionMetric must be a sequence of "
                    f"{self.num_classes} strings; got the single string {class_names!r} instead."
                )
            names = tuple(class_names)
            if len(names) != self.num_classes:
                raise InputError(
                    f"The 'class_names' argument of DetectionMetric must have num_classes = "
                    f"{self.num_classes} names; got {len(names)} names instead: {list(names)!r}."
                )
            if not all(isinstance(name, str) for name in names):
                raise InputError(
                    f"The 'class_names' argument of DetectionMetric must contain strings; got {list(names)!r}."
                )
            if len(set(names)) != len(names):
                duplicates = sorted({name for name in names if names.count(name) > 1})
                raise InputError(
                    f"The 'class_names' argument of DetectionMetric must have distinct names; "
                    f"{duplicates!r} appear more than once."
                )
        self.class_names: tuple[str, ...] = names

        if iou_thresholds is None:
            thresholds = _COCO_IOU_THRESHOLDS.copy()
        else:
            try:
                thresholds = np.asarray(iou_thresholds, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise InputError(
                    "The 'iou_thresholds' argument of DetectionMetric must be a sequence of floats "
                    f"in (0, 1]; got {iou_thresholds!r} instead."
                ) from error
            if (
                thresholds.ndim != 1
                or thresholds.size == 0
                or not np.all(np.isfinite(thresholds))
                or np.any(thresholds <= 0)
                or np.any(thresholds > 1)
            ):
                raise InputError(
                    "The 'iou_thresholds' argument of DetectionMetric must be a non-empty sequence of "
                    f"floats in (0, 1]; got {iou_thresholds!r} instead."
                )
        thresholds.setflags(write=False)
        self.iou_thresholds: np.ndarray = thresholds
        # pycocotools starts its search at min(t, 1 - 1e-10), so that t = 1.0 can match at all.
        self._coco_thresholds = np.minimum(thresholds, 1 - 1e-10)  # (T,)

        if coco_max_detections is not None:
            coco_max_detections = _positive_int(coco_max_detections, "coco_max_detections")
        self.coco_max_detections = coco_max_detections
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._num_images = 0
        self._num_ground_truth = np.zeros(self.num_classes, dtype=np.int64)  # (C,)
        self._num_difficult = np.zeros(self.num_classes, dtype=np.int64)  # (C,)
        # One entry per group of matched images, their N detections in arrival order (image by
        # image, each image's by score); concatenated by compute().
        self._class_ids: list[np.ndarray] = []  # (N,) int
        self._scores: list[np.ndarray] = []  # (N,) float64
        self._voc_tp: list[np.ndarray] = []  # (N,) bool
        self._voc_ignored: list[np.ndarray] = []  # (N,) bool
        self._coco_kept: list[np.ndarray] = []  # (N,) bool, within coco_max_detections
        self._coco_tp: list[np.ndarray] = []  # (N, T) bool
        self._coco_ignored: list[np.ndarray] = []  # (N, T) bool

    @property
    def num_images(self) -> int:
        """Number of images seen since construction or the last :meth:`reset`."""
        return self._num_images

    def __repr__(self) -> str:
        return (
            f"DetectionMetric(num_classes={self.num_classes}, class_names={list(self.class_names)!r}, "
            f"iou_thresholds={self.iou_thresholds.tolist()!r}, "
            f"coco_max_detections={self.coco_max_detections!r})"
        )

    # ----------------------------------------------------------------- update

    def update(self, detections: Any, labels: Any, difficult: Any = None) -> None:
        """Add one batch of detections and ground truth.

        Parameters
        ----------
        detections : numpy.ndarray, shape (B, K, 6)
            Rows ``[class_id, score, xmin, ymin, xmax, ymax]``, as the
            ``PostProcessor`` returns them; ``class_id = -1`` for an empty row.
            An MXNet ``NDArray`` is accepted and converted with ``asnumpy()``.
        labels : numpy.ndarray, shape (B, M, 5)
            Ground-truth rows ``[class_id, xmin, ymin, xmax, ymax]`` in the same
            box unit as ``detections``; ``class_id = -1`` for padding.
        difficult : numpy.ndarray, shape (B, M), optional
            True (or non-zero) where the ground-truth object is "difficult" in
            the Pascal VOC sense. Default: no object is difficult. Padding rows
            are ignored whatever their flag.

        Raises
        ------
        detkit.errors.InputError
            If an array has the wrong number of dimensions or last dimension,
            the batch sizes or ``M`` differ, a class id is not -1 or an integer
            in ``[0, num_classes)``, or a non-padding row holds NaN or infinity.
        """
        detections = _as_array(detections, "detections")
        labels = _as_array(labels, "labels")
        if detections.ndim != 3 or detections.shape[2] != 6:
            raise InputError(
                "The 'detections' argument of DetectionMetric.update must have shape (B, K, 6) with rows "
                f"[class_id, score, xmin, ymin, xmax, ymax]; got shape {detections.shape} instead."
                + (" Add the batch axis with detections[None] for a single image." if detections.ndim == 2 else "")
            )
        if labels.ndim != 3 or labels.shape[2] != 5:
            raise InputError(
                "The 'labels' argument of DetectionMetric.update must have shape (B, M, 5) with rows "
                f"[class_id, xmin, ymin, xmax, ymax]; got shape {labels.shape} instead."
                + (" Add the batch axis with labels[None] for a single image." if labels.ndim == 2 else "")
            )
        if detections.shape[0] != labels.shape[0]:
            raise InputError(
                "The 'detections' and 'labels' arguments of DetectionMetric.update must have the same batch "
                f"size B; got detections of shape {detections.shape} (B = {detections.shape[0]}) and labels "
                f"of shape {labels.shape} (B = {labels.shape[0]})."
            )
        batch, num_objects = labels.shape[:2]
        if difficult is None:
            difficult = np.zeros((batch, num_objects), dtype=bool)  # (B, M)
        else:
            difficult = _as_array(difficult, "difficult", dtype=None)
            if difficult.shape != (batch, num_objects):
                raise InputError(
                    "The 'difficult' argument of DetectionMetric.update must have shape (B, M) = "
                    f"{(batch, num_objects)}, matching labels of shape {labels.shape}; got shape "
                    f"{difficult.shape} instead."
                )
            difficult = difficult.astype(bool)  # (B, M)

        det_valid = self._check_rows(detections, "detections")  # (B, K) bool
        gt_valid = self._check_rows(labels, "labels")  # (B, M) bool

        # Ground-truth counts per class, over the whole batch at once.
        gt_classes = labels[..., 0].astype(np.int64)  # (B, M)
        counted = gt_valid & ~difficult
        self._num_ground_truth += np.bincount(gt_classes[counted], minlength=self.num_classes)
        self._num_difficult += np.bincount(gt_classes[gt_valid & difficult], minlength=self.num_classes)

        # Sort each image's detections by score, descending, ties in row order; padding last,
        # then cut: the network's output is mostly padding.
        key = np.where(det_valid, -detections[..., 1], np.inf)  # (B, K)
        count = det_valid.sum(axis=1)  # (B,)
        width = int(count.max()) if batch else 0
        order = np.argsort(key, axis=1, kind="stable")[:, :width]  # (B, K'), K' = most detections of an image
        detections = np.take_along_axis(detections, order[..., None], axis=1)  # (B, K', 6)
        det_valid = np.arange(width)[None, :] < count[:, None]  # (B, K')
        if width > 0:
            # Bound the (M, b, T, K') temporaries of the COCO matching to a few million elements.
            per_image = self._coco_thresholds.shape[0] * width * max(num_objects, 1)
            chunk = max(1, _CHUNK_ELEMENTS // per_image)
            for lo in range(0, batch, chunk):
                hi = lo + chunk
                self._match(detections[lo:hi], det_valid[lo:hi], labels[lo:hi], gt_valid[lo:hi], difficult[lo:hi])
        self._num_images += batch

    def _check_rows(self, array: np.ndarray, name: str) -> np.ndarray:
        """Validate the class ids and values of ``array`` (B, R, W); return the non-padding mask (B, R)."""
        class_ids = array[..., 0]  # (B, R)
        valid = class_ids != -1  # (B, R)
        ids = class_ids[valid]  # (V,)
        bad = ~np.isfinite(ids) | (ids != np.floor(ids)) | (ids < 0) | (ids >= self.num_classes)  # (V,)
        if np.any(bad):
            first = np.flatnonzero(bad)[0]
            where = [int(i) for i in np.argwhere(valid)[first]]
            raise InputError(
                f"The 'class_id' column of the '{name}' argument of DetectionMetric.update must hold "
                f"-1 (none) or an integer in [0, num_classes) = [0, {self.num_classes}); got "
                f"{float(ids[first])!r} at [batch, row] = {where} of an array of shape {array.shape}."
            )
        finite = np.isfinite(array[valid]).all(axis=1)  # (V,)
        if not np.all(finite):
            where = [int(i) for i in np.argwhere(valid)[np.flatnonzero(~finite)[0]]]
            raise InputError(
                f"The '{name}' argument of DetectionMetric.update must hold finite values in every "
                f"non-padding row; got NaN or infinity at [batch, row] = {where} of an array of "
                f"shape {array.shape}."
            )
        return valid

    def _match(
        self,
        dets: np.ndarray,
        det_valid: np.ndarray,
        labels: np.ndarray,
        gt_valid: np.ndarray,
        difficult: np.ndarray,
    ) -> None:
        """Match the detections (b, K, 6) of some images to their labels (b, M, 5) and record them.

        Each image's detections come sorted by score (descending, ties in row order), padding
        last. ``det_valid`` (b, K) and ``gt_valid`` (b, M) mark the non-padding rows,
        ``difficult`` (b, M) the difficult objects. All images are matched at once.
        """
        num_images, num_dets = det_valid.shape
        num_objects = gt_valid.shape[1]
        thresholds = self._coco_thresholds  # (T,)
        num_thresholds = thresholds.shape[0]
        det_classes = np.where(det_valid, dets[..., 0], -1).astype(np.int64)  # (b, K)
        gt_classes = np.where(gt_valid, labels[..., 0], -2).astype(np.int64)  # (b, M), -2 matches nothing

        # Rank of each detection among the detections of its class in its image (COCO's maxDets).
        if self.coco_max_detections is None or self.coco_max_detections >= num_dets:
            coco_kept = det_valid  # (b, K)
        else:
            group = (np.arange(num_images)[:, None] * (self.num_classes + 1) + det_classes + 1).ravel()  # (b*K,)
            by_group = np.argsort(group, kind="stable")  # score order kept within a group
            start = np.searchsorted(group[by_group], group[by_group], side="left")
            rank = np.empty(group.shape[0], dtype=np.int64)
            rank[by_group] = np.arange(group.shape[0]) - start
            coco_kept = det_valid & (rank.reshape(num_images, num_dets) < self.coco_max_detections)  # (b, K)

        voc_tp = np.zeros((num_images, num_dets), dtype=bool)  # (b, K)
        voc_ignored = np.zeros((num_images, num_dets), dtype=bool)  # (b, K)
        coco_tp = np.zeros((num_images, num_thresholds, num_dets), dtype=bool)  # (b, T, K)
        coco_ignored = np.zeros((num_images, num_thresholds, num_dets), dtype=bool)  # (b, T, K)

        if num_objects > 0 and num_dets > 0:
            # IoU with the objects of the detection's own class; -1 for other classes and padding.
            iou = _box_iou(dets[..., 2:6], labels[..., 1:5])  # (b, K, M)
            iou[det_classes[:, :, None] != gt_classes[:, None, :]] = -1.0

            # VOC: the highest-IoU object (first on ties), duplicates are false positives.
            best = np.argmax(iou, axis=2)  # (b, K)
            best_iou = np.take_along_axis(iou, best[..., None], axis=2)[..., 0]  # (b, K)
            best_difficult = np.take_along_axis(difficult, best, axis=1)  # (b, K)
            above = best_iou > _VOC_IOU_THRESHOLD
            voc_ignored = above & best_difficult
            candidates = np.flatnonzero(above & ~best_difficult)  # flat (b, K) indices, score order per image
            target = (candidates // num_dets) * num_objects + best.ravel()[candidates]  # image and object
            _, first = np.unique(target, return_index=True)  # each object's first candidate is its TP
            voc_tp.flat[candidates[first]] = True

            # COCO. Only the detections that reach some regular object at the lowest threshold can
            # match; the matching runs on those alone, in score order, and is scattered back.
            regular_iou = np.where(difficult[:, None, :] | ~coco_kept[:, :, None], -1.0, iou)  # (b, K, M)
            reach = regular_iou.max(axis=2) >= thresholds.min()  # (b, K)
            if np.any(reach):
                num_reach = reach.sum(axis=1)  # (b,)
                width = int(num_reach.max())
                position = np.argsort(~reach, axis=1, kind="stable")[:, :width]  # (b, W), reaching ones first
                in_use = np.arange(width)[None, :] < num_reach[:, None]  # (b, W)
                # The columns past an image's count hold detections that reach nothing: harmless.
                sub_iou = np.take_along_axis(regular_iou, position[..., None], axis=1)  # (b, W, M)
                matched = _coco_greedy_match(sub_iou, thresholds)  # (b, T, W)
                image, column = np.nonzero(in_use)  # (n,), (n,)
                coco_tp[image, :, position[image, column]] = matched[image, :, column]  # (n, T)
            # A detection that found no free regular object but overlaps a difficult one is ignored.
            # (Detections past coco_max_detections are dropped by compute() whatever their flags.)
            difficult_iou = np.where(difficult[:, None, :], iou, -1.0).max(axis=2)  # (b, K)
            coco_ignored = ~coco_tp & (difficult_iou[:, None, :] >= thresholds[None, :, None])  # (b, T, K)

        # Record the valid detections, image after image, each image's in score order.
        self._class_ids.append(det_classes[det_valid])
        self._scores.append(dets[..., 1][det_valid])
        self._voc_tp.append(voc_tp[det_valid])
        self._voc_ignored.append(voc_ignored[det_valid])
        self._coco_kept.append(coco_kept[det_valid])
        self._coco_tp.append(coco_tp.transpose(0, 2, 1)[det_valid])  # (N, T)
        self._coco_ignored.append(coco_ignored.transpose(0, 2, 1)[det_valid])  # (N, T)

    # ---------------------------------------------------------------- compute

    def compute(self) -> dict[str, Any]:
        """Compute the metrics over every batch since the last :meth:`reset`.

        The state is kept: more batches may follow, and ``compute`` may be
        called again.

        Returns
        -------
        dict
            ``"map_50"`` : float
                VOC2010+ area AP at IoU 0.5, mean over the classes with ground truth.
            ``"map_50_voc07"`` : float
                VOC2007 11-point interpolated AP at IoU 0.5, mean over the same classes.
            ``"map_50_95"`` : float
                COCO-style AP (101-point interpolation), mean over
                ``iou_thresholds`` and over the same classes.
            ``"map_per_iou"`` : dict of float to float
                COCO-style mAP at each of ``iou_thresholds`` (keys rounded to 10
                decimals, so ``0.9`` finds pycocotools' ``0.8999999999999999``).
            ``"per_class"`` : dict of str to dict
                For each class name: ``"ap_50"``, ``"ap_50_voc07"``, ``"ap_50_95"``
                (float, ``nan`` for a class without ground truth),
                ``"num_ground_truth"`` (non-difficult objects), ``"num_difficult"``
                and ``"num_detections"`` (all of the class, before
                ``coco_max_detections``) (int).
            ``"num_images"`` : int
                Images seen.

            Every float is a Python ``float``; a mean over no class is ``nan``.
        """
        num_classes = self.num_classes
        num_thresholds = self._coco_thresholds.shape[0]
        if self._class_ids:
            class_ids = np.concatenate(self._class_ids)  # (N,)
            scores = np.concatenate(self._scores)  # (N,)
            voc_tp = np.concatenate(self._voc_tp)  # (N,)
            voc_ignored = np.concatenate(self._voc_ignored)  # (N,)
            coco_kept = np.concatenate(self._coco_kept)  # (N,)
            coco_tp = np.concatenate(self._coco_tp)  # (N, T)
            coco_ignored = np.concatenate(self._coco_ignored)  # (N, T)
        else:
            class_ids = np.zeros(0, dtype=np.int64)
            scores = np.zeros(0)
            voc_tp = voc_ignored = coco_kept = np.zeros(0, dtype=bool)
            coco_tp = coco_ignored = np.zeros((0, num_thresholds), dtype=bool)

        # Stable sort by score (descending), then stable by class: each class's slice is in
        # score order with ties in arrival order.
        order = np.argsort(-scores, kind="stable")
        order = order[np.argsort(class_ids[order], kind="stable")]  # (N,)
        bounds = np.searchsorted(class_ids[order], np.arange(num_classes + 1), side="left")  # (C+1,)

        ap_50 = np.full(num_classes, np.nan)
        ap_50_voc07 = np.full(num_classes, np.nan)
        ap_coco = np.full((num_classes, num_thresholds), np.nan)  # (C, T)
        num_detections = np.diff(bounds)  # (C,)
        for c in range(num_classes):
            positives = int(self._num_ground_truth[c])
            if positives == 0:
                continue
            idx = order[bounds[c] : bounds[c + 1]]  # (n_c,) this class, score order
            cum_tp, envelope = _precision_envelope(voc_tp[idx, None], voc_ignored[idx, None])  # (n_c, 1)
            ap_50[c] = _area_ap(cum_tp, envelope, positives)[0]
            ap_50_voc07[c] = _interpolated_ap(cum_tp, envelope, _voc07_level_counts(positives))[0]
            kept = idx[coco_kept[idx]]  # (n_k,)
            cum_tp, envelope = _precision_envelope(coco_tp[kept], coco_ignored[kept])  # (n_k, T)
            ap_coco[c] = _interpolated_ap(cum_tp, envelope, _coco_level_counts(positives))
        ap_50_95 = ap_coco.mean(axis=1)  # (C,), nan where no ground truth

        evaluated = self._num_ground_truth > 0  # (C,)
        per_class = {
            name: {
                "ap_50": float(ap_50[c]),
                "ap_50_voc07": float(ap_50_voc07[c]),
                "ap_50_95": float(ap_50_95[c]),
                "num_ground_truth": int(self._num_ground_truth[c]),
                "num_difficult": int(self._num_difficult[c]),
                "num_detections": int(num_detections[c]),
            }
            for c, name in enumerate(self.class_names)
        }
        return {
            "map_50": _mean(ap_50[evaluated]),
            "map_50_voc07": _mean(ap_50_voc07[evaluated]),
            "map_50_95": _mean(ap_50_95[evaluated]),
            "map_per_iou": {
                round(float(t), 10): _mean(ap_coco[evaluated, i]) for i, t in enumerate(self.iou_thresholds)
            },
            "per_class": per_class,
            "num_images": self._num_images,
        }


# --------------------------------------------------------------------- helpers


def _positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int >= 1, or raise :class:`InputError` naming ``name``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise InputError(f"The '{name}' argument of DetectionMetric must be an integer >= 1; got {value!r} instead.")
    return number


def _as_array(value: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """Return ``value`` (numpy array, MXNet NDArray or nested sequence) as a numpy array."""
    if hasattr(value, "asnumpy"):
        value = value.asnumpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"The '{name}' argument of DetectionMetric.update must be a numeric numpy array; "
            f"got {type(value).__name__} that numpy cannot convert ({error})."
        ) from error


def _box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``boxes_a`` (..., A, 4) with every box of ``boxes_b`` (..., B, 4); returns (..., A, B).

    Corner format ``(xmin, ymin, xmax, ymax)``, continuous coordinates (no +1).
    Boxes of zero or negative extent have area 0; a pair with zero union has IoU 0.
    """
    a = boxes_a[..., :, None, :]  # (..., A, 1, 4)
    b = boxes_b[..., None, :, :]  # (..., 1, B, 4)
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])  # (..., A, B)
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])  # (..., A, B)
    intersection = np.maximum(width, 0) * np.maximum(height, 0)  # (..., A, B)
    area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)  # (..., A, 1)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)  # (..., 1, B)
    union = area_a + area_b - intersection  # (..., A, B)
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _coco_greedy_match(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """pycocotools' greedy matching, for every image and IoU threshold at once.

    Parameters
    ----------
    iou : numpy.ndarray, shape (b, K, M)
        IoU of each image's detections, in score order, with the objects they may match
        (-1 where they may not: another class, padding, a difficult object).
    thresholds : numpy.ndarray, shape (T,)

    Returns
    -------
    numpy.ndarray of bool, shape (b, T, K)
        Whether each detection takes an object at each threshold.

    Notes
    -----
    At threshold ``t`` a detection takes the free object of highest IoU ``>= t``, the last
    of equal maxima (pycocotools' loop replaces its best on ``>=``). Walking the detections
    in score order, the next one to take an object is the first with any free object: those
    before it find none, and nothing changes for them. So each round matches one detection
    per image and threshold, and at most ``M`` rounds are needed.
    """
    num_images, num_dets, num_objects = iou.shape
    num_thresholds = thresholds.shape[0]
    # Objects lead the axes: numpy reduces over a leading axis far faster than over a short last one.
    iou = np.ascontiguousarray(iou.transpose(2, 0, 1))  # (M, b, K)
    over = iou[:, :, None, :] >= thresholds[None, None, :, None]  # (M, b, T, K)
    num_free = over.sum(axis=0)  # (b, T, K), free objects each detection reaches
    taken = np.zeros((num_objects, num_images, num_thresholds), dtype=bool)  # (M, b, T)
    passed = np.zeros((num_images, num_thresholds, num_dets), dtype=bool)  # (b, T, K), walked past
    matched = np.zeros((num_images, num_thresholds, num_dets), dtype=bool)  # (b, T, K)
    reversed_iou = iou[::-1]  # (M, b, K), objects reversed, to find the last of equal maxima
    det_index = np.arange(num_dets)  # (K,)
    while True:
        has_free = (num_free > 0) & ~passed  # (b, T, K)
        active = has_free.any(axis=2)  # (b, T)
        if not active.any():
            return matched
        b, t = np.nonzero(active)  # (A,), (A,)
        d = np.argmax(has_free[b, t], axis=1)  # (A,), the first detection with a free object
        free = over[::-1, b, t, d] & ~taken[::-1, b, t]  # (M, A), objects reversed
        values = np.where(free, reversed_iou[:, b, d], -np.inf)  # (M, A)
        g = num_objects - 1 - np.argmax(values, axis=0)  # (A,)
        taken[g, b, t] = True
        matched[b, t, d] = True
        passed[b, t] |= det_index[None, :] <= d[:, None]
        num_free[b, t] -= over[g, b, t]  # (A, K): that object is no longer free for anyone


def _precision_envelope(tp: np.ndarray, ignored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true positives and precision envelope of ranked detections, one column per IoU threshold.

    Parameters
    ----------
    tp, ignored : numpy.ndarray of bool, shape (n, T)
        Whether the detection at each rank is a true positive, or ignored (neither true nor
        false positive), at each of ``T`` thresholds. The rest are false positives.

    Returns
    -------
    cum_tp : numpy.ndarray of int, shape (n, T)
        True positives up to and including each rank.
    envelope : numpy.ndarray of float, shape (n, T)
        The highest precision ``TP / (TP + FP)`` at this rank or a later one. An ignored rank
        repeats the precision of the rank before it (0 before any counted rank), which leaves
        the envelope at every counted rank as if the ignored ones were removed.
    """
    counted = ~ignored  # (n, T)
    cum_tp = np.cumsum(tp & counted, axis=0)  # (n, T)
    cum_counted = np.cumsum(counted, axis=0)  # (n, T), TP + FP
    precision = np.divide(cum_tp, cum_counted, out=np.zeros(cum_tp.shape), where=cum_counted > 0)  # (n, T)
    envelope = np.maximum.accumulate(precision[::-1], axis=0)[::-1]  # (n, T)
    return cum_tp, envelope


def _area_ap(cum_tp: np.ndarray, envelope: np.ndarray, positives: int) -> np.ndarray:
    """VOC2010+ AP (T,): the recall steps, 1/positives at each true positive, times the envelope there."""
    steps = np.diff(cum_tp, axis=0, prepend=0)  # (n, T), 1 at a true positive
    return (steps * envelope).sum(axis=0) / positives


def _voc07_level_counts(positives: int) -> np.ndarray:
    """The fewest true positives (11,) whose recall reaches VOC2007's levels i/10: ceil(i * N / 10), exactly."""
    return -(-np.arange(_VOC07_RECALL_STEPS + 1) * positives // _VOC07_RECALL_STEPS)


def _coco_level_counts(positives: int) -> np.ndarray:
    """The fewest true positives (101,) whose recall reaches COCO's levels, in pycocotools' floats.

    pycocotools compares the float recall ``tp / N`` with its float levels; ``k / N`` rises
    with ``k``, so the first ``k`` with ``k / N >= level`` gives the same answer for every rank.
    """
    recalls = np.arange(positives + 1) / positives  # (N+1,), the float recall of k true positives
    return np.searchsorted(recalls, _COCO_RECALL_LEVELS, side="left")  # (101,), N+1 where unreachable


def _interpolated_ap(cum_tp: np.ndarray, envelope: np.ndarray, level_counts: np.ndarray) -> np.ndarray:
    """AP (T,): the mean over recall levels of the envelope at the first rank reaching each level.

    Parameters
    ----------
    cum_tp, envelope : numpy.ndarray, shape (n, T)
        From :func:`_precision_envelope`.
    level_counts : numpy.ndarray of int, shape (L,)
        For each recall level, the fewest true positives that reach it.

    Returns
    -------
    numpy.ndarray, shape (T,)
        A level never reached counts 0. One integer ``searchsorted`` serves all columns.
    """
    num_ranks, num_columns = cum_tp.shape
    if num_ranks == 0:
        return np.zeros(num_columns)
    stride = int(max(cum_tp.max(), level_counts.max())) + 1  # column t's values lie in [t * stride, (t+1) * stride)
    column = np.arange(num_columns)[:, None]  # (T, 1)
    keys = (cum_tp.T + column * stride).ravel()  # (T * n,), sorted: cum_tp never decreases
    queries = column * stride + level_counts[None, :]  # (T, L)
    first = np.searchsorted(keys, queries, side="left") - column * num_ranks  # (T, L), rank in its column
    reached = first < num_ranks
    values = envelope.T[column, np.minimum(first, num_ranks - 1)]  # (T, L)
    return np.where(reached, values, 0.0).sum(axis=1) / level_counts.shape[0]


def _mean(values: np.ndarray) -> float:
    """Mean of ``values`` (n,) as a Python float; ``nan`` for no values, without a warning."""
    return float(values.mean()) if values.size else math.nan
