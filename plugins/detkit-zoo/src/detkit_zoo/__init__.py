"""gluon-detkit-zoo: MobileNet v1 and v2 and the SSD paper's VGG-16 from the MXNet Gluon model zoo as SSD backbones.

Registers, through detkit's ``register_backbones`` hook, one backbone per model
zoo MobileNet, ``mobilenet{0_25,0_5,0_75,1_0}`` and ``mobilenetv2_{0_25,0_5,0_75,1_0}``
(the model store's names with ``_`` for ``.``), the generic ``mobilenet``
(multiplier and version as arguments), and ``vgg16_atrous``, VGG-16 as the SSD
paper used it::

    from detkit import SSDDetector

    detector = SSDDetector(classes=["pikachu"], backbone="mobilenet0_25")
    detector = SSDDetector(classes=["pikachu"], backbone=("vgg16_atrous", {"pretrained": True}))

The MobileNets return the feature maps of stages 2, 3 and 4 (strides 8, 16 and
32) by default (see :class:`MobileNetBackbone`); ``vgg16_atrous`` returns the
L2-normalised conv4_3 (stride 8) and fc7 (stride 16) (see :class:`VGG16Atrous`).
``gluoncv_features`` (see :class:`GluonCVFeatures`) puts the extra layers of
GluonCV's SSDs after any registered body: what :func:`detkit.import_gluoncv`
builds a GluonCV SSD's backbone from.
Each body starts with :class:`detkit.ImageNetInput`; ImageNet weights come through
:func:`detkit.initialize_pretrained`, read when the detector is built.
"""

from __future__ import annotations

from importlib import metadata as _metadata

import detkit

from ._mobilenet import (
    MULTIPLIERS,
    VERSIONS,
    MobileNet0_5,
    MobileNet0_25,
    MobileNet0_75,
    MobileNet1_0,
    MobileNetBackbone,
    MobileNetV2_0_5,
    MobileNetV2_0_25,
    MobileNetV2_0_75,
    MobileNetV2_1_0,
)
from ._gluoncv import VGG300_EXTRAS, VGG512_EXTRAS, GluonCVFeatures, expander_extras
from ._vgg import CONV4_3_SCALE, VGG16Atrous, reduce_fc_layers

__all__ = [
    "CONV4_3_SCALE",
    "DETKIT_PLUGIN_API",
    "GluonCVFeatures",
    "MULTIPLIERS",
    "MobileNet0_25",
    "MobileNet0_5",
    "MobileNet0_75",
    "MobileNet1_0",
    "MobileNetBackbone",
    "MobileNetV2_0_25",
    "MobileNetV2_0_5",
    "MobileNetV2_0_75",
    "MobileNetV2_1_0",
    "VARIANTS",
    "VERSIONS",
    "VGG16Atrous",
    "VGG300_EXTRAS",
    "VGG512_EXTRAS",
    "__version__",
    "expander_extras",
    "reduce_fc_layers",
    "register_backbones",
]

try:
    __version__: str = _metadata.version("gluon-detkit-zoo")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: The detkit plugin API versions this plugin supports.
DETKIT_PLUGIN_API = ">=1.0,<2"

#: Registered name -> class, one per model zoo MobileNet.
VARIANTS = {
    "mobilenet0_25": MobileNet0_25,
    "mobilenet0_5": MobileNet0_5,
    "mobilenet0_75": MobileNet0_75,
    "mobilenet1_0": MobileNet1_0,
    "mobilenetv2_0_25": MobileNetV2_0_25,
    "mobilenetv2_0_5": MobileNetV2_0_5,
    "mobilenetv2_0_75": MobileNetV2_0_75,
    "mobilenetv2_1_0": MobileNetV2_1_0,
}


@detkit.hookimpl
def register_backbones(register):
    """Register ``mobilenet``, the eight MobileNets by name, ``vgg16_atrous`` and ``gluoncv_features``."""
    register("mobilenet", MobileNetBackbone)
    for name, cls in VARIANTS.items():
        register(name, cls)
    register("vgg16_atrous", VGG16Atrous)
    register("gluoncv_features", GluonCVFeatures)
