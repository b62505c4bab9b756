"""GluonCV's SSD features: a model zoo body and the extra layers GluonCV's SSDs append to it."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, Union

import detkit
from detkit.errors import InputError
from detkit.interfaces import Backbone
from mxnet.gluon import nn

#: GluonCV's extra layers of ``ssd_300_vgg16_atrous`` (``vgg_atrous.extra_spec[300]``):
#: per extra map, its convolutions as ``[filters, kernel, stride, padding]``.
VGG300_EXTRAS = (
    ((256, 1, 1, 0), (512, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 1, 0)),
    ((128, 1, 1, 0), (256, 3, 1, 0)),
)
#: GluonCV's extra layers of ``ssd_512_vgg16_atrous`` (``vgg_atrous.extra_spec[512]``).
VGG512_EXTRAS = (
    ((256, 1, 1, 0), (512, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 4, 1, 1)),
)

BodySpec = Union[str, Mapping[str, Any]]


def expander_extras(filters: Sequence[int], min_depth: int = 128, reduce_ratio: float = 1.0) -> list[list[list[int]]]:
    """The extra layers of GluonCV's ``FeatureExpander`` for ``num_filters=filters`` (its SSD defaults).

    Each extra map is a 1 x 1 "transition" convolution to ``max(min_depth,
    round(f * reduce_ratio))`` channels, then a 3 x 3 convolution with stride 2
    and padding 1 to ``f`` channels (``ssd_512_resnet50_v1``: 512, 512, 256, 256).

    >>> from detkit_zoo import expander_extras
    >>> expander_extras([512, 256])
    [[[512, 1, 1, 0], [512, 3, 2, 1]], [[256, 1, 1, 0], [256, 3, 2, 1]]]
    """
    return [[[max(min_depth, int(round(f * reduce_ratio))), 1, 1, 0], [int(f), 3, 2, 1]] for f in filters]


class GluonCVFeatures(Backbone):
    """A registered backbone followed by the extra layers of a GluonCV SSD.

    GluonCV's SSDs append extra feature maps to their body: for VGG-16, each a
    1 x 1 and a 3 x 3 convolution with biases, each followed by a ReLU
    (:data:`VGG300_EXTRAS`, :data:`VGG512_EXTRAS`); for ResNets and MobileNets
    (``FeatureExpander``), the same without biases, each convolution followed
    by a BatchNorm and a ReLU (:func:`expander_extras`). This backbone returns
    the body's maps, then one map per extra layer: every scale a GluonCV SSD
    predicts on, so that the detector adds no scale blocks of its own.

    Parameters
    ----------
    body : str or mapping
        The body, a registered backbone: its name, or ``{"name": ..., **arguments}``
        (``{"name": "resnet50_v1", "stages": [3, 4]}``).
    extras : sequence of sequence of (int, int, int, int)
        Per extra map, its convolutions as ``[filters, kernel, stride, padding]``.
    batch_norm : bool, default False
        Convolutions without bias, each followed by a BatchNorm as
        ``FeatureExpander``'s (MXNet's symbol defaults: ``eps`` 1e-3 and no
        learned scale, ``gamma`` fixed at 1).

    Examples
    --------
    >>> import mxnet as mx
    >>> from detkit_zoo import GluonCVFeatures, expander_extras
    >>> features = GluonCVFeatures({"name": "mobilenet0_25", "stages": [3, 4]}, expander_extras([64, 32]),
    ...                            batch_norm=True)
    >>> features.out_channels, features.out_strides
    ((128, 256, 64, 32), (16, 32, 64, 128))
    >>> features.initialize()
    >>> [m.shape[2] for m in features(mx.nd.zeros((1, 3, 128, 128)))]
    [8, 4, 2, 1]
    """

    def __init__(self, body: BodySpec, extras: Sequence[Sequence[Sequence[int]]], batch_norm: bool = False) -> None:
        super().__init__()
        if isinstance(body, str):
            name, arguments = body, {}
        elif isinstance(body, Mapping) and isinstance(body.get("name"), str):
            arguments = {k: v for k, v in body.items() if k != "name"}
            name = body["name"]
        else:
            raise InputError("The 'body' argument of GluonCVFeatures must be a registered backbone name or a "
                             f"mapping {{'name': ..., other arguments}}; got {body!r} instead.")
        if not isinstance(batch_norm, bool):
            raise InputError(f"The 'batch_norm' argument of GluonCVFeatures must be True or False; "
                             f"got {batch_norm!r} instead.")
        self.extras = _checked_extras(extras)
        self.batch_norm = batch_norm
        self._body_name = name
        with self.name_scope():
            self.body = detkit.build_component("backbone", name, **arguments)
            self.layers = nn.HybridSequential()
            for index, layer in enumerate(self.extras):
                block = nn.HybridSequential(prefix=f"extra{index}_")
                with block.name_scope():
                    for filters, kernel, stride, padding in layer:
                        block.add(nn.Conv2D(filters, kernel, stride, padding, use_bias=not batch_norm))
                        if batch_norm:  # FeatureExpander's mx.sym.BatchNorm: eps 1e-3, gamma fixed at 1
                            block.add(nn.BatchNorm(epsilon=1e-3, scale=False))
                        block.add(nn.Activation("relu"))
                self.layers.add(block)

    @property
    def out_channels(self) -> Sequence[int]:
        return tuple(self.body.out_channels) + tuple(layer[-1][0] for layer in self.extras)

    @property
    def out_strides(self) -> Sequence[int]:
        strides = list(self.body.out_strides)
        for layer in self.extras:
            strides.append(strides[-1] * math.prod(conv[2] for conv in layer))
        return tuple(strides)

    @property
    def min_input_size(self) -> int:
        """The smallest input side for which every extra convolution still has a map to read."""
        size = max(int(self.body.min_input_size), 1)
        while not self._fits(size):
            size += 1
        return size

    def _fits(self, size: int) -> bool:
        side = math.ceil(size / self.body.out_strides[-1])  # the body's pools and strided convolutions round up
        for layer in self.extras:
            for _, kernel, stride, padding in layer:
                if side + 2 * padding < kernel:
                    return False
                side = (side + 2 * padding - kernel) // stride + 1
        return True

    def get_config(self) -> dict[str, Any]:
        return {"body": {"name": self._body_name, **self.body.get_config()},
                "extras": [[list(conv) for conv in layer] for layer in self.extras], "batch_norm": self.batch_norm}

    def hybrid_forward(self, F: Any, x: Any) -> list[Any]:
        outputs = list(self.body(x))
        y = outputs[-1]
        for layer in self.layers:
            y = layer(y)  # (B, filters, H_i, W_i)
            outputs.append(y)
        return outputs


def _checked_extras(extras: Any) -> list[list[list[int]]]:
    def valid(conv: Any) -> bool:
        return (isinstance(conv, (list, tuple)) and len(conv) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) for v in conv)
                and conv[0] > 0 and conv[1] > 0 and conv[2] > 0 and conv[3] >= 0)

    if not isinstance(extras, (list, tuple)) or not all(
            isinstance(layer, (list, tuple)) and layer and all(valid(conv) for conv in layer) for layer in extras):
        raise InputError("The 'extras' argument of GluonCVFeatures must list, per extra map, its convolutions as "
                         f"[filters, kernel, stride, padding] of positive ints (padding >= 0); got {extras!r} instead.")
    return [[list(conv) for conv in layer] for layer in extras]
