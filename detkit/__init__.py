"""detkit: object detection on Apache MXNet Gluon with swappable, pluggable components.

>>> from detkit import SSDDetector
>>> detector = SSDDetector(classes=["pikachu"])   # the seed's toy SSD
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import errors
from ._mxnet_check import require_mxnet as _require_mxnet

_require_mxnet()

from . import components, config, data, hookspecs, interfaces  # noqa: E402
from ._detector import ComponentSpec, SSDDetector, default_context  # noqa: E402
from ._evaluate import evaluate  # noqa: E402
from ._evaluation import DetectionMetric  # noqa: E402
from ._history import History  # noqa: E402
from ._predict import Detection, draw_detections, load_image  # noqa: E402
from ._training import Callback, fit  # noqa: E402
from ._plugins import (  # noqa: E402
    PLUGIN_API_VERSION,
    PluginInfo,
    get_plugin_manager,
    list_plugins,
    register_plugin,
    unregister_plugin,
)
from ._registry import ComponentInfo  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .interfaces import AnchorGenerator, Backbone, Component, Loss, PostProcessor, TargetAssigner  # noqa: E402

try:
    __version__: str = _metadata.version("detkit")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"


def build_component(kind: str, name: str, /, **kwargs: object) -> Component:
    """Build the registered component ``name`` of ``kind`` from keyword arguments.

    Parameters
    ----------
    kind : str
        ``"backbone"``, ``"anchor_generator"``, ``"target_assigner"``, ``"loss"`` or ``"post_processor"``.
    name : str
        A registered name, e.g. ``"toy"``; :func:`component_names` lists them.
    **kwargs
        The component's constructor arguments.

    Raises
    ------
    ComponentNotFoundError
        If no plugin registers ``name``; the message lists the registered names.
    InputError
        If ``kind`` is unknown or the arguments do not fit the component.

    Examples
    --------
    >>> import detkit
    >>> detkit.build_component("backbone", "toy", filters=[8, 16]).out_strides
    (4,)
    """
    from ._plugins import get_registry

    return get_registry().build(kind, name, kwargs)


def component_names(kind: str) -> list[str]:
    """The registered component names of ``kind``, sorted.

    >>> import detkit
    >>> "toy" in detkit.component_names("backbone")
    True
    """
    from ._plugins import get_registry

    return get_registry().names(kind)


def list_components() -> list[ComponentInfo]:
    """Every registered component with the plugin and distribution that provide it."""
    from ._plugins import get_registry

    return get_registry().infos()


__all__ = [
    "AnchorGenerator",
    "Backbone",
    "Callback",
    "Component",
    "ComponentInfo",
    "ComponentSpec",
    "Detection",
    "DetectionMetric",
    "History",
    "Loss",
    "PLUGIN_API_VERSION",
    "PluginInfo",
    "PostProcessor",
    "SSDDetector",
    "TargetAssigner",
    "__version__",
    "build_component",
    "component_names",
    "components",
    "config",
    "data",
    "default_context",
    "draw_detections",
    "errors",
    "evaluate",
    "fit",
    "get_plugin_manager",
    "hookimpl",
    "hookspecs",
    "interfaces",
    "list_components",
    "list_plugins",
    "load_image",
    "register_plugin",
    "unregister_plugin",
]
