"""The drawer: labels stay readable on crowded real photos (over every outline, inside the picture)."""

from __future__ import annotations

import numpy as np

from detkit._base._draw import PALETTE, draw_boxes


def _colour_at(picture, x: int, y: int) -> tuple[int, int, int]:
    return tuple(np.asarray(picture)[y, x])


def test_a_later_box_does_not_cross_an_earlier_label() -> None:
    black = np.zeros((200, 200, 3), np.uint8)
    first = (0, "first 0.90", (20.0, 60.0, 150.0, 180.0))  # its label sits above y=60
    # A later box whose left edge runs straight through the first box's label.
    second = (1, "second 0.50", (40.0, 10.0, 190.0, 190.0))
    picture = draw_boxes(black, [first, second])
    alone = draw_boxes(black, [first])
    # Along the second box's left edge inside the first label's band, the picture is the label as drawn alone.
    label_row = 52
    assert _colour_at(alone, 40, label_row) != (0, 0, 0)  # the label covers that spot
    assert _colour_at(picture, 40, label_row) == _colour_at(alone, 40, label_row)
    assert _colour_at(picture, 40, 120) == PALETTE[1]  # the second box is still outlined there


def test_a_label_near_the_right_edge_stays_inside_the_picture() -> None:
    black = np.zeros((100, 100, 3), np.uint8)
    picture = draw_boxes(black, [(2, "a long class name 0.99", (80.0, 40.0, 99.0, 90.0))])
    pixels = np.asarray(picture)
    band = pixels[20:40]  # the label's band above the box
    coloured = np.flatnonzero((band == PALETTE[2]).all(axis=2).any(axis=0))
    # Shifted left to fit: it starts well left of the box (x=80) and ends inside the picture.
    assert coloured.min() < 40 and coloured.max() <= 99
