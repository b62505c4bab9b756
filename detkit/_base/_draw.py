"""Boxes with labels drawn on an image (Pillow), written once for ``draw_detections`` and ``data show``."""

from __future__ import annotations

from typing import Container, Iterable, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: One colour per class id, cycled; distinct on photographs and on the synthetic backgrounds.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40), (40, 200, 255), (60, 230, 60), (255, 160, 0), (230, 60, 230), (255, 255, 60),
)

#: ``(class_id, label, (xmin, ymin, xmax, ymax))`` with the box in pixels of the image.
LabelledBox = Tuple[int, str, Tuple[float, float, float, float]]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def draw_boxes(image: np.ndarray, boxes: Iterable[LabelledBox], *, title: str | None = None,
               line_width: int = 2, dashed: Container[int] = (), min_side: int = 0) -> Image.Image:
    """``image`` (``(H, W, 3)`` uint8 RGB) with each box outlined in its class colour and labelled.

    The label sits above its box, or inside it where the box touches the top
    edge, shifted left where it would leave the picture; labels are drawn over
    every outline, the first box's on top. ``title`` goes into a white band above the picture. The boxes whose
    positions (0-based, in ``boxes`` order) are in ``dashed`` are outlined dashed.
    A picture whose longer side is below ``min_side`` is enlarged (by a whole
    factor) first, so that small images stay readable.
    """
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    scale = max(1, -(-min_side // max(picture.size))) if min_side else 1
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(picture)
    font = _font(max(10, min(24, max(picture.size) // 40)))
    labels = []
    for position, (class_id, label, given) in enumerate(boxes):
        x0, y0, x1, y1 = (v * scale for v in given)
        color = PALETTE[int(class_id) % len(PALETTE)]
        box = [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)]
        if position in dashed:
            _dashed_rectangle(draw, box, color, line_width * scale)
        else:
            draw.rectangle(box, outline=color, width=line_width * scale)
        if label:
            labels.append((box, color, label))
    # Labels after every outline, so that no box crosses a label; the first box's label last, on top of
    # the others (a detector's boxes come best first).
    for box, color, label in reversed(labels):
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        height = bottom - top
        # Inside the picture: shifted left where it would run off the right edge (a label wider than the
        # picture starts at its left edge).
        x = max(-left, min(box[0], picture.width - 1 - right))
        origin = (x, box[1] - height - 3 if box[1] > height + 3 else box[1] + 2)
        draw.rectangle(draw.textbbox(origin, label, font=font), fill=color)
        draw.text(origin, label, fill=(0, 0, 0), font=font)
    if not title:
        return picture
    left, top, right, bottom = draw.textbbox((0, 0), title, font=font)  # the same font as the labels
    band = int(bottom - top) + 8
    framed = Image.new("RGB", (picture.width, picture.height + band), (255, 255, 255))
    framed.paste(picture, (0, band))
    ImageDraw.Draw(framed).text((4, 4), title, fill=(0, 0, 0), font=font)
    return framed


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: list, color: tuple[int, int, int], width: int,
                      dash: float = 6.0) -> None:
    """Outline ``box`` ``[x0, y0, x1, y1]`` with dashes of ``dash`` pixels and gaps as long."""
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // (2 * dash)) + 1)
        for k in range(steps):
            start, end = 2 * k * dash / max(length, 1e-9), min(1.0, (2 * k + 1) * dash / max(length, 1e-9))
            if start >= 1:
                break
            draw.line([(ax + (bx - ax) * start, ay + (by - ay) * start), (ax + (bx - ax) * end, ay + (by - ay) * end)],
                      fill=color, width=width)
