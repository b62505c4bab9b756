"""bench.py's precision and step phases: fp32 / INT8 / bf16 inference with mAP, and fit against its step alone.

Run only through ``bench.py`` (each phase in its own subprocess, detkit imported before MXNet).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import detkit  # noqa: F401  (before mxnet: detkit chooses MXNet's thread count)
import mxnet as mx
import numpy as np


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags (Linux); empty where /proc/cpuinfo is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def conv_rates(ctx: mx.Context, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a 3x3 convolution 64->64 at 64x64, batch 32: fp32 and INT8 (MKL-DNN, calibrated)."""
    from mxnet.contrib import quantization
    from mxnet.gluon import nn

    x = mx.nd.random.uniform(-1, 1, shape=(32, 64, 64, 64), ctx=ctx)
    flops = 2.0 * 32 * 64 * 64 * 64 * 64 * 9
    net = nn.HybridSequential()
    net.add(nn.Conv2D(64, 3, padding=1, in_channels=64))
    net.initialize(ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    net(x).wait_to_read()
    rates = {"fp32": flops / median_seconds(lambda: net(x).wait_to_read(), repeats) / 1e9}
    int8 = quantization.quantize_net_v2(net, quantized_dtype="auto", calib_data=[[x]], calib_mode="naive",
                                        num_calib_examples=32, ctx=ctx)
    int8.hybridize(static_alloc=True, static_shape=True)
    rates["int8"] = flops / median_seconds(lambda: int8(x).wait_to_read(), repeats) / 1e9
    return rates


def _bf16_network(detector: Any) -> Any:
    """The detector's network converted by MXNet's AMP to bfloat16, the anchor generator kept in fp32."""
    from mxnet.contrib import amp

    prefix = detector.anchor_generator.prefix
    probe = detector.network(mx.sym.var("data"))
    names = [name for name in mx.sym.Group(list(probe)).get_internals().list_outputs() if name.startswith(prefix)]
    excluded = sorted({name.rsplit("_output", 1)[0] for name in names})
    return amp.convert_hybrid_block(detector.network, target_dtype="bfloat16", excluded_sym_names=excluded,
                                    ctx=detector.ctx, cast_optional_params=True)


def precision_rows(detector: Any, val: Any, calibration: Any, image_path: str, batch_size: int, repeats: int,
                   calibration_batches: int) -> dict[str, Any]:
    """fp32, INT8 and bf16 rows: inference at batch B, predict latency, mAP@0.5 and mAP@[.5:.95] on ``val``.

    INT8 is calibrated on ``calibration`` (training images), not on the images it is scored on.
    """
    ctx = detector.ctx
    flags = cpu_flags()
    batch = next(iter(val.loader(batch_size, detector.data_shape, train=False))).data.as_in_context(ctx)
    rows: dict[str, Any] = {}

    def measure(model: Any) -> dict[str, float]:
        scores = detkit.evaluate(model, val, batch_size=batch_size)
        return {
            "infer_img_s": batch_size / median_seconds(lambda: _wait(model.detect(batch)), repeats),
            "predict_latency_ms": 1000 * median_seconds(lambda: model.predict(image_path), repeats),
            "map_50": scores["map_50"], "map_50_95": scores["map_50_95"],
        }

    rows["fp32"] = measure(detector)
    start = time.perf_counter()
    int8 = detector.quantize(calibration, num_batches=calibration_batches, batch_size=batch_size)
    rows["int8"] = {**measure(int8), "calibration_s": time.perf_counter() - start,
                    "vnni": "avx512_vnni" in flags or "avx_vnni" in flags}
    rows["onnxruntime"] = onnxruntime_rows(detector, val, calibration, measure, batch_size, calibration_batches)
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        fp32_outputs = detector(batch)  # AMP converts the graph of a network that has run (a loaded one has not)
        network = _bf16_network(detector)
        network.hybridize(static_alloc=True)
        bf16_outputs = network(batch)
        error = max(float(np.abs(b.astype("float32").asnumpy() - f.asnumpy()).mean()
                          / (np.abs(f.asnumpy()).mean() + 1e-12)) for b, f in zip(bf16_outputs[1:], fp32_outputs[1:]))
        rows["bf16"] = {
            "network_img_s": batch_size / median_seconds(lambda: [o.wait_to_read() for o in network(batch)], repeats),
            "fp32_network_img_s": batch_size / median_seconds(lambda: [o.wait_to_read() for o in detector(batch)],
                                                               repeats),
            "relative_error": error,
        }
    else:
        rows["bf16"] = {"skipped": "this CPU has no avx512_bf16 (nor AMX): MXNet's bfloat16 kernels need it"}
    rows["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni")))
    return rows


def _wait(detections: Any) -> None:
    """Block until MXNet's detections are computed (ONNX Runtime's, numpy arrays, already are)."""
    if hasattr(detections, "wait_to_read"):
        detections.wait_to_read()


def onnxruntime_rows(detector: Any, val: Any, calibration: Any, measure: Callable[[Any], dict[str, float]],
                     batch_size: int, calibration_batches: int) -> dict[str, Any]:
    """The detector exported to ONNX and run by ONNX Runtime: fp32, and INT8 (static QDQ, per channel).

    Also the parity of the fp32 export with MXNet's ``detect`` on the validation set: the largest box and
    score differences over the detections, and the images whose detection counts differ.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as error:
        return {"skipped": f"the onnx extra is not installed ({error})"}
    import tempfile

    from detkit.testing import compare_detections

    rows: dict[str, Any] = {"onnxruntime_version": onnxruntime.__version__}
    with tempfile.TemporaryDirectory(prefix="detkit-bench-onnx-") as directory:
        start = time.perf_counter()
        detector.export(Path(directory) / "fp32", format="onnx")
        rows["export_s"] = time.perf_counter() - start
        fp32 = detkit.OnnxDetector.load(Path(directory) / "fp32")
        rows["fp32"] = measure(fp32)
        box_error = score_error = 0.0
        count_mismatches = 0
        for batch in val.loader(batch_size, detector.data_shape, train=False):
            found = compare_detections(fp32.detect(batch.data), detector.detect(batch.data))
            box_error = max(box_error, found["max_box_error"])
            score_error = max(score_error, found["max_score_error"])
            count_mismatches += len(found["mismatched_images"])
        rows["parity"] = {"max_box_error": box_error, "max_score_error": score_error,
                          "images_with_other_detections": count_mismatches}
        start = time.perf_counter()
        int8 = fp32.quantize(calibration, Path(directory) / "int8", num_batches=calibration_batches,
                             batch_size=batch_size)
        calibration_s = time.perf_counter() - start
        rows["int8"] = {**measure(int8), "calibration_s": calibration_s}
    return rows


def step_alone_img_s(detector: Any, train: Any, batch_size: int, batches: int) -> float:
    """Images/s of fit's training step on batches already in memory: no reader, no epoch start or end."""
    from mxnet import gluon

    from detkit._blocks import can_fuse_batch_norm_relu
    from detkit._engine._step import TrainingGraph, train_epoch

    ctx = detector.ctx
    detector._materialize()
    graph = TrainingGraph(detector, fuse_batch_norm_relu=can_fuse_batch_norm_relu([ctx]))
    graph.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(graph.collect_params(), "sgd", {"learning_rate": 0.1, "wd": 5e-4})
    loader = train.loader(batch_size, detector.data_shape, train=True, seed=0, last_batch="discard",
                          num_objects=max(train.max_objects, 3))
    preloaded = [batch for batch, _ in zip(loader, range(batches))]
    for batch in preloaded:
        batch.data.wait_to_read()
    term_names = ["loss", *detector.loss.term_names]
    train_epoch(graph, trainer, preloaded, [ctx], 0, 2, term_names, quiet=True)  # warm-up: builds the graph
    record = train_epoch(graph, trainer, preloaded, [ctx], 1, 2, term_names, quiet=True)
    return float(record["images_per_second"])


def gluoncv_train_step(net: Any, x: Any, cls_targets: Any, box_targets: Any, batch_size: int,
                       learning_rate: float) -> Callable[[], None]:
    """One timed training step of a hybridized GluonCV SSD on the batch ``x`` with its targets, as its
    ``train_ssd.py`` does: forward, ``SSDMultiBoxLoss``, backward, SGD (momentum 0.9, weight decay 5e-4)."""
    from gluoncv.loss import SSDMultiBoxLoss
    from mxnet import autograd, gluon

    loss = SSDMultiBoxLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": learning_rate, "momentum": 0.9, "wd": 5e-4})

    def step() -> None:
        with autograd.record():
            cls, box, _ = net(x)
            total, _, _ = loss(cls, box, cls_targets, box_targets)
        autograd.backward(total)
        trainer.step(batch_size)
        mx.nd.waitall()

    return step


def gluoncv_peer(val: Any, image_size: int, batch_size: int, repeats: int, ctx: Any) -> dict[str, Any]:
    """GluonCV's SSD (MobileNet 1.0 body, untrained, one class) at the same size, when GluonCV is installed.

    Figures: its train step (forward, GluonCV's target generator and SSD loss, backward, SGD update) in
    images/s, its inference with NMS at batch B, and its forward alone. ``{"skipped": why}`` otherwise.
    """
    try:
        from gluoncv import model_zoo
        from gluoncv.model_zoo.ssd.target import SSDTargetGenerator
    except ImportError as error:  # not a dependency of detkit: an optional peer
        return {"skipped": f"GluonCV is not installed ({error})"}
    from mxnet import autograd

    mx.random.seed(0)
    net = model_zoo.get_model("ssd_512_mobilenet1.0_custom", classes=["pikachu"], pretrained_base=False,
                              transfer=None)
    net.initialize(ctx=ctx)  # GluonCV's own initializers (Xavier would refuse its batch norms' vectors)
    net.hybridize(static_alloc=True, static_shape=True)
    batch = next(iter(val.loader(batch_size, image_size, train=False)))
    x = batch.data.as_in_context(ctx)
    labels = batch.label.as_in_context(ctx)  # (B, M, 5): class id, box in [0, 1]
    gt_boxes = labels[:, :, 1:5] * image_size
    gt_ids = labels[:, :, :1]
    with autograd.train_mode():
        cls_preds, box_preds, anchors = net(x)
    cls_targets, box_targets, _ = SSDTargetGenerator(negative_mining_ratio=-1)(anchors, cls_preds, gt_boxes, gt_ids)
    step = gluoncv_train_step(net, x, cls_targets, box_targets, batch_size, learning_rate=0.01)
    train_s = median_seconds(step, repeats)
    detect_s = median_seconds(lambda: [o.wait_to_read() for o in net(x)], repeats)
    return {"model": "ssd_512_mobilenet1.0_custom (untrained) at the same input size", "train_img_s":
            batch_size / train_s, "infer_img_s": batch_size / detect_s}
