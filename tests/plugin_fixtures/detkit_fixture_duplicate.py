"""A plugin that registers the backbone name 'fixture_tiny' that detkit-fixture-good also registers."""

import detkit
from detkit.components import FocalSmoothL1Loss, ToyBackbone


class OtherTiny(ToyBackbone):
    def __init__(self, filters=(2, 4)):
        super().__init__(filters)


class DuplicateLoss(FocalSmoothL1Loss):
    pass


@detkit.hookimpl
def register_backbones(register):
    register("fixture_tiny", OtherTiny)


@detkit.hookimpl
def register_losses(register):
    register("duplicate_loss", DuplicateLoss)
