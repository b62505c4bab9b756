"""A small builder of ONNX nodes, and the import of the optional ``onnx`` package.

Only the components that export and the export itself use it, so ``onnx`` is
imported when they run, never when detkit is imported.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["ONNX_INSTALL_HINT", "OnnxNodes", "require_onnx", "require_onnxruntime"]

#: How to install the optional dependencies of ONNX export and ONNX Runtime.
ONNX_INSTALL_HINT = ("install detkit's onnx extra: pip install -e \".[onnx]\" in a checkout, or, once released, "
                     "pip install \"gluon-detkit[onnx]\"")


def require_onnx() -> Any:
    """The ``onnx`` module, or a :class:`MissingDependencyError` that says how to install it."""
    try:
        import onnx
    except ImportError as error:
        raise MissingDependencyError(
            f"ONNX export needs the onnx package: {ONNX_INSTALL_HINT} (import failed: {error})."
        ) from None
    return onnx


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a :class:`MissingDependencyError` that says how to install it."""
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError(
            f"The onnxruntime runtime needs the onnxruntime package: {ONNX_INSTALL_HINT} (import failed: {error})."
        ) from None
    return onnxruntime


class OnnxNodes:
    """Collects ONNX nodes and constants whose names all start with ``prefix``.

    ``nodes.op("Mul", [a, b])`` adds a node and returns the name of its output
    (a list of names when ``outputs > 1``); ``nodes.const(array)`` adds a constant.
    """

    def __init__(self, prefix: str) -> None:
        self.onnx = require_onnx()
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        """A new name, unique within this builder."""
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value: Any, dtype: Any = np.float32, hint: str = "const") -> str:
        """Add a constant tensor and return its name."""
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, **attributes: Any) -> Any:
        """Add one node; return its output name, or the list of them when it has several."""
        names = ([self.name(op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) else list(outputs))
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, name=self.name(op_type), **attributes))
        return names[0] if len(names) == 1 else names
