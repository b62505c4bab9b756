"""predict(): detections in pixels for images given as paths or arrays; draw_detections()."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import mxnet as mx
import numpy as np

from ._io import PathLike, atomic_path
from .errors import DataError, InputError

if TYPE_CHECKING:
    from ._detector import SSDDetector

__all__ = ["Detection", "draw_detections", "load_image"]

_COLORS = ("blue", "green", "red", "black", "magenta")  # the seed's display colours


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
        from PIL import Image, ImageOps, UnidentifiedImageError

        path = Path(image)
        try:
            with Image.open(path) as opened:
                return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        except FileNotFoundError:
            raise InputError(f"The image {path} does not exist.") from None
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path}: cannot decode the image: {error}") from error
    if isinstance(image, mx.nd.NDArray):
        image = image.asnumpy()
    if not isinstance(image, np.ndarray):
        raise InputError(
            "Each image must be a path, a numpy array or an NDArray of shape (H, W, 3); "
            f"got {type(image).__name__} instead."
        )
    if image.ndim == 3 and image.shape[2] in (1, 4):
        image = image[:, :, :1] if image.shape[2] == 1 else image[:, :, :3]  # grey, or RGB without alpha
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InputError(f"Each image array must have shape (H, W, 3) (RGB, channels last); got {image.shape} instead.")
    if image.dtype != np.uint8:
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 255:
            raise InputError("Each image array must hold values in [0, 255] (uint8 RGB, channels last).")
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            raise InputError(
                "The image array holds floats in [0, 1]; detkit reads values in [0, 255]: pass image * 255 "
                "(or a uint8 array)."
            )
        image = image.round().astype(np.uint8)
    return image


def predict(detector: SSDDetector, images: Any, threshold: float, batch_size: int) -> Any:
    """See :meth:`SSDDetector.predict`."""
    from .data import preprocess

    if not 0 <= threshold <= 1:
        raise InputError(f"The 'threshold' argument must be in [0, 1]; got {threshold!r} instead.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"The 'batch_size' argument must be a positive int; got {batch_size!r} instead.")
    if isinstance(images, (mx.nd.NDArray, np.ndarray)) and images.ndim == 4:
        if images.shape[-1] not in (1, 3, 4):
            raise InputError(
                f"A batch of images must be channels last, (B, H, W, 3); got shape {images.shape}. "
                "For preprocessed (B, 3, H, W) network input use detector.detect()."
            )
        images = list(images.asnumpy() if isinstance(images, mx.nd.NDArray) else images)
    single = not isinstance(images, (list, tuple))
    decoded = [load_image(image) for image in ([images] if single else images)]
    results: list[list[Detection]] = []
    for start in range(0, len(decoded), batch_size):
        chunk = decoded[start:start + batch_size]
        batch = mx.nd.concat(*[preprocess(image, detector.data_shape) for image in chunk], dim=0)
        rows = detector.detect(batch).asnumpy()  # (B, K, 6), boxes in [0, 1]
        for image, image_rows in zip(chunk, rows):
            height, width = image.shape[:2]
            keep = image_rows[(image_rows[:, 0] >= 0) & (image_rows[:, 1] >= threshold)]
            keep = keep[np.argsort(-keep[:, 1], kind="stable")]
            scale = np.array([width, height, width, height], dtype=np.float64)
            results.append([
                Detection(int(row[0]), detector.classes[int(row[0])], float(row[1]),
                          tuple(float(v) for v in row[2:6] * scale))  # type: ignore[arg-type]
                for row in keep
            ])
    return results[0] if single else results


def draw_detections(image: Any, detections: Sequence[Detection], path: PathLike, *, threshold: float = 0.0,
                    title: str | None = None) -> Path:
    """Draw ``detections`` on ``image`` as the seed's ``display`` does, and save a PNG at ``path``.

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
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pixels = load_image(image)
    height, width = pixels.shape[:2]
    figure = plt.figure(figsize=(6, 6 * height / width), dpi=100)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.imshow(pixels)
    axes.set_axis_off()
    for detection in detections:
        if detection.score < threshold:
            continue
        color = _COLORS[detection.class_id % len(_COLORS)]
        xmin, ymin, xmax, ymax = detection.box
        axes.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color, linewidth=2))
        axes.text(xmin, ymin, f"{detection.class_name} {detection.score:.2f}",
                  bbox={"facecolor": color, "alpha": 0.5}, fontsize=10, color="white")
    if title:
        axes.set_title(title)
    target = Path(path)
    with atomic_path(target) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
    return target
