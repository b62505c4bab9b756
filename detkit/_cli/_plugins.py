"""``detkit plugins``: every plugin, its distribution and version, its components, and its status.

::

    $ detkit plugins
    detkit plugin API 1.0: 3 plugins, 2 active, 1 failed

    PLUGIN             DISTRIBUTION               STATUS
    detkit.components  gluon-detkit 0.1.0         active
        backbone: toy
        ...
    resnet             gluon-detkit-resnet 0.1.0  active
        backbone: resnet18_v1, resnet18_v2, ...
    broken             detkit-broken 0.1          failed
        reason: importing 'detkit_broken' failed: ModuleNotFoundError: No module named 'foo'

``--json`` prints the same as one JSON object, ``{"plugin_api_version": ...,
"plugins": [...]}``, each plugin with ``name``, ``distribution``, ``version``,
``status``, ``reason``, ``components`` (every kind, a list of names each),
``module`` and ``api``.

The command lists every plugin even in strict mode, without the warnings that
failed plugins raise elsewhere: the listing reports them. It exits with status 0,
or, with ``--check`` (or when ``DETKIT_STRICT_PLUGINS`` is set), with status 1
when a plugin failed or is incompatible.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any, TextIO

from .. import _plugins
from .._plugins import KINDS
from ..errors import PluginWarning

__all__ = ["add_commands"]


def add_commands(subparsers: Any) -> None:
    """Add the ``plugins`` command to the ``detkit`` command's subparsers."""
    parser = subparsers.add_parser(
        "plugins",
        help="list plugins, their components and status",
        description=(
            "List every detkit plugin found: built-in, installed (entry point group 'detkit') "
            "and registered in-process, with its distribution and version, the components it "
            "registers per kind, and its status: active, disabled (by DETKIT_DISABLE_PLUGIN_AUTOLOAD "
            "or DETKIT_PLUGINS), incompatible (outside detkit's plugin API) or failed (with the reason)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if a plugin failed or is incompatible (also when DETKIT_STRICT_PLUGINS is set)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # the listing itself reports every failure
        _plugins.load_plugins(strict=False)
        plugins = _plugins.list_plugins()
    if args.json:
        json.dump(
            {
                "plugin_api_version": _plugins.PLUGIN_API_VERSION,
                "plugins": [plugin.to_dict() for plugin in plugins],
            },
            out,
            indent=2,
        )
        out.write("\n")
    else:
        out.write(_table(plugins))
    broken = [p for p in plugins if p.status in (_plugins.FAILED, _plugins.INCOMPATIBLE)]
    return 1 if broken and (args.check or _plugins.strict_mode()) else 0


def _table(plugins: list[_plugins.PluginInfo]) -> str:
    counts = [f"{sum(p.status == status for p in plugins)} {status}"
              for status in _plugins.STATUSES if any(p.status == status for p in plugins)]
    lines = [
        f"detkit plugin API {_plugins.PLUGIN_API_VERSION}: {len(plugins)} plugin{'s' if len(plugins) != 1 else ''}"
        + (f", {', '.join(counts)}" if counts else ""),
        "",
    ]
    rows = [(p.name, " ".join(filter(None, (p.distribution or "(in-process)", p.version))), p.status) for p in plugins]
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in
              enumerate(("PLUGIN", "DISTRIBUTION", "STATUS"))]
    lines.append(_row(("PLUGIN", "DISTRIBUTION", "STATUS"), widths))
    for plugin, row in zip(plugins, rows):
        lines.append(_row(row, widths))
        for kind in KINDS:
            names = plugin.components.get(kind)
            if names:
                lines.append(f"    {kind}: {', '.join(names)}")
        if plugin.api is not None and plugin.status == _plugins.INCOMPATIBLE:
            lines.append(f"    supports plugin API: {plugin.api}")
        if plugin.reason:
            lines.append(f"    reason: {plugin.reason}")
    return "\n".join(lines) + "\n"


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
