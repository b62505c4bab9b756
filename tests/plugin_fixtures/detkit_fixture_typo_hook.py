"""A plugin that misspells a hook: register_backbone instead of register_backbones."""

import detkit
from detkit.components import ToyBackbone


class TypoBackbone(ToyBackbone):
    pass


@detkit.hookimpl
def register_backbone(register):
    register("typo_backbone", TypoBackbone)


@detkit.hookimpl(optionalhook=True)
def register_heads(register):
    """A hook of a future plugin API, marked optional: no error."""
