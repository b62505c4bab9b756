"""OnnxDetector: a detector exported to ONNX, run by ONNX Runtime; its INT8 quantization."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import mxnet as mx
import numpy as np

from .._base import (
    FolderSnapshot,
    PathLike,
    check_bool,
    check_positive_int,
    file_digest,
    folder_generation,
    load_json_text,
    require_onnx,
    read_consistent,
    require_onnxruntime,
    resolve,
    scratch_folder,
    storage_errors,
)
from ..errors import CheckpointError, InputError
from ._onnx import ONNX_FILE, ONNX_FORMAT, ONNX_KIND, ONNX_MANIFEST
from ._predict import as_numpy, predict
from ._quantize import calibration_batches

__all__ = ["OnnxDetector", "RUNTIMES"]

#: The runtimes ``detkit predict``, ``evaluate`` and ``quantize`` take (``--runtime``).
RUNTIMES = ("mxnet", "onnxruntime")


class OnnxDetector:
    """A detector exported to ONNX by :meth:`SSDDetector.export` (``format="onnx"``), run by ONNX Runtime.

    It predicts and evaluates like an :class:`SSDDetector` (:meth:`predict`,
    :meth:`detect`, :func:`detkit.evaluate`) without MXNet's network code: the
    network, anchors, decoding and non-maximum suppression all run in ONNX
    Runtime; the preprocessing and the drawing stay detkit's. Needs the ``onnx``
    extra (``pip install -e ".[onnx]"`` in a checkout). Build it with :meth:`load`.

    Attributes
    ----------
    classes : list of str
    data_shape : (int, int)
        The input size ``(H, W)`` of the exported graph.
    precision : str
        ``"float32"``, or ``"int8"`` for a graph made by :meth:`quantize`.
    directory : pathlib.Path
        The folder it was loaded from.
    session : onnxruntime.InferenceSession

    Examples
    --------
    >>> detector = OnnxDetector.load("runs/quickstart/model-onnx")   # doctest: +SKIP
    >>> detector.predict("photo.jpg", threshold=0.5)                # doctest: +SKIP
    """

    def __init__(self, directory: Path, manifest: dict[str, Any], session: Any) -> None:
        self.directory = directory
        self.classes: list[str] = list(manifest["classes"])
        height, width = manifest["data_shape"]
        self.data_shape: tuple[int, int] = (int(height), int(width))
        self.precision: str = str(manifest.get("precision", "float32"))
        self.session = session
        self._manifest = manifest
        self._input = session.get_inputs()[0].name

    @property
    def num_classes(self) -> int:
        """The number of object classes ``C``."""
        return len(self.classes)

    @classmethod
    def load(cls, directory: PathLike, *, threads: int | None = None, spinning: bool = False) -> OnnxDetector:
        """Load ``detector.onnx`` and ``detector.json`` from ``directory`` into an ONNX Runtime session.

        Parameters
        ----------
        directory : path
            A folder written by :meth:`SSDDetector.export` with ``format="onnx"`` or by :meth:`quantize`.
        threads : int, optional
            ONNX Runtime's threads within an operator; default: one per core.
        spinning : bool, default False
            Let ONNX Runtime's threads spin while they wait for work, as it does by default.
            detkit turns it off: on a machine whose cores other processes share, spinning
            threads took two to three times as long per image (a 2-core machine under load);
            on an otherwise idle machine, spinning may shave a little latency.

        Raises
        ------
        CheckpointError
            If the folder holds no ONNX export, its ``detector.json`` is not valid, or
            ``detector.onnx`` differs from the SHA-256 recorded at export (damaged).
        MissingDependencyError
            Without the ``onnxruntime`` package.
        """
        ort = require_onnxruntime()
        if threads is not None:
            check_positive_int("threads", threads)
        check_bool("spinning", spinning)
        directory = Path(directory)
        # Both files through one snapshot of the folder's manifest, again if an export came between (one generation).
        return read_consistent(directory, lambda snapshot: cls._load(snapshot, ort, threads, spinning))

    @classmethod
    def _load(cls, snapshot: FolderSnapshot, ort: Any, threads: int | None, spinning: bool) -> OnnxDetector:
        directory = snapshot.folder
        manifest_path, graph_path = snapshot.path(ONNX_MANIFEST), snapshot.path(ONNX_FILE)
        if not manifest_path.is_file() or not graph_path.is_file():
            hint = (" It holds a saved MXNet detector: export it first with `detkit export "
                    f"{directory} --format onnx`." if (directory / "detector.yaml").is_file() else "")
            raise CheckpointError(f"{directory} holds no ONNX detector: {ONNX_FILE} and {ONNX_MANIFEST} are expected "
                                  f"there (written by SSDDetector.export with format='onnx').{hint}")
        manifest = _read_manifest(manifest_path)
        expected = manifest["sha256"].get(ONNX_FILE)
        if expected is not None and file_digest(graph_path, "sha256") != str(expected).lower():
            raise CheckpointError(f"The ONNX graph {graph_path} is damaged: its SHA-256 differs from the one "
                                  f"{ONNX_MANIFEST} recorded when it was written. Export the detector again.")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no warnings about initializers on every load
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        try:
            session = ort.InferenceSession(str(graph_path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for a bad graph
            raise CheckpointError(f"ONNX Runtime cannot load {graph_path}: {error}") from None
        return cls(directory, manifest, session)

    def detect(self, images: Any) -> np.ndarray:
        """Detections ``(B, K, 6)`` for preprocessed images ``(B, 3, H, W)`` (numpy or NDArray).

        Rows ``[class_id, score, xmin, ymin, xmax, ymax]``, boxes normalised to [0, 1];
        the detections first, highest score first, then rows of ``-1``.
        """
        if isinstance(images, mx.nd.NDArray):
            images = images.asnumpy()
        if not isinstance(images, np.ndarray):
            raise InputError(f"The 'images' argument must be a numpy array or NDArray of shape (B, 3, H, W); "
                             f"got {type(images).__name__} instead.")
        height, width = self.data_shape
        if images.ndim != 4 or images.shape[1:] != (3, height, width) or images.shape[0] < 1:
            raise InputError(f"The 'images' argument must have shape (B, 3, {height}, {width}), the exported input "
                             f"size; got {images.shape} instead.")
        result = self.session.run(None, {self._input: np.ascontiguousarray(images, dtype=np.float32)})[0]
        return np.asarray(result)

    def predict(self, images: Any, threshold: float = 0.5, *, batch_size: int = 32) -> Any:
        """Detect objects in images given as files or arrays; boxes in pixels, as :meth:`SSDDetector.predict`."""
        return predict(self.detect, self.classes, self.data_shape, images, threshold, batch_size)

    def quantize(self, calibration_data: Any, directory: PathLike, *, num_batches: int = 4,
                 batch_size: int = 8) -> OnnxDetector:
        """Write an INT8 copy of this detector to ``directory`` and load it.

        ONNX Runtime's static quantization: QDQ format, per-channel INT8 weights,
        activation ranges calibrated (min/max) on a few batches of images like those
        the detector will see (training images do). Only the network body is
        quantized; anchors, decoding and non-maximum suppression stay in float32.

        Parameters
        ----------
        calibration_data : DetectionDataset or list of arrays
            A dataset (read through its validation pipeline) or preprocessed
            batches ``(B, 3, H, W)``.
        directory : path
            Where to write ``detector.onnx`` and ``detector.json``; not this detector's own folder.
        num_batches : int, default 4
        batch_size : int, default 8

        Raises
        ------
        InputError
            If this detector is INT8 already, ``directory`` is its own folder, or the data gives no batch.
        """
        check_positive_int("num_batches", num_batches)
        check_positive_int("batch_size", batch_size)
        if self.precision != "float32":
            raise InputError("This ONNX detector is INT8 already; quantize its float32 export instead.")
        target = Path(directory)
        if target.resolve() == self.directory.resolve():
            raise InputError(f"The 'directory' argument must differ from the float32 detector's own folder "
                             f"{self.directory}; the INT8 copy would replace it.")
        batches = [as_numpy(b, np.float32) for b in
                   calibration_batches(calibration_data, self.data_shape, num_batches=num_batches,
                                       batch_size=batch_size)]
        if not batches:
            raise InputError("The calibration data gave no batch; give a dataset with images or a list of batches.")
        onnx = require_onnx()
        from onnxruntime import quantization as q

        source = resolve(self.directory, ONNX_FILE)
        model = onnx.load(str(source))
        excluded = _nodes_after_body(model, self._manifest.get("body_outputs") or [])

        class _Reader(q.CalibrationDataReader):
            def __init__(self, name: str, data: list[np.ndarray]) -> None:
                self._batches: Iterator[np.ndarray] = iter(data)
                self._name = name

            def get_next(self) -> dict[str, np.ndarray] | None:
                batch = next(self._batches, None)
                return None if batch is None else {self._name: batch}

        manifest = dict(self._manifest)
        manifest.update(precision="int8", quantization={
            "runtime": "onnxruntime", "onnxruntime": _version("onnxruntime"), "format": "QDQ", "per_channel": True,
            "calibration": "minmax", "calibration_images": int(sum(len(b) for b in batches)),
            "float32_sha256": manifest["sha256"].get(ONNX_FILE),
        })
        graph_file = target / ONNX_FILE
        with scratch_folder(target) as scratch, \
                folder_generation(target, ONNX_KIND, purpose="an INT8 ONNX export") as generation:
            staged = (generation.path(ONNX_FILE), generation.path(ONNX_MANIFEST))
            with storage_errors(graph_file), _without_preprocessing_advice():
                q.quantize_static(
                    str(source), str(scratch / "int8.onnx"), _Reader(self._input, batches),
                    quant_format=q.QuantFormat.QDQ, per_channel=True, activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                    nodes_to_exclude=excluded,
                )
                os.replace(scratch / "int8.onnx", staged[0])
            manifest["sha256"] = {ONNX_FILE: file_digest(staged[0], "sha256")}
            staged[1].write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return OnnxDetector.load(target)

    def __repr__(self) -> str:
        return f"OnnxDetector({str(self.directory)!r}, classes={self.classes!r}, precision={self.precision!r})"


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """Drop ONNX Runtime's advice to run its pre-processing (its symbolic shape inference needs sympy, and
    the exported graph has its shapes already), which it logs on the root logger at every quantization."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _version(distribution: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:  # noqa: BLE001 - a version is only recorded, never needed
        return None


def _nodes_after_body(model: Any, body_outputs: Sequence[str]) -> list[str]:
    """Names of the nodes that do not compute ``body_outputs`` (the post-processing): left in float32."""
    if not body_outputs:
        return []
    producer = {output: node for node in model.graph.node for output in node.output}
    needed: set[str] = set()
    stack = list(body_outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in needed:
            continue
        needed.add(node.name)
        stack.extend(node.input)
    return [node.name for node in model.graph.node if node.name not in needed]


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = load_json_text(path.read_text(encoding="utf-8"))  # nesting bounded: ValueError
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} cannot be read as JSON: {error}") from None

    def bad(key: str, wanted: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid ONNX detector description: '{key}' must be {wanted}. "
                               "Export the detector again.")

    if not isinstance(manifest, dict) or manifest.get("format") != ONNX_FORMAT:
        raise CheckpointError(f"{path} is not a detkit ONNX detector description (expected format {ONNX_FORMAT!r}).")
    classes = manifest.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a list of class names")
    shape = manifest.get("data_shape")
    if not isinstance(shape, list) or len(shape) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        raise bad("data_shape", "[height, width]")
    if manifest.get("precision", "float32") not in ("float32", "int8"):
        raise bad("precision", "'float32' or 'int8'")
    if not isinstance(manifest.get("sha256", {}), dict):
        raise bad("sha256", "a mapping of file names to SHA-256")
    manifest.setdefault("sha256", {})
    return manifest
