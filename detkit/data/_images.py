"""Image files as detkit reads them: regular files only, no decompression bombs, 8-bit RGB by value range."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError, InputError

__all__ = ["check_regular_file", "image_to_rgb8", "open_rgb8"]


def check_regular_file(path: Path, what: str = "image") -> None:
    """Raise unless ``path`` is a regular file; never opens it (a named pipe would block the open)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"The {what} {path} does not exist.") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is not a regular file (a folder, a pipe or a device); give an image file")


def image_to_rgb8(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; 16-bit (and 32-bit integer) greyscale scaled by its value range, not clipped.

    Pillow's ``convert("RGB")`` clips a 16-bit PNG's values above 255 to white;
    here 0..65535 maps to 0..255. A 32-bit integer image whose values all fit
    in 0..255 is read as 8-bit data.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max()) if values.size else 0.0
        top = 65535.0 if image.mode.startswith("I;16") or peak > 255 else 255.0
        top = max(top, peak)
        grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def open_rgb8(path: Path) -> np.ndarray:
    """Decode the image file ``path`` as an ``(H, W, 3)`` uint8 RGB array, EXIF orientation applied.

    Raises :class:`DataError` for a file that is not a regular file, cannot be
    decoded, or would decompress to more pixels than Pillow allows (a
    decompression bomb, ``Image.MAX_IMAGE_PIXELS``).
    """
    check_regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                return np.asarray(image_to_rgb8(ImageOps.exif_transpose(opened)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{path}: the image is too large to decode safely ({error})") from None
    except Exception as error:  # Pillow raises many types for bad files
        raise DataError(f"{path}: cannot decode the image: {error}") from error
