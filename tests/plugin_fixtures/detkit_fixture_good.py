"""A well-behaved fixture plugin: one small component of every kind, through every hook."""

import detkit
from detkit.components import (
    FocalSmoothL1Loss,
    MultiBoxDetectionPostProcessor,
    MultiBoxPriorAnchors,
    MultiBoxTargetAssigner,
    ToyBackbone,
)

DETKIT_PLUGIN_API = ">=1.0,<2"

#: The hooks called, in order; the tests check that each runs once.
CALLS = []


class TinyBackbone(ToyBackbone):
    """The toy backbone with two tiny halving blocks (stride 4)."""

    def __init__(self, filters=(4, 8)):
        super().__init__(filters)


class FixtureAnchors(MultiBoxPriorAnchors):
    """Seed anchors, one size a scale."""

    def __init__(self, sizes=((0.2,), (0.37,), (0.54,), (0.71,), (0.88,)), ratios=(1.0, 2.0, 0.5), clip=False):
        super().__init__(sizes, ratios, clip)


class FixtureTargets(MultiBoxTargetAssigner):
    """MultiBoxTarget with hard-negative mining."""

    def __init__(self, negative_mining_ratio=3.0):
        super().__init__(negative_mining_ratio=negative_mining_ratio)


class FixtureLoss(FocalSmoothL1Loss):
    """Focal loss without focusing: cross-entropy."""

    def __init__(self, gamma=0.0):
        super().__init__(gamma=gamma)


class FixturePostProcessor(MultiBoxDetectionPostProcessor):
    """Stricter non-maximum suppression."""

    def __init__(self, nms_threshold=0.3):
        super().__init__(nms_threshold=nms_threshold)


@detkit.hookimpl
def register_backbones(register):
    CALLS.append("register_backbones")
    register("fixture_tiny", TinyBackbone)


@detkit.hookimpl
def register_anchor_generators(register):
    CALLS.append("register_anchor_generators")
    register("fixture_anchors", FixtureAnchors)


@detkit.hookimpl
def register_target_assigners(register):
    CALLS.append("register_target_assigners")
    register("fixture_targets", FixtureTargets)


@detkit.hookimpl
def register_losses(register):
    CALLS.append("register_losses")
    register("fixture_loss", FixtureLoss)


@detkit.hookimpl
def register_post_processors(register):
    CALLS.append("register_post_processors")
    register("fixture_post_processor", FixturePostProcessor)
