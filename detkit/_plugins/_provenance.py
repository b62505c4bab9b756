"""Why a saved detector's component is missing: its plugin is not installed, or installed but not active."""

from __future__ import annotations

from typing import Any, Mapping

from .._base import current_distribution
from ._host import ACTIVE, list_plugins, normalise_distribution

__all__ = ["missing_component_hint"]


def missing_component_hint(provided_by: Mapping[str, Any] | None) -> str:
    """One sentence for a component that is not registered, from the ``provided_by`` record of a saved detector.

    The record names the plugin, its distribution and version when the detector
    was saved. A distribution saved under a former name (``detkit-resnet``) is
    looked up under its current one (``gluon-detkit-resnet``). When that plugin
    is installed but not active, the sentence says so and why (it failed, is
    incompatible or disabled); when it is not installed, it names the pip command.
    """
    provider = provided_by if isinstance(provided_by, Mapping) else {}
    saved = provider.get("distribution")
    plugin = provider.get("plugin")
    if not isinstance(saved, str) or not saved:
        return ""
    distribution = current_distribution(saved)
    what = f" It was provided by the plugin {plugin!r} of the package {distribution}"
    if provider.get("version"):
        what += f" {provider['version']}"
    wanted = {normalise_distribution(saved), normalise_distribution(distribution)}
    installed = [record for record in list_plugins()
                 if record.distribution and normalise_distribution(record.distribution) in wanted]
    for record in installed:
        if record.status != ACTIVE:
            return (f"{what}, which is installed ({_named(record)}) but "
                    f"{record.status}: {record.reason}. `detkit plugins` shows every plugin and its status.")
    if installed:
        record = installed[0]
        return (f"{what}; the installed {_named(record)} is active but does not "
                "register it: install the version the detector was saved with.")
    return f"{what}: install it with `pip install {distribution}`."


def _named(record: Any) -> str:
    return f"{record.distribution} {record.version}" if record.version else str(record.distribution)
