"""The model layer: SSDDetector (components composed into one network), its persistence and export, predict and
drawing; OnnxDetector (an ONNX export run by ONNX Runtime)."""

from __future__ import annotations

from ._detector import (
    DEFAULT_COMPONENTS,
    DEFAULT_DATA_SHAPE,
    DEFAULT_SCALE_FILTERS,
    DETECTOR_FORMAT,
    ComponentSpec,
    SSDDetector,
    build_component_spec,
    check_saved_weights,
    read_detector_config,
    default_context,
    file_sha256,
)
from ._gluoncv import GLUONCV_MODELS, import_gluoncv
from ._onnx import ONNX_FILE, ONNX_MANIFEST
from ._predict import Detection, as_numpy, draw_detections, load_image
from ._runtime import RUNTIMES, OnnxDetector

__all__ = [
    "DEFAULT_COMPONENTS",
    "DEFAULT_DATA_SHAPE",
    "DEFAULT_SCALE_FILTERS",
    "DETECTOR_FORMAT",
    "ComponentSpec",
    "Detection",
    "GLUONCV_MODELS",
    "ONNX_FILE",
    "ONNX_MANIFEST",
    "OnnxDetector",
    "RUNTIMES",
    "SSDDetector",
    "as_numpy",
    "build_component_spec",
    "check_saved_weights",
    "read_detector_config",
    "default_context",
    "draw_detections",
    "file_sha256",
    "import_gluoncv",
    "load_image",
]
