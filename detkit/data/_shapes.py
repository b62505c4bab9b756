"""A harder synthetic set: several kinds of objects per image, overlapping, small and large."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .._base import PathLike, check_int
from ..errors import InputError
from . import _recordio
from ._dataset import DetectionDataset
from ._render import _MIN_ALPHA, _SUPERSAMPLE, _background, _hsv, _random_color, fit_sprite, render_sprite
from ._synthetic import SetKind, _reusable, make_set

# Every kind of object, in class-id order, each with its one colour (hue in degrees, saturation, value).
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "pikachu")
_COLORS = {
    "circle": (0, 0.85, 0.9), "square": (220, 0.8, 0.85), "triangle": (120, 0.8, 0.7), "star": (28, 0.9, 0.95),
    "cross": (300, 0.7, 0.85), "ring": (185, 0.85, 0.85), "hexagon": (265, 0.6, 0.55),
}
# Size of an object: the longer side of its box before occlusion, as a fraction of the image side (log-uniform).
SIZE_RANGE = (0.04, 0.3)
# An object stays visible over at least this fraction of its pixels; later objects that would hide more are not
# drawn there (another place or size is tried, up to _ATTEMPTS times).
MIN_VISIBLE = 0.5
MAX_OBJECTS = 30
_ATTEMPTS = 20
_JPEG_QUALITY = 90
SHAPES_VERSION = 1


def _polygon(kind: str, radius: float, center: float) -> list[tuple[float, float]]:
    if kind == "square":
        corners = [(math.pi / 4 + k * math.pi / 2) for k in range(4)]
        return [(center + radius * math.cos(a), center + radius * math.sin(a)) for a in corners]
    if kind == "triangle":
        return [(center + radius * math.cos(a), center + radius * math.sin(a))
                for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
    if kind == "hexagon":
        return [(center + radius * math.cos(k * math.pi / 3), center + radius * math.sin(k * math.pi / 3))
                for k in range(6)]
    if kind == "star":
        points = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.42
            a = -math.pi / 2 + k * math.pi / 5
            points.append((center + r * math.cos(a), center + r * math.sin(a)))
        return points
    # cross: a plus sign with arms a third of its width
    w, r = radius / 3, radius
    outline = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w),
               (-w, -w)]
    return [(center + x, center + y) for x, y in outline]


def shape_sprite(rng: np.random.Generator, kind: str, target: float) -> Image.Image:
    """One object of ``kind`` whose box has a longer side of about ``target`` pixels: RGBA cropped to its
    pixels, at a random rotation, in its colour (jittered a little) with a darker outline."""
    if kind == "pikachu":
        return render_sprite(rng, 0, target=target)
    hue, sat, val = _COLORS[kind]
    fill = _hsv(hue / 360 + rng.uniform(-0.012, 0.012), sat * rng.uniform(0.9, 1.1), val * rng.uniform(0.9, 1.05))
    line = _hsv(hue / 360, sat, val * 0.55)
    size = int(math.ceil(target * _SUPERSAMPLE * 1.5)) + 4
    radius, center = target * _SUPERSAMPLE / 2, size / 2
    width = max(1, int(round(radius * 0.08)))
    big = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    box = [center - radius, center - radius, center + radius, center + radius]
    if kind == "circle":
        draw.ellipse(box, fill=fill, outline=line, width=width)
    elif kind == "ring":
        for r, color in ((radius, line), (radius - width, fill), (radius * 0.5 + width, line),
                         (radius * 0.5, (0, 0, 0, 0))):  # the hole is transparent: ImageDraw replaces pixels
            draw.ellipse([center - r, center - r, center + r, center + r], fill=color)
    else:
        draw.polygon(_polygon(kind, radius, center), fill=fill, outline=line, width=width)
    return fit_sprite(big, rng.uniform(0, 360), False, target)


def _clutter(rng: np.random.Generator, image: Image.Image) -> None:
    """Lines and arcs in random colours (some in the objects' own): open strokes, never a whole object."""
    size = image.size[0]
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 10))):
        color = _random_color(rng, 0.0) if rng.random() < 0.6 else _hsv(rng.random(), 0.8, 0.85)
        r = size * math.exp(rng.uniform(math.log(0.05), math.log(0.4)))
        cx, cy = rng.uniform(0, 1) * size, rng.uniform(0, 1) * size
        width = max(1, int(r * rng.uniform(0.02, 0.08)))
        if rng.random() < 0.5:
            a = rng.uniform(0, 2 * math.pi)
            draw.line([(cx, cy), (cx + r * math.cos(a), cy + r * math.sin(a))], fill=color, width=width)
        else:
            start = rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(30, 200), fill=color, width=width)


def render_shapes(rng: np.random.Generator, image_size: int, num_classes: int, objects: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[int]]:
    """One image of the shapes set.

    Returns
    -------
    image : numpy.ndarray
        ``(S, S, 3)`` uint8 RGB.
    labels : numpy.ndarray
        ``(K, 5)`` float32 rows ``[class_id, xmin, ymin, xmax, ymax]`` normalised to [0, 1], in drawing order
        (later objects lie over earlier ones); each box is the extent of the object's visible pixels.
    visible : list of numpy.ndarray
        ``(S, S)`` bool: the visible pixels of each object.
    areas : list of int
        The pixels of each object before the later ones covered some.
    """
    base = _background(rng, image_size)
    background = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    _clutter(rng, background)
    if rng.random() < 0.3:
        background = background.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2)))
    canvas = background.convert("RGBA")
    wanted = int(rng.integers(objects[0], objects[1] + 1))
    masks: list[np.ndarray] = []  # visible pixels of each placed object
    areas: list[int] = []
    classes: list[int] = []
    low, high = math.log(SIZE_RANGE[0] * image_size), math.log(SIZE_RANGE[1] * image_size)
    for _ in range(wanted):
        class_id = int(rng.integers(num_classes))
        target = math.exp(rng.uniform(low, high))
        for attempt in range(_ATTEMPTS):
            if attempt >= _ATTEMPTS // 2:  # crowded: try smaller
                target = max(SIZE_RANGE[0] * image_size, target * 0.8)
            sprite = shape_sprite(rng, SHAPES[class_id], target)
            w, h = sprite.size
            x = int(rng.integers(0, image_size - w + 1))
            y = int(rng.integers(0, image_size - h + 1))
            mask = np.zeros((image_size, image_size), bool)
            mask[y:y + h, x:x + w] = np.asarray(sprite)[:, :, 3] >= _MIN_ALPHA
            if all((visible & ~mask).sum() >= MIN_VISIBLE * area for visible, area in zip(masks, areas)):
                break
        else:
            continue  # no room left for it
        canvas.alpha_composite(sprite, dest=(x, y))
        masks = [visible & ~mask for visible in masks]
        masks.append(mask)
        areas.append(int(mask.sum()))
        classes.append(class_id)
    labels = []
    for class_id, visible in zip(classes, masks):
        rows, cols = np.any(visible, axis=1).nonzero()[0], np.any(visible, axis=0).nonzero()[0]
        labels.append([class_id, cols[0] / image_size, rows[0] / image_size, (cols[-1] + 1) / image_size,
                       (rows[-1] + 1) / image_size])
    image = np.asarray(canvas.convert("RGB"))
    noise = float(rng.uniform(0, 5))
    image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
    return image, np.array(labels, np.float32).reshape(-1, 5), masks, areas


def _shapes_record(job: tuple[int, int, int, int, int, int, int]) -> bytes:
    """The record data of one image: depends only on ``(seed, split, index, image_size, classes, min, max)``."""
    seed, split, index, image_size, num_classes, low, high = job
    rng = np.random.default_rng([seed, split, index, 1])
    image, labels, _, _ = render_shapes(rng, image_size, num_classes, (low, high))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return _recordio.pack_detection(index, buffer.getvalue(), labels, image_size, image_size)


SHAPES_SET = SetKind(
    "detkit.data.synthetic_shapes", SHAPES_VERSION, "synthetic shapes", _shapes_record,
    lambda a, split, i: (a["seed"], split, i, a["image_size"], a["classes"], a["objects"][0], a["objects"][1]))


def check_objects(objects: Any) -> tuple[int, int]:
    """``objects`` as ``(min, max)``, checked: 1 <= min <= max <= :data:`MAX_OBJECTS`."""
    if not isinstance(objects, Sequence) or isinstance(objects, str) or len(objects) != 2:
        raise InputError(f"The 'objects' argument must be a pair (min, max) of object counts; got {objects!r} instead.")
    low, high = check_int("objects", objects[0]), check_int("objects", objects[1])
    if not low <= high <= MAX_OBJECTS:
        raise InputError(f"The 'objects' argument must be a pair (min, max) with 1 <= min <= max <= {MAX_OBJECTS}; "
                         f"got {objects!r} instead.")
    return low, high


def _check_classes(classes: Any) -> int:
    classes = check_int("classes", classes)
    if classes > len(SHAPES):
        raise InputError(f"The 'classes' argument must be an int from 1 to {len(SHAPES)} (the kinds of objects); "
                         f"got {classes!r} instead.")
    return classes


def shapes_arguments(*, classes: int, objects: Any, num_train: int, num_val: int, image_size: int,
                     seed: int) -> dict:
    """The checked arguments of :func:`synthetic_shapes`, as its manifest records them."""
    low, high = check_objects(objects)
    return {
        "classes": _check_classes(classes),
        "objects": [low, high],
        "num_train": check_int("num_train", num_train, minimum=1),
        "num_val": check_int("num_val", num_val, minimum=1),
        "image_size": check_int("image_size", image_size, minimum=32),
        "seed": check_int("seed", seed, minimum=0),
    }


def shapes_made_with(root: PathLike, **arguments: Any) -> bool:
    """Whether ``root`` holds a complete shapes set made with these arguments (see :func:`synthetic_shapes`)."""
    return _reusable(Path(root), shapes_arguments(**arguments), SHAPES_SET)


def synthetic_shapes(
    root: PathLike,
    *,
    classes: int = len(SHAPES),
    objects: tuple[int, int] = (2, 8),
    num_train: int = 1000,
    num_val: int = 100,
    image_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
    force: bool = False,
) -> tuple[DetectionDataset, DetectionDataset]:
    """Render a harder, multi-class synthetic set and pack it in the seed's RecordIO layout.

    The classes are the first ``classes`` of circle, square, triangle, star,
    cross, ring, hexagon and pikachu (the character of
    :func:`synthetic_pikachu`); each shape has one colour (red, blue, green,
    orange, magenta, cyan, purple; jittered a little) and a darker outline, and
    is rotated at random. Each image has between ``objects[0]`` and
    ``objects[1]`` objects of random classes, sizes from 4 % to 30 % of the
    image side (the longer side of the box, log-uniform), over the backgrounds of
    the pikachu set with stroke clutter.

    Objects may overlap: later ones are drawn over earlier ones, but never so that
    an earlier object keeps less than half of its pixels visible (a placement that
    would is tried again elsewhere, smaller after 10 tries, and the object left out
    after 20; so a very crowded image can have fewer than ``objects[0]`` objects).
    Each box is the extent of the object's **visible** pixels.

    Determinism, the ``synthetic.json`` manifest, re-use and ``force`` are as for
    :func:`synthetic_pikachu`; a folder that holds a set of another kind is refused.

    Parameters
    ----------
    root : str or os.PathLike
        Folder for ``train.rec``, ``train.idx``, ``val.rec``, ``val.idx``,
        ``classes.txt``, ``preview.png`` and ``synthetic.json``.
    classes : int
        How many kinds of objects, 1 to 8.
    objects : (int, int)
        The least and most objects in an image, 1 to 30.
    num_train, num_val : int
        Images in each split.
    image_size : int
        Side of the square images in pixels (at least 32).
    seed : int
        Seed of everything random.
    progress : bool
        Show a progress bar.
    workers : int
        Processes that render in parallel.
    force : bool
        Render the set again even when ``root`` holds one made with the same arguments.

    Returns
    -------
    (DetectionDataset, DetectionDataset)
        The training and validation sets.
    """
    arguments = shapes_arguments(classes=classes, objects=objects, num_train=num_train, num_val=num_val,
                                 image_size=image_size, seed=seed)
    workers = check_int("workers", workers, minimum=1)
    names = list(SHAPES[: arguments["classes"]])
    return make_set(Path(root), arguments, names, SHAPES_SET, force=force, progress=progress, workers=workers)
