"""Images of a detection RecordIO file as image files, their boxes in a JSON sidecar: ``detkit data extract``."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from .._base import PathLike, check_int, folder_generation
from ..errors import DataError
from . import _recordio
from ._dataset import DetectionDataset
from ._show import _AnyClassDataset, open_to_view

#: Encoded formats written as they are stored (by their leading bytes); any other is converted to PNG.
_KEPT_FORMATS = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png"}


_FLAG_NAMES = {1: "difficult", 2: "crowd"}  # DetectionDataset.flags: 1 VOC difficult, 2 COCO iscrowd

def extract(
    rec_path: PathLike,
    out_dir: PathLike,
    *,
    num: int | None = None,
    start: int = 0,
    classes: Sequence[str] | None = None,
    idx_path: PathLike | None = None,
) -> list[Path]:
    """Write images of a detection RecordIO file as files, with their boxes in a JSON sidecar.

    Image ``i`` becomes ``out_dir/STEM-0000i.jpg`` (or ``.png``), ``STEM`` being the
    ``.rec`` file's name without suffix: an 8-bit JPEG or PNG record is written byte for
    byte as stored, any other (a 16-bit PNG included, scaled by its value range as
    training and ``predict`` read it) is converted to an 8-bit PNG. The sidecar
    ``out_dir/STEM.boxes.json`` lists, for each file, its size and its objects
    with their class name and box in pixels (``[xmin, ymin, xmax, ymax]``), and
    ``"difficult": true`` or ``"crowd": true`` where the packed labels say so::

        {"source": "data/pikachu/val.rec", "classes": ["pikachu"],
         "images": [{"file": "val-00000.png", "index": 0, "width": 256, "height": 256,
                     "objects": [{"class": "pikachu", "box": [80.5, 42.0, 131.0, 97.2]}]}]}

    Every file is written inside ``out_dir``, all or none under any kill (one generation of the
    folder's manifest, see the reliability guide); the files of earlier extracts stay, and a file
    of yours under a name the extract needs is refused with a :class:`~detkit.errors.StorageError`,
    never replaced.

    Parameters
    ----------
    rec_path : str or os.PathLike
        The ``.rec`` file (its ``.idx`` is used when it exists).
    out_dir : str or os.PathLike
        The folder for the images and the sidecar (made if missing).
    num : int, optional
        How many images (fewer if the file has fewer); default: all from ``start``.
    start : int
        Index of the first image.
    classes : list of str, optional
        Names for the class ids; by default read from ``PREFIX.classes.txt`` or
        ``classes.txt`` beside the file, else ``class N``.
    idx_path : str or os.PathLike, optional
        The index, if not beside the file.

    Returns
    -------
    list of pathlib.Path
        The image files, in record order (the sidecar is not listed).

    Examples
    --------
    ``detkit data extract data/pikachu/val.rec --out images -n 4`` is::

        paths = detkit.data.extract("data/pikachu/val.rec", "images", num=4)
        detections = detector.predict(paths[0])
    """
    start = check_int("start", start, minimum=0)
    if num is not None:
        num = check_int("num", num, minimum=1)
    dataset = open_to_view(rec_path, idx_path, classes, start)
    stop = len(dataset) if num is None else min(start + num, len(dataset))
    out = Path(out_dir)
    stem = dataset.rec_path.stem
    size = os.path.getsize(dataset.rec_path)
    images: list[tuple[str, bytes]] = []
    records: list[dict[str, Any]] = []
    with open(dataset.rec_path, "rb") as file:
        for index in range(start, stop):
            data = _recordio.read_record(file, dataset._offsets[index], size, dataset.rec_path, index)
            encoded = data[dataset._image_starts[index]:]
            image = dataset._decode(file, size, index)  # checks that it decodes, and names a damaged record
            suffix = next((kept for magic, kept in _KEPT_FORMATS.items() if encoded.startswith(magic)), None)
            if suffix is not None and not _eight_bit(encoded):
                suffix = None  # a 16-bit PNG: written as the 8-bit image that training and predict read
            if suffix is None:
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="PNG")
                encoded, suffix = buffer.getvalue(), ".png"
            name = f"{stem}-{index:05d}{suffix}"
            width, height = image.size
            objects = []
            for (class_id, x0, y0, x1, y1), flag in zip(dataset.objects(index).tolist(), dataset.flags(index).tolist()):
                entry: dict[str, Any] = {
                    "class": dataset._class_name(int(class_id)),
                    "box": [round(x0 * width, 2), round(y0 * height, 2), round(x1 * width, 2), round(y1 * height, 2)],
                }
                if flag:  # as the annotations said: a VOC difficult object, or a COCO crowd region
                    entry[_FLAG_NAMES[int(flag)]] = True
                objects.append(entry)
            images.append((name, encoded))
            records.append({"file": name, "index": index, "width": width, "height": height, "objects": objects})
    sidecar = {"source": str(dataset.rec_path), "classes": _class_names(dataset), "images": records}
    paths = [_inside(out, name) for name, _ in images]
    sidecar_name = _inside(out, f"{stem}.boxes.json").name
    # One generation of the folder: every file or none (under any kill), earlier extracts kept, and a file
    # of yours under a name it needs refused, never replaced.
    with folder_generation(out, "extract", purpose="extracting images", keep_previous=True) as generation:
        for name, encoded in images:
            generation.path(name).write_bytes(encoded)
        generation.path(sidecar_name).write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    return paths


def _eight_bit(encoded: bytes) -> bool:
    """Whether the encoded image holds 8-bit samples (a 16-bit PNG does not)."""
    try:
        with Image.open(io.BytesIO(encoded)) as opened:
            return not (opened.mode.startswith("I") or opened.mode == "F")
    except Exception:  # noqa: BLE001 - decoded (and its errors named) by _decode above
        return True


def _class_names(dataset: DetectionDataset) -> list[str]:
    if isinstance(dataset, _AnyClassDataset):
        ids = sorted({int(o[0]) for index in range(len(dataset)) for o in dataset.objects(index)})
        return [dataset._class_name(i) for i in ids]
    return list(dataset.classes)


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing a name that would leave ``folder`` (a separator, ``..``, an absolute path)."""
    path = folder / name
    if Path(name).name != name or name in (".", "..") or path.resolve().parent != folder.resolve():
        raise DataError(f"{name!r} is not a plain file name: it would be written outside {folder}")
    return path
