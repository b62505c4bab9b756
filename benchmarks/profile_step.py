"""Where a training step's time goes: MXNet's profiler over detkit's hybridized step.

    python benchmarks/profile_step.py                  # 256x256, batch 32, CPU
    python benchmarks/profile_step.py --out /tmp/p.json --steps 2 --image-size 128

It builds the default ``SSDDetector``, runs the same static graph that
``detkit.fit`` runs (network, targets, loss and metrics, then an SGD update) on
a batch of random images with one object each, and aggregates MXNet's
per-operator times over ``--steps`` steps. Bulk execution is switched off
(``MXNET_EXEC_BULK_EXEC_TRAIN=0``) so that each operator is timed on its own;
that costs a few per cent of speed, so the step time printed here is a little
above ``fit``'s.

It then times each convolution layer of the network alone, forward and
backward with the gradients a training step needs (none for the image), best
of 3, to show which layers use the machine badly. Alone, each layer also pays
for converting its input and output between MXNet's layout and MKL-DNN's, so
their sum is above the convolutions' share of a profiled step.

The JSON file (``benchmarks/results/profile-256.json``, read by the docs'
performance page) holds, per operator and per group of operators, milliseconds
per step and the share of the step, and the per-layer convolution times
(``convolution_layers``, ``convolutions_alone_s``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Groups, in the order the docs show them: (label, does an operator name belong to it).
GROUPS = [
    ("convolution, forward", lambda op: op == "Convolution"),
    ("convolution, backward", lambda op: op == "_backward_Convolution"),
    ("batch norm with its ReLU, forward + backward", lambda op: "BatchNorm" in op),
    ("ReLU on its own, forward + backward", lambda op: op in ("Activation", "_backward_Activation")),
    ("max-pooling, forward + backward", lambda op: op in ("Pooling", "_backward_Pooling")),
    ("MultiBoxTarget (matching anchors)", lambda op: op == "_contrib_MultiBoxTarget"),
    ("SGD update", lambda op: "sgd" in op or "_update" in op),
    ("loss, metrics, reshapes and the rest", lambda op: True),
]


def profile(image_size: int, batch_size: int, steps: int) -> dict:
    import detkit  # first: it chooses MXNet's thread count, which must happen before MXNet loads
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon
    from detkit._blocks import can_fuse_batch_norm_relu as _can_fuse_batch_norm_relu
    from detkit._engine._step import TrainingGraph as _TrainingGraph

    mx.random.seed(0)
    detector = detkit.SSDDetector(classes=["pikachu"], data_shape=image_size, ctx=mx.cpu())
    graph = _TrainingGraph(detector, fuse_batch_norm_relu=_can_fuse_batch_norm_relu([mx.cpu()]))  # as fit does
    graph.hybridize(static_alloc=True, static_shape=True)
    rng = np.random.default_rng(0)
    images = mx.nd.array(rng.uniform(-120, 130, (batch_size, 3, image_size, image_size)), dtype="float32")
    corners = np.sort(rng.uniform(0.05, 0.95, (batch_size, 2, 2)), axis=1)  # (B, [min, max], [x, y])
    labels = mx.nd.array(np.concatenate([np.zeros((batch_size, 1)), corners[:, 0], corners[:, 1]], axis=1)[:, None],
                         dtype="float32")
    trainer = gluon.Trainer(graph.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9, "wd": 5e-4})

    def step() -> None:
        with autograd.record():
            loss, stats = graph(images, labels)
        loss.backward()
        trainer.step(batch_size)
        stats.wait_to_read()

    for _ in range(3):  # shapes, memory plans, MKL-DNN primitives
        step()
    mx.nd.waitall()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    mx.nd.waitall()
    seconds = (time.perf_counter() - started) / steps

    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.devnull)
    mx.profiler.set_state("run")
    for _ in range(steps):
        step()
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    stats = json.loads(mx.profiler.dumps(reset=True, format="json"))
    rows = stats["Time"]["operator"]
    operators = {name: row["Total"] / steps for name, row in rows.items()}  # ms per step
    total = sum(operators.values())
    groups = {label: 0.0 for label, _ in GROUPS}
    for name, ms in operators.items():
        label = next(label for label, belongs in GROUPS if belongs(name))
        groups[label] += ms
    return {
        "settings": {"image_size": image_size, "batch_size": batch_size, "steps": steps, "device": "cpu",
                     "cpus": os.cpu_count(), "machine": platform.machine(),
                     "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "mxnet": mx.__version__},
        "step_seconds": seconds,
        "images_per_second": batch_size / seconds,
        "operator_ms_per_step": total,
        "groups": [{"group": label, "ms": ms, "share": ms / total} for label, ms in groups.items() if ms > 0],
        "operators": sorted(({"operator": name, "ms": ms, "share": ms / total} for name, ms in operators.items()),
                            key=lambda row: -row["ms"]),
    }


def convolution_layers(image_size: int, batch_size: int, repeats: int = 3) -> dict:
    """Each Conv2D layer of the default detector timed alone: forward, and forward + backward."""
    import detkit
    import mxnet as mx
    from mxnet import autograd

    from _tutorial import conv_layers  # the benchmark's own layer walk and FLOP count

    detector = detkit.SSDDetector(classes=["pikachu"], data_shape=image_size, ctx=mx.cpu(), hybridize=False)
    layers = conv_layers(detector.network, image_size, mx.cpu())

    def best(run) -> float:
        run()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    rows = []
    for position, (block, (_, channels, height, width), (_, filters, _, _), flops) in enumerate(layers):
        kwargs = block._kwargs
        x = mx.nd.random.uniform(shape=(batch_size, channels, height, width))
        weight = mx.nd.random.uniform(shape=(filters, channels, *kwargs["kernel"]))
        bias = mx.nd.zeros((filters,))
        is_image = position == 0 and channels == 3
        for array in (weight, bias) if is_image else (x, weight, bias):
            array.attach_grad()

        def forward():
            return mx.nd.Convolution(x, weight, bias, kernel=kwargs["kernel"], stride=kwargs["stride"],
                                     pad=kwargs["pad"], num_filter=filters)

        def forward_backward():
            with autograd.record():
                y = forward()
            y.backward()
            mx.nd.waitall()

        train_flops = batch_size * flops * (2 if is_image else 3)  # no gradient for the image
        seconds = best(forward_backward)
        rows.append({"layer": f"{channels}->{filters} @ {height}x{width}",
                     "forward_ms": 1000 * best(lambda: forward().wait_to_read()), "train_ms": 1000 * seconds,
                     "train_gflops": train_flops / seconds / 1e9})
    alone = sum(row["train_ms"] for row in rows) / 1000
    return {"convolution_layers": rows, "convolutions_alone_s": alone}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps timed, then as many profiled")
    parser.add_argument("--out", default=str(HERE / "results" / "profile-256.json"))
    args = parser.parse_args(argv)
    # Before MXNet is imported: time each operator on its own instead of in bulk segments.
    os.environ.setdefault("MXNET_EXEC_BULK_EXEC_TRAIN", "0")
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    result = profile(args.image_size, args.batch_size, args.steps)
    result.update(convolution_layers(args.image_size, args.batch_size))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"training step, {args.image_size}x{args.image_size}, batch {args.batch_size}: "
          f"{result['step_seconds']:.3f} s ({result['images_per_second']:.1f} img/s)")
    print(f"{'group':<48}{'ms/step':>10}{'share':>8}")
    for row in result["groups"]:
        print(f"{row['group']:<48}{row['ms']:>10.1f}{row['share']:>8.1%}")
    print(f"\n{'convolution layer':<24}{'fwd ms':>9}{'fwd+bwd ms':>12}{'GFLOP/s':>9}")
    for row in result["convolution_layers"]:
        print(f"{row['layer']:<24}{row['forward_ms']:>9.1f}{row['train_ms']:>12.1f}{row['train_gflops']:>9.1f}")
    print(f"the convolutions of a step, each alone: {result['convolutions_alone_s']:.3f} s")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
