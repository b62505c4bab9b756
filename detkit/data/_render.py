"""Procedural rendering of the synthetic pikachu: a cartoon character on a cluttered background.

Everything is drawn with Pillow and numpy from a :class:`numpy.random.Generator`,
so a scene depends on nothing but that generator's state. The character is
drawn at twice its final size, rotated, flipped and shrunk (antialiased), and
composited over the background; its box is the exact extent of the pixels it
covers (alpha > 0 after faint edge pixels are dropped).
"""

from __future__ import annotations

import colorsys
import math
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_SUPERSAMPLE = 2
# Size of the character: the longer side of its box, as a fraction of the image side.
SIZE_RANGE = (0.15, 0.5)
ROTATION_DEGREES = 30.0
_MIN_ALPHA = 24  # fainter antialiased edge pixels are dropped, so the box ends where the character visibly does


class Sprite(NamedTuple):
    """A rendered character: an RGBA image cropped to its pixels, placed at ``(x, y)``."""

    image: Image.Image
    x: int
    y: int


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255 + 0.5), int(g * 255 + 0.5), int(b * 255 + 0.5)


def _character_palette(rng: np.random.Generator) -> dict[str, tuple[int, int, int]]:
    hue = rng.uniform(44, 56) / 360  # pikachu yellow, jittered
    sat = rng.uniform(0.72, 0.95)
    val = rng.uniform(0.82, 1.0)
    return {
        "body": _hsv(hue, sat, val),
        "shade": _hsv(hue - 0.02, sat, val * 0.8),
        "line": _hsv(0.07, 0.7, rng.uniform(0.15, 0.3)),
        "tip": _hsv(0.0, 0.0, rng.uniform(0.02, 0.12)),
        "cheek": _hsv(rng.uniform(-0.015, 0.02), rng.uniform(0.75, 0.95), rng.uniform(0.8, 0.95)),
        "eye": _hsv(0.0, 0.0, rng.uniform(0.0, 0.08)),
        "brown": _hsv(0.07, 0.75, rng.uniform(0.45, 0.6)),
        "mouth": _hsv(0.98, 0.7, 0.45),
    }


def _ear(base_a: tuple[float, float], base_b: tuple[float, float], tip: tuple[float, float],
         bulge: float) -> list[tuple[float, float]]:
    """An ear: a pointed leaf from two base points to the tip, sides bulging outwards."""
    sides = []
    for (sx, sy), (ox, oy) in ((base_a, base_b), (base_b, base_a)):
        dx, dy = tip[0] - sx, tip[1] - sy
        length = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / length, dx / length
        if nx * (ox - sx) + ny * (oy - sy) > 0:  # bulge away from the other side
            nx, ny = -nx, -ny
        side = []
        for t in np.linspace(0.0, 1.0, 7):
            b = bulge * math.sin(math.pi * t) * (1 - t * 0.5)
            side.append((sx + dx * t + nx * b, sy + dy * t + ny * b))
        sides.append(side)
    return sides[0] + sides[1][::-1][1:]


def _ear_tip(ear: list[tuple[float, float]], fraction: float) -> list[tuple[float, float]]:
    """The part of an ear polygon beyond ``fraction`` of the way from its base to its tip."""
    n = (len(ear) + 1) // 2  # points per side; the tip is ear[n - 1]
    start = int(round((n - 1) * fraction))
    return ear[start : len(ear) - start]


def draw_character(rng: np.random.Generator, height_px: float) -> Image.Image:
    """Draw one character, upright and unflipped, about ``height_px`` tall at the final scale.

    Returns an RGBA image at :data:`_SUPERSAMPLE` times the final scale, transparent
    around the character.
    """
    colors = _character_palette(rng)
    unit = height_px * _SUPERSAMPLE / 4.2  # the character spans about 4.2 units, ear tip to feet
    size = int(math.ceil(unit * 6.4))
    origin = (size * 0.36, size * 0.36)  # the head centre, leaving room for the ears and the tail
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    line = max(1, int(round(unit * 0.05)))

    def p(x: float, y: float) -> tuple[float, float]:
        return origin[0] + x * unit, origin[1] + y * unit

    def ellipse(cx: float, cy: float, rx: float, ry: float, fill: Any, outline: bool = True) -> None:
        (x0, y0), (x1, y1) = p(cx - rx, cy - ry), p(cx + rx, cy + ry)
        draw.ellipse([x0, y0, x1, y1], fill=fill, outline=colors["line"] if outline else None, width=line)

    def polygon(points: Any, fill: Any, outline: bool = True) -> None:
        draw.polygon([p(x, y) for x, y in points], fill=fill, outline=colors["line"] if outline else None, width=line)

    body_w = rng.uniform(0.78, 0.95)
    body_h = rng.uniform(0.8, 0.95)
    head_w = rng.uniform(0.95, 1.08)
    head_h = rng.uniform(0.78, 0.88)

    # zig-zag tail behind the body: a lightning bolt from the lower back up and out, brown at its root
    s = rng.uniform(0.85, 1.15)
    tail = [(0.6, 1.75), (1.05, 1.45), (0.9, 1.2), (1.45, 0.9), (1.3, 0.65), (2.0, 0.05),
            (2.2, 0.4), (1.7, 0.8), (1.85, 1.0), (1.3, 1.35), (1.45, 1.55), (0.75, 2.0)]
    tail = [(0.6 + (x - 0.6) * s, 1.75 + (y - 1.75) * s) for x, y in tail]
    polygon(tail, colors["body"])
    polygon([tail[0], tail[1], ((tail[1][0] + tail[-2][0]) / 2, (tail[1][1] + tail[-2][1]) / 2), tail[-1]],
            colors["brown"])

    # feet, body, arms
    ellipse(-0.45, 1.2 + body_h + 0.05, 0.32, 0.16, colors["body"])
    ellipse(0.45, 1.2 + body_h + 0.05, 0.32, 0.16, colors["body"])
    ellipse(0.0, 1.2, body_w, body_h, colors["body"])
    ellipse(-body_w * 0.55, 1.0, 0.26, 0.14, colors["shade"])
    ellipse(body_w * 0.55, 1.0, 0.26, 0.14, colors["shade"])

    # ears: long, pointed, black-tipped, each at its own angle
    for side in (-1.0, 1.0):
        angle = math.radians(rng.uniform(15, 45))
        length = rng.uniform(1.35, 1.7)
        base_a = (side * 0.78 * head_w, -0.45 * head_h)
        base_b = (side * 0.28 * head_w, -0.78 * head_h)
        mid = ((base_a[0] + base_b[0]) / 2, (base_a[1] + base_b[1]) / 2)
        tip = (mid[0] + side * math.sin(angle) * length, mid[1] - math.cos(angle) * length)
        ear = _ear(base_a, base_b, tip, bulge=0.24)
        polygon(ear, colors["body"])
        polygon(_ear_tip(ear, rng.uniform(0.5, 0.65)), colors["tip"])

    # head over the ear roots, then the face
    ellipse(0.0, 0.0, head_w, head_h, colors["body"])
    eye_x, eye_y, eye_r = rng.uniform(0.36, 0.46), rng.uniform(-0.12, 0.0), rng.uniform(0.12, 0.16)
    for side in (-1.0, 1.0):
        ellipse(side * eye_x, eye_y, eye_r, eye_r * 1.1, colors["eye"], outline=False)
        glint = eye_r * 0.38
        ellipse(side * eye_x - eye_r * 0.3, eye_y - eye_r * 0.4, glint, glint, (255, 255, 255), outline=False)
        ellipse(side * 0.7 * head_w, 0.3, 0.19, 0.17, colors["cheek"], outline=False)
    ellipse(0.0, 0.13, 0.05, 0.035, colors["eye"], outline=False)
    if rng.random() < 0.5:  # open mouth
        ellipse(0.0, 0.33, 0.13, 0.1, colors["mouth"])
    else:  # a small "w"
        for side in (-1.0, 1.0):
            (x0, y0), (x1, y1) = p(side * 0.13 - 0.13, 0.12), p(side * 0.13 + 0.13, 0.34)
            draw.arc([x0, y0, x1, y1], 20, 160, fill=colors["line"], width=line)
    return image


def render_sprite(rng: np.random.Generator, image_size: int, target: float | None = None) -> Image.Image:
    """A character at a random size (or ``target`` pixels, the longer side of its box), rotation, flip:
    RGBA at final scale, cropped to its pixels."""
    if target is None:
        target = image_size * math.exp(rng.uniform(math.log(SIZE_RANGE[0]), math.log(SIZE_RANGE[1])))
    angle = rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES)
    flip = rng.random() < 0.5
    # the drawn height is about the longer side of the upright box; scale so the final box fits `target`
    return fit_sprite(draw_character(rng, target), angle, flip, target)


def fit_sprite(big: Image.Image, angle: float, flip: bool, target: float) -> Image.Image:
    """A supersampled RGBA drawing flipped, rotated by ``angle`` degrees and shrunk so that the longer
    side of its box is ``target`` pixels; faint edge pixels dropped, cropped to its pixels."""
    big = big.crop(big.getbbox())
    if flip:
        big = big.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # rotate with premultiplied alpha so transparent black does not bleed into the edges
    big = big.convert("RGBa").rotate(angle, resample=Image.Resampling.BICUBIC, expand=True).convert("RGBA")
    big = big.crop(big.getbbox())
    scale = target / max(big.size)
    fitted = (max(1, round(big.size[0] * scale)), max(1, round(big.size[1] * scale)))
    small = big.resize(fitted, Image.Resampling.LANCZOS)
    rgba = np.array(small)
    rgba[rgba[:, :, 3] < _MIN_ALPHA] = 0
    sprite = Image.fromarray(rgba, "RGBA")
    return sprite.crop(sprite.getbbox())


# ---------------------------------------------------------------- backgrounds


def _random_color(rng: np.random.Generator, lookalike: float = 0.35) -> tuple[int, int, int]:
    """A random colour; with probability ``lookalike`` one of the character's (yellow, red, black, brown)."""
    if rng.random() < lookalike:
        kind = rng.integers(4)
        if kind == 0:
            return _hsv(rng.uniform(40, 60) / 360, rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0))
        if kind == 1:
            return _hsv(rng.uniform(-0.02, 0.03), rng.uniform(0.7, 1.0), rng.uniform(0.6, 0.95))
        if kind == 2:
            return _hsv(0.0, 0.0, rng.uniform(0.0, 0.15))
        return _hsv(0.07, rng.uniform(0.5, 0.8), rng.uniform(0.3, 0.6))
    return _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.15, 1.0))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """``(size, size)`` float noise in [0, 1] varying smoothly over about ``cells`` cells."""
    grid = (rng.random((cells + 1, cells + 1)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """An ``(size, size, 3)`` float32 background: gradient, texture or landscape, before clutter."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = np.array(_random_color(rng, 0.2), np.float32), np.array(_random_color(rng, 0.2), np.float32)
    kind = rng.integers(5)
    if kind == 0:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:  # stripes
        a = rng.uniform(0, math.pi)
        freq = rng.uniform(3, 18)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (xx * math.cos(a) + yy * math.sin(a)))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    elif kind == 2:  # checkerboard, possibly rotated
        a = rng.uniform(0, math.pi / 2)
        n = rng.uniform(3, 12)
        u, v = xx * math.cos(a) - yy * math.sin(a), xx * math.sin(a) + yy * math.cos(a)
        t = ((np.floor(u * n) + np.floor(v * n)) % 2).astype(np.float32)
    elif kind == 3:  # clouds / foliage: smooth noise at two scales
        coarse = _smooth_noise(rng, size, int(rng.integers(2, 6)))
        t = 0.65 * coarse + 0.35 * _smooth_noise(rng, size, int(rng.integers(8, 24)))
    else:  # landscape: sky gradient over ground with a wavy horizon
        horizon = rng.uniform(0.3, 0.75) + 0.08 * np.sin(xx * rng.uniform(2, 9) + rng.uniform(0, 6))
        ground = yy > horizon
        t = np.where(ground, 1.0, yy / np.maximum(horizon, 1e-3) * 0.5).astype(np.float32)
        t += ground * 0.3 * _smooth_noise(rng, size, 16)
    t = t[:, :, None]
    image = c0 * (1 - t) + c1 * t
    image += (_smooth_noise(rng, size, 8)[:, :, None] - 0.5) * rng.uniform(0, 60)  # uneven lighting
    return image


def _clutter(rng: np.random.Generator, image: Image.Image) -> None:
    """Draw random shapes, many in the character's colours, so that colour alone does not find it."""
    size = image.size[0]
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 15))):
        color = _random_color(rng)
        r = size * math.exp(rng.uniform(math.log(0.03), math.log(0.3)))
        cx, cy = rng.uniform(-0.1, 1.1) * size, rng.uniform(-0.1, 1.1) * size
        kind = rng.integers(7)
        outline = _random_color(rng) if rng.random() < 0.3 else None
        if kind == 0:
            rx, ry = r, r * rng.uniform(0.4, 1.0)
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=color, outline=outline, width=2)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r * rng.uniform(0.3, 1), cx + r, cy + r], fill=color, outline=outline, width=2)
        elif kind == 2:  # random polygon
            n = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * math.pi, n))
            radii = r * rng.uniform(0.4, 1.0, n)
            points = [(cx + q * math.cos(a), cy + q * math.sin(a)) for a, q in zip(angles, radii)]
            draw.polygon(points, fill=color, outline=outline)
        elif kind == 3:  # a pointed leaf, sometimes black-tipped (ear-like)
            a = rng.uniform(0, 2 * math.pi)
            tip = (cx + r * 1.5 * math.cos(a), cy + r * 1.5 * math.sin(a))
            base_a = (cx + r * 0.3 * math.cos(a + 1.6), cy + r * 0.3 * math.sin(a + 1.6))
            base_b = (cx + r * 0.3 * math.cos(a - 1.6), cy + r * 0.3 * math.sin(a - 1.6))
            leaf = _ear(base_a, base_b, tip, bulge=r * 0.2)
            draw.polygon(leaf, fill=color)
            if rng.random() < 0.5:
                draw.polygon(_ear_tip(leaf, 0.6), fill=_random_color(rng, 0.8))
        elif kind == 4:  # zig-zag band (tail-like)
            a = rng.uniform(0, 2 * math.pi)
            points = []
            for k in range(int(rng.integers(3, 7))):
                d = k * r * 0.5
                off = (r * 0.25) * (1 if k % 2 else -1)
                points.append((cx + d * math.cos(a) - off * math.sin(a), cy + d * math.sin(a) + off * math.cos(a)))
            draw.line(points, fill=color, width=max(2, int(r * rng.uniform(0.1, 0.3))), joint="curve")
        elif kind == 5:  # dots (cheek- and eye-like)
            for _ in range(int(rng.integers(1, 4))):
                q = r * rng.uniform(0.1, 0.3)
                x, y = cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)
                draw.ellipse([x - q, y - q, x + q, y + q], fill=_random_color(rng, 0.7))
        else:  # curved stroke
            box = [cx - r, cy - r, cx + r, cy + r]
            start = rng.uniform(0, 360)
            draw.arc(box, start, start + rng.uniform(60, 300), fill=color, width=max(1, int(r * 0.12)))


def render_scene(rng: np.random.Generator, image_size: int) -> tuple[Image.Image, list[Sprite]]:
    """A background (RGB, clutter drawn) and the characters to composite over it."""
    base = _background(rng, image_size)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    _clutter(rng, image)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    sprite = render_sprite(rng, image_size)
    w, h = sprite.size
    x = int(rng.integers(0, image_size - w + 1))
    y = int(rng.integers(0, image_size - h + 1))
    return image, [Sprite(sprite, x, y)]


def compose(background: Image.Image, sprites: list[Sprite], noise: float = 0.0,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Composite the sprites over the background.

    Returns
    -------
    image : numpy.ndarray
        ``(S, S, 3)`` uint8 RGB.
    objects : numpy.ndarray
        ``(K, 5)`` float32 rows ``[0, xmin, ymin, xmax, ymax]``: each sprite's pixel
        extent, normalised to [0, 1] (``xmax`` is one past the last column).
    """
    canvas = background.convert("RGBA")
    width, height = canvas.size
    objects = []
    for sprite in sprites:
        canvas.alpha_composite(sprite.image, dest=(sprite.x, sprite.y))
        x0, y0, x1, y1 = sprite.image.getbbox() or (0, 0, *sprite.image.size)  # alpha > 0 extent (cropped to it)
        objects.append([0.0, (sprite.x + x0) / width, (sprite.y + y0) / height,
                        (sprite.x + x1) / width, (sprite.y + y1) / height])
    image = np.asarray(canvas.convert("RGB"))
    if noise > 0 and rng is not None:
        image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
    return image, np.array(objects, np.float32).reshape(-1, 5)


def render_sample(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image ``(S, S, 3)`` uint8 and its objects ``(K, 5)`` (see :func:`compose`)."""
    background, sprites = render_scene(rng, image_size)
    noise = float(rng.uniform(0, 6))
    return compose(background, sprites, noise, rng)
