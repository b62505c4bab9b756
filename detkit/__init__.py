"""detkit: object detection on Apache MXNet Gluon with swappable, pluggable components.

>>> from detkit import SSDDetector
>>> detector = SSDDetector(classes=["pikachu"])   # the seed's toy SSD
"""

from __future__ import annotations

from . import errors
from ._base._mxnet_check import require_mxnet as _require_mxnet

_require_mxnet()

from . import components, config, data, hookspecs, interfaces  # noqa: E402
from ._base import distribution_version as _distribution_version, publish as _publish  # noqa: E402
from ._engine import Callback, DetectionMetric, History, evaluate, evaluate_detections, fit  # noqa: E402
from ._model import (  # noqa: E402
    ComponentSpec,
    Detection,
    OnnxDetector,
    SSDDetector,
    default_context,
    draw_detections,
    import_gluoncv,
    load_image,
)
from ._pretrained import ImageNetInput, initialize_pretrained, initialize_with, pretrained_parameters  # noqa: E402
from ._plugins import (  # noqa: E402
    PLUGIN_API_VERSION,
    ComponentInfo,
    PluginInfo,
    get_plugin_manager,
    get_registry as _get_registry,
    list_plugins,
    register_plugin,
    unregister_plugin,
)
from .hookspecs import hookimpl  # noqa: E402
from .interfaces import AnchorGenerator, Backbone, Component, Loss, PostProcessor, TargetAssigner  # noqa: E402

__version__: str = _distribution_version()


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
    return _get_registry().build(kind, name, kwargs)


def component_names(kind: str) -> list[str]:
    """The registered component names of ``kind``, sorted.

    >>> import detkit
    >>> "toy" in detkit.component_names("backbone")
    True
    """
    return _get_registry().names(kind)


def list_components() -> list[ComponentInfo]:
    """Every registered component with the plugin and distribution that provide it."""
    return _get_registry().infos()


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
    "ImageNetInput",
    "Loss",
    "OnnxDetector",
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
    "evaluate_detections",
    "fit",
    "get_plugin_manager",
    "hookimpl",
    "hookspecs",
    "import_gluoncv",
    "initialize_pretrained",
    "initialize_with",
    "interfaces",
    "list_components",
    "list_plugins",
    "load_image",
    "pretrained_parameters",
    "register_plugin",
    "unregister_plugin",
]
_publish(globals(), __all__)
