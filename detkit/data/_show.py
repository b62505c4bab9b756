"""A preview grid of a detection RecordIO file, boxes drawn: ``detkit data show``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from .._base import PathLike, atomic_outputs, check_int, draw_boxes
from ..errors import InputError
from ._classes import find_classes, read_classes
from ._dataset import DetectionDataset
from ._transforms import RGB_MEAN

_GAP = 4
#: How a label names the objects that evaluation ignores (they are also outlined dashed).
_FLAG_SUFFIX = {1: " (difficult)", 2: " (crowd)"}


class _AnyClassDataset(DetectionDataset):
    """A dataset opened without its class list: any class id is accepted and named ``class N``."""

    def __init__(self, rec_path: PathLike, idx_path: PathLike | None = None) -> None:
        super().__init__(rec_path, idx_path, classes=["class 0"])

    def _class_limit(self) -> int | None:
        return None

    def _class_name(self, class_id: int) -> str:
        return f"class {class_id}"


def open_to_view(rec_path: PathLike, idx_path: PathLike | None, classes: Sequence[str] | None,
                 start: int) -> DetectionDataset:
    """A ``.rec`` file opened to look at from image ``start``: with ``classes``, else the class list beside
    it, else any class id (named ``class N``)."""
    if classes is None:
        found = find_classes(Path(rec_path))
        classes = read_classes(found) if found else None
    dataset = _AnyClassDataset(rec_path, idx_path) if classes is None else DetectionDataset(
        rec_path, idx_path, classes=classes)
    if start >= len(dataset):
        raise InputError(
            f"The 'start' argument must be below {len(dataset)}, the number of images; got {start} instead."
        )
    return dataset


def _tiles(dataset: DetectionDataset, indices: list[int], tile: int, augment: bool,
           seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(RGB uint8 image, objects (K, 6))`` for the tiles, fitted into ``tile x tile``:
    rows ``[class_id, xmin, ymin, xmax, ymax, flag]``."""
    if augment:
        # what training sees: the seed's random crop, resized to the tile (the seed's own figure)
        size = os.path.getsize(dataset.rec_path)
        with open(dataset.rec_path, "rb") as file:
            for index in indices:
                data = np.empty((3, tile, tile), np.float32)
                objects, _ = dataset._sample(file, size, index, (tile, tile), np.random.default_rng([seed, index]),
                                             data)
                image = np.clip(data.transpose(1, 2, 0) + np.array(RGB_MEAN, np.float32), 0, 255)
                yield image.astype(np.uint8), objects[:, :6]
        return
    for index in indices:
        image = dataset.image(index)
        height, width = image.shape[:2]
        scale = tile / max(height, width)
        fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
        objects = np.concatenate([dataset.objects(index), dataset.flags(index)[:, None]], axis=1)
        yield np.asarray(Image.fromarray(image).resize(fitted, Image.Resampling.BILINEAR)), objects


def show(
    rec_path: PathLike,
    out_png: PathLike,
    *,
    num: int = 9,
    classes: Sequence[str] | None = None,
    idx_path: PathLike | None = None,
    start: int = 0,
    tile_size: int = 256,
    augment: bool = False,
    seed: int = 0,
) -> Path:
    """Draw the first images of a detection RecordIO file with their boxes into a grid PNG.

    Difficult objects and crowd regions are outlined dashed, and their labels say
    ``(difficult)`` or ``(crowd)``.

    Parameters
    ----------
    rec_path : str or os.PathLike
        The ``.rec`` file (its ``.idx`` is used when it exists).
    out_png : str or os.PathLike
        The picture to write (written atomically).
    num : int
        How many images (fewer if the file has fewer), in a near-square grid.
    classes : list of str, optional
        Names for the class ids; by default read from ``PREFIX.classes.txt`` or
        ``classes.txt`` beside the file, else ``class N``.
    start : int
        Index of the first image shown.
    tile_size : int
        Side of each grid cell in pixels; images keep their aspect ratio.
    augment : bool
        Show what training sees instead: the seed's random crop, resized to
        ``tile_size`` square (as the seed's own figure of a training batch).
    seed : int
        Seed of the crops when ``augment``.

    Returns
    -------
    pathlib.Path
        ``out_png``.
    """
    for name, value, minimum in (("num", num, 1), ("tile_size", tile_size, 16), ("start", start, 0)):
        check_int(name, value, minimum=minimum)
    dataset = open_to_view(rec_path, idx_path, classes, start)
    indices = list(range(start, min(start + num, len(dataset))))
    columns = math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / columns)
    grid = Image.new("RGB", (columns * (tile_size + _GAP) + _GAP, rows * (tile_size + _GAP) + _GAP), (255, 255, 255))
    for n, (image, objects) in enumerate(_tiles(dataset, indices, tile_size, augment, seed)):
        height, width = image.shape[:2]
        boxes = [(int(class_id), dataset._class_name(int(class_id)) + _FLAG_SUFFIX.get(int(flag), ""),
                  (x0 * width, y0 * height, x1 * width, y1 * height))
                 for class_id, x0, y0, x1, y1, flag in objects.tolist()]
        tile = draw_boxes(image, boxes, dashed={i for i, row in enumerate(objects) if row[5] != 0})
        r, c = divmod(n, columns)
        grid.paste(tile, (_GAP + c * (tile_size + _GAP), _GAP + r * (tile_size + _GAP)))
    out_png = Path(out_png)
    with atomic_outputs([out_png]) as (temp,):
        grid.save(temp, format="PNG")
    return out_png
