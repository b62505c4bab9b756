"""Decoding, resizing, mean subtraction and the seed's random crop.

One function, :func:`resize_normalize`, turns a decoded image into network
input for validation, training (after the crop) and prediction, so the three
can never drift apart.
"""

from __future__ import annotations

import io
from typing import Any, Sequence, Union

import mxnet as mx
import numpy as np
from PIL import Image

from .._base import check_size
from ..errors import DataError, InputError
from ._images import image_to_rgb8

#: The seed's ``rgb_mean``: the per-channel value subtracted from every image (R, G, B).
RGB_MEAN: tuple[float, float, float] = (123.0, 117.0, 104.0)
_MEAN = np.array(RGB_MEAN, dtype=np.float32)

# The seed's training augmentation (ImageDetIter with rand_crop=1): a random crop
# whose area is 5 % to 100 % of the image, aspect ratio 3:4 to 4:3, that keeps
# more than 95 % of every object it touches, 200 attempts, else the whole image.
CROP_MIN_OBJECT_COVERED = 0.95
CROP_MAX_ATTEMPTS = 200
CROP_AREA_RANGE = (0.05, 1.0)
CROP_ASPECT_RATIO_RANGE = (0.75, 1.33)
CROP_MIN_EJECT_COVERAGE = 0.3  # objects keeping less than this after the crop are dropped


def decode_image(data: bytes, where: str) -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, ...) into an RGB :class:`PIL.Image.Image`.

    16-bit (and 32-bit integer) greyscale is scaled by its value range, as
    :meth:`~detkit.SSDDetector.predict` reads image files, not clipped to white.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft("RGB", opened.size)  # no-op except for JPEG, where it skips a colour conversion
            image = image_to_rgb8(opened)
            image.load()
            return image
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, ValueError...)
        raise DataError(f"{where}: the image cannot be decoded ({type(error).__name__}: {error})") from None


def resize_normalize(
    image: Image.Image,
    shape_hw: tuple[int, int],
    out: np.ndarray | None = None,
    crop: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Resize an RGB image to ``shape_hw`` and subtract :data:`RGB_MEAN`.

    Resizing is Pillow's bilinear filter (antialiased when shrinking), the result
    rounded to uint8 as a decoded image would be. ``crop`` ``(x, y, w, h)`` in
    pixels resizes only that part. Returns (or fills ``out`` with) a
    ``(3, H, W)`` float32 array, channel-first.
    """
    height, width = shape_hw
    if crop is not None:
        x, y, w, h = crop
        image = image.resize((width, height), Image.Resampling.BILINEAR, box=(x, y, x + w, y + h))
    elif image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    if out is None:
        out = np.empty((3, height, width), np.float32)
    # (H, W, 3) uint8 -> (3, H, W) float32, minus the mean of each channel
    np.subtract(np.asarray(image).transpose(2, 0, 1), _MEAN[:, None, None], out=out, dtype=np.float32)
    return out


def as_rgb_array(image: Any) -> np.ndarray:
    """An image array as ``(H, W, 3)`` uint8 RGB, the one normaliser of predict and :func:`preprocess`.

    Takes a numpy array or an NDArray with values in [0, 255]: ``(H, W, 3)`` RGB,
    ``(H, W, 4)`` RGBA (alpha dropped), ``(H, W)`` or ``(H, W, 1)`` grey. Float arrays
    in [0, 1] are refused rather than guessed at.
    """
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
    if image.dtype.kind not in "uif":
        raise InputError(
            f"Each image array must hold numbers (uint8 RGB, channels last); got dtype {image.dtype} instead."
        )
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


def preprocess(image: Any, data_shape: int | Sequence[int] = 256) -> mx.nd.NDArray:
    """Turn one image into network input, exactly as the validation loader does.

    Parameters
    ----------
    image : numpy.ndarray or mxnet.nd.NDArray
        Values in [0, 255]: ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (alpha dropped),
        ``(H, W)`` or ``(H, W, 1)`` grey (repeated to RGB), as :func:`detkit.load_image` takes them.
    data_shape : int or tuple of int
        The network's input size, ``S`` for ``S x S`` or ``(H', W')``.

    Returns
    -------
    mxnet.nd.NDArray
        ``(1, 3, H', W')`` float32 on the CPU: the image resized (bilinear) and
        minus :data:`RGB_MEAN`.
    """
    shape_hw = check_size("data_shape", data_shape)
    image = as_rgb_array(image)
    data = resize_normalize(Image.fromarray(np.ascontiguousarray(image), "RGB"), shape_hw)
    return mx.nd.array(data[None], dtype="float32")  # (1, 3, H', W')


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])


def random_crop(
    rng: np.random.Generator, objects: np.ndarray, height: int, width: int
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Propose the seed's random crop (MXNet's ``DetRandomCropAug`` with the seed's settings).

    Parameters
    ----------
    objects : numpy.ndarray
        ``(K, 5)`` rows ``[class_id, xmin, ymin, xmax, ymax]`` normalised to the image;
        further columns (flags, areas) are carried along unchanged.

    Returns
    -------
    ((x, y, w, h), objects) or None
        The crop in pixels and the objects it keeps, ``(K', 5)`` (or as wide as
        ``objects``) normalised to the crop; ``None`` when no crop met the constraints in
        :data:`CROP_MAX_ATTEMPTS` attempts (the image is then used whole).
    """
    if len(objects) == 0 or height <= 0 or width <= 0:
        return None
    boxes = objects[:, 1:5].astype(np.float64)  # (K, 4)
    areas = _areas(boxes)
    valid = areas * width * height > 2  # objects larger than 2 pixels
    if not valid.any():
        return None
    # All attempts are drawn at once and the first that meets the constraints wins,
    # which is what trying them one after the other would give.
    n = CROP_MAX_ATTEMPTS
    min_area = CROP_AREA_RANGE[0] * height * width
    max_area = CROP_AREA_RANGE[1] * height * width
    ratio = rng.uniform(*CROP_ASPECT_RATIO_RANGE, size=n)
    h = np.round(np.sqrt(min_area / ratio))
    max_h = np.round(np.sqrt(max_area / ratio))
    max_h = np.where(np.round(max_h * ratio) > width, np.floor((width + 0.4999999) / ratio), max_h)
    max_h = np.minimum(max_h, height)
    h = np.minimum(h, max_h)
    h = np.where(h < max_h, rng.integers(h.astype(np.int64), max_h.astype(np.int64) + 1), h)
    w = np.round(h * ratio)
    grow = w * h < min_area  # fix rounding, as MXNet's DetRandomCropAug does
    h = np.where(grow, h + 1, h)
    w = np.where(grow, np.round(h * ratio), w)
    shrink = w * h > max_area
    h = np.where(shrink, h - 1, h)
    w = np.where(shrink, np.round(h * ratio), w)
    area = w * h
    ok = (min_area <= area) & (area <= max_area) & (w <= width) & (h <= height) & (area >= 2)
    h = np.clip(h, 0, height)
    w = np.clip(w, 0, width)
    y = rng.integers(0, (height - h).astype(np.int64) + 1)
    x = rng.integers(0, (width - w).astype(np.int64) + 1)
    crops = np.stack([x / width, y / height, (x + w) / width, (y + h) / height], axis=1)  # (n, 4)
    # (n, K, 4) intersection of every crop with every object
    inter = np.concatenate(
        [np.maximum(boxes[None, :, :2], crops[:, None, :2]), np.minimum(boxes[None, :, 2:], crops[:, None, 2:])], axis=2
    )
    inter_area = np.maximum(0, inter[..., 2] - inter[..., 0]) * np.maximum(0, inter[..., 3] - inter[..., 1])
    coverage = np.where(valid[None], inter_area / np.where(areas > 0, areas, 1)[None], 0.0)  # (n, K)
    # every object the crop touches must keep more than 95 % of its area
    touched = coverage > 0
    ok &= touched.any(axis=1) & ~np.any(touched & (coverage <= CROP_MIN_OBJECT_COVERED), axis=1)
    # objects keeping too little after the crop are dropped; a crop must keep one
    keeps = (
        (inter[..., 2] > inter[..., 0]) & (inter[..., 3] > inter[..., 1])
        & (np.where(areas > 0, inter_area / np.where(areas > 0, areas, 1), 0) > CROP_MIN_EJECT_COVERAGE)
    )
    ok &= keeps.any(axis=1)
    if not ok.any():
        return None
    i = int(np.argmax(ok))
    x0, y0, cw, ch = int(x[i]), int(y[i]), int(w[i]), int(h[i])
    scale = np.array([cw / width, ch / height] * 2)
    moved = np.clip((boxes - np.tile(crops[i, :2], 2)) / scale, 0.0, 1.0)
    keep = keeps[i]
    out = np.concatenate([objects[keep, :1], moved[keep], objects[keep, 5:]], axis=1).astype(np.float32)
    return (x0, y0, cw, ch), out


#: The reader's training augmentations: ``"seed"`` the seed's random crop, ``"ssd"`` SSD's
#: (:func:`ssd_augment`), ``"none"`` the image whole.
AUGMENTS: tuple[str, ...] = ("seed", "ssd", "none")

# SSD's augmentation (Liu et al. 2016, section 2.2; GluonCV's SSDDefaultTrainTransform).
# Photometric distortion, each step with probability 0.5: brightness +- 32, contrast and
# saturation x [0.5, 1.5], hue +- 18 degrees; contrast before or after saturation and hue.
SSD_BRIGHTNESS_DELTA = 32.0
SSD_CONTRAST_RANGE = (0.5, 1.5)
SSD_SATURATION_RANGE = (0.5, 1.5)
SSD_HUE_DELTA = 18.0  # degrees
SSD_EXPAND_PROBABILITY = 0.5
SSD_EXPAND_MAX_RATIO = 4.0  # zoom out onto a canvas up to 4 x 4 times the image, filled with the mean
# The crop samplers: a patch whose IoU with some object is at least each of these (None: any
# patch), side scale [0.3, 1] of the (expanded) image, aspect ratio [0.5, 2]; 50 attempts
# each; one of the samplers' patches or the whole image is picked at random.
SSD_CROP_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
SSD_CROP_SCALE_RANGE = (0.3, 1.0)
SSD_CROP_ASPECT_RATIO_RANGE = (0.5, 2.0)
SSD_CROP_MAX_ATTEMPTS = 50
SSD_FLIP_PROBABILITY = 0.5
_MEAN_PIXEL = np.round(_MEAN).astype(np.uint8)  # the canvas of expand: 0 after mean subtraction
_GREY = np.array([0.299, 0.587, 0.114], np.float32)
_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, -0.311]])
_FROM_YIQ = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])


def photometric_distort(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """SSD's photometric distortion of an ``(H, W, 3)`` uint8 RGB image (a new uint8 array).

    Brightness, contrast, saturation and hue are each changed with probability 0.5 in the
    ranges of GluonCV's ``random_color_distort``; every draw is made whether used or not,
    so that the number of draws from ``rng`` does not depend on the image.
    """
    use = rng.random(5)  # brightness, contrast, saturation, hue, contrast first
    delta = rng.uniform(-SSD_BRIGHTNESS_DELTA, SSD_BRIGHTNESS_DELTA)
    contrast = rng.uniform(*SSD_CONTRAST_RANGE)
    saturation = rng.uniform(*SSD_SATURATION_RANGE)
    hue = rng.uniform(-SSD_HUE_DELTA, SSD_HUE_DELTA)
    if not (use[:4] < 0.5).any():
        return image.copy()
    pixels = image.astype(np.float32)
    if use[0] < 0.5:
        pixels += delta

    def adjust_contrast() -> None:
        if use[1] < 0.5:
            grey = float((pixels @ _GREY).mean())
            pixels[...] = pixels * contrast + grey * (1.0 - contrast)

    if use[4] < 0.5:
        adjust_contrast()
    if use[2] < 0.5:
        grey = (pixels @ _GREY)[..., None]
        pixels[...] = pixels * saturation + grey * (1.0 - saturation)
    if use[3] < 0.5:
        angle = np.deg2rad(hue)
        rotate = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
        pixels[...] = pixels @ (_FROM_YIQ @ rotate @ _TO_YIQ).T.astype(np.float32)
    if use[4] >= 0.5:
        adjust_contrast()
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _iou(boxes: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """IoU of every crop ``(n, 4)`` with every box ``(K, 4)``: ``(n, K)``."""
    low = np.maximum(boxes[None, :, :2], crops[:, None, :2])
    high = np.minimum(boxes[None, :, 2:], crops[:, None, 2:])
    inter = np.prod(np.maximum(0.0, high - low), axis=2)
    union = _areas(boxes)[None] + _areas(crops)[:, None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def ssd_augment(
    rng: np.random.Generator, image: Image.Image, objects: np.ndarray
) -> tuple[Image.Image, np.ndarray]:
    """SSD's training augmentation: photometric distortion, expand, an IoU-constrained crop, flip.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same result.
    image : PIL.Image.Image
        RGB.
    objects : numpy.ndarray
        ``(K, 5)`` rows ``[class_id, xmin, ymin, xmax, ymax]`` normalised to the image;
        further columns (flags, areas) are carried along unchanged.

    Returns
    -------
    (PIL.Image.Image, numpy.ndarray)
        The augmented image (any size) and its objects normalised to it: only those whose
        centre lies in the crop, boxes clipped to the image, each of positive area.

    Notes
    -----
    Expand (probability 0.5) places the image at a random spot of a canvas ``r`` times
    its size, ``r`` in [1, 4], filled with :data:`RGB_MEAN`. Each of the crop samplers
    (minimum IoU none, 0.1, 0.3, 0.5, 0.7, 0.9) proposes a patch of side scale [0.3, 1] and aspect ratio
    [0.5, 2] whose IoU with at least one object reaches its minimum (the SSD paper's
    Caffe sampler), 50 attempts each; the patch is picked at random among the samplers'
    patches that keep an object and the whole image. The canvas is never built: only
    the patch is. Flip is horizontal with probability 0.5.
    """
    pixels = photometric_distort(rng, np.asarray(image))
    height, width = pixels.shape[:2]
    # expand: the image at (left, top) of a canvas_w x canvas_h canvas
    expand, ratio = rng.random() < SSD_EXPAND_PROBABILITY, rng.uniform(1.0, SSD_EXPAND_MAX_RATIO)
    offsets = rng.random(2)
    canvas_w, canvas_h = (int(width * ratio), int(height * ratio)) if expand else (width, height)
    left, top = int(offsets[0] * (canvas_w - width + 1)), int(offsets[1] * (canvas_h - height + 1))
    boxes = objects[:, 1:5].astype(np.float64) * [width, height, width, height] + [left, top, left, top]
    # crop: every sampler's attempts drawn at once, the first that meets its constraint wins
    samplers, n = len(SSD_CROP_MIN_IOUS), SSD_CROP_MAX_ATTEMPTS
    scale = rng.uniform(*SSD_CROP_SCALE_RANGE, size=(samplers, n))
    low = np.maximum(SSD_CROP_ASPECT_RATIO_RANGE[0], scale**2)
    high = np.minimum(SSD_CROP_ASPECT_RATIO_RANGE[1], 1.0 / scale**2)
    aspect = low + (high - low) * rng.random((samplers, n))
    crop_w = np.clip(np.round(canvas_w * scale * np.sqrt(aspect)), 1, canvas_w)
    crop_h = np.clip(np.round(canvas_h * scale / np.sqrt(aspect)), 1, canvas_h)
    x0 = np.floor(rng.random((samplers, n)) * (canvas_w - crop_w + 1))
    y0 = np.floor(rng.random((samplers, n)) * (canvas_h - crop_h + 1))
    crops = np.stack([x0, y0, x0 + crop_w, y0 + crop_h], axis=2).reshape(-1, 4)  # (samplers * n, 4)
    pick = rng.random()
    flip = rng.random() < SSD_FLIP_PROBABILITY
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (K, 2)
    candidates = [np.array([0.0, 0.0, canvas_w, canvas_h])]  # the whole (expanded) image
    if len(objects):
        inside = ((crops[:, None, :2] <= centres[None]) & (centres[None] < crops[:, None, 2:])).all(axis=2)
        minimum = np.repeat([-1.0 if m is None else m for m in SSD_CROP_MIN_IOUS], n)[:, None]  # (samplers * n, 1)
        # a patch must reach its sampler's IoU with an object and keep the centre of one
        ok = (_iou(boxes, crops) >= minimum).any(axis=1)
        ok = (ok & inside.any(axis=1)).reshape(samplers, n)
        for s in range(samplers):
            if ok[s].any():
                candidates.append(crops[s * n + int(np.argmax(ok[s]))])
    x_0, y_0, x_1, y_1 = (int(v) for v in candidates[min(int(pick * len(candidates)), len(candidates) - 1)])
    # the patch: the canvas's mean, with the part of the image it covers pasted in
    patch = np.empty((y_1 - y_0, x_1 - x_0, 3), np.uint8)
    patch[...] = _MEAN_PIXEL
    ix0, iy0 = max(x_0, left), max(y_0, top)
    ix1, iy1 = min(x_1, left + width), min(y_1, top + height)
    if ix1 > ix0 and iy1 > iy0:
        patch[iy0 - y_0:iy1 - y_0, ix0 - x_0:ix1 - x_0] = pixels[iy0 - top:iy1 - top, ix0 - left:ix1 - left]
    # the objects whose centre lies in the patch, clipped to it, normalised
    keep = ((centres >= [x_0, y_0]) & (centres < [x_1, y_1])).all(axis=1)
    size = np.array([x_1 - x_0, y_1 - y_0] * 2, np.float64)
    moved = np.clip((boxes - [x_0, y_0, x_0, y_0]) / size, 0.0, 1.0)
    if flip:
        patch = patch[:, ::-1]
        moved = np.stack([1.0 - moved[:, 2], moved[:, 1], 1.0 - moved[:, 0], moved[:, 3]], axis=1)
    out = np.concatenate([objects[:, :1], moved, objects[:, 5:]], axis=1).astype(np.float32)
    keep &= (out[:, 3] > out[:, 1]) & (out[:, 4] > out[:, 2])  # positive area, also in float32
    return Image.fromarray(np.ascontiguousarray(patch), "RGB"), out[keep]
