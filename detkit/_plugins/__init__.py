"""The plugin layer: discovery, isolation and the API version gate (``_host``), and the registry they fill.

Above ``components`` (the built-in plugin, loaded by name) and below the model.
"""

from __future__ import annotations

from ._api import API_ATTRIBUTE, PLUGIN_API_VERSION, api_compatible, parse_api_requirement
from ._host import (
    ACTIVE,
    DEFAULT_PLUGINS,
    DISABLED,
    ENV_DISABLE_AUTOLOAD,
    ENV_ONLY,
    ENV_STRICT,
    FAILED,
    INCOMPATIBLE,
    STATUSES,
    PluginInfo,
    get_plugin_manager,
    get_registry,
    list_plugins,
    load_plugins,
    register_plugin,
    reset_plugins,
    strict_mode,
    unregister_plugin,
)
from ._provenance import missing_component_hint
from ._registry import KINDS, ComponentInfo, Registry, check_kind, parse_component_spec

__all__ = [
    "ACTIVE",
    "API_ATTRIBUTE",
    "DEFAULT_PLUGINS",
    "DISABLED",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_ONLY",
    "ENV_STRICT",
    "FAILED",
    "INCOMPATIBLE",
    "KINDS",
    "PLUGIN_API_VERSION",
    "STATUSES",
    "api_compatible",
    "ComponentInfo",
    "PluginInfo",
    "Registry",
    "check_kind",
    "get_plugin_manager",
    "get_registry",
    "list_plugins",
    "load_plugins",
    "missing_component_hint",
    "parse_api_requirement",
    "parse_component_spec",
    "register_plugin",
    "reset_plugins",
    "strict_mode",
    "unregister_plugin",
]
