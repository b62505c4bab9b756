"""``detkit train``, ``detkit evaluate``, ``detkit predict``, ``detkit quantize`` and ``detkit export``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import mxnet as mx

from .._base import check_positive_int
from .._config import load_config
from .._engine import evaluate, is_lead_worker
from .._model import RUNTIMES, OnnxDetector, SSDDetector, draw_detections
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
                       help="the recipe to start from: seed, fast or ssd (default: the file's `preset:`, else seed)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key, e.g. --set train.epochs=5 (repeatable)")
    train.add_argument("--print-config", action="store_true", help="print the resolved configuration and stop")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser("evaluate", help="mAP of a saved detector on a RecordIO dataset",
                                     description="Print VOC mAP@0.5 (area and 11-point), COCO's 12-number summary "
                                                 "(AP, AP50, AP75, AP and AR by object size, AR@1/10/100) and a "
                                                 "table of each class's AP.")
    evaluate.add_argument("model", help="a directory written by SSDDetector.save (e.g. runs/pikachu/model); "
                                        "with --runtime onnxruntime, one written by `detkit export --format onnx`")
    _add_runtime(evaluate)
    evaluate.add_argument("data", help="a .rec file; the class list beside it, if any, must match the detector's")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--plot", metavar="OUT.png", default=None,
                          help="also draw each class's precision-recall curve (IoU 0.5) into this PNG")
    evaluate.set_defaults(handler=_evaluate)

    predict = subparsers.add_parser("predict", help="detect objects in images and draw them",
                                    description="Detect objects in IMAGE files; write one PNG per image with its "
                                                "detections to --out, and print them.")
    predict.add_argument("model", help="a directory written by SSDDetector.save; with --runtime onnxruntime, "
                                       "one written by `detkit export --format onnx`")
    _add_runtime(predict)
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--threshold", type=float, default=0.5, help="minimum score (default 0.5)")
    predict.add_argument("--out", default="detections",
                         help="where the pictures go, as IMAGE-detections.png (default ./detections)")
    predict.add_argument("--json", action="store_true", help="print the detections as JSON")
    predict.set_defaults(handler=_predict)

    quantize = subparsers.add_parser(
        "quantize", help="turn a saved detector into an INT8 one for fast CPU inference",
        description="Quantize the detector in MODEL to INT8, calibrated on the first batches of DATA, and save it "
                    "to --out; it predicts and evaluates like any detector. --runtime mxnet (default): MXNet's "
                    "MKL-DNN backend, fastest for batches; --runtime onnxruntime: ONNX Runtime's static QDQ "
                    "quantization of an ONNX export, fastest for single images.")
    quantize.add_argument("model", help="a directory written by SSDDetector.save (e.g. runs/pikachu/model); with "
                                        "--runtime onnxruntime, one written by `detkit export --format onnx`")
    _add_runtime(quantize)
    quantize.add_argument("data", help="a .rec file of images like those to detect on (the validation set does)")
    quantize.add_argument("--out", required=True, help="the directory to save the INT8 detector to")
    quantize.add_argument("--batches", type=int, default=4, help="calibration batches (default 4)")
    quantize.add_argument("--batch-size", type=int, default=32, help="images per calibration batch (default 32)")
    quantize.add_argument("--calibration", choices=("naive", "entropy"), default="naive",
                          help="how each layer's range is chosen (default naive: the min/max seen)")
    quantize.set_defaults(handler=_quantize, flags={"num_batches": "--batches", "calibration_data": "DATA"})

    export = subparsers.add_parser(
        "export", help="export a saved detector to run without detkit's network code (ONNX, MXNet symbol)",
        description="Export the detector in MODEL, images -> detections with anchors, decoding and NMS included, "
                    "to --out (default: MODEL-onnx or MODEL-mxnet beside MODEL), with a detector.json that "
                    "describes its input and output. Run an ONNX export with `detkit predict --runtime onnxruntime`.")
    export.add_argument("model", help="a directory written by SSDDetector.save (e.g. runs/pikachu/model)")
    export.add_argument("--format", choices=("onnx", "mxnet"), default="onnx",
                        help="onnx: one ONNX graph, detector.onnx (default); mxnet: an MXNet symbol and parameters")
    export.add_argument("--out", default=None, help="the directory to write to (default: MODEL-FORMAT)")
    export.add_argument("--data-shape", type=int, nargs="+", default=None, metavar="SIZE",
                        help="the input size, S or H W (default: the detector's)")
    export.set_defaults(handler=_export)


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=RUNTIMES, default="mxnet",
                        help="mxnet: the saved detector in MXNet (default); onnxruntime: an ONNX export in ONNX "
                             "Runtime (pip install \"gluon-detkit[onnx]\")")


def _load(args: argparse.Namespace) -> SSDDetector | OnnxDetector:
    """The detector in ``args.model`` for ``args.runtime``."""
    if args.runtime == "onnxruntime":
        return OnnxDetector.load(args.model)
    return SSDDetector.load(args.model)


def _train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, base=args.preset)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    detector, history = run_config(config)
    if not is_lead_worker():  # in a distributed job, rank 0 reports
        return 0
    output = Path(config.train.output_dir)
    print(f"trained {len(history)} epoch{'s' if len(history) != 1 else ''}; the model is in {output / 'model'}")
    metrics = output / "metrics.json"
    if metrics.is_file():
        scores = json.loads(metrics.read_text())
        print(f"validation mAP@0.5 {scores['map_50']:.4f} (VOC07 11-point {scores['map_50_voc07']:.4f}), "
              f"mAP@[.5:.95] {scores['map_50_95']:.4f}; pictures in {output / 'detections'}")
    return 0


def _dataset_for(detector: SSDDetector | OnnxDetector, path: str) -> DetectionDataset:
    """The .rec file at ``path`` read with the detector's classes, after comparing the class list beside it."""
    listed = find_classes(Path(path))
    if listed is not None and read_classes(listed) != detector.classes:
        raise InputError(
            f"The classes of {path} ({listed}: {read_classes(listed)}) differ from the detector's "
            f"{detector.classes}."
        )
    return DetectionDataset(path, classes=detector.classes)


def _evaluate(args: argparse.Namespace) -> int:
    check_positive_int("batch_size", args.batch_size)  # before anything is loaded
    detector = _load(args)
    data = _dataset_for(detector, args.data)
    scores = evaluate(detector, data, batch_size=args.batch_size, progress=not args.json, plot=args.plot)
    if args.json:
        print(json.dumps(_nan_to_null(scores), indent=1, allow_nan=False))
        return 0
    print(f"{scores['num_images']} images  mAP@0.5 {scores['map_50']:.4f}  "
          f"VOC07 11-point {scores['map_50_voc07']:.4f}  mAP@[.5:.95] {scores['map_50_95']:.4f}")
    print("COCO summary (object sizes in pixels of the original images):")
    for key, label in _COCO_LINES:
        print(f"  {label:<44} = {scores['coco'][key]:.4f}")
    names = list(scores["per_class"])
    width = max([5, *(len(name) for name in names)])
    print(f"  {'class':<{width}}  {'AP@0.5':>6}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}  {'APs':>6}  {'APm':>6}  "
          f"{'APl':>6}  {'AR@100':>6}  {'objects':>7}  {'difficult':>9}  {'crowd':>5}")
    for name in names:
        values = scores["per_class"][name]
        coco = values["coco"]
        cells = [values["ap_50"], coco["map"], coco["map_50"], coco["map_75"], coco["map_small"],
                 coco["map_medium"], coco["map_large"], coco["mar_100"]]
        print(f"  {name:<{width}}  " + "  ".join(f"{value:6.4f}" for value in cells)
              + f"  {values['num_ground_truth']:>7}  {values['num_difficult']:>9}  {values['num_crowd']:>5}")
    if args.plot:
        print(f"precision-recall curves: {args.plot}")
    return 0


def _nan_to_null(value: Any) -> Any:
    """``value`` with every float ``nan`` (a mean over no class) replaced by ``None``: JSON's ``null``."""
    if isinstance(value, dict):
        return {key: _nan_to_null(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


#: COCO's summary as pycocotools prints it, by the names of ``scores["coco"]``.
_COCO_LINES = (
    ("map", "AP   @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("map_50", "AP   @[ IoU=0.50      | area=   all | maxDets=100 ]"),
    ("map_75", "AP   @[ IoU=0.75      | area=   all | maxDets=100 ]"),
    ("map_small", "AP   @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("map_medium", "AP   @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("map_large", "AP   @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
    ("mar_1", "AR   @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]"),
    ("mar_10", "AR   @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]"),
    ("mar_100", "AR   @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("mar_small", "AR   @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("mar_medium", "AR   @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("mar_large", "AR   @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
)


def _predict(args: argparse.Namespace) -> int:
    detector = _load(args)
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


def _quantize(args: argparse.Namespace) -> int:
    if args.runtime == "onnxruntime":
        onnx_detector = OnnxDetector.load(args.model)
        _check_out(args.model, args.out)
        data = _dataset_for(onnx_detector, args.data)
        int8_onnx = onnx_detector.quantize(data, args.out, num_batches=args.batches, batch_size=args.batch_size)
        print(f"INT8 ONNX detector ({args.batches} calibration batch{'es' if args.batches != 1 else ''} of "
              f"{args.data}) written to {int8_onnx.directory}")
        return 0
    detector = SSDDetector.load(args.model, ctx=mx.cpu())
    data = _dataset_for(detector, args.data)
    int8 = detector.quantize(data, num_batches=args.batches, batch_size=args.batch_size,
                             calibration=args.calibration)
    out = int8.save(args.out)
    print(f"INT8 detector ({args.batches} calibration batch{'es' if args.batches != 1 else ''} of {args.data}) "
          f"saved to {out}")
    return 0


def _check_out(model: str, out: str) -> None:
    """Refuse an output folder that is the command's own input."""
    if Path(out).resolve() == Path(model).resolve():
        raise InputError(f"The 'out' argument must differ from MODEL ({model}): the output would replace the input.")


def _export(args: argparse.Namespace) -> int:
    shape = args.data_shape
    if shape is not None and len(shape) not in (1, 2):
        raise InputError(f"The 'data_shape' argument must be one size S or two, H W; got {len(shape)} numbers.")
    out = args.out if args.out is not None else f"{str(Path(args.model)).rstrip('/')}-{args.format}"
    _check_out(args.model, out)
    detector = SSDDetector.load(args.model, ctx=mx.cpu())
    first, second = detector.export(out, None if shape is None else (shape * 2)[:2], format=args.format)
    if args.format == "onnx":
        print(f"ONNX detector written to {out} ({first.name}, {second.name}); run it with "
              f"`detkit predict --runtime onnxruntime {out} IMAGE`")
    else:
        print(f"MXNet detector written to {out} ({first.name}, {second.name})")
    return 0


def _picture_path(out: Path, image: Path, taken: set[Path]) -> Path:
    """``out/STEM-detections.png``, numbered when two inputs share a stem; never an input file."""
    candidate = out / f"{image.stem}-detections.png"
    number = 2
    while candidate.resolve() in taken:
        candidate = out / f"{image.stem}-detections-{number}.png"
        number += 1
    return candidate
