"""Ground truth for exact evaluation: original pixel boxes, areas, image ids, difficult and crowd marks.

A ``.rec`` stores boxes normalised to [0, 1] in float32, which moves IoUs that sit exactly
on a threshold (a pixel IoU of 0.8 becomes 0.79999997) and areas across the size borders.
``detkit data pack`` therefore writes, beside ``PREFIX.rec``, ``PREFIX.eval.json``: every
packed image's id, file name and size, and its objects as the annotation gave them, in
float64 (COCO's ``[x, y, w, h]`` and ``area``; VOC's 1-based inclusive corners), with the
size and SHA-256 of the ``.rec`` it was written with, so that a sidecar that no longer
belongs to its ``.rec`` is detected. The same :class:`GroundTruth` is read straight from
a COCO JSON file or a folder of VOC XML files, and, approximately, from a ``.rec``
without sidecar.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._base import PathLike, file_digest, json_text, load_json_text
from ..errors import DataError, InputError
from . import _recordio

#: What the sidecar's ``"format"`` says, and its version.
SIDECAR_FORMAT = "detkit-evaluation-ground-truth"
SIDECAR_VERSION = 1
#: The sidecar of ``PREFIX.rec`` is ``PREFIX.eval.json``.
SIDECAR_SUFFIX = ".eval.json"
#: Object flags, as in the ``.rec`` (see :mod:`detkit.data._recordio`).
ORDINARY, DIFFICULT, CROWD = 0, 1, 2


@dataclass(frozen=True)
class TruthImage:
    """One image: its id, file name, size in pixels and objects ``(K, 7)`` float64
    ``[class_id, b0, b1, b2, b3, flag, area]`` (the box in the truth's ``box_format``;
    ``area`` ``nan`` where the box's is meant)."""

    image_id: int | str
    file_name: str
    width: int
    height: int
    objects: np.ndarray


@dataclass(frozen=True)
class GroundTruth:
    """The images of a dataset, in its order, as evaluation needs them.

    ``box_format`` is ``"xywh"`` (COCO, pycocotools' arithmetic), ``"voc"`` (the devkit's
    1-based inclusive corners) or ``"xyxy"`` (continuous corners in pixels: a ``.rec``
    without sidecar, not exact). ``category_ids`` gives each class's id in detections
    files (COCO's ``category_id``; 1, 2, ... for others). ``exact`` says whether the boxes
    are the annotation's own.
    """

    source: str
    classes: list[str]
    category_ids: list[int | str]
    box_format: str
    images: list[TruthImage]
    exact: bool

    def index_of_ids(self) -> dict[Any, int]:
        """Each image id's position in :attr:`images`."""
        return {image.image_id: i for i, image in enumerate(self.images)}


def sidecar_path(rec_path: PathLike) -> Path:
    """``PREFIX.eval.json`` for ``PREFIX.rec``."""
    rec_path = Path(rec_path)
    return rec_path.with_name(rec_path.stem + SIDECAR_SUFFIX)


def sidecar_text(rec_path: Path, rec_name: str, truth: GroundTruth) -> str:
    """The sidecar's JSON for ``truth``, recording the size and digest of the finished ``rec_path``
    (named ``rec_name`` in the sidecar: the staged file is renamed later)."""
    images = []
    for image in truth.images:
        objects = [[int(row[0]), *(float(v) for v in row[1:5]), int(row[5]), float(row[6])]  # no area: NaN, null
                   for row in image.objects]
        images.append({"id": image.image_id, "file_name": image.file_name, "width": image.width,
                       "height": image.height, "objects": objects})
    document = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "rec": {"file": rec_name, "bytes": os.path.getsize(rec_path), "sha256": file_digest(rec_path)},
        "box_format": truth.box_format,
        "classes": truth.classes,
        "category_ids": truth.category_ids,
        "images": images,
    }
    return json_text(document, separators=(",", ":")) + "\n"


def read_sidecar(rec_path: PathLike, classes: Sequence[str], num_records: int) -> GroundTruth | None:
    """The exact ground truth of ``rec_path`` from its sidecar, or None when there is none.

    Raises :class:`DataError` when the sidecar is malformed, or no longer belongs to
    ``rec_path`` (its size or SHA-256 differ: the ``.rec`` was re-packed or changed), naming
    both files and the fix.
    """
    rec_path = Path(rec_path)
    path = sidecar_path(rec_path)
    if not path.is_file():
        return None
    try:
        document = load_json_text(path.read_text(encoding="utf-8"))  # nesting bounded: ValueError
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{path}: cannot be read as the evaluation sidecar of {rec_path} ({error}); re-pack "
                        f"the data with `detkit data pack`, or remove {path.name} to evaluate from the .rec "
                        "alone (not exact)") from None
    fix = (f"re-pack the data with `detkit data pack`, or remove {path.name} to evaluate from the .rec alone "
           "(not exact)")
    if not isinstance(document, dict) or document.get("format") != SIDECAR_FORMAT:
        raise DataError(f"{path}: not a detkit evaluation sidecar (no \"format\": {SIDECAR_FORMAT!r}); {fix}")
    if document.get("version") != SIDECAR_VERSION:
        raise DataError(f"{path}: sidecar version {document.get('version')!r}, this detkit reads version "
                        f"{SIDECAR_VERSION}; {fix}")
    record = document.get("rec")
    if not isinstance(record, dict):
        raise DataError(f"{path}: the sidecar names no .rec file; {fix}")
    size = os.path.getsize(rec_path)
    if record.get("bytes") != size or record.get("sha256") != _rec_digest(rec_path):
        raise DataError(f"{path} is stale: it was written with another {rec_path.name} (its size or SHA-256 "
                        f"differ from the file's now); {fix}")
    try:
        truth = _truth_from_document(document, str(path))
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: malformed evaluation sidecar ({type(error).__name__}: {error}); {fix}") from None
    if truth.classes != list(classes):
        raise DataError(f"{path}: the sidecar's classes {truth.classes} differ from {list(classes)}; {fix}")
    if len(truth.images) != num_records:
        raise DataError(f"{path}: the sidecar describes {len(truth.images)} images but {rec_path} holds "
                        f"{num_records} records; {fix}")
    return truth


#: SHA-256 of the .rec files read in this process, by (path, size, modification time): validation
#: during training reads the same sidecar every epoch.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _rec_digest(rec_path: Path) -> str:
    status = os.stat(rec_path)
    key = (str(rec_path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _DIGESTS:
        if len(_DIGESTS) >= 8:
            _DIGESTS.clear()
        _DIGESTS[key] = file_digest(rec_path)
    return _DIGESTS[key]


def _truth_from_document(document: dict, source: str) -> GroundTruth:
    box_format = document["box_format"]
    if box_format not in ("xywh", "voc", "xyxy"):
        raise ValueError(f"box_format {box_format!r}")
    classes = [str(c) for c in document["classes"]]
    category_ids = list(document["category_ids"])
    if len(category_ids) != len(classes) or not all(_is_id(c) for c in category_ids):
        raise ValueError("category_ids must give one id a class")
    images = []
    for entry in document["images"]:
        if not (_is_id(entry["id"]) and isinstance(entry["file_name"], str)
                and all(isinstance(entry[k], int) and entry[k] > 0 for k in ("width", "height"))):
            raise ValueError(f"image {entry.get('id')!r}: needs an id, a file_name, a positive width and height")
        rows = [[math.nan if v is None else float(v) for v in row] for row in entry["objects"]]
        objects = np.array(rows, dtype=np.float64).reshape(-1, 7)
        if not (np.all(np.isfinite(objects[:, :6])) and np.all(np.isin(objects[:, 5], (0, 1, 2)))
                and np.all((objects[:, 0] >= 0) & (objects[:, 0] < len(classes)) & (objects[:, 0] % 1 == 0))):
            raise ValueError(f"image {entry['id']!r}: objects must be [class_id, 4 box values, flag, area]")
        images.append(TruthImage(entry["id"], entry["file_name"], entry["width"], entry["height"], objects))
    return GroundTruth(source, classes, category_ids, box_format, images, exact=box_format != "xyxy")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# ---------------------------------------------------------------- sources


def coco_truth(json_path: PathLike) -> GroundTruth:
    """The ground truth of a COCO detection JSON file, as pycocotools reads it.

    Every image (file order) with its annotations: the ``bbox`` as given (not clipped),
    ``area`` (else ``w * h``), ``iscrowd`` as a crowd region. Classes are the categories
    sorted by id, as ``detkit data pack`` orders them.
    """
    from ._pack import _is_id as pack_is_id
    from ._pack import _load_coco

    json_path = Path(json_path)
    data = _load_coco(json_path)
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        category_ids = [c["id"] for c in categories]
        classes = [str(c["name"]) for c in categories]
        if not all(pack_is_id(c) for c in category_ids) or len(set(category_ids)) != len(category_ids):
            raise TypeError("ids must be unique integers or strings")
    except (KeyError, TypeError) as error:
        raise DataError(f"{json_path}: invalid 'categories' (each needs a unique 'id' and 'name'): {error}") from None
    class_of = {c: i for i, c in enumerate(category_ids)}
    images: dict[Any, dict] = {}
    for k, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and pack_is_id(image.get("id"))
                and all(isinstance(image.get(key), int) and image[key] > 0 for key in ("width", "height"))):
            raise DataError(f"{json_path}: image {k} needs 'id' (an integer or a string) and positive integer "
                            "'width' and 'height'")
        if image["id"] in images:
            raise DataError(f"{json_path}: image {k} repeats the id {image['id']!r} of another image; ids must be "
                            "unique")
        images[image["id"]] = image
    rows: dict[Any, list] = {image_id: [] for image_id in images}
    for k, ann in enumerate(data["annotations"]):
        where = f"{json_path}: annotation {k}"
        # The id's type first: a list or a mapping is no key of ``images``.
        if not isinstance(ann, dict) or not pack_is_id(ann.get("image_id")) or ann.get("image_id") not in images:
            raise DataError(f"{where}: no image with image_id "
                            f"{ann.get('image_id') if isinstance(ann, dict) else None!r}")
        if not pack_is_id(ann.get("category_id")) or ann.get("category_id") not in class_of:
            raise DataError(f"{where}: unknown category_id {ann.get('category_id')!r}; the categories are "
                            f"{category_ids}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
            raise DataError(f"{where}: 'bbox' must be [x, y, width, height] numbers; got {bbox!r}")
        area = ann.get("area")
        if not (isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area) and area >= 0):
            area = float(bbox[2]) * float(bbox[3])
        flag = CROWD if ann.get("iscrowd") else ORDINARY
        rows[ann["image_id"]].append([class_of[ann["category_id"]], *(float(v) for v in bbox), flag, float(area)])
    truth_images = [
        TruthImage(image_id, str(image.get("file_name", "")), image["width"], image["height"],
                   np.array(rows[image_id], dtype=np.float64).reshape(-1, 7))
        for image_id, image in images.items()
    ]
    return GroundTruth(str(json_path), classes, category_ids, "xywh", truth_images, exact=True)


def voc_truth(annotation_dir: PathLike, classes: Sequence[str] | None = None) -> GroundTruth:
    """The ground truth of a folder of Pascal VOC XML files, as the VOC devkit reads it.

    One image per ``*.xml`` (sorted), its id the file's stem; boxes are the XML's 1-based
    inclusive corners, ``<difficult>`` kept. Classes: ``classes``, else the sorted names found.
    """
    from ._pack import _parse_voc

    folder = Path(annotation_dir)
    if (folder / "Annotations").is_dir():
        folder = folder / "Annotations"
    xml_paths = sorted(folder.glob("*.xml"))
    if not xml_paths:
        raise DataError(f"{folder}: no *.xml annotation files")
    parsed = {path: _parse_voc(path) for path in xml_paths}
    if classes is None:
        classes = sorted({name for _, _, objects in parsed.values() for name, *_ in objects})
    class_of = {name: i for i, name in enumerate(classes)}
    images = []
    for path, (filename, size, objects) in parsed.items():
        rows = []
        for name, box, where, difficult in objects:
            if name not in class_of:
                raise DataError(f"{where}: unknown class {name!r}; the classes are {list(classes)}")
            rows.append([class_of[name], *box, DIFFICULT if difficult else ORDINARY, math.nan])
        width, height = size if size is not None else (1, 1)
        images.append(TruthImage(path.stem, filename or "", width, height,
                                 np.array(rows, dtype=np.float64).reshape(-1, 7)))
    return GroundTruth(str(folder), list(classes), list(range(1, len(classes) + 1)), "voc", images, exact=True)


def rec_truth(dataset: Any) -> GroundTruth:
    """The ground truth of a :class:`DetectionDataset`: its sidecar's when it has one (exact), else its
    records' (boxes from float32 normalised values times each image's size; ids are record positions)."""
    exact = read_sidecar(dataset.rec_path, dataset.classes, len(dataset))
    if exact is not None:
        return exact
    images = []
    size = os.path.getsize(dataset.rec_path)
    with open(dataset.rec_path, "rb") as file:
        sizes = [_image_size(dataset, file, size, index) for index in range(len(dataset))]
    for index, (width, height) in enumerate(sizes):
        objects = dataset.objects(index).astype(np.float64)  # (K, 5)
        objects[:, 1:5] *= [width, height, width, height]
        flags = dataset.flags(index).astype(np.float64)
        areas = dataset.areas(index).astype(np.float64)
        rows = np.concatenate([objects, flags[:, None], areas[:, None]], axis=1)  # (K, 7)
        images.append(TruthImage(index, "", width, height, rows))
    return GroundTruth(str(dataset.rec_path), list(dataset.classes), list(range(1, len(dataset.classes) + 1)),
                       "xyxy", images, exact=False)


def _image_size(dataset: Any, file: Any, size: int, index: int) -> tuple[int, int]:
    """The (width, height) of record ``index``'s image, from its header (the image is not decoded)."""
    from PIL import Image

    data = _recordio.read_record(file, dataset._offsets[index], size, dataset.rec_path, index)
    try:
        with Image.open(io.BytesIO(data[dataset._image_starts[index]:])) as image:
            return image.size
    except Exception as error:  # Pillow raises many types for bad files
        raise DataError(f"{dataset._where(index)}: the image cannot be read "
                        f"({type(error).__name__}: {error})") from None


def load_truth(source: PathLike, classes: Sequence[str] | None = None) -> GroundTruth:
    """Ground truth from a ``.rec`` (its sidecar when present), a COCO JSON file or a VOC folder.

    ``classes`` is needed for a ``.rec`` without a class list beside it, and orders a VOC folder's.
    """
    from ._classes import find_classes, read_classes
    from ._dataset import DetectionDataset

    path = Path(source)
    if path.is_dir():
        return voc_truth(path, classes)
    if path.suffix.lower() == ".json":
        return coco_truth(path)
    if path.suffix.lower() == ".rec":
        listed = find_classes(path)
        names = read_classes(listed) if listed is not None else classes
        if names is None:
            raise InputError(f"{path} has no class list beside it (PREFIX.classes.txt or classes.txt); give the "
                             "classes.")
        return rec_truth(DetectionDataset(path, classes=names))
    if not path.exists():
        raise InputError(f"The ground truth {str(path)!r} does not exist; give a .rec file, a COCO JSON file or a "
                         "folder of Pascal VOC XML files.")
    raise InputError(f"The ground truth {str(path)!r} is neither a .rec file, a COCO .json file nor a folder of "
                     "Pascal VOC XML files.")
