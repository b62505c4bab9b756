"""A plugin that registers a component under a name that is not a string."""

import detkit
from detkit.components import ToyBackbone


@detkit.hookimpl
def register_backbones(register):
    register(42, ToyBackbone)
