"""Argument checks shared by the detector and the datasets."""

from __future__ import annotations

from typing import Any, Sequence

from .errors import InputError


def check_classes(classes: Any) -> list[str]:
    """Return ``classes`` as a list of unique, non-empty class names; raise :class:`InputError` otherwise.

    Names may not have surrounding spaces or line breaks: class lists are stored
    one name a line (``classes.txt``), and must read back the same.
    """
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise InputError(
            f"The 'classes' argument must be a list of class names such as ['pikachu']; got {classes!r} instead."
        )
    names = list(classes)
    if not names:
        raise InputError("The 'classes' argument must name at least one class; got an empty list instead.")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or name != name.strip() or "\n" in name:
            raise InputError(
                "Each class name must be a non-empty string without surrounding spaces or line breaks; "
                f"got {name!r} at classes[{index}] instead."
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"The 'classes' argument must not repeat a name; got {', '.join(map(repr, duplicates))} twice.")
    return names
