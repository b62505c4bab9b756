"""The seed's toy body: three halving blocks of 16, 32 and 64 filters."""

from __future__ import annotations

from typing import Any, Sequence

from mxnet.gluon import nn

from .._blocks import HalvingBlock
from ..errors import InputError
from ..interfaces import Backbone


class ToyBackbone(Backbone):
    """The seed's toy SSD body: halving blocks with ``filters`` channels, one feature map out.

    A ``(B, 3, 256, 256)`` batch gives one feature map ``(B, 64, 32, 32)``.

    Parameters
    ----------
    filters : sequence of int, default (16, 32, 64)
        Channels of each halving block, in order (the seed's values).
    """

    def __init__(self, filters: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        filters = list(filters) if isinstance(filters, (list, tuple)) else filters
        if not isinstance(filters, list) or not filters or not all(
            isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters
        ):
            raise InputError(
                "The 'filters' argument of ToyBackbone must be a non-empty list of positive ints; "
                f"got {filters!r} instead."
            )
        self.filters = filters
        with self.name_scope():
            self.body = nn.HybridSequential()
            for count in filters:
                self.body.add(HalvingBlock(count))

    @property
    def out_channels(self) -> Sequence[int]:
        return (self.filters[-1],)

    @property
    def out_strides(self) -> Sequence[int]:
        return (2 ** len(self.filters),)

    def hybrid_forward(self, F: Any, x: Any) -> list[Any]:
        return [self.body(x)]
