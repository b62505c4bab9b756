"""Reading YAML and JSON that users or other processes wrote: data only, numbers as users write them, nesting bounded.

Every YAML file detkit reads goes through :func:`load_yaml` (``yaml.safe_load``'s
loader, so no tag builds an object) with one addition: a number in exponent
notation without a dot or a signed exponent (``1e-3``, ``5e-4``, ``2E5``), which
YAML 1.1 reads as text, is read as the float that users mean, as YAML 1.2 does.
Every JSON file detkit reads back goes through :func:`load_json_file`. Both refuse
a document nested deeper than ``max_depth`` (no raw ``RecursionError``) and hand
the reason to the caller's ``error`` function, which names the file and the fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import yaml

__all__ = ["MAX_DEPTH", "SafeLoader", "depth", "load_json_file", "load_json_text", "load_yaml"]

#: The deepest nesting detkit reads in any of its files (its own go 5 levels deep).
MAX_DEPTH = 32


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` as a float (YAML 1.2), not as the text YAML 1.1 makes of it."""


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts (a scalar is 0), counted without recursion."""
    deepest = 0
    stack = [(value, 1)]
    seen: set[int] = set()  # YAML aliases share containers: each is walked once (no alias bomb)
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, dict):
            children = list(item.values()) + list(item.keys())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        deepest = max(deepest, level)
        if level > 10 * MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def load_yaml(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``yaml.safe_load(text)`` with numbers as users write them; ``ValueError`` if nested deeper than ``max_depth``.

    Raises
    ------
    yaml.YAMLError
        If the text is not YAML.
    ValueError
        If it nests lists or mappings deeper than ``max_depth``.
    """
    try:
        value = yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a SafeLoader: no tag builds an object
    except RecursionError:
        raise ValueError(f"it nests lists or mappings deeper than {max_depth} levels") from None
    if depth(value) > max_depth:
        raise ValueError(f"it nests lists or mappings deeper than {max_depth} levels")
    return value


def load_json_text(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(text)``; ``ValueError`` if it is not JSON or nests deeper than ``max_depth``."""
    level = deepest = 0
    in_string = escaped = False
    for char in text:  # the nesting, before the parser recurses into it
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
            if deepest > max_depth:
                raise ValueError(f"it nests lists or objects deeper than {max_depth} levels")
        elif char in "]}":
            level -= 1
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the scan above refuses it first
        raise ValueError(f"it nests lists or objects deeper than {max_depth} levels") from None


def load_json_file(path: Path, *, what: str, error: Callable[[str], Exception], max_bytes: int = 16 << 20,
                   max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in ``path``; any reason it cannot be read becomes ``error(reason)``, raised."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as failure:
        raise error(f"it cannot be read: {failure.strerror or failure}") from None
    if len(raw) > max_bytes:
        raise error(f"it is larger than {max_bytes} bytes, more than a {what} ever is")
    try:
        return load_json_text(raw.decode("utf-8"), max_depth=max_depth)
    except UnicodeDecodeError:
        raise error("it is not UTF-8 text") from None
    except ValueError as failure:
        raise error(str(failure) if "nests" in str(failure) else f"it is not JSON ({failure})") from None
