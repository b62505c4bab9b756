"""gluon-detkit-resnet: ResNet v1 and v2 bodies from the MXNet Gluon model zoo as SSD backbones.

Registers, through detkit's ``register_backbones`` hook, one backbone per model
zoo ResNet, ``resnet{18,34,50,101,152}_v{1,2}``, and the generic ``resnet``
(depth and version as arguments)::

    from detkit import SSDDetector

    detector = SSDDetector(classes=["pikachu"], backbone="resnet18_v1")
    detector = SSDDetector(classes=["pikachu"], backbone=("resnet50_v1", {"pretrained": True}))

Each returns the feature maps of stages 2, 3 and 4 (strides 8, 16 and 32) by
default; see :class:`ResNetBackbone`.
"""

from __future__ import annotations

from importlib import metadata as _metadata

import detkit

from ._backbone import (
    DEPTHS,
    VERSIONS,
    ResNet18V1,
    ResNet18V2,
    ResNet34V1,
    ResNet34V2,
    ResNet50V1,
    ResNet50V2,
    ResNet101V1,
    ResNet101V2,
    ResNet152V1,
    ResNet152V2,
    ResNetBackbone,
    model_store_file,
)

__all__ = [
    "DEPTHS",
    "DETKIT_PLUGIN_API",
    "ResNet101V1",
    "ResNet101V2",
    "ResNet152V1",
    "ResNet152V2",
    "ResNet18V1",
    "ResNet18V2",
    "ResNet34V1",
    "ResNet34V2",
    "ResNet50V1",
    "ResNet50V2",
    "ResNetBackbone",
    "VARIANTS",
    "VERSIONS",
    "__version__",
    "model_store_file",
    "register_backbones",
]

try:
    __version__: str = _metadata.version("gluon-detkit-resnet")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: The detkit plugin API versions this plugin supports.
DETKIT_PLUGIN_API = ">=1.0,<2"

#: Registered name -> class, one per model zoo ResNet.
VARIANTS = {
    "resnet18_v1": ResNet18V1,
    "resnet34_v1": ResNet34V1,
    "resnet50_v1": ResNet50V1,
    "resnet101_v1": ResNet101V1,
    "resnet152_v1": ResNet152V1,
    "resnet18_v2": ResNet18V2,
    "resnet34_v2": ResNet34V2,
    "resnet50_v2": ResNet50V2,
    "resnet101_v2": ResNet101V2,
    "resnet152_v2": ResNet152V2,
}


@detkit.hookimpl
def register_backbones(register):
    """Register ``resnet`` and ``resnet{18,34,50,101,152}_v{1,2}``."""
    register("resnet", ResNetBackbone)
    for name, cls in VARIANTS.items():
        register(name, cls)
