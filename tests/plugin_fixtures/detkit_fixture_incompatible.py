"""A plugin made for a future detkit plugin API."""

import detkit
from detkit.components import ToyBackbone

DETKIT_PLUGIN_API = ">=2.0,<3"


class FutureBackbone(ToyBackbone):
    pass


@detkit.hookimpl
def register_backbones(register):
    register("future_backbone", FutureBackbone)
