"""detkit's default components: the toy SSD of the seed tutorial, registered as a built-in plugin.

========================  ==========================  ==================================
kind                      name                        class
========================  ==========================  ==================================
``backbone``              ``toy``                     :class:`ToyBackbone`
``anchor_generator``      ``multibox_prior``          :class:`MultiBoxPriorAnchors`
``anchor_generator``      ``gluoncv_anchors``         :class:`GluonCVAnchors`
``target_assigner``       ``multibox_target``         :class:`MultiBoxTargetAssigner`
``loss``                  ``focal_smooth_l1``         :class:`FocalSmoothL1Loss`
``post_processor``        ``multibox_detection``      :class:`MultiBoxDetectionPostProcessor`
``post_processor``        ``gluoncv_decoder``         :class:`GluonCVDecoder`
========================  ==========================  ==================================
"""

from __future__ import annotations

from .._base import publish as _publish
from .._blocks import HalvingBlock
from ..hookspecs import Register, hookimpl
from ._anchors import SEED_RATIOS, SEED_SIZES, MultiBoxPriorAnchors
from ._backbone import ToyBackbone
from ._gluoncv import GluonCVAnchors, GluonCVDecoder
from ._losses import FocalSmoothL1Loss
from ._postprocess import MultiBoxDetectionPostProcessor
from ._targets import DEFAULT_VARIANCES, MultiBoxTargetAssigner

__all__ = [
    "DEFAULT_VARIANCES",
    "FocalSmoothL1Loss",
    "GluonCVAnchors",
    "GluonCVDecoder",
    "HalvingBlock",
    "MultiBoxDetectionPostProcessor",
    "MultiBoxPriorAnchors",
    "MultiBoxTargetAssigner",
    "SEED_RATIOS",
    "SEED_SIZES",
    "ToyBackbone",
]
_publish(globals(), __all__)


@hookimpl
def register_backbones(register: Register) -> None:
    register("toy", ToyBackbone)


@hookimpl
def register_anchor_generators(register: Register) -> None:
    register("multibox_prior", MultiBoxPriorAnchors)
    register("gluoncv_anchors", GluonCVAnchors)


@hookimpl
def register_target_assigners(register: Register) -> None:
    register("multibox_target", MultiBoxTargetAssigner)


@hookimpl
def register_losses(register: Register) -> None:
    register("focal_smooth_l1", FocalSmoothL1Loss)


@hookimpl
def register_post_processors(register: Register) -> None:
    register("multibox_detection", MultiBoxDetectionPostProcessor)
    register("gluoncv_decoder", GluonCVDecoder)
