"""Gluon blocks shared by the built-in components and the detector: the seed's halving block.

This layer sits below ``components`` and the model, so that the toy backbone
(a built-in plugin) and the detector's scale blocks build the same block
without either importing the other.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Sequence

import mxnet as mx
from mxnet.gluon import nn

from ._base import check_positive_int

__all__ = ["HalvingBlock", "can_fuse_batch_norm_relu", "fused_batch_norm_relu"]

# gluon.nn.BatchNorm's defaults, which the fused operator must repeat (the seed keeps them).
_BATCH_NORM = {"axis": 1, "eps": 1e-5, "momentum": 0.9, "fix_gamma": False, "use_global_stats": False}


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
        self.filters = check_positive_int("filters", filters, owner="HalvingBlock")
        # (convolution, batch norm) pairs, each followed by a ReLU: what the fused step replaces.
        self._conv_bn: list[tuple[nn.Conv2D, nn.BatchNorm]] = []  # not children: the add() below registers them
        with self.name_scope():
            for _ in range(2):
                conv = nn.Conv2D(filters, kernel_size=3, strides=1, padding=1)
                norm = nn.BatchNorm(in_channels=filters)
                self.add(conv, norm, nn.Activation("relu"))
                self._conv_bn.append((conv, norm))
            self.add(nn.MaxPool2D(pool_size=2))
        self._fuse = False

    @property
    def fuses_batch_norm_relu(self) -> bool:
        """Whether graphs built now apply batch norm and ReLU as one operator."""
        return self._fuse

    def fuse_batch_norm_relu(self, enabled: bool) -> bool:
        """Build batch norm + ReLU as one operator into graphs built from now on; return the previous setting."""
        previous, self._fuse = self._fuse, bool(enabled)
        return previous

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        # Fused only while a graph is being built (symbols), so no imperative call, and no
        # cached graph built outside fused_batch_norm_relu, ever holds the CPU-only operator.
        if not (self._fuse and F is mx.sym):
            return super().hybrid_forward(F, x)
        for conv, norm in self._conv_bn:
            x = F.contrib.BatchNormWithReLU(conv(x), norm.gamma.var(), norm.beta.var(), norm.running_mean.var(),
                                            norm.running_var.var(), **_BATCH_NORM)
        return self[len(self) - 1](x)  # the max-pool


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


def can_fuse_batch_norm_relu(contexts: Sequence[mx.Context]) -> bool:
    """MXNet's fused batch norm + ReLU runs only through MKL-DNN: only on CPUs, with MKL-DNN on."""
    return all(c.device_type == "cpu" for c in contexts) and _mkldnn_runs_batch_norm_relu()


@contextlib.contextmanager
def fused_batch_norm_relu(network: nn.Block, enabled: bool = True) -> Iterator[None]:
    """While the ``with`` statement runs, graphs built of ``network`` fuse batch norm and ReLU.

    Every :class:`HalvingBlock` of ``network`` then builds each batch norm and
    the ReLU after it as one operator, ``_contrib_BatchNormWithReLU``, into the
    graph being built. That operator exists only for MKL-DNN on the CPU, so
    only graphs that run on CPU contexts may be built so
    (:func:`can_fuse_batch_norm_relu`). detkit's training step does: measured
    about 7 % faster at 256x256. Inference, where batch norm is a cheap scale and
    shift, gained nothing measurable, so its graphs, and exported ones, keep
    the portable pair of operators. The flags live on the blocks: build graphs
    of one network from one thread at a time.
    """
    blocks: list[HalvingBlock] = []
    network.apply(lambda block: blocks.append(block) if isinstance(block, HalvingBlock) else None)
    previous = [block.fuse_batch_norm_relu(enabled) for block in blocks]
    try:
        yield
    finally:
        for block, value in zip(blocks, previous):
            block.fuse_batch_norm_relu(value)
