"""Boxes with labels drawn on an image (Pillow), written once for ``draw_detections`` and ``data show``."""

from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: One colour per class id, cycled; distinct on photographs and on the synthetic backgrounds.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40), (40, 200, 255), (60, 230, 60), (255, 160, 0), (230, 60, 230), (255, 255, 60),
)

#: ``(class_id, label, (xmin, ymin, xmax, ymax))`` with the box in pixels of the image.
LabelledBox = Tuple[int, str, Tuple[float, float, float, float]]


def draw_boxes(image: np.ndarray, boxes: Iterable[LabelledBox], *, title: str | None = None,
               line_width: int = 2) -> Image.Image:
    """``image`` (``(H, W, 3)`` uint8 RGB) with each box outlined in its class colour and labelled.

    The label sits above its box, or inside it where the box touches the top
    edge; ``title`` goes into a white band above the picture.
    """
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for class_id, label, (x0, y0, x1, y1) in boxes:
        color = PALETTE[int(class_id) % len(PALETTE)]
        box = [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)]
        draw.rectangle(box, outline=color, width=line_width)
        if not label:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        height = bottom - top
        origin = (box[0], box[1] - height - 3 if box[1] > height + 3 else box[1] + 2)
        draw.rectangle(draw.textbbox(origin, label, font=font), fill=color)
        draw.text(origin, label, fill=(0, 0, 0), font=font)
    if not title:
        return picture
    left, top, right, bottom = draw.textbbox((0, 0), title, font=font)
    band = int(bottom - top) + 8
    framed = Image.new("RGB", (picture.width, picture.height + band), (255, 255, 255))
    framed.paste(picture, (0, band))
    ImageDraw.Draw(framed).text((4, 4), title, fill=(0, 0, 0), font=font)
    return framed
