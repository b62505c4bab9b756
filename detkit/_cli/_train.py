"""``detkit train``, ``detkit evaluate`` and ``detkit predict``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._base import check_positive_int
from .._config import load_config
from .._engine import evaluate
from .._model import SSDDetector, draw_detections
from .._run import run_config
from ..data import DetectionDataset
from ..data._classes import find_classes, read_classes
from ..errors import InputError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train a detector as a YAML configuration (or a preset) says",
        description="Train, evaluate and draw detections as CONFIG says. Without CONFIG, the preset "
                    "(--preset) alone. Results go to train.output_dir.",
    )
    train.add_argument("config", nargs="?", help="a YAML configuration file")
    train.add_argument("--preset", default=None,
                       help="the recipe to start from: seed or fast (default: the file's `preset:`, else seed)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key, e.g. --set train.epochs=5 (repeatable)")
    train.add_argument("--print-config", action="store_true", help="print the resolved configuration and stop")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser("evaluate", help="mAP of a saved detector on a RecordIO dataset",
                                     description="Print VOC mAP@0.5 (area and 11-point) and COCO mAP@[.5:.95].")
    evaluate.add_argument("model", help="a directory written by SSDDetector.save (e.g. runs/pikachu/model)")
    evaluate.add_argument("data", help="a .rec file; the class list beside it, if any, must match the detector's")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=_evaluate)

    predict = subparsers.add_parser("predict", help="detect objects in images and draw them",
                                    description="Detect objects in IMAGE files; write one PNG per image with its "
                                                "detections to --out, and print them.")
    predict.add_argument("model", help="a directory written by SSDDetector.save")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--threshold", type=float, default=0.5, help="minimum score (default 0.5)")
    predict.add_argument("--out", default="detections",
                         help="where the pictures go, as IMAGE-detections.png (default ./detections)")
    predict.add_argument("--json", action="store_true", help="print the detections as JSON")
    predict.set_defaults(handler=_predict)


def _train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, base=args.preset)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    detector, history = run_config(config)
    output = Path(config.train.output_dir)
    print(f"trained {len(history)} epoch{'s' if len(history) != 1 else ''}; the model is in {output / 'model'}")
    metrics = output / "metrics.json"
    if metrics.is_file():
        scores = json.loads(metrics.read_text())
        print(f"validation mAP@0.5 {scores['map_50']:.4f} (VOC07 11-point {scores['map_50_voc07']:.4f}), "
              f"mAP@[.5:.95] {scores['map_50_95']:.4f}; pictures in {output / 'detections'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    check_positive_int("batch_size", args.batch_size)  # before anything is loaded
    detector = SSDDetector.load(args.model)
    listed = find_classes(Path(args.data))
    if listed is not None and read_classes(listed) != detector.classes:
        raise InputError(
            f"The classes of {args.data} ({listed}: {read_classes(listed)}) differ from the detector's "
            f"{detector.classes}."
        )
    data = DetectionDataset(args.data, classes=detector.classes)
    scores = evaluate(detector, data, batch_size=args.batch_size, progress=not args.json)
    if args.json:
        print(json.dumps(scores, indent=1))
        return 0
    print(f"{scores['num_images']} images  mAP@0.5 {scores['map_50']:.4f}  "
          f"VOC07 11-point {scores['map_50_voc07']:.4f}  mAP@[.5:.95] {scores['map_50_95']:.4f}")
    for name, values in scores["per_class"].items():
        print(f"  {name:<20} AP@0.5 {values['ap_50']:.4f}  objects {values['num_ground_truth']}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    detector = SSDDetector.load(args.model)
    out = Path(args.out)
    results = detector.predict(list(args.images), threshold=args.threshold)
    report = []
    inputs = {Path(image).resolve() for image in args.images}
    taken: set[Path] = set()
    for image, detections in zip(args.images, results):
        picture = _picture_path(out, Path(image), inputs | taken)
        taken.add(picture.resolve())
        picture = draw_detections(image, detections, picture)
        report.append({"image": image, "picture": str(picture),
                       "detections": [d._asdict() for d in detections]})
        if not args.json:
            print(f"{image}: {len(detections)} detection(s) -> {picture}")
            for d in detections:
                box = ", ".join(f"{v:.1f}" for v in d.box)
                print(f"  {d.class_name} {d.score:.3f} [{box}]")
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    return 0


def _picture_path(out: Path, image: Path, taken: set[Path]) -> Path:
    """``out/STEM-detections.png``, numbered when two inputs share a stem; never an input file."""
    candidate = out / f"{image.stem}-detections.png"
    number = 2
    while candidate.resolve() in taken:
        candidate = out / f"{image.stem}-detections-{number}.png"
        number += 1
    return candidate
