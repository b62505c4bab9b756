"""The seed's toy body: three halving blocks of 16, 32 and 64 filters."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Sequence

import mxnet as mx
from mxnet.gluon import nn

from ..errors import InputError
from ..interfaces import Backbone


class HalvingBlock(nn.HybridSequential):
    """Two ``Conv3x3(pad 1)-BatchNorm-ReLU`` layers, then a 2x2 max-pool that halves height and width.

    The seed's ``down_sample`` block. Input ``(B, c, H, W)`` -> output
    ``(B, filters, H // 2, W // 2)``.

    In :func:`detkit.fit`'s training step on the CPU, each batch norm applies the
    ReLU after it itself, as one MKL-DNN operator: the same numbers, one pass
    over the data less, forward and backward.

    Parameters
    ----------
    filters : int
        Output channels of both convolutions.
    """

    def __init__(self, filters: int) -> None:
        super().__init__()
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise InputError(f"The 'filters' argument of HalvingBlock must be a positive int; got {filters!r} instead.")
        self.filters = filters
        with self.name_scope():
            for _ in range(2):
                self.add(nn.Conv2D(filters, kernel_size=3, strides=1, padding=1))
                self.add(nn.BatchNorm(in_channels=filters))
                self.add(nn.Activation("relu"))
            self.add(nn.MaxPool2D(pool_size=2))
        self._fuse_batch_norm_relu = False

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        # Fused only while a graph is being built (symbols), so no imperative call, and no
        # cached graph built outside _fused_batch_norm_relu, ever holds the CPU-only operator.
        fuse = self._fuse_batch_norm_relu and F is mx.sym
        layers = list(self._children.values())
        position = 0
        while position < len(layers):
            layer = layers[position]
            following = layers[position + 1] if position + 1 < len(layers) else None
            if (fuse and isinstance(layer, nn.BatchNorm) and isinstance(following, nn.Activation)
                    and following._act_type == "relu"):
                x = F.contrib.BatchNormWithReLU(x, layer.gamma.var(), layer.beta.var(), layer.running_mean.var(),
                                                layer.running_var.var(), **layer._kwargs)
                position += 2
            else:
                x = layer(x)
                position += 1
        return x


@functools.lru_cache(maxsize=None)
def _mkldnn_runs_batch_norm_relu() -> bool:
    """Whether this MXNet runs ``_contrib_BatchNormWithReLU`` (MKL-DNN built in and not switched off)."""
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        return False
    # MXNET_MKLDNN_ENABLED=0 (or false, ...) switches MKL-DNN off; asking the operator is exact.
    x = mx.nd.ones((1, 1, 1, 1))
    one, zero = mx.nd.ones((1,)), mx.nd.zeros((1,))
    try:
        mx.nd.contrib.BatchNormWithReLU(x, one, zero, zero.copy(), one.copy()).wait_to_read()
    except mx.base.MXNetError:
        return False
    return True


def _can_fuse_batch_norm_relu(contexts: Sequence[mx.Context]) -> bool:
    """MXNet's fused batch norm + ReLU runs only through MKL-DNN: only on CPUs, with MKL-DNN on."""
    return all(c.device_type == "cpu" for c in contexts) and _mkldnn_runs_batch_norm_relu()


@contextlib.contextmanager
def _fused_batch_norm_relu(network: nn.Block, enabled: bool = True) -> Iterator[None]:
    """While the ``with`` statement runs, graphs built of ``network`` fuse batch norm and ReLU.

    Every :class:`HalvingBlock` of ``network`` then builds each batch norm and
    the ReLU after it as one operator, ``_contrib_BatchNormWithReLU``, into the
    graph being built. That operator exists only for MKL-DNN on the CPU, so
    only graphs that run on CPU contexts may be built so
    (:func:`_can_fuse_batch_norm_relu`). detkit's training step does: measured
    about 7 % faster at 256x256. Inference, where batch norm is a cheap scale and
    shift, gained nothing measurable, so its graphs, and exported ones, keep
    the portable pair of operators. The flags live on the blocks: build graphs
    of one network from one thread at a time.
    """
    blocks: list[HalvingBlock] = []
    network.apply(lambda block: blocks.append(block) if isinstance(block, HalvingBlock) else None)
    previous = [block._fuse_batch_norm_relu for block in blocks]
    for block in blocks:
        block._fuse_batch_norm_relu = enabled
    try:
        yield
    finally:
        for block, value in zip(blocks, previous):
            block._fuse_batch_norm_relu = value


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
