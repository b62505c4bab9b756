"""A plugin whose plugin API declaration cannot be parsed."""

import detkit
from detkit.components import ToyBackbone

DETKIT_PLUGIN_API = "version one please"


class VagueBackbone(ToyBackbone):
    pass


@detkit.hookimpl
def register_backbones(register):
    register("vague_backbone", VagueBackbone)
