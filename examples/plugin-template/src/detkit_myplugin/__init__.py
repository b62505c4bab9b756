"""gluon-detkit-myplugin: an example detkit plugin with one backbone, ``my_backbone``.

Everything a plugin needs is in this module: the plugin API range it supports,
and one ``@detkit.hookimpl`` function per kind of component it provides.
"""

from __future__ import annotations

from typing import Any, Sequence

from mxnet.gluon import nn

import detkit
from detkit.errors import InputError
from detkit.interfaces import Backbone

__all__ = ["DETKIT_PLUGIN_API", "MyBackbone", "register_backbones"]

#: The detkit plugin API versions this plugin works with; detkit skips it,
#: reporting it "incompatible", outside this range.
DETKIT_PLUGIN_API = ">=1.0,<2"


class MyBackbone(Backbone):
    """Stride-2 ``Conv3x3-BatchNorm-ReLU`` layers; returns the maps at strides 8 and 16.

    ``(B, 3, H, W)`` -> ``[(B, width, H/8, W/8), (B, 2*width, H/16, W/16)]``.

    Parameters
    ----------
    width : int, default 16
        Channels of the first map; the second has twice as many.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        # Check arguments with exceptions that name the argument and the value (never assert).
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise InputError(f"The 'width' argument of MyBackbone must be a positive int; got {width!r} instead.")
        # Store every constructor argument under its own name: get_config() reads them back.
        self.width = width
        with self.name_scope():
            self.stem = nn.HybridSequential()  # three stride-2 convolutions: H/8, W/8
            for _ in range(3):
                self.stem.add(nn.Conv2D(width, 3, strides=2, padding=1), nn.BatchNorm(), nn.Activation("relu"))
            self.stage = nn.HybridSequential()  # one more: H/16, W/16
            self.stage.add(nn.Conv2D(2 * width, 3, strides=2, padding=1), nn.BatchNorm(), nn.Activation("relu"))

    @property
    def out_channels(self) -> Sequence[int]:
        return (self.width, 2 * self.width)

    @property
    def out_strides(self) -> Sequence[int]:
        return (8, 16)

    def hybrid_forward(self, F: Any, x: Any) -> list[Any]:
        first = self.stem(x)  # (B, width, H/8, W/8)
        second = self.stage(first)  # (B, 2*width, H/16, W/16)
        return [first, second]


@detkit.hookimpl
def register_backbones(register):
    """Make ``SSDDetector(backbone="my_backbone")`` work."""
    register("my_backbone", MyBackbone)
