"""JSON as detkit writes it: strict JSON, with ``null`` where a number is not finite.

The rule, written once for every file and output detkit writes as JSON
(``metrics.json``, ``history.json``, ``detkit evaluate --json``, ...): a float
that is not finite — ``nan`` (the mean over no class, the AP of a class without
objects) or an infinity — is written as ``null``. Python's ``json`` would write
bare ``NaN``/``Infinity``, which most JSON parsers refuse.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float, in nested dicts, lists and tuples, replaced by ``None``;
    numpy arrays become nested lists and numpy numbers Python's."""
    if isinstance(value, np.ndarray):
        return finite_or_null(value.tolist())
    if isinstance(value, np.generic):
        return finite_or_null(value.item())
    if isinstance(value, dict):
        return {str(key): finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, *, finite: bool = False, **kwargs: Any) -> str:
    """``value`` as strict JSON text (``json.dumps`` arguments pass through); non-finite floats become ``null``.

    ``finite=True``: every number must be finite, and a non-finite one raises :class:`ValueError`
    instead of becoming ``null``, for a file whose readers take no ``null`` for a number (a COCO
    results file: pycocotools' ``loadRes``).
    """
    return json.dumps(value if finite else finite_or_null(value), allow_nan=False, **kwargs)
