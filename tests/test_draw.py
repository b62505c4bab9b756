"""The drawer: labels stay readable on crowded real photos (over every outline, inside the picture)."""

from __future__ import annotations

import numpy as np

from detkit._base._draw import PALETTE, draw_boxes


def _columns_of(picture, colour, rows: slice) -> np.ndarray:
    """The columns where ``colour`` appears within ``rows`` of ``picture``."""
    band = np.asarray(picture)[rows]
    return np.flatnonzero((band == colour).all(axis=2).any(axis=0))


def test_a_later_box_does_not_cross_an_earlier_label() -> None:
    black = np.zeros((200, 200, 3), np.uint8)
    first = (0, "first 0.90", (20.0, 60.0, 150.0, 180.0))  # its label sits in the band above y=60
    # A later box whose left edge (x=40) runs straight through the first box's label.
    second = (1, "second 0.50", (40.0, 10.0, 190.0, 190.0))
    picture, alone = np.asarray(draw_boxes(black, [first, second])), np.asarray(draw_boxes(black, [first]))
    label = (alone[:60] == PALETTE[0]).all(axis=2)  # the first label's background, drawn alone
    rows, columns = np.nonzero(label)
    assert columns.min() <= 40 <= columns.max()  # the label does cover the second box's edge
    # Everywhere on that label, the picture shows the label as drawn alone: no outline crosses it.
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    assert (picture[top:bottom, left:right] == alone[top:bottom, left:right]).all()
    assert tuple(picture[120, 40]) == PALETTE[1]  # the second box is still outlined below the label


def test_the_first_boxs_label_is_drawn_over_the_others() -> None:
    black = np.zeros((200, 200, 3), np.uint8)
    best = (0, "best 0.99", (30.0, 60.0, 150.0, 150.0))
    other = (1, "other 0.40", (34.0, 60.0, 160.0, 160.0))  # its label lands almost where the first one's does
    picture = np.asarray(draw_boxes(black, [best, other]))
    alone = np.asarray(draw_boxes(black, [best]))
    rows, columns = np.nonzero((alone[:60] == PALETTE[0]).all(axis=2))
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    assert (picture[top:bottom, left:right] == alone[top:bottom, left:right]).all()


def test_a_label_near_the_right_edge_is_shifted_into_the_picture() -> None:
    black = np.zeros((100, 200, 3), np.uint8)
    picture = draw_boxes(black, [(2, "cat 0.99", (180.0, 40.0, 199.0, 90.0))])
    coloured = _columns_of(picture, PALETTE[2], slice(0, 39))  # the label's band above the box
    # Shifted left to fit: it starts left of the box (x=180), well inside the picture, and ends at its edge.
    assert 100 < coloured.min() < 180
    assert 196 <= coloured.max() <= 199
