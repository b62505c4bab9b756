"""Detect objects with a saved detector and draw them.

    detkit data extract data/pikachu/val.rec --out data/pikachu/images -n 4   # image files to try it on
    python examples/predict.py runs/quickstart/model data/pikachu/images/val-00000.jpg [more.jpg ...] --threshold 0.5

Writes PHOTO-detections.png beside each image and prints the detections.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import detkit
from detkit import SSDDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a directory written by SSDDetector.save")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()

    detector = SSDDetector.load(args.model)
    for image, detections in zip(args.images, detector.predict(args.images, threshold=args.threshold)):
        picture = Path(image).with_name(f"{Path(image).stem}-detections.png")
        detkit.draw_detections(image, detections, picture)
        print(f"{image}: {len(detections)} detection(s), drawn in {picture}")
        for detection in detections:
            print(f"  {detection.class_name} {detection.score:.2f} box {[round(v, 1) for v in detection.box]}")


if __name__ == "__main__":
    main()
