"""A plugin that registers, as a backbone, a class that does not implement Backbone."""

import detkit
from detkit.components import FocalSmoothL1Loss


class NotABackbone:
    pass


class FineLoss(FocalSmoothL1Loss):
    pass


@detkit.hookimpl
def register_losses(register):
    register("not_a_component_loss", FineLoss)


@detkit.hookimpl
def register_backbones(register):
    register("not_a_backbone", NotABackbone)
