"""A plugin that tries to take the built-in backbone name 'toy'."""

import detkit
from detkit.components import ToyBackbone


class NotTheToy(ToyBackbone):
    pass


@detkit.hookimpl
def register_backbones(register):
    register("toy", NotTheToy)
