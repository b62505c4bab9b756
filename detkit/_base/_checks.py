"""Argument checks, written once: every InputError about an argument reads the same way."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Sequence

from ..errors import InputError

try:  # numpy is a dependency of detkit, but this bottom layer does not need it to import
    from numpy import bool_ as np_bool
except ImportError:  # pragma: no cover
    np_bool = bool  # type: ignore[misc,assignment]


def check_classes(classes: Any, *, subject: str | None = None) -> list[str]:
    """Return ``classes`` as a list of unique, non-empty class names; raise :class:`InputError` otherwise.

    Names may not have surrounding spaces or line breaks: class lists are stored
    one name a line (``classes.txt``), and must read back the same. ``subject``
    names what holds the list in messages (default: "The 'classes' argument").
    """
    what = subject or "The 'classes' argument"
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise InputError(f"{what} must be a list of class names such as ['pikachu']; got {classes!r} instead.")
    names = list(classes)
    if not names:
        raise InputError(f"{what} must name at least one class; it is empty.")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or name != name.strip() or "\n" in name:
            raise InputError(
                "Each class name must be a non-empty string without surrounding spaces or line breaks; "
                f"got {name!r} at classes[{index}] instead."
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"{what} repeats a name: {', '.join(map(repr, duplicates))}; each class is named once.")
    return names


#: Box-offset variances of ``MultiBoxTarget`` and ``MultiBoxDetection`` (MXNet's defaults): the default of the
#: built-in target assigners and post-processors (:data:`detkit.components.DEFAULT_VARIANCES`) and of the
#: conformance checks (:mod:`detkit.testing`) for a component without a ``variances`` argument.
DEFAULT_VARIANCES = (0.1, 0.1, 0.2, 0.2)


def check_variances(variances: Any) -> list[float]:
    """The box-offset variances as 4 positive floats; the encoder and the decoder must agree on them."""
    values = list(variances) if isinstance(variances, (list, tuple)) else None
    if values is None or len(values) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"The 'variances' argument must be 4 positive numbers; got {variances!r} instead.")
    return [float(v) for v in values]


def _argument(name: str, owner: str | None) -> str:
    return f"The '{name}' argument of {owner}" if owner else f"The '{name}' argument"


def check_int(name: str, value: Any, *, minimum: int = 1, owner: str | None = None) -> int:
    """Return ``value`` as an ``int`` (numpy integers too, never a bool) of at least ``minimum``.

    Raises :class:`InputError` naming the argument (and its ``owner``, a class or
    function name), the constraint and the value received.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise InputError(f"{_argument(name, owner)} must be {wanted}; got {value!r} instead.")
    return int(value)


def check_positive_int(name: str, value: Any, *, owner: str | None = None) -> int:
    """:func:`check_int` with ``minimum=1``."""
    return check_int(name, value, minimum=1, owner=owner)


def check_count(name: str, value: Any, *, owner: str | None = None, minus_one: str = "all") -> int:
    """Return ``value`` as an ``int`` (numpy integers too, never a bool) that is positive or -1, a count
    where -1 means ``minus_one`` (``nms_topk``: keep all); raise :class:`InputError` otherwise."""
    try:
        number: int | None = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or not (number == -1 or number > 0):
        raise InputError(f"{_argument(name, owner)} must be a positive int or -1 ({minus_one}); got {value!r} instead.")
    return number


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, owner: str | None = None) -> float:
    """Return ``value`` as a finite ``float`` within ``[minimum, maximum]``; raise :class:`InputError` otherwise.

    NaN, infinities, bools and text are refused; ``exclusive_minimum`` makes the
    lower bound strict (a learning rate must be above 0, not at it).
    """
    try:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    except OverflowError:  # an int beyond any float
        ok = False
    if ok and minimum is not None:
        ok = value > minimum if exclusive_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"<= {maximum:g}")
        wanted = "a finite number" + (f" {' and '.join(bounds)}" if bounds else "")
        raise InputError(f"{_argument(name, owner)} must be {wanted}; got {value!r} instead.")
    return float(value)


def check_bool(name: str, value: Any, *, owner: str | None = None) -> bool:
    """Return ``value`` when it is a ``bool`` (numpy's too); raise :class:`InputError` otherwise ("no" is not False)."""
    if not isinstance(value, (bool, np_bool)):
        raise InputError(f"{_argument(name, owner)} must be True or False; got {value!r} instead.")
    return bool(value)


def check_size(name: str, value: Any, *, owner: str | None = None) -> tuple[int, int]:
    """An image size given as ``S`` (``S x S``) or ``(H, W)``, as ``(H, W)`` of positive ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0 for v in value)
    ):
        raise InputError(f"{_argument(name, owner)} must be a positive int or (height, width); got {value!r} instead.")
    return int(value[0]), int(value[1])
