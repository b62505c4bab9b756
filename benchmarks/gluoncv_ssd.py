"""An imported GluonCV SSD's speed in detkit beside GluonCV's own, same network, same batch, in one run.

    python benchmarks/gluoncv_ssd.py                                  # ssd_512_mobilenet1.0_voc at 512, batch 8
    python benchmarks/gluoncv_ssd.py --model ssd_512_resnet50_v1_voc --batch-size 4
    python benchmarks/gluoncv_ssd.py --size 256 --repeats 3 --out /tmp/gluoncv.json

The network is GluonCV's (built by GluonCV 0.10.5 with random weights: this
measures speed, not accuracy), saved with ``save_parameters`` and imported with
:func:`detkit.import_gluoncv`, so both sides run the same convolutions. The
batch is the same preprocessed images (a synthetic set rendered at the input
size). Each figure is the median of ``--repeats`` timed runs after two warm-up
runs; the two libraries are measured one after the other in one process, so the
ratios compare them on the same machine load. Inference is measured first,
while both hold the same weights (so both find the same candidates for NMS);
training steps change the weights.

Figures (images/s):

- ``train_step``: one training step on a batch in memory. GluonCV: its
  network's forward in training mode, ``SSDMultiBoxLoss`` on targets made once
  beforehand by ``SSDTargetGenerator`` (as its training script makes them in
  the data loader), backward, SGD update. detkit: its ``fit`` step
  (``TrainingGraph``: network, ``multibox_target`` targets, the ``ssd_multibox``
  loss with 3:1 hard-negative mining as the ``ssd`` preset trains, metrics, one
  graph), backward, SGD update: the targets are computed inside the step,
  which GluonCV's figure leaves out.
- ``infer_fp32``: ``net(x)`` (hybridized, static) against ``detector.detect(x)``:
  network, decoding and per-class NMS.
- ``infer_int8``: MXNet's INT8 (MKL-DNN, naive calibration on two other
  batches) of each: ``detector.quantize`` against MXNet's ``quantize_net_v2``
  of GluonCV's network with the exclusions of GluonCV's own SSD quantization
  script (``flatten`` and ``concat`` stay fp32). CPU only.

Writes the figures and their ratios (detkit / GluonCV) as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any

import detkit  # noqa: F401  (before mxnet: detkit chooses MXNet's thread count)
import mxnet as mx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ssd_512_mobilenet1.0_voc", help="a GluonCV SSD detkit imports")
    parser.add_argument("--size", type=int, default=512, help="input size (default 512)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu(0)", help="cpu(0) or gpu(0); INT8 is measured on the CPU only")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gluoncv-ssd.json"))
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gluoncv
        from gluoncv.model_zoo.ssd.target import SSDTargetGenerator
    from mxnet import autograd, gluon
    from mxnet.contrib import quantization

    from _precision import gluoncv_train_step, median_seconds
    from detkit._blocks import can_fuse_batch_norm_relu
    from detkit._engine._step import TrainingGraph, train_epoch

    ctx = mx.gpu(int(args.device[4:-1])) if args.device.startswith("gpu") else mx.cpu()
    size, batch_size = args.size, args.batch_size
    work = Path(tempfile.mkdtemp(prefix="detkit-gluoncv-bench-"))
    train, _ = detkit.data.synthetic_pikachu(work / "data", num_train=3 * batch_size, num_val=batch_size,
                                             image_size=size)
    batches = list(train.loader(batch_size, size, train=False, last_batch="discard",
                                num_objects=max(train.max_objects, 3)))
    batch, calibration = batches[0], [b.data.as_in_context(ctx) for b in batches[1:3]]
    x_detkit = batch.data.as_in_context(ctx)  # RGB minus RGB_MEAN: detkit's input
    x_gluoncv = detkit.ImageNetInput()(x_detkit)  # the same images as GluonCV's presets normalise them
    labels = batch.label.as_in_context(ctx)

    mx.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = gluoncv.model_zoo.get_model(args.model, pretrained_base=False)
    net.initialize(ctx=ctx)
    net(x_gluoncv)
    net.save_parameters(str(work / "net.params"))
    # The ssd preset's training: multibox_target and ssd_multibox (hard-negative mining 3:1, gluon-detkit-losses).
    detector = detkit.import_gluoncv(work / "net.params", name=args.model, data_shape=size, ctx=ctx,
                                     loss="ssd_multibox")
    net.hybridize(static_alloc=True, static_shape=True)
    results: dict[str, Any] = {
        "model": args.model, "size": size, "batch_size": batch_size, "repeats": args.repeats,
        "device": str(ctx), "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "gluoncv_version": gluoncv.__version__,
        "detkit_loss": detector._specs["loss"][0], "gluoncv": {}, "detkit": {},
    }

    # Inference, fp32.
    results["gluoncv"]["infer_fp32"] = batch_size / median_seconds(
        lambda: [o.wait_to_read() for o in net(x_gluoncv)], args.repeats)
    results["detkit"]["infer_fp32"] = batch_size / median_seconds(
        lambda: detector.detect(x_detkit).wait_to_read(), args.repeats)

    # Inference, INT8 (MKL-DNN on the CPU).
    if ctx.device_type == "cpu":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # As GluonCV's quantization script for its SSDs (scripts/detection/ssd/eval_ssd.py): flatten and
            # concat stay in fp32.
            int8_net = quantization.quantize_net_v2(
                net, quantized_dtype="auto", quantize_mode="full", exclude_layers_match=["flatten", "concat"],
                calib_data=[[detkit.ImageNetInput()(c)] for c in calibration], calib_mode="naive",
                num_calib_examples=2 * batch_size, ctx=ctx)
        int8_net.hybridize(static_alloc=True, static_shape=True)
        results["gluoncv"]["infer_int8"] = batch_size / median_seconds(
            lambda: [o.wait_to_read() for o in int8_net(x_gluoncv)], args.repeats)
        int8 = detector.quantize(calibration, num_batches=2, batch_size=batch_size)
        results["detkit"]["infer_int8"] = batch_size / median_seconds(
            lambda: int8.detect(x_detkit).wait_to_read(), args.repeats)

    # Training step. A network of its own: a hybridized GluonCV SSD keeps the graph of the mode it first ran in
    # (inference: decoding and NMS; training: the raw predictions and anchors).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = gluoncv.model_zoo.get_model(args.model, pretrained_base=False)
    net.load_parameters(str(work / "net.params"), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    with autograd.train_mode():
        cls_preds, box_preds, anchors = net(x_gluoncv)
    cls_targets, box_targets, _ = SSDTargetGenerator(negative_mining_ratio=3)(
        anchors, cls_preds, labels[:, :, 1:5] * size, labels[:, :, :1])
    gluoncv_step = gluoncv_train_step(net, x_gluoncv, cls_targets, box_targets, batch_size, learning_rate=0.001)

    detector._materialize()
    graph = TrainingGraph(detector, fuse_batch_norm_relu=can_fuse_batch_norm_relu([ctx]))
    graph.hybridize(static_alloc=True, static_shape=True)
    detkit_trainer = gluon.Trainer(graph.collect_params(), "sgd",
                                   {"learning_rate": 0.001, "momentum": 0.9, "wd": 5e-4})
    term_names = ["loss", *detector.loss.term_names]

    def detkit_step() -> None:
        train_epoch(graph, detkit_trainer, [batch], [ctx], 0, 1, term_names, quiet=True)
        mx.nd.waitall()

    results["gluoncv"]["train_step"] = batch_size / median_seconds(gluoncv_step, args.repeats)
    results["detkit"]["train_step"] = batch_size / median_seconds(detkit_step, args.repeats)

    results["ratios"] = {key: results["detkit"][key] / results["gluoncv"][key] for key in results["detkit"]}
    print(f"{args.model} at {size} x {size}, batch {batch_size}, {ctx} (images/s, median of {args.repeats}):")
    print(f"{'':12s} {'GluonCV':>9s} {'detkit':>9s} {'detkit/GluonCV':>15s}")
    for key, ratio in results["ratios"].items():
        print(f"{key:12s} {results['gluoncv'][key]:9.2f} {results['detkit'][key]:9.2f} {ratio:15.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
