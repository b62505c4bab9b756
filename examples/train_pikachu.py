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
from detkit.config import build_detector, preset


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

    # The model and the recipe: the preset holds the seed's (or the improved) settings, for the
    # detector (the fast recipe sets the loss's normalization) and for fit alike.
    recipe = preset(args.recipe, [f"train.epochs={args.epochs}"] if args.epochs else [])
    detector = build_detector(recipe, classes=train.classes)
    history = detkit.fit(detector, train, val_data=val, checkpoint_dir=Path(args.out) / "checkpoints",
                         **recipe.fit_arguments())
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
