"""Anchors from ``MultiBoxPrior``, the seed's sizes and ratios."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..errors import InputError
from ..interfaces import AnchorGenerator

#: The seed's anchor sizes, one pair per scale (fractions of the input side).
SEED_SIZES = ((0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))
#: The seed's aspect ratios, used on every scale.
SEED_RATIOS = (1.0, 2.0, 0.5)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class MultiBoxPriorAnchors(AnchorGenerator):
    """``n + m - 1`` anchors on every position of every scale, by ``MultiBoxPrior``.

    On a scale with sizes ``s_1..s_n`` and ratios ``r_1..r_m`` the anchors of a
    position are ``(s_i, r_1)`` for each ``i``, then ``(s_1, r_j)`` for ``j >= 2``,
    centred on the position. An anchor of size ``s`` and ratio ``r`` is
    ``s * sqrt(r)`` input heights wide and ``s / sqrt(r)`` input heights high
    (``MultiBoxPrior`` sizes both sides relative to the height, so that a ratio
    of 1 is square in pixels on a non-square input too): in normalised
    coordinates, ``s * sqrt(r) * H / W`` wide and ``s / sqrt(r)`` high.

    Parameters
    ----------
    sizes : sequence of sequence of float
        Anchor sizes per scale, each in ``(0, 1]``. Default: the seed's five scales.
    ratios : sequence of float, or sequence of sequence of float
        Aspect ratios (width / height), each ``> 0``; one list for every scale, or
        one list per scale. Default: ``[1, 2, 0.5]`` on every scale (the seed).
    clip : bool, default False
        Clip anchors to the image.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]] = SEED_SIZES,
        ratios: Sequence[float] | Sequence[Sequence[float]] = SEED_RATIOS,
        clip: bool = False,
    ) -> None:
        super().__init__()
        sizes = _per_scale("sizes", sizes)
        given: Any = ratios
        if given and all(_is_number(r) for r in given):  # one list for every scale
            given = [list(given)] * len(sizes)
        ratios = _per_scale("ratios", given)
        if len(sizes) != len(ratios):
            raise InputError(
                "The 'sizes' and 'ratios' arguments of MultiBoxPriorAnchors must have one entry per "
                f"scale each; got {len(sizes)} scales of sizes and {len(ratios)} of ratios instead."
            )
        for scale, scale_sizes in enumerate(sizes):
            for size in scale_sizes:
                if not 0 < size <= 1:
                    raise InputError(
                        f"Each anchor size must be in (0, 1]; got {size!r} in sizes[{scale}] instead."
                    )
        for scale, scale_ratios in enumerate(ratios):
            for ratio in scale_ratios:
                if not ratio > 0:
                    raise InputError(f"Each anchor ratio must be > 0; got {ratio!r} in ratios[{scale}] instead.")
        self.sizes = sizes
        self.ratios = ratios
        self.clip = bool(clip)

    @property
    def num_anchors(self) -> Sequence[int]:
        return tuple(len(s) + len(r) - 1 for s, r in zip(self.sizes, self.ratios))

    def hybrid_forward(self, F: Any, *feature_maps: Any) -> Any:
        anchors = [
            # (1, H_i * W_i * A_i, 4)
            F.contrib.MultiBoxPrior(feature_map, sizes=sizes, ratios=ratios, clip=self.clip)
            for feature_map, sizes, ratios in zip(feature_maps, self.sizes, self.ratios)
        ]
        return F.concat(*anchors, dim=1)  # (1, N, 4)


def _per_scale(argument: str, value: Any) -> list[list[float]]:
    if not isinstance(value, (list, tuple)) or not value or not all(
        isinstance(scale, (list, tuple)) and scale and all(_is_number(x) for x in scale) for scale in value
    ):
        raise InputError(
            f"The '{argument}' argument of MultiBoxPriorAnchors must be a non-empty list with one "
            f"non-empty list of numbers per scale; got {value!r} instead."
        )
    return [[float(x) for x in scale] for scale in value]
