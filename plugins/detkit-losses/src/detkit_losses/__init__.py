"""gluon-detkit-losses: alternative losses for detkit's SSD.

Registers, through detkit's ``register_losses`` hook:

==================  ============================  ================================================
name                class                         terms
==================  ============================  ================================================
``ssd_multibox``    :class:`SSDMultiBoxLoss`      softmax cross-entropy with 3:1 hard-negative
                                                  mining + smooth L1 (Liu et al., 2016)
``giou``            :class:`GIoULoss`             the same cross-entropy + generalized IoU
                                                  (Rezatofighi et al., 2019)
==================  ============================  ================================================

Use one in place of the default loss::

    from detkit import SSDDetector

    detector = SSDDetector(classes=["pikachu"], loss="ssd_multibox")
    detector = SSDDetector(classes=["pikachu"], loss=("giou", {"box_weight": 2.0}))
"""

from __future__ import annotations

from importlib import metadata as _metadata

import detkit

from ._giou import GIoULoss
from ._ssd import SSDMultiBoxLoss

__all__ = ["DETKIT_PLUGIN_API", "GIoULoss", "SSDMultiBoxLoss", "__version__", "register_losses"]

try:
    __version__: str = _metadata.version("gluon-detkit-losses")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: The detkit plugin API versions this plugin supports.
DETKIT_PLUGIN_API = ">=1.0,<2"


@detkit.hookimpl
def register_losses(register):
    """Register ``ssd_multibox`` and ``giou``."""
    register("ssd_multibox", SSDMultiBoxLoss)
    register("giou", GIoULoss)
