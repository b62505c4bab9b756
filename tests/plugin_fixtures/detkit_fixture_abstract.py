"""A plugin that registers a Backbone subclass missing an abstract member (out_strides)."""

import detkit
from detkit.interfaces import Backbone


class HalfBackbone(Backbone):
    @property
    def out_channels(self):
        return (8,)

    def hybrid_forward(self, F, x):
        return [x]


@detkit.hookimpl
def register_backbones(register):
    register("half_backbone", HalfBackbone)
