"""Export of a whole detector to one ONNX graph: images -> detections, anchors and post-processing included.

The network body (backbone, scale blocks, heads) goes through MXNet's own
exporter (``mxnet.onnx.export_model``); the anchor generator gives its anchors
for the exported input size, which become a constant; the post-processor adds
its own ONNX nodes (:meth:`~detkit.interfaces.PostProcessor.export_onnx`).
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import mxnet as mx
import numpy as np
from mxnet import gluon

from .._base import (
    check_writable,
    distribution_version,
    file_digest,
    folder_generation,
    make_dirs,
    require_onnx,
    scratch_folder,
    storage_errors,
)
from .._plugins import get_registry
from ..data import RGB_MEAN
from ..errors import ExportError, InputError

if TYPE_CHECKING:
    from ._detector import SSDDetector

__all__ = ["ONNX_FILE", "ONNX_FORMAT", "ONNX_INPUT", "ONNX_KIND", "ONNX_MANIFEST", "ONNX_OPSET", "ONNX_OUTPUT", "OUTPUT_LAYOUT",
           "export_onnx"]

#: The files of an exported detector: the graph, and its description (written last).
ONNX_FILE = "detector.onnx"
ONNX_MANIFEST = "detector.json"
#: The kind of folder an ONNX export is, in its folder manifest.
ONNX_KIND = "onnx-detector"
#: The ``format`` of an ONNX export's ``detector.json``.
ONNX_FORMAT = "detkit-onnx/1"
ONNX_INPUT = "data"
ONNX_OUTPUT = "detections"
#: The ONNX opset of an exported detector. MXNet 1.9's exporter translates operators for opsets 12 and 13
#: but labels its graph with the newest opset onnx knows, whose Split (18) needs what it does not give.
ONNX_OPSET = 13
OUTPUT_LAYOUT = ("detections (B, K, 6): class_id, score, xmin, ymin, xmax, ymax; boxes in [0, 1] of the input; "
                 "the detections first, highest score first, then rows of -1")


class _Body(gluon.HybridBlock):
    """The network without its anchors: images -> ``(class_preds (B, N, C+1), box_preds (B, N*4))``."""

    def __init__(self, network: Any) -> None:
        super().__init__()
        with self.name_scope():
            self.network = network

    def hybrid_forward(self, F: Any, x: Any) -> tuple[Any, Any]:
        return self.network.heads(F, self.network.features(F, x))


@contextlib.contextmanager
def _mxnet_exporter(onnx: Any, opset: int) -> Iterator[None]:
    """Run MXNet 1.9's ONNX exporter with a newer onnx package, writing ``opset``.

    The exporter asks ``onnx.defs.onnx_opset_version()`` for the opset to write (the
    newest onnx knows, whatever its own translations target), and reads the type
    tables of ``onnx.mapping``, which onnx 1.16 removed: both are given to it here.
    """
    newest = onnx.defs.onnx_opset_version
    onnx.defs.onnx_opset_version = lambda: opset
    # The exporter hands every weight to make_tensor as a Python list, which protobuf copies one float at
    # a time (seconds for a ResNet-18): give large float32 lists as raw bytes, the same tensor.
    make_tensor = onnx.helper.make_tensor

    def fast_make_tensor(name: str, data_type: int, dims: Any, vals: Any, raw: bool = False) -> Any:
        if not raw and data_type == onnx.TensorProto.FLOAT and isinstance(vals, list) and len(vals) > 1024:
            return make_tensor(name, data_type, dims, np.asarray(vals, dtype="<f4").tobytes(), raw=True)
        return make_tensor(name, data_type, dims, vals, raw=raw)

    onnx.helper.make_tensor = fast_make_tensor
    shim = None
    if not hasattr(onnx, "mapping"):
        shim = types.ModuleType("onnx.mapping")
        tensor_types = [getattr(onnx.TensorProto, name) for name in (
            "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "BOOL", "FLOAT16", "DOUBLE", "UINT32",
            "UINT64", "COMPLEX64", "COMPLEX128")]
        to_numpy = {int(t): np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t)) for t in tensor_types}
        shim.TENSOR_TYPE_TO_NP_TYPE = to_numpy  # type: ignore[attr-defined]
        shim.NP_TYPE_TO_TENSOR_TYPE = {dtype: t for t, dtype in to_numpy.items()}  # type: ignore[attr-defined]
        onnx.mapping = shim
        sys.modules["onnx.mapping"] = shim
    try:
        yield
    finally:
        onnx.defs.onnx_opset_version = newest
        onnx.helper.make_tensor = make_tensor
        if shim is not None:
            del onnx.mapping
            sys.modules.pop("onnx.mapping", None)


def _provider(detector: SSDDetector, kind: str) -> str:
    """``the post_processor 'name' (distribution D)`` for messages."""
    name = detector._specs[kind][0]
    info = get_registry().get(kind, name)
    where = f"distribution {info.distribution} {info.version or ''}".strip() if info.distribution else \
        f"plugin {info.plugin}"
    return f"the {kind.replace('_', ' ')} {name!r} ({where})"


def export_onnx(detector: SSDDetector, directory: Path, height: int, width: int) -> tuple[Path, Path]:
    """Write ``detector.onnx`` and ``detector.json`` into ``directory``; see :meth:`SSDDetector.export`."""
    onnx = require_onnx()
    # The folder's kind and the user's files are checked before the scratch folder is made in it: a refused export
    # leaves the folder as it was (folder_generation checks again, under the lock).
    check_writable(directory, ONNX_KIND, (ONNX_FILE, ONNX_MANIFEST))
    if detector.precision != "float32":
        raise ExportError(
            "An INT8 detector made by SSDDetector.quantize runs on MXNet only; export its float32 original to ONNX "
            "and quantize that with ONNX Runtime (detkit quantize --runtime onnxruntime)."
        )
    if not detector.backbone.exports_onnx:
        raise ExportError(f"{_provider(detector, 'backbone')} declares that MXNet's ONNX exporter cannot export it; "
                          "choose another backbone to export this detector.")
    if not detector.post_processor.exports_onnx:
        raise ExportError(f"{_provider(detector, 'post_processor')} cannot be exported to ONNX (it does not "
                          "implement export_onnx); choose a post-processor that does, such as "
                          "'multibox_detection'.")
    detector._materialize()
    ctx = detector.ctx
    images = mx.nd.zeros((1, 3, height, width), ctx=ctx)
    features = detector.network.features(mx.nd, images)
    anchors = detector.anchor_generator.anchors_for([f.shape for f in features])  # (1, N, 4)
    class_preds, _ = detector.network.heads(mx.nd, features)
    if anchors.ndim != 3 or anchors.shape[0] != 1 or anchors.shape[1] != class_preds.shape[1]:
        raise ExportError(f"{_provider(detector, 'anchor_generator')} gives anchors of shape {anchors.shape} for "
                          f"{height}x{width} input where the heads predict {class_preds.shape[1]} anchors.")
    # The body as a symbol, traced without hybridizing anything (the detector's own graphs stay as they are).
    symbol = mx.sym.Group(list(_Body(detector.network)(mx.sym.var("data"))))
    parameters = {name: parameter.data(ctx).as_in_context(mx.cpu())
                  for name, parameter in detector.network.collect_params().items()}
    opset = ONNX_OPSET
    make_dirs(directory)
    with scratch_folder(directory) as scratch:
        try:
            with _mxnet_exporter(onnx, opset), storage_errors(directory / ONNX_FILE):  # a full disk, ...
                mx.onnx.export_model(symbol, parameters, in_shapes=[(1, 3, height, width)], in_types=[np.float32],
                                     onnx_file_path=str(scratch / "body.onnx"), dynamic=True,
                                     dynamic_input_shapes=[(None, 3, height, width)])
        except (AttributeError, NotImplementedError, KeyError, ValueError, TypeError) as error:
            raise ExportError(
                f"MXNet's ONNX exporter cannot export the network of {_provider(detector, 'backbone')} (with the "
                f"detector's scale blocks and heads): {error}. Choose another backbone to export this detector."
            ) from None
        model = onnx.load(str(scratch / "body.onnx"))
    model, body_outputs = _compose(onnx, detector, model, anchors, opset)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"The ONNX graph of {_provider(detector, 'post_processor')} is not valid: {error}") from None
    graph_file, manifest_file = directory / ONNX_FILE, directory / ONNX_MANIFEST
    # One generation of the folder (see detkit._base._folder): the old export or the new one, under any kill.
    with folder_generation(directory, ONNX_KIND, purpose="an ONNX export") as generation:
        graph_staged, manifest_staged = generation.path(ONNX_FILE), generation.path(ONNX_MANIFEST)
        with storage_errors(graph_file):
            onnx.save(model, str(graph_staged))
        manifest = {
            "format": ONNX_FORMAT,
            "precision": "float32",
            "classes": list(detector.classes),
            "input_name": ONNX_INPUT,
            "input_shape": ["batch", 3, height, width],
            "data_shape": [height, width],
            "rgb_mean": list(RGB_MEAN),
            "rgb_std": [1.0, 1.0, 1.0],
            "output_name": ONNX_OUTPUT,
            "output": OUTPUT_LAYOUT,
            "body_outputs": body_outputs,
            "opset": opset,
            "ir_version": int(model.ir_version),
            "components": {kind: name for kind, (name, _) in detector._specs.items()},
            "exporter": {"detkit": distribution_version(), "mxnet": mx.__version__, "onnx": onnx.__version__},
            "sha256": {ONNX_FILE: file_digest(graph_staged, "sha256")},
        }
        manifest_staged.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return graph_file, manifest_file


def _compose(onnx: Any, detector: SSDDetector, body: Any, anchors: np.ndarray, opset: int) -> tuple[Any, list[str]]:
    """The body's graph, the anchors as a constant and the post-processor's nodes, as one model.

    Also returns the names of the body's two outputs, the predictions (INT8 quantization stops there).
    """
    helper = onnx.helper
    graph = body.graph
    initializers = {init.name for init in graph.initializer}
    # mx2onnx lists the weights among the inputs too; as constants they can be folded and optimised.
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 2:
        raise ExportError(f"MXNet's ONNX exporter gave {len(inputs)} inputs and {len(graph.output)} outputs for the "
                          "network; expected the images and two predictions.")
    image_name = inputs[0].name
    class_preds, box_preds = (output.name for output in graph.output)
    anchors_name = f"{detector.anchor_generator.prefix}anchors"
    try:
        subgraph = detector.post_processor.export_onnx(class_preds, box_preds, anchors_name, ONNX_OUTPUT, opset=opset)
    except NotImplementedError:
        raise ExportError(f"{_provider(detector, 'post_processor')} cannot be exported to ONNX.") from None
    except InputError as error:
        raise ExportError(f"{_provider(detector, 'post_processor')} cannot be exported to ONNX: {error}") from None
    nodes = list(graph.node) + list(subgraph.nodes)
    constants = list(graph.initializer) + [onnx.numpy_helper.from_array(anchors.astype(np.float32), anchors_name)]
    constants += list(subgraph.initializers)
    # The input is called "data" whatever MXNet named it.
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == image_name:
                node.input[i] = ONNX_INPUT
    height, width = (int(d.dim_value) for d in inputs[0].type.tensor_type.shape.dim[2:])
    image = helper.make_tensor_value_info(ONNX_INPUT, onnx.TensorProto.FLOAT, ["batch", 3, height, width])
    output = helper.make_tensor_value_info(ONNX_OUTPUT, onnx.TensorProto.FLOAT, ["batch", "detections", 6])
    combined = helper.make_graph(nodes, "detkit_detector", [image], [output], initializer=constants)
    model = helper.make_model(combined, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="detkit", producer_version=distribution_version())
    # The oldest IR version that opset 13 allows (7), not the newest this onnx knows: older runtimes
    # (TensorRT, OpenVINO, ONNX Runtime releases of the last years) refuse a newer IR than theirs.
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    helper.set_model_props(model, {"classes": json.dumps(list(detector.classes))})
    return model, [class_preds, box_preds]
