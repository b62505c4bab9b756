"""The bottom layer: utilities written once (atomic IO, argument checks, deprecation, the MXNet check).

It imports nothing of detkit but :mod:`detkit.errors`; every other layer may use it.
"""

from __future__ import annotations

from ._checks import (DEFAULT_VARIANCES, check_bool, check_classes, check_count, check_int, check_number,
                      check_positive_int, check_size, check_variances)
from ._draw import PALETTE, LabelledBox, draw_boxes
from ._fetch import FetchFailed, fetch
from ._json import finite_or_null, json_text
from ._io import (
    PathLike,
    atomic_directory,
    atomic_outputs,
    atomic_path,
    atomic_write_text,
    file_digest,
    fsync_dir,
    make_dirs,
    scratch_folder,
    storage_error,
    storage_errors,
)
from ._folder import (
    MANIFEST_FILE,
    FolderSnapshot,
    Generation,
    check_output,
    check_writable,
    folder_generation,
    owned_files,
    read_consistent,
    read_manifest,
    resolve,
    settle,
)
from ._lock import folder_lock
from ._native_log import QUANTIZATION_NOISE, native_stderr_filtered
from ._safe_load import load_json_file, load_json_text, load_yaml
from ._onnx import ONNX_INSTALL_HINT, OnnxNodes, require_onnx, require_onnxruntime
from ._public import DISTRIBUTION, current_distribution, distribution_version, publish

__all__ = [
    "DEFAULT_VARIANCES",
    "DISTRIBUTION",
    "Generation",
    "MANIFEST_FILE",
    "FetchFailed",
    "FolderSnapshot",
    "LabelledBox",
    "ONNX_INSTALL_HINT",
    "OnnxNodes",
    "PALETTE",
    "PathLike",
    "QUANTIZATION_NOISE",
    "atomic_directory",
    "atomic_outputs",
    "atomic_path",
    "atomic_write_text",
    "check_bool",
    "check_classes",
    "check_count",
    "check_int",
    "check_number",
    "check_output",
    "check_writable",
    "check_positive_int",
    "check_size",
    "check_variances",
    "current_distribution",
    "distribution_version",
    "draw_boxes",
    "fetch",
    "file_digest",
    "finite_or_null",
    "folder_generation",
    "folder_lock",
    "fsync_dir",
    "json_text",
    "load_json_file",
    "load_json_text",
    "load_yaml",
    "make_dirs",
    "native_stderr_filtered",
    "owned_files",
    "publish",
    "read_consistent",
    "read_manifest",
    "require_onnx",
    "require_onnxruntime",
    "resolve",
    "scratch_folder",
    "settle",
    "storage_error",
    "storage_errors",
]
