"""A second well-behaved plugin, registering one loss; used beside the failing ones."""

import detkit
from detkit.components import FocalSmoothL1Loss


class SecondLoss(FocalSmoothL1Loss):
    """The seed's loss with a heavier box term."""

    def __init__(self, box_weight=2.0):
        super().__init__(box_weight=box_weight)


@detkit.hookimpl
def register_losses(register):
    register("second_loss", SecondLoss)
