"""predict(): detections in pixels for images given as paths or arrays; draw_detections()."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import mxnet as mx
import numpy as np

from .._base import PathLike, atomic_path, check_number, check_positive_int, draw_boxes
from ..data import preprocess
from ..data._images import open_rgb8
from ..data._transforms import as_rgb_array
from ..errors import InputError

__all__ = ["Detection", "as_numpy", "draw_detections", "load_image"]

class Detection(NamedTuple):
    """One detected object.

    Attributes
    ----------
    class_id : int
        0-based object class.
    class_name : str
        ``detector.classes[class_id]``.
    score : float
        Confidence in [0, 1].
    box : tuple of 4 floats
        ``(xmin, ymin, xmax, ymax)`` in pixels of the original image.
    """

    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]


def load_image(image: Any) -> np.ndarray:
    """Return ``image`` as an ``(H, W, 3)`` uint8 RGB array.

    Parameters
    ----------
    image : str, os.PathLike, numpy.ndarray or mxnet.nd.NDArray
        A path to an image file (anything Pillow reads; its EXIF orientation is
        applied, an alpha channel dropped), or an array with values in [0, 255]:
        ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA, or ``(H, W)`` / ``(H, W, 1)`` grey.
        Float arrays in [0, 1] are refused rather than guessed at: scale them to
        [0, 255] first.
    """
    if isinstance(image, (str, os.PathLike)):
        # Regular files only (a named pipe would block), no decompression bombs, 16-bit scaled to 8.
        return open_rgb8(Path(image))
    return as_rgb_array(image)


def as_numpy(array: Any, dtype: Any = None) -> np.ndarray:
    """An NDArray (MXNet's detections) or a numpy array (ONNX Runtime's) as numpy (of ``dtype``, if given)."""
    return np.asarray(array.asnumpy() if isinstance(array, mx.nd.NDArray) else array, dtype=dtype)


def predict(detect: Callable[[mx.nd.NDArray], Any], classes: Sequence[str], data_shape: tuple[int, int],
            images: Any, threshold: float, batch_size: int) -> Any:
    """See :meth:`SSDDetector.predict`; ``detect`` maps a preprocessed batch to detections ``(B, K, 6)``."""
    check_number("threshold", threshold, minimum=0, maximum=1)
    check_positive_int("batch_size", batch_size)
    if isinstance(images, (mx.nd.NDArray, np.ndarray)) and images.ndim == 4:
        if images.shape[-1] not in (1, 3, 4):
            raise InputError(
                f"A batch of images must be channels last, (B, H, W, 3); got shape {images.shape}. "
                "For preprocessed (B, 3, H, W) network input use detector.detect()."
            )
        images = list(as_numpy(images))
    single = not isinstance(images, (list, tuple))
    decoded = [load_image(image) for image in ([images] if single else images)]
    results: list[list[Detection]] = []
    for start in range(0, len(decoded), batch_size):
        chunk = decoded[start:start + batch_size]
        batch = mx.nd.concat(*[preprocess(image, data_shape) for image in chunk], dim=0)
        rows = as_numpy(detect(batch))  # (B, K, 6), boxes in [0, 1]
        for image, image_rows in zip(chunk, rows):
            height, width = image.shape[:2]
            keep = image_rows[(image_rows[:, 0] >= 0) & (image_rows[:, 1] >= threshold)]
            keep = keep[np.argsort(-keep[:, 1], kind="stable")]
            scale = np.array([width, height, width, height], dtype=np.float64)
            results.append([
                Detection(int(row[0]), classes[int(row[0])], float(row[1]),
                          tuple(float(v) for v in row[2:6] * scale))  # type: ignore[arg-type]
                for row in keep
            ])
    return results[0] if single else results


def draw_detections(image: Any, detections: Sequence[Detection], path: PathLike, *, threshold: float = 0.0,
                    title: str | None = None) -> Path:
    """Draw ``detections`` on ``image`` (a box and "class score" label each) and save a PNG at ``path``.

    Parameters
    ----------
    image : path, numpy.ndarray or NDArray
        The original image (see :func:`load_image`).
    detections : sequence of Detection
        As returned by :meth:`SSDDetector.predict` for that image (pixel boxes).
    path : path
        The PNG to write (atomically).
    threshold : float, default 0
        Draw only detections scoring at least this.
    title : str, optional
        A title above the picture.

    Returns
    -------
    pathlib.Path
    """
    pixels = load_image(image)
    shown = [(d.class_id, f"{d.class_name} {d.score:.2f}", d.box) for d in detections if d.score >= threshold]
    picture = draw_boxes(pixels, shown, title=title, min_side=512)
    target = Path(path)
    with atomic_path(target) as temporary:
        picture.save(temporary, format="PNG")
    return target
