"""What public modules share: the names they report, and detkit's own version."""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any, Iterable, MutableMapping

#: The distribution that installs the import package ``detkit`` (``pip install gluon-detkit``);
#: the name ``detkit`` on the package index belongs to an unrelated project.
DISTRIBUTION = "gluon-detkit"

#: Distribution names used before the rename, as saved detectors may record them
#: (``provided_by``), and the names that replace them.
RENAMED_DISTRIBUTIONS = {
    "detkit": DISTRIBUTION,
    "detkit-resnet": "gluon-detkit-resnet",
    "detkit-losses": "gluon-detkit-losses",
}


def current_distribution(name: str) -> str:
    """The distribution name that replaces ``name`` (itself when it was not renamed)."""
    return RENAMED_DISTRIBUTIONS.get(name, name)


def distribution_version() -> str:
    """detkit's installed version, or ``"0.0.0+unknown"`` in a source tree that is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def publish(namespace: MutableMapping[str, Any], names: Iterable[str]) -> None:
    """Report the public module as the home of each class and function it exports.

    ``namespace`` is the public module's ``globals()``; a name defined in a
    private module (``detkit._model._detector``) then reports ``detkit`` (or
    ``detkit.data``, ...), so reprs, errors and docs show where users import it.
    A name that already belongs to a public module keeps its home.
    """
    module = namespace["__name__"]
    for name in names:
        value = namespace[name]
        home = getattr(value, "__module__", None)
        if (inspect.isclass(value) or inspect.isfunction(value)) and home and _is_private(home):
            value.__module__ = module


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))
