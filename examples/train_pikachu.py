"""The seed tutorial, through detkit's public API: data, model, training, evaluation, detection.

    python examples/train_pikachu.py                 # the seed's recipe: 30 epochs
    python examples/train_pikachu.py --recipe fast   # the improved recipe: 10 epochs
    python examples/train_pikachu.py --epochs 2      # a quick look

Uses the synthetic pikachu set (generated offline into data/pikachu); pass
--download to use the seed's own files instead (needs the network).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import detkit
from detkit import SSDDetector
from detkit.config import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=["seed", "fast"], default="seed")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--data", default="data/pikachu")
    parser.add_argument("--download", action="store_true", help="the seed's dataset instead of the synthetic one")
    parser.add_argument("--out", default="runs/train_pikachu")
    args = parser.parse_args()

    # The data: 1000 training and 100 validation images, as in the seed.
    if args.download:
        train, val = detkit.data.pikachu(args.data)
    else:
        train, val = detkit.data.synthetic_pikachu(args.data)

    # The model and the recipe: the preset holds the seed's (or the improved) settings.
    recipe = preset(args.recipe)
    detector = SSDDetector(classes=train.classes, loss=recipe.model.loss)
    fit = recipe.train
    history = detkit.fit(
        detector, train, val_data=val,
        epochs=args.epochs or fit.epochs, batch_size=fit.batch_size,
        optimizer=fit.optimizer, optimizer_params=fit.optimizer_params,
        lr_schedule=fit.lr_schedule, warmup_epochs=fit.warmup_epochs,
        checkpoint_dir=Path(args.out) / "checkpoints", seed=0,
    )
    out = Path(args.out)
    history.plot(out / "history.png")
    detector.save(out / "model")

    # Measure, then detect and display, as the seed ends.
    scores = detkit.evaluate(detector, val)
    print(f"validation mAP@0.5 {scores['map_50']:.4f}  (VOC07 11-point {scores['map_50_voc07']:.4f})")
    image = val.image(0)
    detections = detector.predict(image, threshold=0.5)
    for detection in detections:
        print(detection)
    detkit.draw_detections(image, detections, out / "detections.png")
    print(f"model, history plot and detections picture in {out}")


if __name__ == "__main__":
    main()
