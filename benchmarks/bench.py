"""Speed of detkit beside the Gluon SSD tutorial's own loop, on the same data, in one run.

    python benchmarks/bench.py                       # 256x256, batch 32, CPU
    python benchmarks/bench.py --rounds 2            # each side twice, alternately; best of each
    python benchmarks/bench.py --device "gpu(0)" --batches 20
    python benchmarks/bench.py --quick --out /tmp/bench.json   # a few seconds, for CI

Every phase runs in its own subprocess (so that each starts cold and its peak
memory is its own). detkit's phases import detkit (which sets its OpenMP
threads); the tutorial's (``benchmarks/_tutorial.py``) run in a default
environment: no ``OMP_NUM_THREADS``, no detkit.

Figures (JSON keys under ``detkit`` and ``tutorial``):

- ``train_img_s``: steady-state training images/s -- ``detkit.fit`` (data, step,
  metrics, progress) for 2 epochs over the first ``batches x batch_size``
  training images; the second epoch is timed (the tutorial loop likewise).
- ``infer_img_s``: ``detector.detect`` (hybridized) on one preprocessed batch,
  median of several runs; tutorial: forward + ``SoftmaxActivation`` + ``MultiBoxDetection``.
- ``predict_latency_ms``: one image file through ``detector.predict`` (tutorial:
  ``process_image`` + ``predict``), median.
- ``eval_total_s``, ``eval_forward_s``, ``eval_post_s``: evaluating the validation
  set -- ``detkit.evaluate`` end to end (which overlaps forward and scoring, so it
  can be less than the sum), then apart: reading + network forward, and
  post-processing + mAP on the stored network outputs.
- ``reader_img_s``: the training reader with random crop (``train.loader(B, S, train=True)``;
  tutorial: ``ImageDetIter``). ``reader_ssd_img_s`` (detkit only): the same with SSD's
  augmentation (``augment="ssd"``).
- ``fit_peak_rss_mb``: peak resident memory of the training subprocess.
- ``precision``: fp32, INT8 and bf16 of one trained detector (speed and mAP), the
  same detector exported to ONNX and run by ONNX Runtime in fp32 and INT8 (static
  QDQ, per channel, calibrated on training images) with its parity against
  ``detect`` (``precision.onnxruntime``, when the ``onnx`` extra is installed), the
  convolution rate in fp32 and INT8, and GluonCV's SSD (MobileNet body) as a peer
  when GluonCV is installed (it is not a dependency: put it on ``PYTHONPATH``).
- ``step_img_s`` / ``fit_fraction_of_step``: fit's training step alone, on batches
  already in memory, and fit's speed as a fraction of it.
- ``conv_gflops``: the machine's 3x3 convolution speed (64->64 channels, 64x64,
  batch 32, fp32, best of 5) in that environment.
- ``model_gflop_forward`` / ``model_gflop_train``: the network's convolution cost
  per image (forward; training step = 3x forward less the first layer's input gradient).
- ``train_fraction_of_conv_peak`` / ``infer_fraction_of_conv_peak``: achieved
  convolution GFLOP/s over ``conv_gflops``.

It prints the figures with their ratios, then the issue's speed targets
(``TARGETS``) as measured, met or not; the JSON file holds both (``targets``).

``--quick`` exits non-zero only on a gross regression: a missing figure, or
detkit's fit, inference or predict more than 2x slower than the tutorial's
measured in the same run. ``--quick --no-speed-check`` checks the figures alone:
the test suite runs it so (a speed ratio measured on a loaded machine says nothing
about detkit, and a test must not fail for it); the speed check is this script's.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (key, label, unit, higher is better)
FIGURES = [
    ("train_img_s", "fit, steady state", "img/s", True),
    ("infer_img_s", "inference at batch B", "img/s", True),
    ("predict_latency_ms", "predict, 1 image", "ms", False),
    ("eval_total_s", "evaluate val set", "s", False),
    ("eval_forward_s", "  reading + forward", "s", False),
    ("eval_post_s", "  post-processing + mAP", "s", False),
    ("reader_img_s", "reader, random crop", "img/s", True),
    ("fit_peak_rss_mb", "fit peak RSS", "MB", False),
    ("conv_gflops", "3x3 conv GFLOP/s", "GFLOP/s", True),
    ("model_gflop_forward", "model GFLOP/img fwd", "GFLOP", None),
    ("model_gflop_train", "model GFLOP/img train", "GFLOP", None),
    ("train_fraction_of_conv_peak", "fit / conv peak", "", True),
    ("infer_fraction_of_conv_peak", "inference / conv peak", "", True),
]
KEYS = [key for key, *_ in FIGURES]

# The speed targets of the performance issue: (what, measured value from the result, goal, is it met).
TARGETS = [
    ("fit vs the tutorial's loop", lambda d, t: d["train_img_s"] / t["train_img_s"], ">= 4x",
     lambda v: v >= 4),
    ("fit as a fraction of the 3x3 conv limit", lambda d, t: d["train_fraction_of_conv_peak"], ">= 0.65",
     lambda v: v >= 0.65),
    ("inference at batch B vs the tutorial's", lambda d, t: d["infer_img_s"] / t["infer_img_s"], ">= 4x",
     lambda v: v >= 4),
    ("predict latency / the tutorial's", lambda d, t: d["predict_latency_ms"] / t["predict_latency_ms"], "<= 0.7",
     lambda v: v <= 0.7),
    ("post-processing + mAP of the val set, s", lambda d, t: d["eval_post_s"], "<= 0.5 (well under 1 s)",
     lambda v: v <= 0.5),
    ("reader / fit images per second", lambda d, t: d["reader_img_s"] / d["train_img_s"], ">= 5x",
     lambda v: v >= 5),
    ("reader with SSD's augmentation / fit", lambda d, t: d["reader_ssd_img_s"] / d["train_img_s"], ">= 5x",
     lambda v: v >= 5),
    ("fit peak memory / the tutorial's", lambda d, t: d["fit_peak_rss_mb"] / t["fit_peak_rss_mb"], "< 1",
     lambda v: v < 1),
]


# -- detkit's phases (run in subprocesses: `bench.py --phase NAME JSON`) ------------------

def _context(text: str):
    import mxnet as mx

    text = text.strip()
    if text == "cpu":
        return mx.cpu()
    if text.startswith("gpu"):
        return mx.gpu(int(text[4:-1]) if "(" in text else 0)
    raise SystemExit(f"--device must be cpu or gpu(N); got {text!r}")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _detector(args):
    import mxnet as mx
    import detkit

    mx.random.seed(0)
    return detkit.SSDDetector(classes=["pikachu"], data_shape=args["image_size"], ctx=_context(args["device"]))


# Each phase imports detkit before mxnet (see phase_detkit_infer).

def phase_prepare(args):
    import detkit

    train, val = detkit.data.synthetic_pikachu(args["data"], num_train=args["num_train"], num_val=args["num_val"],
                                               image_size=args["data_size"], progress=False)
    return {"train": len(train), "val": len(val)}


def phase_detkit_train(args):
    import detkit

    train = detkit.data.DetectionDataset(args["train_rec"], args["train_idx"], classes=["pikachu"])
    detector = _detector(args)
    history = detkit.fit(detector, train, epochs=2, batch_size=args["batch_size"], devices=_context(args["device"]),
                         seed=0, quiet=False)  # the progress bar and summary lines count too
    record = history.records[-1]
    peak = _peak_rss_mb()
    sys.path.insert(0, str(HERE))
    from _precision import step_alone_img_s

    step = step_alone_img_s(_detector(args), train, args["batch_size"], len(train) // args["batch_size"])
    return {"train_img_s": record["images_per_second"], "train_batches": len(train) // args["batch_size"],
            "fit_peak_rss_mb": peak, "step_img_s": step, "fit_fraction_of_step": record["images_per_second"] / step}


def _conv_flops(detector, size):
    """Per-image forward FLOPs summed over the network's Conv2D layers, and a training step's."""
    sys.path.insert(0, str(HERE))
    from _tutorial import conv_flops  # the same count for both sides

    return conv_flops(detector.network, size, detector.ctx)


def phase_detkit_infer(args):
    import detkit  # before mxnet: detkit chooses MXNet's thread count, which only works before MXNet loads
    import mxnet as mx
    import numpy as np

    sys.path.insert(0, str(HERE))
    from _tutorial import conv_gflops

    size, batch_size, repeats = args["image_size"], args["batch_size"], args["repeats"]
    ctx = _context(args["device"])
    result = {}
    plain = detkit.SSDDetector(classes=["pikachu"], data_shape=size, ctx=ctx, hybridize=False)
    fwd, train_flops = _conv_flops(plain, size)
    result["model_gflop_forward"], result["model_gflop_train"] = fwd / 1e9, train_flops / 1e9
    result["conv_gflops"] = conv_gflops(ctx)

    val = detkit.data.DetectionDataset(args["val_rec"], args["val_idx"], classes=["pikachu"])
    detector = _detector(args)
    batch = next(iter(val.loader(batch_size, size, train=False)))
    x = batch.data.as_in_context(ctx)
    for _ in range(2):
        detector.detect(x).wait_to_read()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(x).wait_to_read()
        times.append(time.perf_counter() - start)
    result["infer_img_s"] = batch_size / float(np.median(times))

    for _ in range(2):
        detector.predict(args["image_path"])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.predict(args["image_path"])
        times.append(time.perf_counter() - start)
    result["predict_latency_ms"] = 1000 * float(np.median(times))

    # evaluate() end to end (it overlaps the device's forward with the host's scoring), then
    # its two parts apart: reading + network forward, and post-processing + mAP on stored outputs.
    detkit.evaluate(detector, val, batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    scores = detkit.evaluate(detector, val, batch_size=batch_size)
    total = time.perf_counter() - start
    outputs = []
    start = time.perf_counter()
    for batch in val.loader(batch_size, size, train=False, last_batch="pad"):
        out = detector(batch.data)
        for array in out:
            array.wait_to_read()
        outputs.append((out, batch))
    forward = time.perf_counter() - start
    post = detector.post_processor
    post.hybridize(static_alloc=True)
    anchors, class_preds, box_preds = outputs[0][0]
    post(class_preds, box_preds, anchors).wait_to_read()  # warm-up
    metric = detkit.DetectionMetric(detector.num_classes, detector.classes)
    start = time.perf_counter()
    for (anchors, class_preds, box_preds), batch in outputs:
        rows = post(class_preds, box_preds, anchors).asnumpy()
        keep = rows.shape[0] - batch.pad
        metric.update(rows[:keep], batch.label.asnumpy()[:keep])
    metric.compute()
    result.update(eval_total_s=total, eval_forward_s=forward, eval_post_s=time.perf_counter() - start,
                  eval_images=scores["num_images"])

    reader = detkit.data.DetectionDataset(args["train_rec"], args["reader_idx"], classes=["pikachu"])
    for key, augment in (("reader_img_s", "seed"), ("reader_ssd_img_s", "ssd")):
        iterator = iter(reader.loader(batch_size, size, train=True, seed=0, augment=augment))
        next(iterator)
        count, start = 0, time.perf_counter()
        for batch in iterator:
            batch.data.wait_to_read()
            count += batch.data.shape[0] - batch.pad
        result[key] = count / (time.perf_counter() - start)
    return result


def phase_detkit_precision(args):
    """fp32, INT8 and bf16 on a trained detector: ``--model``, or the quickstart's recipe trained here."""
    import detkit  # before mxnet
    import mxnet as mx

    sys.path.insert(0, str(HERE))
    from _precision import conv_rates, gluoncv_peer, precision_rows

    ctx = _context(args["device"])
    val = detkit.data.DetectionDataset(args["val_rec"], args["val_idx"], classes=["pikachu"])
    if args.get("model"):
        detector = detkit.SSDDetector.load(args["model"], ctx=ctx)
        trained = f"loaded from {args['model']}"
    else:
        # The quickstart's recipe at the benchmark's input size, so that the rows read beside the others.
        config = detkit.config.load_config(ROOT / "examples" / "quickstart.yaml",
                                           [f"train.epochs={args['precision_epochs']}",
                                            f"model.data_shape={args['image_size']}"])
        train = detkit.data.DetectionDataset(args["train_rec"], None, classes=["pikachu"])
        mx.random.seed(0)
        detector = detkit.config.build_detector(config, ["pikachu"], ctx=ctx)
        t = config.train
        start = time.perf_counter()
        batch_size = t.batch_size if len(train) >= t.batch_size else args["batch_size"]  # --quick's tiny set
        detkit.fit(detector, train, epochs=t.epochs, batch_size=batch_size, optimizer=t.optimizer,
                   optimizer_params=t.optimizer_params, lr_schedule=t.lr_schedule, warmup_epochs=t.warmup_epochs,
                   devices=ctx, seed=0, quiet=True)
        trained = (f"examples/quickstart.yaml's recipe at {config.model.data_shape} px, {t.epochs} epochs, "
                   f"{time.perf_counter() - start:.0f} s")
    calibration = detkit.data.DetectionDataset(args["train_rec"], None, classes=["pikachu"])
    rows = precision_rows(detector, val, calibration, args["image_path"], args["batch_size"], args["repeats"],
                          args["calibration_batches"])
    rows["conv_gflops"] = conv_rates(ctx)
    rows["gluoncv"] = gluoncv_peer(val, args["image_size"], args["batch_size"], args["repeats"], ctx)
    rows["model"] = {"trained": trained, "data_shape": list(detector.data_shape)}
    return rows


PHASES = {"prepare": phase_prepare, "detkit_train": phase_detkit_train, "detkit_infer": phase_detkit_infer,
          "detkit_precision": phase_detkit_precision}


# -- the driver ------------------------------------------------------------------------------

def _run(command: list[str], env: dict[str, str], what: str, timeout: float) -> dict:
    started = time.perf_counter()
    process = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if process.returncode != 0:
        sys.stderr.write(process.stderr[-4000:])
        raise SystemExit(f"bench: the {what} phase failed (exit {process.returncode})")
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1])
    print(f"  {what}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return result


def _write_subset_idx(source: Path, target: Path, count: int) -> int:
    lines = source.read_text().splitlines()[:count]
    target.write_text("\n".join(lines) + "\n")
    return len(lines)


def _extract_image(rec: Path, idx: Path, target: Path) -> None:
    """The first validation record's encoded image, as a file (for predict)."""
    code = (
        "import sys, mxnet as mx\n"
        "r = mx.recordio.MXIndexedRecordIO(sys.argv[2], sys.argv[1], 'r')\n"
        "_, img = mx.recordio.unpack(r.read_idx(r.keys[0]))\n"
        "open(sys.argv[3], 'wb').write(img)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(rec), str(idx), str(target)], check=True, cwd=ROOT)


def _merge(side: dict, new: dict) -> None:
    """Keep the better of two measurements of each figure."""
    for key, value in new.items():
        higher = next((h for k, _, _, h in FIGURES if k == key), None)
        old = side.get(key)
        if old is None or higher is None or not isinstance(value, (int, float)):
            side[key] = value
        else:
            side[key] = max(old, value) if higher else min(old, value)


def _regressions(result: dict, quick: bool) -> list[str]:
    """Missing or non-finite figures; with ``quick``, gross slow-downs against the tutorial."""
    problems = [f"{side}.{key} is missing or not a positive number" for side in ("detkit", "tutorial")
                for key in KEYS if not (isinstance(result[side].get(key), (int, float))
                                        and math.isfinite(result[side][key]) and result[side][key] > 0)]
    if quick and not problems:
        d, t = result["detkit"], result["tutorial"]
        if d["train_img_s"] < 0.5 * t["train_img_s"]:
            problems.append("detkit's fit is more than 2x slower than the tutorial's loop")
        if d["infer_img_s"] < 0.5 * t["infer_img_s"]:
            problems.append("detkit's inference is more than 2x slower than the tutorial's")
        if d["predict_latency_ms"] > 2 * t["predict_latency_ms"]:
            problems.append("detkit's predict is more than 2x slower than the tutorial's")
    return problems


def _table(result: dict) -> str:
    rows = [f"{'figure':<26}{'detkit':>12}{'tutorial':>12}{'detkit better by':>18}  unit"]
    for key, label, unit, higher in FIGURES:
        d, t = result["detkit"].get(key), result["tutorial"].get(key)
        if higher is None or not d or not t:
            ratio = ""
        else:
            ratio = f"{(d / t if higher else t / d):.2f}x"
        fmt = (lambda v: f"{v:.3f}") if unit in ("", "GFLOP") or (isinstance(d, float) and d < 10) else (
            lambda v: f"{v:.1f}")
        rows.append(f"{label:<26}{fmt(d) if d is not None else '-':>12}{fmt(t) if t is not None else '-':>12}"
                    f"{ratio:>18}  {unit}")
    return "\n".join(rows)


def _targets(result: dict) -> list[dict]:
    rows = []
    for what, measure, goal, met in TARGETS:
        value = measure(result["detkit"], result["tutorial"])
        rows.append({"target": what, "goal": goal, "measured": value, "met": bool(met(value))})
    return rows


def _precision_targets(result: dict) -> list[dict]:
    """The targets of the low-precision issue: INT8 against fp32 in this run, and fit against its step alone."""
    rows = []
    d = result["detkit"]
    if d.get("fit_fraction_of_step"):
        value = d["fit_fraction_of_step"]
        rows.append({"target": "fit / its training step alone", "goal": ">= 0.9", "measured": value,
                     "met": bool(value >= 0.9)})
    p = result.get("precision") or {}
    fp32, int8 = p.get("fp32"), p.get("int8")
    if not fp32 or not int8:
        return rows
    no_vnni = None if int8.get("vnni") else "this CPU lacks VNNI (AVX-512 VNNI or AVX-VNNI): INT8 runs without it"
    for what, value, goal, met in (
        ("INT8 inference at batch B / fp32", int8["infer_img_s"] / fp32["infer_img_s"], ">= 2x (VNNI)",
         lambda v: v >= 2),
        ("INT8 predict latency / fp32", int8["predict_latency_ms"] / fp32["predict_latency_ms"], "<= 0.6",
         lambda v: v <= 0.6),
        ("INT8 mAP@0.5 - fp32 mAP@0.5", int8["map_50"] - fp32["map_50"], "within 0.01",
         lambda v: abs(v) <= 0.01),
    ):
        row = {"target": what, "goal": goal, "measured": value, "met": bool(met(value))}
        if no_vnni and "mAP" not in what:
            row["reason"] = no_vnni
        rows.append(row)
    ort = p.get("onnxruntime") or {}
    if ort.get("fp32"):
        rows.append({"target": "ONNX parity: max box error", "goal": "<= 1e-4",
                     "measured": ort["parity"]["max_box_error"],
                     "met": bool(ort["parity"]["max_box_error"] <= 1e-4
                                 and ort["parity"]["images_with_other_detections"] == 0),
                     "detail": f"{ort['parity']['images_with_other_detections']} validation images with other "
                               f"detections; max score error {ort['parity']['max_score_error']:.1e}"})
    # The fastest single-image predict among the runtimes and precisions whose mAP@0.5 stays within 0.01.
    candidates = [(f"mxnet {name}", p[name]) for name in ("fp32", "int8")]
    candidates += [(f"onnxruntime {name}", ort[name]) for name in ("fp32", "int8") if ort.get(name)]
    usable = [(name, row) for name, row in candidates if abs(row["map_50"] - fp32["map_50"]) <= 0.01]
    name, best = min(usable, key=lambda item: item[1]["predict_latency_ms"])
    value = best["predict_latency_ms"] / fp32["predict_latency_ms"]
    rows.append({"target": "best predict latency / MXNet fp32", "goal": "<= 0.6 (mAP@0.5 within 0.01)",
                 "measured": value, "met": bool(value <= 0.6), "detail": f"{name}: {best['predict_latency_ms']:.2f} "
                 f"ms against {fp32['predict_latency_ms']:.2f} ms, mAP@0.5 {best['map_50']:.4f} against "
                 f"{fp32['map_50']:.4f}"})
    return rows


def _precision_table(result: dict) -> str:
    p = result.get("precision") or {}
    lines = [f"precision rows: a trained detector ({p.get('model', {}).get('trained', '?')}), "
             f"input {p.get('model', {}).get('data_shape')}, batch {result['settings']['batch_size']}",
             f"{'':<10}{'infer img/s':>12}{'predict ms':>12}{'mAP@0.5':>10}{'mAP@.5:.95':>12}"]
    ort = p.get("onnxruntime") or {}
    for name, row in (("fp32", p.get("fp32")), ("int8", p.get("int8")), ("ort fp32", ort.get("fp32")),
                      ("ort int8", ort.get("int8"))):
        if row:
            lines.append(f"{name:<10}{row['infer_img_s']:>12.1f}{row['predict_latency_ms']:>12.2f}"
                         f"{row['map_50']:>10.4f}{row['map_50_95']:>12.4f}")
    if "skipped" in ort:
        lines.append(f"onnxruntime: not measured ({ort['skipped']})")
    bf16 = p.get("bf16") or {}
    if "network_img_s" in bf16:
        ratio = bf16["network_img_s"] / bf16["fp32_network_img_s"]
        lines.append(f"bf16      network {bf16['network_img_s']:.1f} img/s against fp32's "
                     f"{bf16['fp32_network_img_s']:.1f} in the same run ({ratio:.2f}x), mean relative error "
                     f"{bf16['relative_error']:.4f}: "
                     f"{'faster' if ratio >= 1.1 else 'not clearly faster (runs differ by ~10 %); fp32 stays the default'}")
    elif bf16:
        lines.append(f"bf16      not measured: {bf16.get('skipped')}")
    conv = p.get("conv_gflops") or {}
    if conv:
        lines.append(f"3x3 conv 64->64 at 64x64, batch 32: fp32 {conv['fp32']:.0f} GFLOP/s, "
                     f"INT8 {conv['int8']:.0f} GFLOP/s ({conv['int8'] / conv['fp32']:.2f}x)")
    peer = p.get("gluoncv") or {}
    if "train_img_s" in peer:
        lines.append(f"GluonCV {peer['model']}: train step {peer['train_img_s']:.1f} img/s, inference with NMS "
                     f"{peer['infer_img_s']:.1f} img/s (detkit fp32 here: fit {result['detkit']['train_img_s']:.1f}, "
                     f"inference {result['detkit']['infer_img_s']:.1f})")
    elif peer:
        lines.append(f"GluonCV: not measured ({peer.get('skipped')})")
    d = result["detkit"]
    if d.get("step_img_s"):
        lines.append(f"fit {d['train_img_s']:.1f} img/s against its step alone {d['step_img_s']:.1f} img/s "
                     f"(batches already in memory): {d['fit_fraction_of_step']:.2f}")
    return "\n".join(lines)


def _targets_table(rows: list[dict]) -> str:
    lines = [f"{'target':<42}{'goal':>30}{'measured':>10}  met"]
    for r in rows:
        met = "yes" if r["met"] else "NO"
        if r.get("reason"):
            met += f" ({r['reason']})"
        measured = f"{r['measured']:>10.2e}" if 0 < abs(r["measured"]) < 0.01 else f"{r['measured']:>10.2f}"
        lines.append(f"{r['target']:<42}{r['goal']:>30}{measured}  {met}")
        if r.get("detail"):
            lines.append(f"{'':<44}{r['detail']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", nargs=2, metavar=("NAME", "JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--data", default="data/pikachu", help="synthetic pikachu folder (made if missing)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or gpu(N)")
    parser.add_argument("--batches", type=int, default=10, help="steady-state batches timed for fit and the reader")
    parser.add_argument("--repeats", type=int, default=5, help="runs of inference / predict (median)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure both sides this many times, alternately, and keep each one's best")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds; fails on gross regressions")
    parser.add_argument("--no-speed-check", action="store_true",
                        help="with --quick: fail on missing figures only, not on detkit being more than 2x slower "
                             "than the tutorial (the test suite's mode: its machine may be loaded)")
    parser.add_argument("--model", default=None,
                        help="a trained detector for the fp32/INT8/bf16 rows (default: train the quickstart's recipe)")
    parser.add_argument("--precision-epochs", type=int, default=5,
                        help="epochs of the quickstart's recipe when no --model is given (default 5)")
    parser.add_argument("--calibration-batches", type=int, default=4, help="INT8 calibration batches (default 4)")
    parser.add_argument("--out", default="benchmarks/results/bench.json")
    parser.add_argument("--only-precision", action="store_true",
                        help="measure only the fp32/INT8 rows of both runtimes, in one run, and replace them (and "
                             "the targets) in the existing --out file; the other figures stay from its earlier run")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    check_speed = args.quick and not args.no_speed_check

    if args.phase:
        name, payload = args.phase
        print(json.dumps(PHASES[name](json.loads(payload))))
        return 0

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="detkit-bench-"))
    atexit.register(shutil.rmtree, scratch, True)
    if args.quick:
        args.image_size, args.batch_size, args.batches, args.repeats = 64, 8, 2, 3
        args.precision_epochs, args.calibration_batches = 2, 1
        data, num_train, num_val, data_size = scratch / "pikachu", 2 * 8 + 8, 16, 64
    else:
        data, num_train, num_val, data_size = Path(args.data), 1000, 100, 256
    base_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep))
    tutorial_env = {k: v for k, v in base_env.items() if k != "OMP_NUM_THREADS"}
    me = [sys.executable, str(Path(__file__).resolve())]
    tutorial = [sys.executable, str(HERE / "_tutorial.py")]
    timeout = 3600

    print("bench: preparing data", file=sys.stderr)
    _run(me + ["--phase", "prepare", json.dumps({"data": str(data), "num_train": num_train, "num_val": num_val,
                                                 "data_size": data_size})], base_env, "prepare", timeout)
    train_count = args.batches * args.batch_size
    subset = scratch / "train-subset.idx"
    if _write_subset_idx(data / "train.idx", subset, train_count) < train_count:
        raise SystemExit(f"bench: {data} has fewer than {train_count} training images")
    reader_idx = scratch / "reader.idx"
    _write_subset_idx(data / "train.idx", reader_idx, (args.batches + 1) * args.batch_size)
    image_path = scratch / "val0.img"
    _extract_image(data / "val.rec", data / "val.idx", image_path)
    common = {
        "device": args.device, "image_size": args.image_size, "batch_size": args.batch_size, "repeats": args.repeats,
        "train_rec": str(data / "train.rec"), "train_idx": str(subset), "reader_idx": str(reader_idx),
        "val_rec": str(data / "val.rec"), "val_idx": str(data / "val.idx"), "image_path": str(image_path),
    }
    payload = json.dumps(common)
    if args.only_precision:
        return _only_precision(args, me, common, base_env, timeout, started)
    result = {"detkit": {}, "tutorial": {}}
    print("bench: measuring", file=sys.stderr)
    # Both sides are measured --rounds times, alternately, keeping each side's best figures: a
    # shared machine's speed drifts by tens of per cent between minutes. In --quick mode a
    # suspected regression is measured again (at most twice more), so that a noisy moment on a
    # busy CI machine does not fail it.
    rounds = args.rounds
    for attempt in range(max(rounds, 3 if check_speed else 1)):
        _merge(result["detkit"], _run(me + ["--phase", "detkit_train", payload], base_env, "detkit fit", timeout))
        _merge(result["tutorial"], _run(tutorial + ["train", payload], tutorial_env, "tutorial training loop",
                                        timeout))
        _merge(result["detkit"], _run(me + ["--phase", "detkit_infer", payload], base_env, "detkit inference",
                                      timeout))
        _merge(result["tutorial"], _run(tutorial + ["infer", payload], tutorial_env, "tutorial prediction", timeout))
        for side in result.values():
            peak = side["conv_gflops"]
            side["train_fraction_of_conv_peak"] = side["train_img_s"] * side["model_gflop_train"] / peak
            side["infer_fraction_of_conv_peak"] = side["infer_img_s"] * side["model_gflop_forward"] / peak
        if attempt + 1 < rounds:
            continue
        if not _regressions(result, check_speed):
            break
        print(f"bench: {'; '.join(_regressions(result, check_speed))}; measuring again", file=sys.stderr)
    result["attempts"] = attempt + 1
    print("bench: fp32 / INT8 / bf16", file=sys.stderr)
    precision_args = dict(common, model=args.model, precision_epochs=args.precision_epochs,
                          calibration_batches=args.calibration_batches)
    result["precision"] = _run(me + ["--phase", "detkit_precision", json.dumps(precision_args)], base_env,
                               "detkit precision", timeout)
    result["targets"] = [] if _regressions(result, False) else _targets(result)  # only of complete figures
    result["targets"] += _precision_targets(result)
    result["settings"] = {
        "load_average": os.getloadavg(),
        "image_size": args.image_size, "batch_size": args.batch_size, "device": args.device,
        "batches": args.batches, "repeats": args.repeats, "rounds": args.rounds, "quick": args.quick,
        "speed_check": check_speed,
        "data": str(data),
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "detkit_omp_num_threads": os.environ.get("OMP_NUM_THREADS", "detkit's default (one per core)"),
        "tutorial_omp_num_threads": "unset (MXNet's default)",
        "seconds": round(time.perf_counter() - started, 1),
    }
    result["figures"] = {key: {"label": label.strip(), "unit": unit,
                               "higher_is_better": higher} for key, label, unit, higher in FIGURES}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"image {args.image_size}x{args.image_size}, batch {args.batch_size}, device {args.device}, "
          f"{args.batches} timed batches; {result['settings']['seconds']} s in all")
    print(_table(result))
    print()
    print(_precision_table(result))
    if result["targets"]:
        print()
        print(_targets_table(result["targets"]))
    print(f"wrote {out}")

    problems = _regressions(result, check_speed)
    for problem in problems:
        print(f"bench: REGRESSION: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _only_precision(args, me: list[str], common: dict, env: dict, timeout: float, started: float) -> int:
    """``--only-precision``: the precision rows (both runtimes, fp32 and INT8) again, merged into ``--out``."""
    out = Path(args.out)
    if not out.is_file():
        raise SystemExit(f"bench: --only-precision updates an earlier run's {out}; run bench.py without it first")
    result = json.loads(out.read_text())
    load_before = os.getloadavg()
    print("bench: fp32 / INT8 / bf16, MXNet and ONNX Runtime", file=sys.stderr)
    precision_args = dict(common, model=args.model, precision_epochs=args.precision_epochs,
                          calibration_batches=args.calibration_batches)
    result["precision"] = _run(me + ["--phase", "detkit_precision", json.dumps(precision_args)], env,
                               "detkit precision", timeout)
    result["targets"] = [] if _regressions(result, False) else _targets(result)
    result["targets"] += _precision_targets(result)
    result.setdefault("settings", {})["precision_run"] = {
        "command": "python benchmarks/bench.py --only-precision " + " ".join(
            a for a in (f"--model {args.model}" if args.model else "", f"--data {args.data}") if a),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "note": "the precision rows and the targets were measured again in this run; the other figures are "
                "from the earlier run",
    }
    out.write_text(json.dumps(result, indent=1))
    print(_precision_table(result))
    print()
    print(_targets_table(result["targets"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
