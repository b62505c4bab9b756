"""INT8 inference: the detector's network quantized with MXNet's MKL-DNN backend, calibrated on the user's images.

Only the convolutions, poolings and their reshapes run in INT8; the anchor
generator (``MultiBoxPrior``: it depends on shapes alone and its coordinates
must stay exact) and the post-processor (softmax + ``MultiBoxDetection``) stay
in fp32. The quantized network is a ``SymbolBlock``: saved as a symbol JSON and
an MXNet ``.params`` file, read back without pickle.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import mxnet as mx
from mxnet import gluon

from .._base import QUANTIZATION_NOISE, native_stderr_filtered
from ..errors import InputError, MissingDependencyError

__all__ = ["CALIBRATION_MODES", "calibration_batches", "import_quantized", "quantize_network", "require_int8"]

#: ``"naive"``: each layer's range is the min/max met in calibration; ``"entropy"``:
#: the range that keeps the KL divergence of its histogram smallest (slower, often more accurate).
CALIBRATION_MODES = ("naive", "entropy")
INPUT_NAME = "data"


@functools.lru_cache(maxsize=None)
def _int8_available() -> bool:
    return bool(mx.runtime.Features().is_enabled("MKLDNN"))


def require_int8(ctx: mx.Context) -> None:
    """Refuse INT8 where MXNet cannot run it: only on the CPU, with MXNet's MKL-DNN backend."""
    if ctx.device_type != "cpu":
        raise InputError(
            f"INT8 detectors run on the CPU only (MXNet's MKL-DNN backend); got the context {ctx}. "
            "Quantize a detector loaded with ctx=mx.cpu()."
        )
    if not _int8_available():
        raise MissingDependencyError(
            "This MXNet build has no MKL-DNN backend, which INT8 inference needs; "
            "install the standard CPU build: pip install mxnet==1.9.1."
        )


def quantize_network(network: gluon.HybridBlock, batches: Iterable[mx.nd.NDArray], *, exclude_prefixes: Sequence[str],
                     calibration: str, ctx: mx.Context) -> gluon.SymbolBlock:
    """``network`` (images -> outputs) quantized to INT8, its ranges calibrated on ``batches``.

    ``batches`` are preprocessed images ``(B, 3, H, W)``; the layers whose names
    start with one of ``exclude_prefixes`` stay in fp32.
    """
    from mxnet.contrib import quantization

    require_int8(ctx)
    # MXNet's calibration takes each batch as a list of arrays, one per network input.
    calibration_data = [[batch.as_in_context(ctx)] for batch in batches]
    examples = sum(batch[0].shape[0] for batch in calibration_data)
    quiet = logging.getLogger("detkit.quantize")
    quiet.setLevel(logging.WARNING)  # MXNet logs every layer it calibrates at INFO
    # MXNet's C++ side logs each layer it quantizes (about 90 lines) straight to the terminal.
    with warnings.catch_warnings(), native_stderr_filtered(QUANTIZATION_NOISE):
        # MXNet's SymbolBlock cannot infer the type of the input it was not shown; it is float32.
        warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
        return quantization.quantize_net_v2(
            network, quantized_dtype="auto", quantize_mode="full", exclude_layers_match=list(exclude_prefixes),
            calib_data=calibration_data, calib_mode=calibration, num_calib_examples=examples, ctx=ctx, logger=quiet,
        )


def import_quantized(symbol_file: Path, params_file: Path, ctx: mx.Context) -> gluon.SymbolBlock:
    """A quantized network written by :meth:`SSDDetector.save` (a symbol JSON and an MXNet ``.params`` file)."""
    require_int8(ctx)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
        return gluon.SymbolBlock.imports(str(symbol_file), [INPUT_NAME], str(params_file), ctx=ctx)


def calibration_batches(data: Any, data_shape: tuple[int, int], *, num_batches: int, batch_size: int) -> list[Any]:
    """The first ``num_batches`` preprocessed batches of ``data``: a detection dataset, or batches already made."""
    if hasattr(data, "loader"):
        loader = data.loader(batch_size, data_shape, train=False, last_batch="discard")
        batches = []
        for batch in loader:
            batches.append(batch.data)
            if len(batches) == num_batches:
                break
        if not batches:  # fewer images than one batch: take what there is
            batches = [batch.data for batch in data.loader(min(batch_size, len(data)), data_shape, train=False)][:1]
        return batches
    if isinstance(data, (mx.nd.NDArray,)) or not isinstance(data, Iterable):
        raise InputError(
            "The 'calibration_data' argument must be a detection dataset (such as detkit.data.DetectionDataset) "
            f"or a list of preprocessed batches (B, 3, H, W); got {type(data).__name__} instead."
        )
    return list(data)[:num_batches]
