"""Train the seed recipe and the fast recipe side by side; write their mAP curves.

    python benchmarks/recipes.py --epochs 10 --out benchmarks/results/recipes

Writes OUT.json (per-epoch history of each recipe) and OUT.png (validation
mAP@0.5 and training loss per epoch). Same data, same initial weights, same
seed for both; only the recipe differs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mxnet as mx

import detkit
from detkit.config import build_detector, preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default="data/pikachu")
    parser.add_argument("--data-shape", type=int, default=256)
    parser.add_argument("--recipes", nargs="+", default=["seed", "fast"])
    parser.add_argument("--out", default="benchmarks/results/recipes")
    args = parser.parse_args()

    train, val = detkit.data.synthetic_pikachu(args.data)
    results = {}
    for name in args.recipes:
        config = preset(name, [f"model.data_shape={args.data_shape}"])
        mx.random.seed(0)  # the same initial weights for every recipe
        detector = build_detector(config, train.classes)
        fit = config.train
        history = detkit.fit(
            detector, train, val, epochs=args.epochs, batch_size=fit.batch_size, optimizer=fit.optimizer,
            optimizer_params=fit.optimizer_params, lr_schedule=fit.lr_schedule, warmup_epochs=fit.warmup_epochs,
            seed=0,
        )
        results[name] = history.records
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"data_shape": args.data_shape, "recipes": results}, indent=1))
    plot(results, out.with_suffix(".png"))
    for name, records in results.items():
        print(f"{name}: mAP@0.5 per epoch " + " ".join(f"{r['map_50']:.3f}" for r in records))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, records in results.items():
        epochs = [r["epoch"] for r in records]
        left.plot(epochs, [r["map_50"] for r in records], marker="o", label=name)
        right.plot(epochs, [r["loss"] for r in records], marker="o", label=name)
    left.set(xlabel="epoch", ylabel="validation mAP@0.5", ylim=(0, 1), title="Validation mAP@0.5")
    right.set(xlabel="epoch", ylabel="training loss", yscale="log", title="Training loss (each recipe's own)")
    for axes in (left, right):
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
