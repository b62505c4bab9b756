"""Packing your own images into detection RecordIO: Pascal VOC XML or a COCO JSON file."""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from tqdm.auto import tqdm

from .._base import PathLike, atomic_outputs, check_classes, load_json_text
from ..errors import DataError, DetkitWarning, InputError
from . import _recordio
from ._classes import write_classes
from ._dataset import DetectionDataset
from ._images import image_to_rgb8
from ._summary import PackSummary
from ._truth import SIDECAR_SUFFIX, GroundTruth, TruthImage, sidecar_text

_JPEG_QUALITY = 95  # as MXNet's im2rec.py
_COCO_TOLERANCE_PX = 1.0  # COCO boxes may pass the image border by rounding; clipped within this


class _Item(NamedTuple):
    """One image to pack: where it came from (for messages), its file, and its objects."""

    source: str
    image_path: Path
    size: tuple[int, int] | None  # (width, height) the annotation states, if any
    objects: list  # [(class_id, xmin, ymin, xmax, ymax)] in pixels, continuous: [0, width] x [0, height]
    wheres: list  # for each object, how messages name it
    flags: Sequence[int] = ()  # for each object: 0 ordinary, 1 difficult, 2 crowd; () all ordinary
    areas: Sequence[float] = ()  # for each object its area in pixels (COCO's "area"); () the boxes'
    #: For the evaluation sidecar: the image id and the objects as the annotation gives them,
    #: image id, file name, rows [class_id, 4 box values in the source's box format, flag, area
    #: (nan: the box's)].
    truth: tuple[Any, str, list] | None = None


def _encoded_image(item: _Item) -> tuple[bytes, int, int]:
    """The bytes to store for an item's image, and its width and height; checks that it decodes."""
    where = f"{item.source}: image {item.image_path}"
    try:
        if not stat.S_ISREG(os.stat(item.image_path).st_mode):  # before opening: a named pipe would block
            raise DataError(f"{where} is not a regular file")
        data = item.image_path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{where} does not exist") from None
    except OSError as error:
        raise DataError(f"{where} cannot be read ({error.strerror or error})") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
            if image.format == "JPEG" and image.mode in ("RGB", "L") and orientation == 1:
                encoded = data  # stored as it is
            else:  # re-encode: one format every reader decodes, without EXIF rotation
                buffer = io.BytesIO()
                image_to_rgb8(image).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
                encoded = buffer.getvalue()
    except Exception as error:  # Pillow raises many types for bad files
        raise DataError(f"{where} cannot be decoded ({type(error).__name__}: {error})") from None
    if item.size is not None and item.size != (width, height):
        raise DataError(
            f"{item.source}: the annotation gives the image size {item.size[0]}x{item.size[1]} but "
            f"{item.image_path} is {width}x{height} (an EXIF rotation?)"
        )
    return encoded, width, height


def _write(
    items: Iterable[_Item | tuple[str, str]],
    total: int,
    out_prefix: PathLike,
    classes: list[str],
    *,
    skip_invalid: bool,
    progress: bool,
    ignored_crowd: int = 0,
    images_used: list[Path] | None = None,
    truth_format: str = "voc",
    category_ids: Sequence[Any] | None = None,
) -> DetectionDataset:
    out_prefix = Path(out_prefix)
    paths = [out_prefix.with_name(out_prefix.name + suffix)
             for suffix in (".rec", ".idx", ".classes.txt", SIDECAR_SUFFIX)]
    skipped: list[tuple[str, str]] = []
    truth_images: list[TruthImage] = []
    images = objects = difficult = crowd = 0
    with atomic_outputs(paths) as (rec_tmp, idx_tmp, classes_tmp, sidecar_tmp):
        with open(rec_tmp, "wb") as rec:
            writer = _recordio.RecordWriter(rec)
            for item in tqdm(items, desc=f"packing {out_prefix.name}", total=total, unit="img", leave=False,
                             dynamic_ncols=True, disable=not progress):
                try:
                    if isinstance(item, tuple) and not isinstance(item, _Item):
                        raise DataError(item[1])  # an annotation error found while reading
                    encoded, width, height = _encoded_image(item)
                    rows = np.array(item.objects, np.float64).reshape(-1, 5)
                    for row, where in zip(rows, item.wheres):
                        if row[3] > width or row[4] > height:  # only when the annotation gave no size
                            raise DataError(f"{where}: box lies outside the {width}x{height} image")
                    # areas in pixels of the original image: the annotation's, else the box's
                    box_areas = (rows[:, 3] - rows[:, 1]) * (rows[:, 4] - rows[:, 2])
                    areas = np.array(item.areas, np.float64) if len(item.areas) else box_areas
                    flags = np.array(item.flags, np.float64) if len(item.flags) else np.zeros(len(rows))
                    rows[:, 1:] /= [width, height, width, height]
                except DataError as error:
                    if not skip_invalid:
                        raise
                    source = item[0] if isinstance(item, tuple) else item.source
                    skipped.append((source, str(error)))
                    continue
                writer.write(images, _recordio.pack_detection(images, encoded, rows, width, height, flags, areas))
                if item.truth is not None:
                    image_id, file_name, truth_rows = item.truth
                    truth_images.append(TruthImage(image_id, file_name, width, height,
                                                   np.array(truth_rows, np.float64).reshape(-1, 7)))
                images += 1
                if images_used is not None:
                    images_used.append(item.image_path)
                objects += len(rows)
                difficult += int(np.sum(flags == _recordio.DIFFICULT))
                crowd += int(np.sum(flags == _recordio.CROWD))
        if images == 0:
            raise DataError(
                f"nothing to pack into {paths[0]}: no valid images"
                + (f" ({len(skipped)} skipped: first: {skipped[0][1]})" if skipped else "")
            )
        with open(idx_tmp, "w", encoding="ascii", newline="\n") as idx:
            writer.write_index(idx)
        write_classes(classes_tmp, classes)
        # The exact ground truth for evaluation, with the digest of the .rec just written.
        ids = list(category_ids) if category_ids is not None else list(range(1, len(classes) + 1))
        truth = GroundTruth(str(paths[0]), list(classes), ids, truth_format, truth_images, exact=True)
        Path(sidecar_tmp).write_text(sidecar_text(Path(rec_tmp), paths[0].name, truth), encoding="utf-8")
    dataset = DetectionDataset(paths[0], paths[1], classes=classes)
    dataset.pack_summary = PackSummary(images, objects, tuple(skipped), ignored_crowd, difficult, crowd)
    return dataset


def file_exists(path: Path) -> bool:
    """Whether ``path`` is a file; False too for a path the file system refuses (a name too long)."""
    try:
        return path.is_file()
    except OSError:
        return False


def shortened(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message, its middle left out when it is longer than ``limit``."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit // 2]!r}...{text[-limit // 4:]!r} ({len(text)} characters)"


def _image_inside(image_dir: Path, name: str, source: str) -> Path:
    """``image_dir / name`` when ``name`` is a relative path that stays inside ``image_dir``.

    Refused otherwise (absolute, ``..``, a drive), with one message whether or
    not the file exists, so that an annotation file cannot read, or learn of,
    files outside the image folder.
    """
    relative = Path(name)
    if relative.is_absolute() or relative.drive or relative.root or ".." in relative.parts or "\0" in name:
        raise DataError(
            f"{source}: the image path {name!r} is not inside the image folder {image_dir}; image paths "
            "must be relative to it, without '..'."
        )
    return image_dir / relative


# ---------------------------------------------------------------- Pascal VOC


def _text(element: ElementTree.Element, tag: str, where: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(element: ElementTree.Element, tag: str, where: str) -> float:
    text = _text(element, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: <{tag}> is not finite: {text!r}")
    return value


def _parse_voc(xml_path: Path) -> tuple[str | None, tuple[int, int] | None, list[tuple[str, tuple, str, bool]]]:
    """``(filename, (width, height) or None, [(class name, (xmin, ymin, xmax, ymax), where, difficult)])``
    of one XML file."""
    if not xml_path.is_file():  # a folder or a pipe named *.xml: a pipe would block the read
        raise DataError(f"{xml_path}: not a regular file")
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise DataError(f"{xml_path}: not valid XML ({error})") from None
    except OSError as error:
        raise DataError(f"{xml_path}: cannot be read ({error.strerror or error})") from None
    filename = root.findtext("filename")
    size = None
    size_element = root.find("size")
    if size_element is not None and size_element.find("width") is not None:
        width = _number(size_element, "width", f"{xml_path}: <size>")
        height = _number(size_element, "height", f"{xml_path}: <size>")
        if width > 0 and height > 0:  # some tools write 0 when they do not know
            size = (int(width), int(height))
    objects = []
    for i, element in enumerate(root.findall("object")):
        where = f"{xml_path}: object {i}"
        name = _text(element, "name", where)
        where = f"{xml_path}: object {i} ({name!r})"
        box_element = element.find("bndbox")
        if box_element is None:
            raise DataError(f"{where}: missing <bndbox>")
        box = tuple(_number(box_element, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (element.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise DataError(f"{where}: <difficult> must be 0 or 1; got {difficult!r}")
        objects.append((name, box, where, difficult == "1"))
    return (filename.strip() if filename else None), size, objects


def _voc_items(xml_paths: list[Path], image_dir: Path, parsed: dict[Path, Any],
               class_ids: dict[str, int]) -> Iterator[_Item | tuple[str, str]]:
    for xml_path in xml_paths:
        result = parsed[xml_path]
        if isinstance(result, DataError):
            yield (str(xml_path), str(result))
            continue
        filename, size, objects = result
        try:
            image_path = _image_inside(image_dir, filename, str(xml_path)) if filename else None
        except DataError as error:
            yield (str(xml_path), str(error))
            continue
        refused = None  # why the file system refused <filename> (a name longer than it allows, ...)
        try:
            found = image_path is not None and image_path.is_file()
        except OSError as error:
            found, refused = False, error.strerror or str(error)
        if not found:
            # <filename> is often missing or stale: try the annotation's own stem
            for suffix in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp"):
                candidate = image_dir / (xml_path.stem + suffix)
                if file_exists(candidate):
                    image_path, refused = candidate, None
                    break
        if refused is not None:
            yield (str(xml_path), f"{xml_path}: the <filename> {shortened(str(filename))} cannot name a file in "
                                  f"{image_dir} ({refused}) and there is no image named {xml_path.stem}.* there; "
                                  "correct <filename>")
            continue
        if image_path is None:
            yield (str(xml_path), f"{xml_path}: no <filename> and no image named {xml_path.stem}.* in {image_dir}")
            continue
        try:
            rows = [_voc_row(name, box, where, size, class_ids) for name, box, where, _ in objects]
        except DataError as error:
            yield (str(xml_path), str(error))
            continue
        flags = [_recordio.DIFFICULT if difficult else _recordio.ORDINARY for *_, difficult in objects]
        truth = [[row[0], *box, flag, math.nan] for row, (_, box, _, _), flag in zip(rows, objects, flags)]
        yield _Item(str(xml_path), image_path, size, rows, [where for _, _, where, _ in objects], flags,
                    truth=(xml_path.stem, image_path.name, truth))


def _voc_row(name: str, box: tuple[float, float, float, float], where: str, size: tuple[int, int],
             class_ids: dict[str, int]) -> tuple[float, ...]:
    if name not in class_ids:
        raise DataError(f"{where}: unknown class {name!r}; the classes are {sorted(class_ids)}")
    xmin, ymin, xmax, ymax = box
    if not (xmin < xmax and ymin < ymax):
        raise DataError(f"{where}: empty box (xmin, ymin, xmax, ymax) = {box} (need xmin < xmax and ymin < ymax)")
    width, height = size if size is not None else (math.inf, math.inf)  # else checked against the image
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        raise DataError(f"{where}: box (xmin, ymin, xmax, ymax) = {box} lies outside the {width}x{height} image")
    # VOC pixel indices are 1-based and inclusive: the box covers [xmin - 1, xmax] (0 is read as 1)
    return (class_ids[name], max(xmin - 1, 0), max(ymin - 1, 0), xmax, ymax)


def pack_voc(
    image_dir: PathLike,
    annotation_dir: PathLike,
    out_prefix: PathLike,
    *,
    classes: Sequence[str] | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
) -> DetectionDataset:
    """Pack a folder of images with Pascal VOC XML annotations into detection RecordIO.

    Every ``*.xml`` in ``annotation_dir`` (sorted by name) becomes one record: the
    image named by its ``<filename>`` in ``image_dir`` (or, failing that, the
    image with the XML file's stem), with every ``<object>``; those marked
    ``<difficult>1</difficult>`` keep the mark (flag 1), so that evaluation
    ignores them as the VOC devkit does and training does not teach "background"
    on them. VOC coordinates are 1-based inclusive pixel indices: a box covers
    ``[xmin - 1, xmax]`` of the image's width; each object's area is its box's
    in pixels. JPEG images are stored as they are, others re-encoded as JPEG
    (quality 95, like ``im2rec.py``).

    Writes ``out_prefix.rec``, ``out_prefix.idx`` and ``out_prefix.classes.txt``
    (one class name a line; class id = line number - 1), all three only when
    packing succeeded.

    Parameters
    ----------
    image_dir, annotation_dir : str or os.PathLike
        The folders (``JPEGImages`` and ``Annotations`` in VOC).
    out_prefix : str or os.PathLike
        Path of the outputs without suffix, e.g. ``data/mine/train``.
    classes : list of str, optional
        The class names in class-id order; an object of another class is an
        error. By default the sorted names found in the annotations: pass them
        explicitly when packing several splits, so that the ids agree.
    skip_invalid : bool
        Leave out an image whose annotation or file is invalid, and list it in
        :attr:`PackSummary.skipped`, instead of raising.
    progress : bool
        Show a progress bar.

    Returns
    -------
    DetectionDataset
        The packed dataset; its ``pack_summary`` is a :class:`PackSummary`.

    Raises
    ------
    detkit.errors.DataError
        Naming the file (and the object index) of a box outside the image, an
        empty box, an unknown class, a missing or undecodable image, bad XML.
    """
    image_dir, annotation_dir = Path(image_dir), Path(annotation_dir)
    for name, folder in (("image_dir", image_dir), ("annotation_dir", annotation_dir)):
        if not folder.is_dir():
            raise InputError(f"The '{name}' argument must be an existing folder; got {str(folder)!r} instead.")
    xml_paths = sorted(annotation_dir.glob("*.xml"))
    if not xml_paths:
        raise DataError(f"{annotation_dir}: no *.xml annotation files")
    parsed = parse_voc_files(xml_paths, skip_invalid=skip_invalid)
    if classes is None:
        names = voc_class_names(parsed)
        if not names:
            raise DataError(f"{annotation_dir}: the annotations name no objects; pass the classes explicitly")
        warn_on_names_equal_but_for_case(names, annotation_dir)
        classes = sorted(names)
    return pack_voc_parsed(xml_paths, image_dir, parsed, out_prefix, classes, skip_invalid=skip_invalid,
                           progress=progress)


def parse_voc_files(xml_paths: Sequence[Path], *, skip_invalid: bool = False) -> dict[Path, Any]:
    """Each VOC XML file parsed (see :func:`_parse_voc`); an invalid one raises, or is kept as its
    :class:`DataError` with ``skip_invalid``."""
    parsed: dict[Path, Any] = {}
    for xml_path in xml_paths:
        try:
            parsed[xml_path] = _parse_voc(xml_path)
        except DataError as error:
            if not skip_invalid:
                raise
            parsed[xml_path] = error
    return parsed


def warn_on_names_equal_but_for_case(names: Iterable[str], where: PathLike) -> None:
    """A :class:`~detkit.errors.DetkitWarning` when class names found in annotations differ only in case."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(name.casefold(), []).append(name)
    twins = [group for group in groups.values() if len(group) > 1]
    if twins:
        listed = "; ".join(" and ".join(repr(name) for name in group) for group in twins)
        warnings.warn(DetkitWarning(
            f"{where}: the annotations name {listed}, which differ only in case: each becomes a class of its own. "
            "If they are one class, give it one spelling in the annotations; passing the classes (--classes) "
            "chooses them and silences this."
        ), stacklevel=3)


def voc_class_names(parsed: dict[Path, Any]) -> set[str]:
    """The class names that the parsed annotations use."""
    return {name for result in parsed.values() if not isinstance(result, DataError) for name, *_ in result[2]}


def pack_voc_parsed(xml_paths: Sequence[Path], image_dir: Path, parsed: dict[Path, Any], out_prefix: PathLike,
                    classes: Sequence[str], *, skip_invalid: bool = False, progress: bool = True,
                    images_used: list[Path] | None = None) -> DetectionDataset:
    """Pack the annotations ``xml_paths`` (parsed by :func:`parse_voc_files`) as :func:`pack_voc` does;
    the image of each packed record is appended to ``images_used``."""
    classes = check_classes(classes)
    class_ids = {name: i for i, name in enumerate(classes)}
    items = _voc_items(list(xml_paths), image_dir, parsed, class_ids)
    return _write(items, len(xml_paths), out_prefix, classes, skip_invalid=skip_invalid, progress=progress,
                  images_used=images_used)


# ---------------------------------------------------------------- COCO


def _load_coco(json_path: Path) -> dict:
    if json_path.exists() and not json_path.is_file():  # a pipe would block the read
        raise DataError(f"{json_path}: not a regular file")
    try:
        data = load_json_text(json_path.read_text(encoding="utf-8"))  # nesting bounded: ValueError
    except FileNotFoundError:
        raise InputError(
            f"The 'json_path' argument must be an existing file; got {str(json_path)!r} instead."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{json_path}: cannot be read ({error})") from None
    except ValueError as error:
        raise DataError(f"{json_path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise DataError(f"{json_path}: expected a COCO object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{json_path}: missing the list {key!r} of a COCO detection file")
    return data


def _coco_area(ann: dict, row: tuple[float, ...]) -> float:
    """The annotation's ``"area"`` (a mask's, which pycocotools uses for object sizes), else ``w * h`` of its box."""
    area = ann.get("area")
    if isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area) and area >= 0:
        return float(area)
    x, y, w, h = (float(v) for v in ann["bbox"])
    return w * h


def _coco_row(ann: Any, k: int, json_path: Path, image: Any, cat_index: dict[Any, int]) -> tuple[float, ...]:
    where = f"{json_path}: annotation {k}"
    if isinstance(ann, dict) and "id" in ann:
        where += f" (id {ann['id']})"
    if image is not None:
        where += f" of image {image.get('file_name')!r}"
    category = ann.get("category_id")
    if not _is_id(category) or category not in cat_index:
        raise DataError(f"{where}: unknown category_id {category!r}; the categories are {sorted(cat_index)}")
    bbox = ann.get("bbox")
    numbers = isinstance(bbox, list) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    if not (numbers and len(bbox) == 4):
        raise DataError(f"{where}: 'bbox' must be [x, y, width, height] numbers; got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: empty box [x, y, width, height] = {bbox}")
    width, height = image["width"], image["height"]
    t = _COCO_TOLERANCE_PX
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise DataError(f"{where}: box [x, y, width, height] = {bbox} lies outside the {width}x{height} image")
    # in pixels here; normalised once the image's real size is known
    return (cat_index[category], max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height))


def _is_id(value: Any) -> bool:
    """COCO ids are integers (strings accepted); anything else, unhashable lists included, is refused."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def pack_coco(
    json_path: PathLike,
    image_dir: PathLike,
    out_prefix: PathLike,
    *,
    skip_invalid: bool = False,
    progress: bool = True,
) -> DetectionDataset:
    """Pack the images of a COCO detection JSON file into detection RecordIO.

    Every entry of ``images`` becomes one record (in file order), with its
    annotations; an image without annotations has no objects. Class ids follow
    the ``categories`` sorted by ``id``. ``iscrowd`` annotations are packed as
    crowd regions (flag 2): evaluation matches them by pycocotools' rule and
    training does not teach "background" on them. Each object keeps its
    annotation's ``"area"`` (in pixels; pycocotools sorts objects into small,
    medium and large by it), or ``w * h`` of its box when it has none. Boxes may pass the image border by up to one pixel (rounding in
    COCO files) and are clipped. Writes ``out_prefix.rec``, ``.idx`` and
    ``.classes.txt`` as :func:`pack_voc` does, only when packing succeeded.

    Parameters
    ----------
    json_path : str or os.PathLike
        The COCO ``instances_*.json`` file.
    image_dir : str or os.PathLike
        The folder that the ``file_name`` of the images are relative to.
    out_prefix : str or os.PathLike
        Path of the outputs without suffix.
    skip_invalid : bool
        Leave out an image with an invalid annotation or file, listed in
        :attr:`PackSummary.skipped`, instead of raising.
    progress : bool
        Show a progress bar.

    Returns
    -------
    DetectionDataset
        The packed dataset; its ``pack_summary`` is a :class:`PackSummary`.

    Raises
    ------
    detkit.errors.DataError
        Naming the JSON file and the annotation index (or the image) of a box
        outside the image, an empty box, an unknown category, a missing or
        undecodable image.
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"The 'image_dir' argument must be an existing folder; got {str(image_dir)!r} instead.")
    data = _load_coco(json_path)
    categories = data["categories"]
    try:
        if not all(isinstance(c, dict) and _is_id(c.get("id")) for c in categories):
            raise TypeError("an 'id' must be an integer or a string")
        ids = [c["id"] for c in categories]
        repeated = sorted({repr(i) for i in ids if ids.count(i) > 1})
        if repeated:  # a second category of one id would relabel the objects of the first
            raise TypeError(f"the id {', '.join(repeated)} is given to more than one category")
        categories = sorted(categories, key=lambda c: c["id"])
        cat_index = {c["id"]: i for i, c in enumerate(categories)}
        classes = check_classes([str(c["name"]) for c in categories])
    except (KeyError, TypeError, InputError) as error:
        raise DataError(f"{json_path}: invalid 'categories' (each needs a unique 'id' and 'name'): {error}") from None
    images = {}
    for k, image in enumerate(data["images"]):
        if not (
            isinstance(image, dict)
            and _is_id(image.get("id"))
            and isinstance(image.get("file_name"), str)
            and all(isinstance(image.get(key), int) and image[key] > 0 for key in ("width", "height"))
        ):
            raise DataError(
                f"{json_path}: image {k} needs 'id' (an integer or a string), 'file_name', and positive integer "
                "'width' and 'height'"
            )
        if image["id"] in images:  # the second would silently replace the first
            raise DataError(f"{json_path}: image {k} repeats the id {image['id']!r} of another image; ids must be unique")
        images[image["id"]] = image
    rows: dict = {image_id: [] for image_id in images}
    flags: dict = {image_id: [] for image_id in images}
    areas: dict = {image_id: [] for image_id in images}
    originals: dict = {image_id: [] for image_id in images}
    errors: dict = {}
    for k, ann in enumerate(data["annotations"]):
        image = images.get(ann.get("image_id")) if isinstance(ann, dict) and _is_id(ann.get("image_id")) else None
        try:
            if image is None:
                raise DataError(
                    f"{json_path}: annotation {k}: no image with image_id "
                    f"{ann.get('image_id') if isinstance(ann, dict) else None!r}"
                )
            row = _coco_row(ann, k, json_path, image, cat_index)
            rows[image["id"]].append(row)
            flag = _recordio.CROWD if ann.get("iscrowd") else _recordio.ORDINARY
            flags[image["id"]].append(flag)
            areas[image["id"]].append(_coco_area(ann, row))
            # as pycocotools reads it: the bbox as given, not clipped
            originals[image["id"]].append([row[0], *(float(v) for v in ann["bbox"]), flag, areas[image["id"]][-1]])
        except DataError as error:
            if not skip_invalid:
                raise
            key = image["id"] if image is not None else ("annotation", k)
            errors.setdefault(key, error)

    def items() -> Iterator[_Item | tuple[str, str]]:
        for key, error in errors.items():
            if not isinstance(key, tuple) or key[0] != "annotation":
                continue
            yield (str(json_path), str(error))
        for image_id, image in images.items():
            source = f"{json_path}: image {image['file_name']!r}"
            if image_id in errors:
                yield (source, str(errors[image_id]))
                continue
            wheres = [f"{source}: object {i}" for i in range(len(rows[image_id]))]
            size = (image["width"], image["height"])
            try:
                image_path = _image_inside(image_dir, image["file_name"], source)
            except DataError as error:
                yield (source, str(error))
                continue
            yield _Item(source, image_path, size, rows[image_id], wheres, flags[image_id], areas[image_id],
                        truth=(image_id, image['file_name'], originals[image_id]))

    return _write(
        items(),
        len(images),
        out_prefix,
        classes,
        skip_invalid=skip_invalid,
        progress=progress,
        truth_format="xywh",
        category_ids=[c["id"] for c in categories],
    )
