"""Train recipes side by side on one dataset; write their per-epoch curves.

    python benchmarks/recipes.py --epochs 10 --out benchmarks/results/recipes-256
    python benchmarks/recipes.py --data shapes --recipes fast ssd ssd-seed-crop=ssd \\
        --set ssd:model.backbone.pretrained=false --set ssd-seed-crop:model.backbone.pretrained=false \\
        --set ssd-seed-crop:data.augment=seed --out benchmarks/results/recipes-shapes

Writes OUT.json (per-epoch history of each recipe: loss, validation mAP@0.5 and
mAP@[.5:.95], seconds) and OUT.png (validation mAP@0.5, mAP@[.5:.95] and
training loss per epoch). Same data, same seed for every recipe; each recipe's
own components, augmentation (``data.augment``) and schedule (``train``).
``--epochs`` replaces every recipe's ``train.epochs`` when given. A recipe
``NAME=PRESET`` is the preset under another name, for variants (``--set NAME:...``). Import detkit
before MXNet (as here) so that MXNet computes on every core.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import detkit  # noqa: I001 -- before mxnet: sets OMP_NUM_THREADS
import mxnet as mx

from detkit.config import build_detector, preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every recipe (default: each recipe's own)")
    parser.add_argument("--data", choices=("pikachu", "shapes"), default="pikachu",
                        help="the synthetic pikachu set, or the multi-class shapes set (8 classes, 2-8 objects)")
    parser.add_argument("--root", default=None, help="folder of the set (default: data/pikachu or data/shapes)")
    parser.add_argument("--num-val", type=int, default=None, help="validation images (default 100, shapes: 200)")
    parser.add_argument("--data-shape", type=int, default=256)
    parser.add_argument("--recipes", nargs="+", default=["seed", "fast"], metavar="PRESET|NAME=PRESET")
    parser.add_argument("--set", action="append", default=[], metavar="RECIPE:KEY=VALUE",
                        help="override one recipe's key, e.g. ssd:model.backbone.pretrained=false")
    parser.add_argument("--out", default="benchmarks/results/recipes")
    args = parser.parse_args()

    if args.data == "shapes":
        train, val = detkit.data.synthetic_shapes(args.root or "data/shapes", classes=8, objects=(2, 8),
                                                  num_val=args.num_val or 200)
    else:
        train, val = detkit.data.synthetic_pikachu(args.root or "data/pikachu", num_val=args.num_val or 100)
    results, commands = {}, {}
    for recipe in args.recipes:
        name, _, base = recipe.partition("=")
        overrides = [f"model.data_shape={args.data_shape}"]
        overrides += [item.partition(":")[2] for item in args.set if item.partition(":")[0] == name]
        if args.epochs is not None:
            overrides.append(f"train.epochs={args.epochs}")
        config = preset(base or name, overrides)
        commands[name] = [f"preset {base or name}"] + overrides
        mx.random.seed(0)
        detector = build_detector(config, train.classes)
        train.augment = config.data.augment
        history = detkit.fit(detector, train, val, **dict(config.fit_arguments(), seed=0, quiet=True))
        results[name] = history.records
        print(name + ": " + "  ".join(
            f"{r['epoch']}: {r['map_50']:.3f}/{r['map_50_95']:.3f} {r['seconds']:.0f}s" for r in history.records),
            flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({
        "data": args.data, "data_shape": args.data_shape, "overrides": commands,
        "machine": f"{platform.machine()}, {mx.context.num_gpus()} GPUs, CPU threads: {detkit_threads()}",
        "recipes": results,
    }, indent=1))
    plot(results, out.with_suffix(".png"))


def detkit_threads() -> str:
    import os

    return os.environ.get("OMP_NUM_THREADS", "?")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, records in results.items():
        epochs = [r["epoch"] for r in records]
        axes[0].plot(epochs, [r["map_50"] for r in records], marker="o", label=name)
        axes[1].plot(epochs, [r["map_50_95"] for r in records], marker="o", label=name)
        axes[2].plot(epochs, [r["loss"] for r in records], marker="o", label=name)
    axes[0].set(xlabel="epoch", ylabel="validation mAP@0.5", ylim=(0, 1), title="Validation mAP@0.5")
    axes[1].set(xlabel="epoch", ylabel="validation mAP@[.5:.95]", ylim=(0, 1), title="Validation mAP@[.5:.95]")
    axes[2].set(xlabel="epoch", ylabel="training loss", yscale="log", title="Training loss (each recipe's own)")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
