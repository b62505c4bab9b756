"""Detection metrics: Pascal VOC and COCO-style mean average precision, in numpy.

:class:`DetectionMetric` is the metric core of ``detkit.evaluate``: it takes
detections and ground truth batch by batch, matches them per image, and computes
Pascal VOC mAP@0.5 (the 11-point VOC2007 and the area VOC2010+ variants), and
COCO-style mAP@[.5:.95] with COCO's whole 12-number summary (AP at IoU .5 and
.75, AP and AR per object size, AR at 1, 10 and 100 detections). The conventions
are those of the Pascal VOC devkit and of pycocotools; every place where detkit
has to choose is stated in the class docstring.

The references followed:

- M. Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge",
  IJCV 88 (2010), section 4.2, and the VOC devkit (``VOCevaldet.m``, ``VOCap.m``);
- T.-Y. Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014, and
  pycocotools ``cocoeval.py`` (``COCOeval.evaluateImg``, ``COCOeval.accumulate``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._base import PathLike, atomic_path
from ..errors import InputError

__all__ = ["BOX_FORMATS", "DetectionMetric"]

#: The box formats :class:`DetectionMetric` reads: ``"xyxy"`` corners in continuous
#: coordinates (detkit's own), ``"xywh"`` COCO's ``[x, y, width, height]`` in pixels with
#: pycocotools' arithmetic, ``"voc"`` the VOC devkit's 1-based inclusive pixel corners with
#: its "+1" arithmetic.
BOX_FORMATS = ("xyxy", "xywh", "voc")

#: IoU threshold of the Pascal VOC metrics; a match needs IoU >= 0.5, as the VOC devkit's
#: ``VOCevaldet.m`` (``if ovmax>=VOCopts.minoverlap``), pycocotools and GluonCV have it.
_VOC_IOU_THRESHOLD = 0.5
#: COCO's ten IoU thresholds 0.50:0.05:0.95, computed exactly as pycocotools does
#: (so 0.9 is 0.8999999999999999, as there).
_COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: COCO's 101 recall levels 0:0.01:1, the floats of pycocotools' ``recThrs`` (so level 35 is
#: 0.35000000000000003, and a recall of exactly 0.35 does not reach it, as in pycocotools).
_COCO_RECALL_LEVELS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: VOC2007's 11 recall levels i/10, i = 0..10, compared exactly (see ``_voc07_level_counts``).
_VOC07_RECALL_STEPS = 10
#: COCO's object-size ranges, areas in pixels of the original image, both ends included:
#: all, small, medium, large (pycocotools' ``areaRng``).
_COCO_AREA_RANGES = np.array([[0.0, 1e5**2], [0.0, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e5**2]])
#: Most elements of one (images, thresholds, detections, objects) temporary of the COCO matching.
_CHUNK_ELEMENTS = 4_000_000


class DetectionMetric:
    """Pascal VOC and COCO-style mean average precision of object detections.

    Feed it batches with :meth:`update`, read the metrics with :meth:`compute`,
    start again with :meth:`reset`. Everything is plain numpy, vectorised over
    the images of a batch: 100 images of 100 detections take about 20 ms with
    their image sizes (COCO's four size ranges are matched separately), a
    third of that without.

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
        keep all detections, as the VOC devkit does. AR is reported at 1, 10 and
        this many detections (``mar_1``, ``mar_10``, ``mar_100``).
    max_detections : sequence of int, optional
        pycocotools' ``maxDets``, increasing, e.g. ``[1, 5, 20]``: replaces
        ``coco_max_detections`` (its last value caps the matching); AR is
        reported at each as ``mar_<n>``, AP at the last.
    recall_thresholds : sequence of float, optional
        pycocotools' ``recThrs``, non-decreasing in [0, 1]. Default: COCO's 101
        levels ``np.linspace(0, 1, 101)``.
    area_ranges : mapping of str to (float, float), optional
        pycocotools' ``areaRng`` with ``areaRngLbl`` as keys (identifiers): object
        sizes in pixels, both ends included. The first range gives ``map``,
        ``map_50``, ``map_75`` and ``mar_<n>``; each other range ``NAME`` gives
        ``map_NAME`` and ``mar_NAME``. Default: ``{"all": (0, 1e10), "small":
        (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}``.
    class_agnostic : bool, default False
        pycocotools' ``useCats=0``: detections match objects of any class, as
        one class; ``per_class`` then holds the one entry ``"all classes"``.
        Rows of equal score in an image rank by class, then row (pycocotools
        joins an image's detections class by class).
    box_format : {"xyxy", "xywh", "voc"}, default "xyxy"
        How :meth:`update` reads boxes: ``"xyxy"`` continuous corners (normalised,
        or in pixels with ``image_size`` 1 x 1); ``"xywh"`` COCO's ``[x, y, w, h]``
        in pixels, with pycocotools' own arithmetic (right edge ``x + w``, area
        ``w * h``); ``"voc"`` the VOC devkit's 1-based inclusive pixel corners with
        its ``+ 1`` (width ``xmax - xmin + 1``). With the reference's arithmetic,
        an IoU exactly at a threshold compares as there. Both pixel formats need
        no ``image_size``.
    missing : float, default nan
        The value of a number with nothing to measure (a class without ground
        truth, a size range without objects): ``nan``, or ``-1`` as pycocotools
        and torchmetrics write it.

    Attributes
    ----------
    num_classes : int
    class_names : tuple of str
    iou_thresholds : numpy.ndarray, shape (T,)
        The COCO-style IoU thresholds (read-only).
    coco_max_detections : int or None
    max_detections : tuple
        The AR limits (pycocotools' ``maxDets``).
    recall_thresholds : numpy.ndarray, shape (R,)
    area_ranges : dict of str to (float, float)
    class_agnostic : bool
    box_format : str
    missing : float

    Notes
    -----
    **Boxes** are corner format ``(xmin, ymin, xmax, ymax)`` in continuous
    coordinates, normalised to [0, 1] or in any unit shared by detections and
    ground truth. IoU is intersection over union of the areas, with no "+1
    pixel" (the VOC devkit adds 1 because its boxes are in integer pixels; detkit's
    are not). A box with ``xmax <= xmin`` or ``ymax <= ymin`` has zero area and
    IoU 0 with every box (pycocotools would give it a negative area).

    **Inverted boxes.** A detection box with a negative width or height (an
    inverted box) has the signed area ``w * h`` that pycocotools gives it: below
    0, it lies outside every size range, so in the COCO metrics it is ignored
    rather than a false positive, as in pycocotools (``loadRes`` sets its area
    ``w * h``; ``evaluateImg`` ignores an unmatched detection outside the range).
    Its IoU with every box is 0. The VOC metrics count it a false positive, as
    the devkit does.

    **Skipped rows.** Detection and label rows whose ``class_id`` is -1 are
    padding and are skipped; any other class id must be an integer in
    ``[0, num_classes)``.

    **Order and ties.** Detections are ranked by score, descending, with a
    *stable* sort: detections with equal scores keep their arrival order
    (earlier :meth:`update` call first, then lower image index in the batch,
    then lower row index in the image). The same order decides which of two
    tied detections is matched first. Results are therefore deterministic and do
    not depend on how the images are split into batches. When :meth:`update` is
    given ``image_ids``, detections of equal score in different images rank by
    image id instead (ascending, then row), as pycocotools ranks them
    (``accumulate`` concatenates the images in sorted id order and sorts stably).

    **Matching, VOC metrics** (``ap_50``, ``ap_50_voc07``), as the VOC devkit
    ``VOCevaldet.m``: per image and class, in score order, a detection is
    compared with the ground-truth box of its class of highest IoU (all boxes,
    difficult or not, crowd regions excepted; on equal IoU the lower row index).
    If that IoU is below 0.5 the detection is a false positive; an IoU of
    exactly 0.5 is a match (the devkit's ``ovmax>=VOCopts.minoverlap``, as in
    pycocotools and GluonCV). Otherwise, if that box is difficult the detection
    is ignored (neither true nor false positive); if it is already matched the
    detection is a false positive (a duplicate), even when another box above 0.5
    is free; else it is a true positive and the box is matched. The devkit knows
    no crowd regions: here a detection that these rules make a false positive is
    ignored instead when it overlaps a crowd region of its class with an
    intersection over its own area of at least 0.5 (pycocotools' crowd overlap).

    **Matching, COCO-style metric** (``ap_50_95`` and the summary), as pycocotools
    ``evaluateImg``, separately at each IoU threshold ``t`` and object-size range:
    per image and class, in score order, a detection is matched to the
    *unmatched* regular object (neither difficult nor crowd, and in the size
    range) of highest IoU with ``IoU >= t`` (on equal IoU the higher row index, as
    pycocotools' loop does). If there is none, it is matched to an *ignored*
    object with an overlap ``>= t`` and is itself ignored: a crowd region (overlap:
    the intersection over the detection's area; never used up), a difficult object
    (the ordinary IoU; never used up, as if it were a crowd region with the
    ordinary IoU) or an unmatched object outside the size range (IoU; used up
    like a regular one), the highest overlap winning, the higher row index on
    ties. If there is none either, the detection is a false positive, unless its
    own area is outside the size range: then it is ignored.

    **Difficult objects** (VOC semantics) and **crowd regions** (COCO
    ``iscrowd``) count for no ground truth: they are not in
    ``num_ground_truth``, and detections matched to them are neither true nor
    false positives.

    **Object sizes** are areas in pixels of the original image: a ground-truth
    object's ``areas`` entry when given to :meth:`update` (COCO's annotation
    ``"area"``, which pycocotools uses, is what ``detkit data pack`` stores),
    else the box's width times height in pixels; a detection's is always its
    box's. COCO's ranges, both ends included as in pycocotools: small
    ``[0, 32²]``, medium ``[32², 96²]``, large ``[96², 1e5²]``, all
    ``[0, 1e5²]``. They need the image sizes (``image_size`` of :meth:`update`);
    without them the six size numbers are ``nan``.

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
    - ``mar_1``, ``mar_10``, ``mar_100`` (COCO AR): the recall ``TP / N`` using
      at most 1, 10 and ``coco_max_detections`` detections of each class in each
      image, mean over the IoU thresholds, then over the classes.

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
    (no exception, no warning). pycocotools prints -1 where detkit says ``nan``.

    **Names.** The 12 numbers of pycocotools' ``COCOeval.summarize()`` are in
    ``compute()["coco"]``, in its order, under the names torchmetrics gives them
    (``map``, ``map_50``, ``map_75``, ``map_small``, ``map_medium``, ``map_large``,
    ``mar_1``, ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``,
    ``mar_large``). The same are at the top level of ``compute()``, except
    ``map_50``: there, ``map_50`` is detkit's VOC AP at IoU 0.5 (the area under
    the precision envelope), and COCO's AP at IoU 0.5 (101 recall levels) is
    ``compute()["coco"]["map_50"]``.

    .. warning:: **The ``map_50`` name trap.** torchmetrics' ``map_50`` (and
       pycocotools' second summary line, ``AP @[ IoU=0.50 ]``) is
       ``compute()["coco"]["map_50"]``, *not* ``compute()["map_50"]``. The two
       differ (VOC's area AP counts difficult objects and crowd regions by the
       devkit's rule and uses every detection; COCO's interpolates at 101 recall
       levels, keeps ``coco_max_detections`` a class and image). When comparing
       with a table made by torchmetrics or pycocotools, read
       ``compute()["coco"]``.

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
    >>> {key: value for key, value in result["per_class"]["cat"].items() if key != "coco"}
    {'ap_50': 1.0, 'ap_50_voc07': 1.0, 'ap_50_95': 1.0, 'num_ground_truth': 1, 'num_difficult': 0, 'num_crowd': 0, 'num_detections': 2}

    COCO's summary; the object sizes need the images' sizes in pixels. Say the
    image is 64 x 64: the cat covers 32 x 32 = 1024 pixels, at the border of
    small and medium (both ends count), the dog 32 x 64 = 2048, medium:

    >>> metric.reset()
    >>> metric.update(detections, labels, image_size=[(64, 64)])
    >>> summary = metric.compute()["coco"]
    >>> summary["map_small"], summary["map_medium"], summary["map_large"], summary["mar_1"]
    (1.0, 0.75, nan, 0.75)

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
        max_detections: Sequence[int] | None = None,
        recall_thresholds: Sequence[float] | None = None,
        area_ranges: Mapping[str, Sequence[float]] | None = None,
        class_agnostic: bool = False,
        box_format: str = "xyxy",
        missing: float = math.nan,
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

        if max_detections is not None:
            limits = _increasing(max_detections, "max_detections", integers=True)
            self.max_detections: tuple[float, ...] = tuple(int(d) for d in limits)
            self._mar_names = tuple(f"mar_{int(d)}" for d in limits)
            coco_max_detections = int(limits[-1])
        else:
            if coco_max_detections is not None:
                coco_max_detections = _positive_int(coco_max_detections, "coco_max_detections")
            cap = math.inf if coco_max_detections is None else coco_max_detections
            self.max_detections = (min(1, cap), min(10, cap), cap)  # pycocotools' maxDets [1, 10, 100]
            self._mar_names = ("mar_1", "mar_10", "mar_100")
        self.coco_max_detections = coco_max_detections

        if recall_thresholds is None:
            levels = _COCO_RECALL_LEVELS.copy()
        else:
            levels = _increasing(recall_thresholds, "recall_thresholds", low=0.0)
        levels.setflags(write=False)
        self.recall_thresholds: np.ndarray = levels

        if area_ranges is None:
            area_ranges = dict(zip(("all", "small", "medium", "large"), _COCO_AREA_RANGES.tolist()))
        self.area_ranges: dict[str, tuple[float, float]] = _area_ranges(area_ranges)
        self._area_bounds = np.array(list(self.area_ranges.values()), dtype=np.float64)  # (A, 2)

        if not isinstance(class_agnostic, bool):
            raise InputError(
                f"The 'class_agnostic' argument of DetectionMetric must be True or False; got {class_agnostic!r}."
            )
        self.class_agnostic = class_agnostic
        if box_format not in BOX_FORMATS:
            raise InputError(
                f"The 'box_format' argument of DetectionMetric must be one of {', '.join(map(repr, BOX_FORMATS))}; "
                f"got {box_format!r} instead."
            )
        self.box_format = box_format
        if not (isinstance(missing, (int, float)) and not isinstance(missing, bool)
                and (math.isnan(missing) or missing == -1)):
            raise InputError(
                f"The 'missing' argument of DetectionMetric must be nan (the default) or -1 (as pycocotools "
                f"and torchmetrics write it); got {missing!r} instead."
            )
        self.missing = float(missing)
        #: The classes as the matching sees them: one when class-agnostic (pycocotools' useCats=0).
        self._num_groups = 1 if class_agnostic else self.num_classes
        self._group_names = ("all classes",) if class_agnostic else self.class_names
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._num_images = 0
        self._num_ground_truth = np.zeros(self._num_groups, dtype=np.int64)  # (C,)
        self._num_difficult = np.zeros(self._num_groups, dtype=np.int64)  # (C,)
        self._num_crowd = np.zeros(self._num_groups, dtype=np.int64)  # (C,)
        # Objects neither difficult nor crowd in each size range of self.area_ranges.
        self._num_in_range = np.zeros((self._area_bounds.shape[0], self._num_groups), dtype=np.int64)  # (A, C')
        self._areas_known = True  # every batch came with its image sizes
        self._image_ids: list[Any] = []  # one id an image, when update() was given them
        self._ids_given: bool | None = None  # whether update() was given image ids (all calls alike)
        self._image_index: list[np.ndarray] = []  # (N,) int, the image (in arrival order) of each detection
        # One entry per group of matched images, their N detections in arrival order (image by
        # image, each image's by score); concatenated by compute().
        self._class_ids: list[np.ndarray] = []  # (N,) int
        self._scores: list[np.ndarray] = []  # (N,) float64
        self._ranks: list[np.ndarray] = []  # (N,) int, rank among its image's detections of its class
        self._rows: list[np.ndarray] = []  # (N,) int, the detection's row in its update() array
        self._voc_tp: list[np.ndarray] = []  # (N,) bool
        self._voc_ignored: list[np.ndarray] = []  # (N,) bool
        self._coco_tp: list[np.ndarray] = []  # (N, A, T) bool, per size range and IoU threshold
        self._coco_ignored: list[np.ndarray] = []  # (N, A, T) bool

    @property
    def num_images(self) -> int:
        """Number of images seen since construction or the last :meth:`reset`."""
        return self._num_images

    def __repr__(self) -> str:
        text = (
            f"DetectionMetric(num_classes={self.num_classes}, class_names={list(self.class_names)!r}, "
            f"iou_thresholds={self.iou_thresholds.tolist()!r}, "
            f"coco_max_detections={self.coco_max_detections!r}"
        )
        if self._mar_names != ("mar_1", "mar_10", "mar_100"):
            text += f", max_detections={list(self.max_detections)!r}"
        if not np.array_equal(self.recall_thresholds, _COCO_RECALL_LEVELS):
            text += f", recall_thresholds={self.recall_thresholds.tolist()!r}"
        if not (list(self.area_ranges) == ["all", "small", "medium", "large"]
                and np.array_equal(self._area_bounds, _COCO_AREA_RANGES)):
            text += f", area_ranges={self.area_ranges!r}"
        for name, default in (("class_agnostic", False), ("box_format", "xyxy")):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)!r}"
        if self.missing == -1:
            text += ", missing=-1"
        return text + ")"

    # ----------------------------------------------------------------- update

    def update(
        self,
        detections: Any,
        labels: Any,
        difficult: Any = None,
        *,
        crowd: Any = None,
        image_size: Any = None,
        areas: Any = None,
        image_ids: Any = None,
    ) -> None:
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
        crowd : numpy.ndarray, shape (B, M), optional
            True (or non-zero) where the ground-truth row is a crowd region
            (COCO ``iscrowd``). Default: none is.
        image_size : numpy.ndarray, shape (B, 2), optional
            The ``(width, height)`` in pixels of each original image. A box's
            area in pixels is its width times its height, each multiplied by
            the image's (so boxes normalised to [0, 1] give pixels; boxes
            already in pixels need ``(1, 1)``). Without it, the object-size
            numbers (``map_small``, ... ``mar_large``) are ``nan``.
        areas : numpy.ndarray, shape (B, M), optional
            The area in pixels of each ground-truth object, as COCO's annotation
            ``"area"`` (which pycocotools uses for the size ranges); ``nan``
            where unknown. Default, and where ``nan``: the box's area in pixels.
        image_ids : sequence of int or str, shape (B,), optional
            Each image's id (COCO's ``image_id``, VOC's image name). Detections
            of equal score in different images are then ranked by image id
            (ascending), as pycocotools ranks them, rather than in arrival
            order. Give ids with every batch or with none; they must be unique
            and all integers or all strings.

        Raises
        ------
        detkit.errors.InputError
            If an array has the wrong number of dimensions or last dimension,
            the batch sizes or ``M`` differ, a class id is not -1 or an integer
            in ``[0, num_classes)``, a non-padding row holds NaN or infinity,
            an image size is not positive, or an area is negative.
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
        difficult = self._object_flags(difficult, "difficult", labels.shape)  # (B, M)
        crowd = self._object_flags(crowd, "crowd", labels.shape)  # (B, M)

        det_valid = self._check_rows(detections, "detections")  # (B, K) bool
        gt_valid = self._check_rows(labels, "labels")  # (B, M) bool
        ids = self._check_image_ids(image_ids, batch)

        # Boxes as corners (left, top, right, bottom) with their areas, in the format's arithmetic.
        det_corners, det_area, det_signed = _corners(detections[..., 2:6], self.box_format)  # (B, K, 4), (B, K)
        gt_corners, gt_area, _ = _corners(labels[..., 1:5], self.box_format)  # (B, M, 4), (B, M)
        if self.box_format == "xywh":  # other formats are corners already
            detections, labels = detections.copy(), labels.copy()
            detections[..., 2:6], labels[..., 1:5] = det_corners, gt_corners
        box_gt_area = gt_area  # (B, M), for the IoU's union
        # Object sizes in pixels of the original images, when known. A detection's is its box's signed
        # area, as pycocotools' w * h: an inverted box has a negative area, outside every size range.
        pixel_format = self.box_format != "xyxy"
        if pixel_format and image_size is not None:
            raise InputError(
                f"The 'image_size' argument of DetectionMetric.update is for boxes in box_format 'xyxy'; boxes in "
                f"{self.box_format!r} are in pixels already: leave image_size out."
            )
        known = image_size is not None or pixel_format
        det_size = det_signed  # (B, K)
        gt_size = gt_area  # (B, M)
        if image_size is not None:
            size = _as_array(image_size, "image_size")
            if size.shape != (batch, 2) or not np.all(np.isfinite(size)) or np.any(size <= 0):
                raise InputError(
                    f"The 'image_size' argument of DetectionMetric.update must have shape (B, 2) = {(batch, 2)} "
                    f"of positive (width, height) pairs; got {size.tolist() if size.size <= 8 else size.shape}."
                )
            pixels = size[:, 0] * size[:, 1]  # (B,)
            det_size = det_signed * pixels[:, None]  # (B, K)
            gt_size = gt_area * pixels[:, None]  # (B, M)
        if areas is not None:
            given = _as_array(areas, "areas")
            if given.shape != (batch, num_objects) or np.any(given[gt_valid] < 0) or np.any(np.isinf(given)):
                raise InputError(
                    f"The 'areas' argument of DetectionMetric.update must have shape (B, M) = {(batch, num_objects)}, "
                    f"matching labels of shape {labels.shape}, of areas >= 0 or nan; got shape {given.shape}."
                )
            gt_size = np.where(np.isnan(given), gt_size, given)
        self._areas_known &= known

        det_rows = np.broadcast_to(np.arange(detections.shape[1]), detections.shape[:2])  # (B, K)
        if self.class_agnostic:
            # pycocotools' useCats=0 joins an image's objects and detections class by class (its
            # category order), then forgets the classes: stable-sort each image's rows by class.
            gt_order = np.argsort(np.where(gt_valid, labels[..., 0], np.inf), axis=1, kind="stable")  # (B, M)
            det_order = np.argsort(np.where(det_valid, detections[..., 0], np.inf), axis=1, kind="stable")
            labels = np.take_along_axis(labels, gt_order[..., None], axis=1)
            detections = np.take_along_axis(detections, det_order[..., None], axis=1)
            difficult, crowd, gt_valid, gt_size, box_gt_area = (
                np.take_along_axis(a, gt_order, axis=1) for a in (difficult, crowd, gt_valid, gt_size, box_gt_area)
            )
            det_valid, det_size, det_area, det_rows = (np.take_along_axis(a, det_order, axis=1)
                                                       for a in (det_valid, det_size, det_area, det_rows))
            labels[..., 0] = np.where(gt_valid, 0, -1)
            detections[..., 0] = np.where(det_valid, 0, -1)

        # Which objects and detections lie in each size range (all of them when unknown).
        lo, hi = self._area_bounds[:, 0], self._area_bounds[:, 1]  # (A,)
        gt_in_range = (gt_size[:, None, :] >= lo[None, :, None]) & (gt_size[:, None, :] <= hi[None, :, None])
        det_out_range = (det_size[:, None, :] < lo[None, :, None]) | (det_size[:, None, :] > hi[None, :, None])
        if not known:
            gt_in_range[:] = True  # (B, A, M); only the first range is used
            det_out_range[:] = (det_signed < 0)[:, None, :]  # (B, A, K): inverted boxes only

        # Ground-truth counts per class, over the whole batch at once.
        groups = self._num_groups
        gt_classes = labels[..., 0].astype(np.int64)  # (B, M)
        counted = gt_valid & ~difficult & ~crowd
        self._num_ground_truth += np.bincount(gt_classes[counted], minlength=groups)
        self._num_difficult += np.bincount(gt_classes[gt_valid & difficult & ~crowd], minlength=groups)
        self._num_crowd += np.bincount(gt_classes[gt_valid & crowd], minlength=groups)
        for a in range(self._area_bounds.shape[0]):
            self._num_in_range[a] += np.bincount(gt_classes[counted & gt_in_range[:, a]], minlength=groups)

        # Sort each image's detections by score, descending, ties in row order; padding last,
        # then cut: the network's output is mostly padding.
        key = np.where(det_valid, -detections[..., 1], np.inf)  # (B, K)
        count = det_valid.sum(axis=1)  # (B,)
        width = int(count.max()) if batch else 0
        order = np.argsort(key, axis=1, kind="stable")[:, :width]  # (B, K'), K' = most detections of an image
        detections = np.take_along_axis(detections, order[..., None], axis=1)  # (B, K', 6)
        det_area = np.take_along_axis(det_area, order, axis=1)  # (B, K')
        det_rows = np.take_along_axis(det_rows, order, axis=1)  # (B, K')
        det_out_range = np.take_along_axis(det_out_range, order[:, None, :], axis=2)  # (B, A, K')
        det_valid = np.arange(width)[None, :] < count[:, None]  # (B, K')
        if width > 0:
            # Bound the (M, b, T, K') temporaries of the COCO matching to a few million elements.
            per_image = self._coco_thresholds.shape[0] * width * max(num_objects, 1)
            chunk = max(1, _CHUNK_ELEMENTS // per_image)
            for lo_image in range(0, batch, chunk):
                part = slice(lo_image, lo_image + chunk)
                self._match(
                    detections[part], det_area[part], det_valid[part], labels[part], box_gt_area[part],
                    gt_valid[part], difficult[part], crowd[part], gt_in_range[part], det_out_range[part],
                    self._num_images + lo_image,
                )
                self._rows.append(det_rows[part][det_valid[part]])
        if ids is not None:
            self._image_ids.extend(ids)
        self._num_images += batch

    def _check_image_ids(self, image_ids: Any, batch: int) -> list[Any] | None:
        """``image_ids`` (B,) as a list of ints or strings, or None; all update() calls give them or none."""
        given = image_ids is not None
        if self._ids_given is not None and given != self._ids_given:
            raise InputError(
                "The 'image_ids' argument of DetectionMetric.update must be given with every batch or with "
                f"none; {'earlier batches came without' if given else 'earlier batches came with'} image ids."
            )
        self._ids_given = given
        if not given:
            return None
        if hasattr(image_ids, "tolist"):
            image_ids = image_ids.tolist()
        ids = list(image_ids) if isinstance(image_ids, Sequence) and not isinstance(image_ids, str) else None
        if (ids is None or len(ids) != batch
                or not (all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
                        or all(isinstance(i, str) for i in ids))
                or (self._image_ids and type(ids[0]) is not type(self._image_ids[0]) if ids else False)):
            raise InputError(
                f"The 'image_ids' argument of DetectionMetric.update must be a sequence of B = {batch} image ids, "
                f"all integers or all strings (as in earlier batches); got {image_ids!r} instead."
            )
        return ids

    def _object_flags(self, flags: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """``flags`` (B, M) as bool, all False when ``None``; raise if its shape does not match labels."""
        if flags is None:
            return np.zeros(shape[:2], dtype=bool)
        array = _as_array(flags, name, dtype=None)
        if array.shape != shape[:2]:
            raise InputError(
                f"The '{name}' argument of DetectionMetric.update must have shape (B, M) = "
                f"{shape[:2]}, matching labels of shape {shape}; got shape {array.shape} instead."
            )
        return array.astype(bool)

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
        det_area: np.ndarray,
        det_valid: np.ndarray,
        labels: np.ndarray,
        gt_area: np.ndarray,
        gt_valid: np.ndarray,
        difficult: np.ndarray,
        crowd: np.ndarray,
        gt_in_range: np.ndarray,
        det_out_range: np.ndarray,
        first_image: int,
    ) -> None:
        """Match the detections (b, K, 6) of some images to their labels (b, M, 5) and record them.

        Boxes are corners ``(left, top, right, bottom)`` with their areas ``det_area`` (b, K) and
        ``gt_area`` (b, M) in the arithmetic of ``box_format``; ``first_image`` is the arrival
        index of the first of these images.
        Each image's detections come sorted by score (descending, ties in row order), padding
        last. ``det_valid`` (b, K) and ``gt_valid`` (b, M) mark the non-padding rows,
        ``difficult`` and ``crowd`` (b, M) the ignored objects, ``gt_in_range`` (b, A, M) the
        objects in each size range and ``det_out_range`` (b, A, K) the detections outside it.
        All images are matched at once.
        """
        num_images, num_dets = det_valid.shape
        num_objects = gt_valid.shape[1]
        num_ranges = gt_in_range.shape[1]
        thresholds = self._coco_thresholds  # (T,)
        num_thresholds = thresholds.shape[0]
        det_classes = np.where(det_valid, dets[..., 0], -1).astype(np.int64)  # (b, K)
        gt_classes = np.where(gt_valid, labels[..., 0], -2).astype(np.int64)  # (b, M), -2 matches nothing

        # Rank of each detection among the detections of its class in its image (COCO's maxDets).
        group = (np.arange(num_images)[:, None] * (self._num_groups + 1) + det_classes + 1).ravel()  # (b*K,)
        by_group = np.argsort(group, kind="stable")  # score order kept within a group
        start = np.searchsorted(group[by_group], group[by_group], side="left")
        rank = np.empty(group.shape[0], dtype=np.int64)
        rank[by_group] = np.arange(group.shape[0]) - start
        rank = rank.reshape(num_images, num_dets)  # (b, K)
        cap = self.coco_max_detections
        coco_kept = det_valid if cap is None else det_valid & (rank < cap)  # (b, K)

        voc_tp = np.zeros((num_images, num_dets), dtype=bool)  # (b, K)
        voc_ignored = np.zeros((num_images, num_dets), dtype=bool)  # (b, K)
        coco_tp = np.zeros((num_images, num_ranges, num_thresholds, num_dets), dtype=bool)  # (b, A, T, K)
        coco_ignored = np.zeros((num_images, num_ranges, num_thresholds, num_dets), dtype=bool)  # (b, A, T, K)

        # Unmatched detections outside a size range are ignored there (pycocotools' dtIg).
        coco_ignored[:] = det_out_range[:, :, None, :]
        if num_objects > 0 and num_dets > 0:
            # Overlaps with the objects of the detection's own class; -1 for other classes and padding.
            plus = 1.0 if self.box_format == "voc" else 0.0
            iou, ioa = _box_overlaps(dets[..., 2:6], det_area, labels[..., 1:5], gt_area, plus)  # (b, K, M) each
            other = det_classes[:, :, None] != gt_classes[:, None, :]  # (b, K, M)
            iou[other] = -1.0
            ioa[other] = -1.0
            crowd_ioa = np.where(crowd[:, None, :], ioa, -1.0)  # (b, K, M)

            # VOC: the highest-IoU object that is not a crowd region (first on ties); duplicates are
            # false positives. Then a would-be false positive inside a crowd region is ignored.
            voc_iou = np.where(crowd[:, None, :], -1.0, iou)  # (b, K, M)
            best = np.argmax(voc_iou, axis=2)  # (b, K)
            best_iou = np.take_along_axis(voc_iou, best[..., None], axis=2)[..., 0]  # (b, K)
            best_difficult = np.take_along_axis(difficult, best, axis=1)  # (b, K)
            above = best_iou >= _VOC_IOU_THRESHOLD  # the devkit's `ovmax >= minoverlap`
            voc_ignored = above & best_difficult
            candidates = np.flatnonzero(above & ~best_difficult)  # flat (b, K) indices, score order per image
            target = (candidates // num_dets) * num_objects + best.ravel()[candidates]  # image and object
            _, first = np.unique(target, return_index=True)  # each object's first candidate is its TP
            voc_tp.flat[candidates[first]] = True
            voc_ignored |= ~voc_tp & (crowd_ioa.max(axis=2) >= _VOC_IOU_THRESHOLD)

            # COCO, as pycocotools' evaluateImg, for each size range. Regular objects (in the range,
            # neither difficult nor crowd) are tried first; a detection that finds none tries the
            # ignored ones: difficult objects and crowd regions, never used up (crowd by IoA), and
            # objects outside the size range, used up like regular ones.
            ordinary = gt_valid & ~difficult & ~crowd  # (b, M)
            reusable = gt_valid & (difficult | crowd)  # (b, M)
            reuse_overlap = np.where(crowd[:, None, :], ioa, np.where(reusable[:, None, :], iou, -1.0))  # (b, K, M)
            best_reuse = reuse_overlap.max(axis=2)  # (b, K)
            # pycocotools keeps the last of equal overlaps: the highest index among the maxima
            last_reuse = num_objects - 1 - np.argmax(reuse_overlap[..., ::-1], axis=2)  # (b, K)
            reuse_hit = best_reuse[:, None, :] >= thresholds[None, :, None]  # (b, T, K)
            kept_iou = np.where(coco_kept[:, :, None], iou, -1.0)  # (b, K, M)
            for a in range(num_ranges):
                if a > 0 and not self._areas_known:
                    continue
                regular = ordinary & gt_in_range[:, a]  # (b, M)
                tp = _match_reaching(np.where(regular[:, None, :], kept_iou, -1.0), thresholds)  # (b, T, K)
                outside = ordinary & ~gt_in_range[:, a]  # (b, M), ignored but used up once matched
                taken = np.zeros_like(tp)
                if outside.any():
                    outside_iou = np.where(outside[:, None, :], kept_iou, -1.0)  # (b, K, M)
                    # An object outside the range wins over the best reusable one if its IoU is higher,
                    # or equal and its index higher (pycocotools' loop order); or if none reaches t.
                    beats = (outside_iou > best_reuse[..., None]) | (
                        (outside_iou == best_reuse[..., None]) & (np.arange(num_objects) > last_reuse[..., None])
                    )  # (b, K, M)
                    allowed = ~tp[..., None] & (beats[:, None] | ~reuse_hit[..., None])  # (b, T, K, M)
                    taken = _match_reaching(outside_iou, thresholds, allowed)  # (b, T, K)
                coco_tp[:, a] = tp
                coco_ignored[:, a] = ~tp & (taken | reuse_hit | det_out_range[:, a, None, :])
            # (Detections past coco_max_detections are dropped by compute() whatever their flags.)

        # Record the valid detections, image after image, each image's in score order.
        self._class_ids.append(det_classes[det_valid])
        self._scores.append(dets[..., 1][det_valid])
        self._ranks.append(rank[det_valid])
        image = np.broadcast_to(first_image + np.arange(num_images)[:, None], det_valid.shape)  # (b, K)
        self._image_index.append(image[det_valid])
        self._voc_tp.append(voc_tp[det_valid])
        self._voc_ignored.append(voc_ignored[det_valid])
        self._coco_tp.append(coco_tp.transpose(0, 3, 1, 2)[det_valid])  # (N, A, T)
        self._coco_ignored.append(coco_ignored.transpose(0, 3, 1, 2)[det_valid])  # (N, A, T)

    # ---------------------------------------------------------------- compute

    def compute(self, *, detailed: bool = False, per_image: bool = False) -> dict[str, Any]:
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
            ``"coco"`` : dict of str to float
                COCO's 12-number summary in pycocotools' order (``COCOeval.stats``),
                named as torchmetrics names them: ``map``, ``map_50``, ``map_75``,
                ``map_small``, ``map_medium``, ``map_large``, ``mar_1``, ``mar_10``,
                ``mar_100``, ``mar_small``, ``mar_medium``, ``mar_large``. Here
                ``map_50`` is COCO's AP at IoU 0.5 (101 recall levels), not the
                VOC number of the top-level ``"map_50"``.
            ``"map"``, ``"map_75"``, ``"map_small"``, ... ``"mar_large"`` : float
                The same numbers at the top level, all but ``map_50``.
            ``"per_class"`` : dict of str to dict
                For each class name: ``"ap_50"``, ``"ap_50_voc07"``, ``"ap_50_95"``
                (float, ``nan`` for a class without ground truth),
                ``"num_ground_truth"`` (objects neither difficult nor crowd),
                ``"num_difficult"``, ``"num_crowd"`` and ``"num_detections"`` (all of
                the class, before ``coco_max_detections``) (int), and ``"coco"``,
                the 12 numbers of that class alone.
            ``"num_images"`` : int
                Images seen.

            ``"detailed"`` : dict, with ``detailed=True``
                pycocotools' ``COCOeval.eval`` arrays: ``"precision"`` and
                ``"scores"`` ``(T, R, K, A, D)`` (IoU thresholds, recall thresholds,
                classes, area ranges, ``max_detections``), ``"recall"`` ``(T, K, A, D)``,
                ``nan`` (or ``missing``) where not evaluated; and the axes:
                ``"iou_thresholds"``, ``"recall_thresholds"``, ``"max_detections"``,
                ``"area_ranges"``, ``"class_names"``. ``K`` is 1 when class-agnostic.
            ``"per_image"`` : list of dict, with ``per_image=True``
                For each image in arrival order: ``"image_id"`` (its id, else its
                arrival index) and, for each of its detections in score order,
                arrays of its ``"row"`` in the ``update()`` array, ``"class_name"``,
                ``"score"``, ``"voc_tp"`` and ``"voc_ignored"`` (the VOC matching),
                ``"kept"`` (within ``coco_max_detections``), and ``"tp"`` and
                ``"ignored"`` ``(n, A, T)``, the COCO matching at each area range and
                IoU threshold (pycocotools' ``evalImgs``; a detection neither is a false
                positive).

            Every float is a Python ``float``; a mean over no class is ``nan``
            (where pycocotools prints -1), or ``missing``.

        Parameters
        ----------
        detailed : bool, default False
            Add pycocotools' precision, recall and score arrays.
        per_image : bool, default False
            Add each image's detections and how they were counted.
        """
        num_classes = self._num_groups
        thresholds = self._coco_thresholds  # (T,)
        num_thresholds = thresholds.shape[0]
        num_ranges = self._area_bounds.shape[0]
        num_levels = self.recall_thresholds.shape[0]
        max_dets = self.max_detections
        if self._class_ids:
            class_ids = np.concatenate(self._class_ids)  # (N,)
            scores = np.concatenate(self._scores)  # (N,)
            ranks = np.concatenate(self._ranks)  # (N,)
            image_index = np.concatenate(self._image_index)  # (N,)
            voc_tp = np.concatenate(self._voc_tp)  # (N,)
            voc_ignored = np.concatenate(self._voc_ignored)  # (N,)
            coco_tp = np.concatenate(self._coco_tp)  # (N, A, T)
            coco_ignored = np.concatenate(self._coco_ignored)  # (N, A, T)
        else:
            class_ids = ranks = image_index = np.zeros(0, dtype=np.int64)
            scores = np.zeros(0)
            voc_tp = voc_ignored = np.zeros(0, dtype=bool)
            coco_tp = coco_ignored = np.zeros((0, num_ranges, num_thresholds), dtype=bool)

        order = self._class_order(class_ids, scores, image_index)  # (N,)
        bounds = np.searchsorted(class_ids[order], np.arange(num_classes + 1), side="left")  # (C+1,)

        ap_50 = np.full(num_classes, np.nan)
        ap_50_voc07 = np.full(num_classes, np.nan)
        ap_coco = np.full((num_ranges, num_classes, num_thresholds), np.nan)  # (A, C, T)
        recall = np.full((len(max_dets), num_ranges, num_classes, num_thresholds), np.nan)  # (D, A, C, T)
        if detailed:
            # pycocotools' eval["precision"] and eval["scores"] (T, R, K, A, M), eval["recall"] (T, K, A, M)
            precision_array = np.full((num_thresholds, num_levels, num_classes, num_ranges, len(max_dets)), np.nan)
            scores_array = np.full_like(precision_array, np.nan)
        num_detections = np.diff(bounds)  # (C,)
        for c in range(num_classes):
            idx = order[bounds[c] : bounds[c + 1]]  # (n_c,) this class, score order
            positives = int(self._num_ground_truth[c])
            if positives > 0:
                cum_tp, envelope = _precision_envelope(voc_tp[idx, None], voc_ignored[idx, None])  # (n_c, 1)
                ap_50[c] = _area_ap(cum_tp, envelope, positives)[0]
                levels = _voc07_level_counts(positives)  # (11,)
                ap_50_voc07[c] = _level_values(cum_tp, envelope, levels)[0].sum(axis=1)[0] / levels.shape[0]
            for a in range(num_ranges):
                positives = int(self._num_in_range[a, c])
                if positives == 0 or (a > 0 and not self._areas_known):
                    continue
                level_counts = self._coco_level_counts(positives)
                for d, limit in enumerate(max_dets):
                    kept = idx[ranks[idx] < limit]  # (n_k,)
                    recall[d, a, c] = coco_tp[kept, a].sum(axis=0) / positives  # (T,)
                    last = d == len(max_dets) - 1
                    if not (detailed or last):
                        continue
                    cum_tp, envelope = _precision_envelope(coco_tp[kept, a], coco_ignored[kept, a])  # (n_k, T)
                    values, first, reached = _level_values(cum_tp, envelope, level_counts)  # (T, R) each
                    if last:
                        ap_coco[a, c] = values.sum(axis=1) / num_levels
                    if detailed:
                        precision_array[:, :, c, a, d] = values
                        scores_array[:, :, c, a, d] = np.where(reached, scores[kept][first], 0.0) if kept.size else 0.0
        ap_50_95 = ap_coco[0].mean(axis=1)  # (C,), nan where no ground truth

        evaluated = self._num_ground_truth > 0  # (C,)
        names = self._group_names
        per_class = {
            name: {
                "ap_50": float(ap_50[c]),
                "ap_50_voc07": float(ap_50_voc07[c]),
                "ap_50_95": float(ap_50_95[c]),
                "num_ground_truth": int(self._num_ground_truth[c]),
                "num_difficult": int(self._num_difficult[c]),
                "num_crowd": int(self._num_crowd[c]),
                "num_detections": int(num_detections[c]),
                "coco": self._summary(ap_coco[:, c : c + 1], recall[:, :, c : c + 1]),
            }
            for c, name in enumerate(names)
        }
        coco = self._summary(ap_coco, recall)
        result: dict[str, Any] = {
            "map_50": _mean(ap_50[evaluated]),
            "map_50_voc07": _mean(ap_50_voc07[evaluated]),
            "map_50_95": coco["map"],
            "map_per_iou": {
                round(float(t), 10): _finite_mean(ap_coco[0, :, i]) for i, t in enumerate(self.iou_thresholds)
            },
            "coco": coco,
        }
        result.update((key, value) for key, value in coco.items() if key != "map_50")
        result["per_class"] = per_class
        result["num_images"] = self._num_images
        if detailed:
            result["detailed"] = {
                "precision": precision_array,
                "recall": recall.transpose(3, 2, 1, 0).copy(),  # (T, C, A, D)
                "scores": scores_array,
                "iou_thresholds": self.iou_thresholds.copy(),
                "recall_thresholds": self.recall_thresholds.copy(),
                "max_detections": list(max_dets),
                "area_ranges": dict(self.area_ranges),
                "class_names": list(names),
            }
        if per_image:
            result["per_image"] = self._per_image(class_ids, scores, ranks, image_index, voc_tp, voc_ignored,
                                                  coco_tp, coco_ignored, names)
        if self.missing == -1:
            result = _nan_to(result, -1.0)
        return result

    def _per_image(self, class_ids: np.ndarray, scores: np.ndarray, ranks: np.ndarray, image_index: np.ndarray,
                   voc_tp: np.ndarray, voc_ignored: np.ndarray, coco_tp: np.ndarray, coco_ignored: np.ndarray,
                   names: Sequence[str]) -> list[dict[str, Any]]:
        """Each image's detections and how they were counted (pycocotools' ``evalImgs``, per image)."""
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, dtype=np.int64)  # (N,)
        by_image = np.argsort(image_index, kind="stable")  # (N,), each image's in score order
        bounds = np.searchsorted(image_index[by_image], np.arange(self._num_images + 1), side="left")
        cap = math.inf if self.coco_max_detections is None else self.coco_max_detections
        images = []
        for i in range(self._num_images):
            idx = by_image[bounds[i] : bounds[i + 1]]
            images.append({
                "image_id": self._image_ids[i] if self._ids_given else i,
                "row": rows[idx],
                "class_name": [names[c] for c in class_ids[idx]],
                "score": scores[idx],
                "voc_tp": voc_tp[idx],
                "voc_ignored": voc_ignored[idx],
                "kept": ranks[idx] < cap,
                "tp": coco_tp[idx],
                "ignored": coco_ignored[idx],
            })
        return images

    def _coco_level_counts(self, positives: int) -> np.ndarray:
        """The fewest true positives (R,) whose recall reaches each recall threshold, in pycocotools' floats.

        pycocotools compares the float recall ``tp / N`` with its float levels; ``k / N`` rises
        with ``k``, so the first ``k`` with ``k / N >= level`` gives the same answer for every rank.
        """
        recalls = np.arange(positives + 1) / positives  # (N+1,), the float recall of k true positives
        return np.searchsorted(recalls, self.recall_thresholds, side="left")  # (R,), N+1 where unreachable

    def _class_order(self, class_ids: np.ndarray, scores: np.ndarray, image_index: np.ndarray) -> np.ndarray:
        """Indices (N,) that sort the detections by class, then score (descending), ties by image id when
        update() was given them (pycocotools' order), then in arrival order."""
        if not self._ids_given or not self._image_ids:
            return np.lexsort((-scores, class_ids))  # stable: ties in arrival order
        keys = np.asarray(self._image_ids)
        by_id = np.argsort(keys, kind="stable")
        if np.any(keys[by_id][1:] == keys[by_id][:-1]):
            repeated = keys[by_id][1:][keys[by_id][1:] == keys[by_id][:-1]][0]
            raise InputError(
                f"DetectionMetric.update was given the image id {repeated.item()!r} for more than one image; "
                "image ids must be unique (give each image once)."
            )
        image_rank = np.empty(keys.shape[0], dtype=np.int64)
        image_rank[by_id] = np.arange(keys.shape[0])
        return np.lexsort((image_rank[image_index], -scores, class_ids))

    def _summary(self, ap: np.ndarray, recall: np.ndarray) -> dict[str, float]:
        """COCO's summary from AP (A, C', T) and recall (D, A, C', T), nan where not evaluated.

        Each is a mean over the evaluated classes of a mean over thresholds (and recall
        levels), which is pycocotools' mean over every entry that is not -1. The AP numbers
        and the recall by size use the last of ``max_detections``, as pycocotools' 100.
        """
        t50 = np.flatnonzero(self.iou_thresholds == 0.5)  # pycocotools' `iouThr == p.iouThrs`
        t75 = np.flatnonzero(self.iou_thresholds == 0.75)
        sizes = list(self.area_ranges)[1:]
        summary = {
            "map": _finite_mean(ap[0]),
            "map_50": _finite_mean(ap[0][:, t50]),
            "map_75": _finite_mean(ap[0][:, t75]),
        }
        summary.update((f"map_{name}", _finite_mean(ap[a])) for a, name in enumerate(sizes, 1))
        summary.update((key, _finite_mean(recall[d, 0])) for d, key in enumerate(self._mar_names))
        summary.update((f"mar_{name}", _finite_mean(recall[-1, a])) for a, name in enumerate(sizes, 1))
        return summary

    # ------------------------------------------------------- curves and plots

    def precision_recall(self) -> dict[str, dict[str, np.ndarray]]:
        """The VOC precision–recall curve (IoU 0.5) of each class.

        Returns
        -------
        dict of str to dict
            For each class name: ``"recall"``, ``"precision"`` and ``"score"``,
            arrays ``(n,)`` over the class's detections in score order, ignored
            ones (on difficult objects and crowd regions) left out, and
            ``"envelope"``, the precision made monotonically decreasing from the
            right, whose area under the recall steps is ``ap_50``. Empty for a
            class without detections; ``recall`` is ``nan`` for a class without
            ground truth.
        """
        if self._class_ids:
            class_ids = np.concatenate(self._class_ids)
            scores = np.concatenate(self._scores)
            voc_tp = np.concatenate(self._voc_tp)
            voc_ignored = np.concatenate(self._voc_ignored)
            image_index = np.concatenate(self._image_index)
        else:
            class_ids, scores, image_index = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
            voc_tp = voc_ignored = np.zeros(0, dtype=bool)
        order = self._class_order(class_ids, scores, image_index)
        bounds = np.searchsorted(class_ids[order], np.arange(self._num_groups + 1), side="left")
        curves = {}
        for c, name in enumerate(self._group_names):
            idx = order[bounds[c] : bounds[c + 1]]
            idx = idx[~voc_ignored[idx]]  # (n,) counted detections in score order
            cum_tp = np.cumsum(voc_tp[idx])  # (n,)
            precision = cum_tp / np.arange(1, idx.size + 1)  # (n,)
            positives = int(self._num_ground_truth[c])
            curves[name] = {
                "recall": cum_tp / positives if positives else np.full(idx.size, np.nan),
                "precision": precision,
                "envelope": np.maximum.accumulate(precision[::-1])[::-1],
                "score": scores[idx],
            }
        return curves

    def plot_precision_recall(self, path: PathLike) -> None:
        """Draw :meth:`precision_recall` into a PNG at ``path``: one panel per class, written atomically.

        Each panel shows the precision at each rank (thin) and its envelope (thick), with
        the class's ``ap_50`` and its number of objects in the title.
        """
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        curves = self.precision_recall()
        scores = self.compute()["per_class"]
        panels = self._num_groups
        columns = math.ceil(math.sqrt(panels))
        rows = math.ceil(panels / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
        for panel in axes.ravel()[panels:]:
            panel.set_visible(False)
        for panel, (name, curve) in zip(axes.ravel(), curves.items()):
            if curve["precision"].size:
                recall = np.concatenate([[0.0], curve["recall"]])
                panel.plot(recall[1:], curve["precision"], linewidth=0.8, alpha=0.5, color="tab:blue")
                panel.step(recall, np.concatenate([curve["envelope"][:1], curve["envelope"]]), where="pre",
                           linewidth=1.8, color="tab:blue")
            else:  # a class without detections has no curve
                panel.text(0.5, 0.5, "no detections", ha="center", va="center", fontsize=9, color="gray")
            values = scores[name]
            ap = "n/a" if math.isnan(values["ap_50"]) else f"{values['ap_50']:.3f}"
            panel.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                      title=f"{name}: AP@0.5 {ap} ({values['num_ground_truth']} objects)")
            panel.title.set_fontsize(9)
            panel.grid(alpha=0.3)
        figure.tight_layout()
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        plt.close(figure)


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


def _increasing(value: Any, name: str, *, integers: bool = False, low: float = 0.0) -> np.ndarray:
    """``value`` as a non-empty 1-d float64 array, non-decreasing (strictly increasing for ``integers``),
    finite, in [``low``, 1] (or of integers >= 1); else :class:`InputError` naming ``name``."""
    what = "increasing integers >= 1" if integers else f"non-decreasing floats in [{low:g}, 1]"
    try:
        if isinstance(value, (str, bytes)) or any(isinstance(v, bool) for v in value):
            raise TypeError
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros((0, 0))
    good = array.ndim == 1 and array.size > 0 and bool(np.all(np.isfinite(array)))
    if good and integers:
        good = bool(np.all(array == np.floor(array)) and np.all(array >= 1) and np.all(np.diff(array) > 0))
    elif good:
        good = bool(np.all(array >= low) and np.all(array <= 1) and np.all(np.diff(array) >= 0))
    if not good:
        raise InputError(f"The '{name}' argument of DetectionMetric must be a non-empty sequence of {what}; "
                         f"got {value!r} instead.")
    return array


def _area_ranges(value: Any) -> dict[str, tuple[float, float]]:
    """Check COCO-style area ranges: a mapping of distinct names to ``(low, high)`` areas, low <= high."""
    ranges: dict[str, tuple[float, float]] = {}
    good = isinstance(value, Mapping) and len(value) > 0
    if good:
        for name, bounds in value.items():
            try:
                low, high = (float(v) for v in bounds)
            except (TypeError, ValueError):
                good = False
                break
            if not (isinstance(name, str) and name.isidentifier() and 0 <= low <= high and not math.isnan(high)):
                good = False
                break
            ranges[name] = (low, high)
    if not good:
        raise InputError(
            "The 'area_ranges' argument of DetectionMetric must be a non-empty mapping of names (identifiers, "
            "such as 'all' or 'small') to (low, high) areas in pixels, 0 <= low <= high; got "
            f"{value!r} instead."
        )
    return ranges


def _corners(boxes: np.ndarray, box_format: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (..., 4) in ``box_format`` as corners (..., 4), their areas (...) and signed areas (...).

    ``"xyxy"``: the corners themselves, area ``(right - left) * (bottom - top)``.
    ``"xywh"``: ``(x, y, x + w, y + h)``, area ``w * h``, as pycocotools' ``bbIou``.
    ``"voc"``: the corners, area ``(right - left + 1) * (bottom - top + 1)``, as the VOC devkit.
    The area is 0 for a box of negative extent; the signed area is the plain product
    (negative for a box inverted along one axis, as pycocotools' ``w * h``).
    """
    if box_format == "xywh":
        width, height = boxes[..., 2], boxes[..., 3]
        corners = np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)
    else:
        plus = 1.0 if box_format == "voc" else 0.0
        width = boxes[..., 2] - boxes[..., 0] + plus
        height = boxes[..., 3] - boxes[..., 1] + plus
        corners = boxes
    return corners, np.maximum(width, 0) * np.maximum(height, 0), width * height


def _box_overlaps(
    boxes_a: np.ndarray, area_a: np.ndarray, boxes_b: np.ndarray, area_b: np.ndarray, plus: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """IoU, and intersection over the area of the ``boxes_a`` box, of every box of ``boxes_a``
    (..., A, 4) with every box of ``boxes_b`` (..., B, 4); returns two arrays (..., A, B).

    Corners ``(left, top, right, bottom)`` with their areas ``area_a`` (..., A) and
    ``area_b`` (..., B) (see :func:`_corners`); the intersection's width is
    ``min(right) - max(left) + plus`` (``plus`` 1 for the VOC devkit's pixels, else 0).
    Boxes of zero or negative extent have area 0; a pair with zero union has IoU 0,
    a box of zero area intersects nothing. The second is pycocotools' overlap with a
    crowd region (``iscrowd``): the intersection over the detection's area. The
    operations are those of pycocotools' ``bbIou`` and the devkit's ``VOCevaldet.m``, in
    their order, so that IoUs at a threshold compare as there.
    """
    a = boxes_a[..., :, None, :]  # (..., A, 1, 4)
    b = boxes_b[..., None, :, :]  # (..., 1, B, 4)
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + plus  # (..., A, B)
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + plus  # (..., A, B)
    intersection = np.maximum(width, 0) * np.maximum(height, 0)  # (..., A, B)
    area_a = area_a[..., :, None]  # (..., A, 1)
    area_b = area_b[..., None, :]  # (..., 1, B)
    union = area_a + area_b - intersection  # (..., A, B)
    iou = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
    area_a = np.broadcast_to(area_a, intersection.shape)
    ioa = np.divide(intersection, area_a, out=np.zeros_like(intersection), where=area_a > 0)
    return iou, ioa


def _match_reaching(iou: np.ndarray, thresholds: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """:func:`_coco_greedy_match` run on the detections that reach some object at the lowest threshold.

    ``iou`` (b, K, M) holds -1 where a detection may not take an object; ``allowed``
    (b, T, K, M), optional, narrows that per threshold. Returns (b, T, K) bool. Most
    detections reach nothing; the matching runs on the others alone, in score order,
    and is scattered back.
    """
    num_images, num_dets, _ = iou.shape
    matched = np.zeros((num_images, thresholds.shape[0], num_dets), dtype=bool)  # (b, T, K)
    reach = iou.max(axis=2) >= thresholds.min()  # (b, K)
    if allowed is not None:
        reach &= allowed.any(axis=(1, 3))
    if not np.any(reach):
        return matched
    num_reach = reach.sum(axis=1)  # (b,)
    width = int(num_reach.max())
    position = np.argsort(~reach, axis=1, kind="stable")[:, :width]  # (b, W), reaching ones first
    in_use = np.arange(width)[None, :] < num_reach[:, None]  # (b, W)
    # The columns past an image's count hold detections that reach nothing: harmless.
    sub_iou = np.take_along_axis(iou, position[..., None], axis=1)  # (b, W, M)
    sub_allowed = None
    if allowed is not None:
        sub_allowed = np.take_along_axis(allowed, position[:, None, :, None], axis=2)  # (b, T, W, M)
    found = _coco_greedy_match(sub_iou, thresholds, sub_allowed)  # (b, T, W)
    image, column = np.nonzero(in_use)  # (n,), (n,)
    matched[image, :, position[image, column]] = found[image, :, column]  # (n, T)
    return matched


def _coco_greedy_match(iou: np.ndarray, thresholds: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """pycocotools' greedy matching, for every image and IoU threshold at once.

    Parameters
    ----------
    iou : numpy.ndarray, shape (b, K, M)
        IoU of each image's detections, in score order, with the objects they may match
        (-1 where they may not: another class, padding, a difficult object).
    thresholds : numpy.ndarray, shape (T,)
    allowed : numpy.ndarray of bool, shape (b, T, K, M), optional
        Where a detection may take an object at each threshold (default: everywhere).

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
    if allowed is not None:
        over &= allowed.transpose(3, 0, 1, 2)  # (M, b, T, K)
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


def _level_values(
    cum_tp: np.ndarray, envelope: np.ndarray, level_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The envelope at the first rank reaching each recall level, as pycocotools' ``accumulate``.

    Parameters
    ----------
    cum_tp, envelope : numpy.ndarray, shape (n, T)
        From :func:`_precision_envelope`.
    level_counts : numpy.ndarray of int, shape (L,)
        For each recall level, the fewest true positives that reach it.

    Returns
    -------
    values : numpy.ndarray, shape (T, L)
        The envelope there, 0 where the level is never reached; AP is its mean over ``L``.
    first : numpy.ndarray of int, shape (T, L)
        That rank (clipped to ``n - 1``; 0 when ``n = 0``).
    reached : numpy.ndarray of bool, shape (T, L)
        Whether the level is reached. One integer ``searchsorted`` serves all columns.
    """
    num_ranks, num_columns = cum_tp.shape
    if num_ranks == 0:
        zeros = np.zeros((num_columns, level_counts.shape[0]), dtype=np.int64)
        return zeros.astype(np.float64), zeros, zeros.astype(bool)
    stride = int(max(cum_tp.max(), level_counts.max())) + 1  # column t's values lie in [t * stride, (t+1) * stride)
    column = np.arange(num_columns)[:, None]  # (T, 1)
    keys = (cum_tp.T + column * stride).ravel()  # (T * n,), sorted: cum_tp never decreases
    queries = column * stride + level_counts[None, :]  # (T, L)
    first = np.searchsorted(keys, queries, side="left") - column * num_ranks  # (T, L), rank in its column
    reached = first < num_ranks
    first = np.minimum(first, num_ranks - 1)
    values = envelope.T[column, first]  # (T, L)
    return np.where(reached, values, 0.0), first, reached


def _nan_to(value: Any, missing: float) -> Any:
    """``value`` (the result of compute) with every ``nan`` float, and array entry, replaced by ``missing``."""
    if isinstance(value, dict):
        return {key: _nan_to(item, missing) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return missing
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return np.where(np.isnan(value), missing, value)
    return value


def _mean(values: np.ndarray) -> float:
    """Mean of ``values`` (n,) as a Python float; ``nan`` for no values, without a warning."""
    return float(values.mean()) if values.size else math.nan


def _finite_mean(values: np.ndarray) -> float:
    """Mean of the entries of ``values`` that are not ``nan`` (pycocotools' ``mean(s[s > -1])``); ``nan`` if none."""
    return _mean(values[~np.isnan(values)])
