"""Detections files: COCO results JSON and Pascal VOC per-class results, read, written and scored.

A COCO results file is a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}`` in pixels (what pycocotools' ``COCO.loadRes`` reads). Pascal VOC results are one
file a class, ``comp4_det_test_<class>.txt``, each line ``<image id> <score> <xmin> <ymin>
<xmax> <ymax>`` in the devkit's 1-based inclusive pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._base import PathLike, atomic_path, json_text, load_json_file
from ..data._truth import GroundTruth, TruthImage, load_truth
from ..errors import DataError, InputError
from ._metric import DetectionMetric

__all__ = ["evaluate_detections"]

#: Images scored together in one DetectionMetric.update call.
_CHUNK = 128


def to_truth_format(rows: np.ndarray, image: TruthImage, box_format: str) -> np.ndarray:
    """Detections (K, 6) ``[class_id, score, xmin, ymin, xmax, ymax]`` normalised to [0, 1] (the
    network's, float32) as (K, 6) float64 with the box in pixels of ``image`` in ``box_format``.

    The pixel corners are ``float64(v) * width`` (``* height``), as :meth:`SSDDetector.predict`
    computes them, so that a file written by ``detkit predict --format coco-json`` holds the same numbers.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    scale = np.array([image.width, image.height, image.width, image.height], dtype=np.float64)
    corners = rows[:, 2:6] * scale  # (K, 4)
    out = rows.copy()
    out[:, 2:6] = _from_corners(corners, box_format)
    return out


def _from_corners(corners: np.ndarray, box_format: str) -> np.ndarray:
    """Continuous pixel corners (K, 4) in ``box_format``."""
    if box_format == "xywh":
        return np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
    if box_format == "voc":
        return np.concatenate([corners[:, :2] + 1, corners[:, 2:]], axis=1)
    return corners


def _to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """Boxes (K, 4) in ``box_format`` as COCO's ``[x, y, w, h]``."""
    if box_format == "xywh":
        return boxes
    plus = 1.0 if box_format == "voc" else 0.0
    return np.concatenate([boxes[:, :2] - plus, boxes[:, 2:] - boxes[:, :2] + plus], axis=1)


def _from_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes (K, 4) in ``box_format``."""
    if box_format == "xywh":
        return boxes
    if box_format == "voc":
        return np.concatenate([boxes[:, :2] + 1, boxes[:, :2] + boxes[:, 2:]], axis=1)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _from_voc(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """VOC devkit boxes (K, 4) (1-based inclusive corners) in ``box_format``."""
    if box_format == "voc":
        return boxes
    corners = np.concatenate([boxes[:, :2] - 1, boxes[:, 2:]], axis=1)
    return _from_corners(corners, box_format)


# ------------------------------------------------------------------- writing


def coco_results(image_ids: Sequence[Any], category_ids: Sequence[Any], detections: Sequence[np.ndarray],
                 box_format: str) -> list[dict[str, Any]]:
    """COCO results entries (boxes ``[x, y, w, h]`` in pixels) of ``detections``: one (K, 6) array
    ``[class_id, score, box in box_format]`` an image, with the image's id of ``image_ids`` and the
    category id of each class in ``category_ids``.

    Raises :class:`~detkit.errors.InputError` if a row holds NaN or infinity (a diverged
    detector): COCO results have no place for a non-finite number.
    """
    entries = []
    for image_id, rows in zip(image_ids, detections):
        if not np.isfinite(rows).all():
            raise InputError(
                f"The detections of image {image_id!r} hold NaN or infinite values: the detector's weights have "
                "diverged, or overflow on this image. Retrain with a lower learning rate.")
        boxes = _to_xywh(rows[:, 2:6], box_format)
        for row, box in zip(rows, boxes):
            entries.append({"image_id": image_id, "category_id": category_ids[int(row[0])],
                            "bbox": [float(v) for v in box], "score": float(row[1])})
    return entries


def check_results_path(path: PathLike, inputs: Sequence[PathLike] = ()) -> Path:
    """``path`` as a COCO results file to write: ending in ``.json``, and none of ``inputs``
    (the command's own inputs, a dataset's evaluation sidecar included)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InputError(f"A COCO detections file must end in .json; got {str(path)!r}.")
    target = path.resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise InputError(f"The detections file {str(path)!r} is an input of this command ({source}); "
                             "write the detections to another file.")
    return path


def write_coco_results(path: PathLike, entries: list[dict[str, Any]]) -> Path:
    """Write COCO results ``entries`` to the JSON file ``path``, atomically; returns the path.

    Floats are written as Python's shortest round-trip form, so reading the file gives the
    same float64 numbers back.
    """
    path = check_results_path(path)
    # A non-finite score or box is an error (ValueError), never null: pycocotools reads no null number.
    text = json_text(entries, finite=True, separators=(",", ":"))
    with atomic_path(path) as staged:
        staged.write_text(text + "\n", encoding="utf-8")
    return path


def coco_ids_for(images: Sequence[PathLike], classes: Sequence[str],
                 annotations: PathLike | None) -> tuple[list[Any], list[Any]]:
    """The COCO image id of each image file, and the category id of each class.

    From ``annotations`` (a COCO JSON file, a packed ``.rec`` with its sidecar, a VOC folder)
    by file name; without it, the file's stem (as an integer when it is all digits, as
    COCO's ``000000397133.jpg`` is image 397133) and categories 1, 2, ...
    """
    if annotations is None:
        stems = [Path(image).stem for image in images]
        return [int(stem) if stem.isdigit() else stem for stem in stems], list(range(1, len(classes) + 1))
    truth = load_truth(annotations, classes)
    if truth.classes != list(classes):
        raise InputError(f"The classes of {annotations} ({truth.classes}) differ from the detector's "
                         f"{list(classes)}.")
    by_name: dict[str, list[Any]] = {}
    for image in truth.images:
        by_name.setdefault(Path(image.file_name).name, []).append(image.image_id)
    ids = []
    for path in images:
        found = by_name.get(Path(path).name, [])
        if len(found) != 1:
            raise DataError(f"{path}: {'no image' if not found else 'more than one image'} of that file name in "
                            f"{annotations}; give the images that the annotations describe, with their own names")
        ids.append(found[0])
    return ids, list(truth.category_ids)


# ------------------------------------------------------------------- reading


def read_detections(source: PathLike, truth: GroundTruth) -> list[np.ndarray]:
    """The detections of ``source`` for each image of ``truth``: (K, 6) float64 arrays
    ``[class_id, score, box in truth.box_format]``, in file order.

    ``source`` is a COCO results ``.json`` file, or a folder of (or one) VOC results file(s)
    ``*_<class>.txt``. Raises :class:`DataError` naming the file, the entry and the fix.
    """
    path = Path(source)
    if path.is_dir() or path.suffix.lower() == ".txt":
        return _read_voc(path, truth)
    if path.suffix.lower() != ".json":
        raise InputError(f"The detections {str(path)!r} must be a COCO results .json file, or a folder of Pascal "
                         "VOC results files comp4_det_test_<class>.txt.")
    return _read_coco(path, truth)


#: A COCO results file of 100 detections for each of COCO test-dev's 20,288 images is about 200 MB.
_MAX_RESULTS_BYTES = 512 << 20
#: A results file is a list of objects holding a list: three levels.
_MAX_RESULTS_DEPTH = 8


def _read_coco(path: Path, truth: GroundTruth) -> list[np.ndarray]:
    fix = ("a COCO results file is a JSON list of {\"image_id\", \"category_id\", \"bbox\": [x, y, w, h], \"score\"} "
           "as `detkit predict --format coco-json` writes it")
    if not path.is_file():
        raise InputError(f"The detections file {str(path)!r} does not exist; give the path of a COCO results file.")
    # Bounded as every JSON file detkit reads: its size before it is read, its nesting before it is parsed.
    entries = load_json_file(path, what="COCO results file", max_bytes=_MAX_RESULTS_BYTES, max_depth=_MAX_RESULTS_DEPTH,
                             error=lambda why: DataError(f"{path}: {why}; {fix}"))
    if isinstance(entries, dict) and "annotations" in entries:
        raise DataError(f"{path}: this is a COCO annotation file, not a results file; {fix}")
    if not isinstance(entries, list):
        raise DataError(f"{path}: not a JSON list; {fix}")
    image_index = truth.index_of_ids()
    class_of = {c: i for i, c in enumerate(truth.category_ids)}
    per_image: list[list[list[float]]] = [[] for _ in truth.images]
    for k, entry in enumerate(entries):
        where = f"{path}: detection {k}"
        if not isinstance(entry, dict):
            raise DataError(f"{where} is not an object; {fix}")
        image_id = entry.get("image_id")
        if not _hashable(image_id) or image_id not in image_index:
            raise DataError(f"{where}: image_id {image_id!r} is not an image of {truth.source}; detections and "
                            "ground truth must come from the same images (the ids of its annotations)")
        category = entry.get("category_id")
        if not _hashable(category) or category not in class_of:
            raise DataError(f"{where}: category_id {category!r} is not a category of {truth.source} (they are "
                            f"{truth.category_ids})")
        bbox, score = entry.get("bbox"), entry.get("score")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
            raise DataError(f"{where}: 'bbox' must be [x, y, width, height], four finite numbers; got {bbox!r}")
        if not _finite(score):
            raise DataError(f"{where}: 'score' must be a finite number; got {score!r}")
        per_image[image_index[image_id]].append([class_of[category], float(score),  # type: ignore[arg-type]
                                                  *(float(v) for v in bbox)])
    out = []
    for rows in per_image:
        array = np.array(rows, dtype=np.float64).reshape(-1, 6)
        array[:, 2:6] = _from_xywh(array[:, 2:6], truth.box_format)
        out.append(array)
    return out


def _read_voc(path: Path, truth: GroundTruth) -> list[np.ndarray]:
    if path.is_dir():
        files = {}
        for name in truth.classes:
            found = sorted(path.glob(f"*_det_*_{name}.txt"))
            if len(found) > 1:
                raise DataError(f"{path}: more than one results file for the class {name!r} "
                                f"({', '.join(p.name for p in found)}); keep one per class")
            if found:
                files[name] = found[0]
        if not files:
            raise DataError(f"{path}: no Pascal VOC results files (comp4_det_test_<class>.txt for a class of "
                            f"{truth.classes})")
    else:
        names = [name for name in truth.classes if path.name.endswith(f"_{name}.txt")]
        if not path.is_file() or not names:
            raise DataError(f"{path}: not a Pascal VOC results file comp4_det_test_<class>.txt of a class of "
                            f"{truth.classes}")
        files = {max(names, key=len): path}
    image_index = {str(image.image_id): i for i, image in enumerate(truth.images)}
    per_image: list[list[list[float]]] = [[] for _ in truth.images]
    for name, file in files.items():
        c = truth.classes.index(name)
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{file}: cannot be read ({error})") from None
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{file}: line {number}"
            try:
                values = [float(v) for v in fields[1:]]
            except ValueError:
                values = []
            if len(fields) != 6 or len(values) != 5 or not all(math.isfinite(v) for v in values):
                raise DataError(f"{where}: expected '<image id> <score> <xmin> <ymin> <xmax> <ymax>' (numbers "
                                f"finite); got {line.strip()[:80]!r}")
            if fields[0] not in image_index:
                raise DataError(f"{where}: image {fields[0]!r} is not an image of {truth.source}; detections and "
                                "ground truth must come from the same images")
            per_image[image_index[fields[0]]].append([c, *values])
    out = []
    for rows in per_image:
        array = np.array(rows, dtype=np.float64).reshape(-1, 6)
        array[:, 2:6] = _from_voc(array[:, 2:6], truth.box_format)
        out.append(array)
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _hashable(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


# ------------------------------------------------------------------- scoring


def score_detections(truth: GroundTruth, detections: Sequence[np.ndarray],
                     metric: DetectionMetric) -> DetectionMetric:
    """Feed ``truth`` and ``detections`` (one (K, 6) array an image, boxes in ``truth.box_format``)
    to ``metric`` (made for ``truth.box_format``), chunk by chunk, with the image ids."""
    pixels = truth.box_format == "xyxy"  # boxes in pixels already: image_size 1 x 1
    for start in range(0, len(truth.images), _CHUNK):
        images = truth.images[start:start + _CHUNK]
        rows = detections[start:start + _CHUNK]
        b = len(images)
        m = max([1, *(len(image.objects) for image in images)])
        k = max([1, *(len(r) for r in rows)])
        labels = np.full((b, m, 5), -1.0)
        flags = np.zeros((b, m))
        areas = np.full((b, m), np.nan)
        dets = np.full((b, k, 6), -1.0)
        for i, (image, image_rows) in enumerate(zip(images, rows)):
            n = len(image.objects)
            labels[i, :n] = image.objects[:, :5]
            flags[i, :n] = image.objects[:, 5]
            areas[i, :n] = image.objects[:, 6]
            dets[i, :len(image_rows)] = image_rows
        metric.update(dets, labels, flags == 1, crowd=flags == 2, areas=areas,
                      image_size=np.ones((b, 2)) if pixels else None,
                      image_ids=[image.image_id for image in images])
    return metric


def coco_options(
    *,
    iou_thresholds: Sequence[float] | None = None,
    max_detections: Sequence[int] | None = None,
    recall_thresholds: Sequence[float] | None = None,
    area_ranges: Mapping[str, Sequence[float]] | None = None,
    class_agnostic: bool = False,
    missing: float = math.nan,
) -> dict[str, Any]:
    """COCOeval's parameters as keyword arguments of :class:`DetectionMetric`, checked as it checks them.

    The one place that gathers and checks them for :func:`evaluate`, :func:`evaluate_detections`,
    ``detkit evaluate`` and the ``eval:`` configuration section. Raises :class:`InputError` naming
    the argument (``The 'NAME' argument of DetectionMetric must be ...``).
    """
    options: dict[str, Any] = dict(
        iou_thresholds=iou_thresholds, max_detections=max_detections, recall_thresholds=recall_thresholds,
        area_ranges=area_ranges, class_agnostic=class_agnostic, missing=missing,
    )
    DetectionMetric(1, **options)  # its checks and messages, before any data is read
    return options


def metric_for(truth: GroundTruth, options: Mapping[str, Any]) -> DetectionMetric:
    """A DetectionMetric for ``truth`` (its classes and box format) with COCOeval's ``options``."""
    return DetectionMetric(len(truth.classes), truth.classes, box_format=truth.box_format, **options)


def evaluate_detections(
    detections: PathLike,
    data: Any,
    *,
    classes: Sequence[str] | None = None,
    iou_thresholds: Sequence[float] | None = None,
    max_detections: Sequence[int] | None = None,
    recall_thresholds: Sequence[float] | None = None,
    area_ranges: Mapping[str, Sequence[float]] | None = None,
    class_agnostic: bool = False,
    missing: float = math.nan,
    detailed: bool = False,
    plot: PathLike | None = None,
) -> dict[str, Any]:
    """Score a detections file against ground truth, as pycocotools and the VOC devkit would.

    Parameters
    ----------
    detections : str or os.PathLike
        A COCO results JSON file (a list of ``{"image_id", "category_id", "bbox":
        [x, y, w, h], "score"}`` in pixels, as ``detkit predict --format coco-json``
        and ``detkit evaluate --save-detections`` write it), or a folder of Pascal VOC
        results files ``comp4_det_test_<class>.txt`` (lines ``<image id> <score>
        <xmin> <ymin> <xmax> <ymax>``, 1-based pixels), or one such file.
    data : str, os.PathLike or DetectionDataset
        The ground truth: a COCO annotation JSON file, a folder of Pascal VOC XML
        files (or a VOC year folder with ``Annotations/``), or a ``.rec`` written by
        ``detkit data pack`` (exact through its ``PREFIX.eval.json`` sidecar; without
        one, from the ``.rec``'s float32 boxes, image ids being record positions and
        category ids 1, 2, ...).
    classes : sequence of str, optional
        For a ``.rec`` without a class list beside it, or to order a VOC folder's classes.
    iou_thresholds, max_detections, recall_thresholds, area_ranges, class_agnostic, missing
        COCOeval's parameters, as :class:`DetectionMetric` takes them.
    detailed : bool, default False
        Also return pycocotools' arrays under ``"detailed"`` (see :meth:`DetectionMetric.compute`).
    plot : str or os.PathLike, optional
        Also draw each class's precision–recall curve (IoU 0.5) into this PNG, written atomically.

    Returns
    -------
    dict
        What :func:`detkit.evaluate` returns.

    Raises
    ------
    detkit.errors.DataError
        For a malformed detections or ground-truth file, a detection of an image or
        category the ground truth does not have, or a stale sidecar; the message names
        the file, the entry and the fix.
    """
    options = coco_options(iou_thresholds=iou_thresholds, max_detections=max_detections,
                           recall_thresholds=recall_thresholds, area_ranges=area_ranges,
                           class_agnostic=class_agnostic, missing=missing)
    if hasattr(data, "rec_path") and hasattr(data, "classes"):
        from ..data._truth import rec_truth

        truth = rec_truth(data)
    else:
        truth = load_truth(data, classes)
    rows = read_detections(detections, truth)
    metric = score_detections(truth, rows, metric_for(truth, options))
    if plot is not None:
        metric.plot_precision_recall(plot)
    return metric.compute(detailed=detailed)
