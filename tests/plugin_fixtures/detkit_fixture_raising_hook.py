"""A plugin whose second hook raises: none of its components may be registered (all or nothing)."""

import detkit
from detkit.components import ToyBackbone


class RaisingBackbone(ToyBackbone):
    pass


@detkit.hookimpl
def register_backbones(register):
    register("raising_backbone", RaisingBackbone)


@detkit.hookimpl
def register_losses(register):
    raise RuntimeError("the loss registry exploded")
