"""``detkit train``, ``detkit evaluate``, ``detkit predict``, ``detkit quantize`` and ``detkit export``."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any, cast

import mxnet as mx
import numpy as np
import yaml
from tqdm.auto import tqdm

from .._base import check_output, check_positive_int, json_text, load_yaml, owned_files
from .._config import load_config
from .._engine import DetectionMetric, evaluate, evaluate_detections, is_lead_worker
from .._engine._checkpoints import Checkpoints
from .._engine._detections import check_results_path, coco_ids_for, coco_options, coco_results, write_coco_results
from .._model import RUNTIMES, OnnxDetector, SSDDetector, draw_detections
from .._run import run_config
from ..data import DetectionDataset
from ..data._classes import find_classes, read_classes
from ..data._truth import sidecar_path
from ..errors import ConfigError, DetkitError, InputError


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

    evaluate = subparsers.add_parser(
        "evaluate", help="mAP of a saved detector on a RecordIO dataset, or of a detections file",
        usage="detkit evaluate [options] MODEL DATA\n       detkit evaluate [options] --detections FILE DATA",
        description="Print VOC mAP@0.5 (area and 11-point), COCO's 12-number summary (AP, AP50, AP75, AP and AR "
                    "by object size, AR@1/10/100) and a table of each class's AP: of the saved detector MODEL on "
                    "DATA, or of the detections in FILE (COCO results JSON, or a folder of VOC comp4_det_test_<class>"
                    ".txt files) against DATA (a .rec, a COCO annotation JSON, or a folder of VOC XML files).")
    evaluate.add_argument("paths", nargs="+", metavar="MODEL DATA",
                          help="a directory written by SSDDetector.save (e.g. runs/pikachu/model; with --runtime "
                               "onnxruntime, one written by `detkit export --format onnx`), then a .rec file "
                               "whose class list, if any, must match the detector's; only DATA with --detections")
    _add_runtime(evaluate)
    evaluate.add_argument("--detections", metavar="FILE", default=None,
                          help="score this detections file instead of a model's detections")
    evaluate.add_argument("--save-detections", metavar="FILE.json", default=None,
                          help="also write the model's detections to this COCO results JSON file")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--plot", metavar="OUT.png", default=None,
                          help="also draw each class's precision-recall curve (IoU 0.5) into this PNG")
    coco = evaluate.add_argument_group("COCOeval's parameters")
    coco.add_argument("--iou-thresholds", metavar="T,T,...", type=_floats, default=None,
                      help="IoU thresholds of the COCO metric (default 0.50:0.05:0.95)")
    coco.add_argument("--max-detections", metavar="N,N,...", type=_ints, default=None,
                      help="pycocotools' maxDets, increasing (default 1,10,100)")
    coco.add_argument("--recall-thresholds", metavar="R,R,...", type=_floats, default=None,
                      help="recall levels of COCO's AP (default 0:0.01:1)")
    coco.add_argument("--area-range", metavar="NAME=LOW:HIGH", action="append", default=None, dest="area_ranges",
                      help="a named object-size range in pixels, repeatable, the first one the headline's "
                           "(default all=0:1e10 small=0:1024 medium=1024:9216 large=9216:1e10)")
    coco.add_argument("--class-agnostic", action="store_true", help="match across classes (pycocotools' useCats=0)")
    coco.add_argument("--missing", choices=("nan", "-1"), default="nan",
                      help="the value of a number with nothing to measure (default nan, written null in JSON)")
    coco.add_argument("--detailed", action="store_true",
                      help="with --json, add pycocotools' precision, recall and score arrays")
    _add_component_overrides(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    predict = subparsers.add_parser("predict", help="detect objects in images and draw them",
                                    description="Detect objects in IMAGE files, or in the image files of a "
                                                "folder; write one PNG per image with its detections to --out, "
                                                "and print them.")
    predict.add_argument("model", help="a directory written by SSDDetector.save; with --runtime onnxruntime, "
                                       "one written by `detkit export --format onnx`")
    _add_runtime(predict)
    predict.add_argument("images", nargs="+", metavar="IMAGE",
                         help="image files, or folders: their .jpg, .jpeg, .png and .bmp files, sorted by name")
    predict.add_argument("--threshold", type=float, default=None,
                         help="minimum score (default 0.5; 0 for --format coco-json)")
    predict.add_argument("--out", default="detections",
                         help="where the pictures go, as IMAGE-detections.png (default ./detections)")
    predict.add_argument("--json", action="store_true", help="print the detections as JSON")
    predict.add_argument("--format", choices=("text", "json", "coco-json"), default=None,
                         help="what to print: text (default), json (as --json), or coco-json: a COCO results "
                              "file (all detections unless --threshold; no pictures), for pycocotools or "
                              "`detkit evaluate --detections`")
    predict.add_argument("--annotations", metavar="FILE", default=None,
                         help="for coco-json: the COCO annotation JSON (or packed .rec) whose image ids and "
                              "category ids to use, matched by file name (default: the numeric file stem, "
                              "categories 1, 2, ...)")
    predict.add_argument("--save-detections", metavar="FILE.json", default=None,
                         help="for coco-json: write the file here (atomically) instead of printing it")
    _add_component_overrides(predict)
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
                             "Runtime (needs the onnx extra)")


#: The components of a saved detector that ``--set`` may change (SSDDetector.load's swaps).
_SWAPPABLE = ("target_assigner", "loss", "post_processor")
#: Image files that ``detkit predict FOLDER`` takes.
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: Images predicted at a time by ``detkit predict`` (one progress step each).
_PREDICT_CHUNK = 16


def _add_component_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="COMPONENT.KEY=VALUE",
                        help="change a component of the saved detector for this run, e.g. "
                             "--set post_processor.nms_threshold=0.3 or --set post_processor.name=NAME "
                             "(post_processor, target_assigner, loss; repeatable)")


def _load_detector(args: argparse.Namespace, model: str) -> SSDDetector | OnnxDetector:
    """``SSDDetector.load(model)`` with the components that ``--set`` changes; the ONNX export for
    ``--runtime onnxruntime``."""
    if getattr(args, "runtime", "mxnet") == "onnxruntime":
        if getattr(args, "overrides", None):
            raise InputError("--set swaps components of a saved MXNet detector; an ONNX export's post-processing "
                             "is fixed in its graph: swap them on the MXNet detector and export it again.")
        return OnnxDetector.load(model)
    swaps: dict[str, dict[str, Any]] = {}
    for item in getattr(args, "overrides", None) or []:
        key, sep, text = item.partition("=")
        kind, dot, name = key.strip().partition(".")
        if not sep or not dot or kind not in _SWAPPABLE or not name:
            raise InputError(
                f"The --set option takes COMPONENT.KEY=VALUE with COMPONENT one of {', '.join(_SWAPPABLE)}, "
                f"e.g. post_processor.nms_threshold=0.3; got {item!r} instead."
            )
        try:
            value = load_yaml(text)  # numbers as users write them (1e-3), nesting bounded
        except (yaml.YAMLError, ValueError) as error:
            raise InputError(f"The --set option {item!r} has a value that is not YAML: {error}") from None
        swaps.setdefault(kind, {})[name] = value
    return SSDDetector.load(model, **cast(Any, swaps))


def _train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, base=args.preset)
    if args.print_config:
        print(config.to_yaml(every_source=False), end="")  # the keys of the chosen data source alone
        return 0
    if args.config is not None:  # the resolved configuration is written as OUTPUT/config.yaml
        written = config.output_folder() / "config.yaml"
        # A run's own resolved config.yaml (listed in its folder's manifest) may be rewritten: that is how
        # an interrupted training resumes; a configuration of yours never is.
        own = "config.yaml" in (owned_files(config.output_folder()) or ())
        if written.resolve() == Path(args.config).resolve() and not own:
            raise ConfigError(
                f"{str(config.output_folder())!r} would write the resolved configuration over {args.config}, the "
                "configuration file this command reads; choose another train.output_dir.",
                "train.output_dir")
    try:
        detector, history = run_config(config)
    except KeyboardInterrupt:
        print(f"detkit: interrupted: {_where_training_stopped(config, args)}", file=sys.stderr)
        return 130
    if not is_lead_worker():  # in a distributed job, rank 0 reports
        return 0
    output = config.output_folder()
    print(f"trained {len(history)} epoch{'s' if len(history) != 1 else ''}; the model is in {output / 'model'}")
    metrics = output / "metrics.json"
    if metrics.is_file():
        scores = json.loads(metrics.read_text())
        print(f"validation mAP@0.5 {_number(scores['map_50'])} (VOC07 11-point {_number(scores['map_50_voc07'])}), "
              f"mAP@[.5:.95] {_number(scores['map_50_95'])}; pictures in {output / 'detections'}")
    return 0


def _number(value: Any) -> str:
    """A metric read back from JSON: ``null`` (not a finite number) is ``n/a``."""
    return "n/a" if value is None else f"{value:.4f}"


def _where_training_stopped(config: Any, args: argparse.Namespace) -> str:
    """Where an interrupted training stopped (its last checkpoint, if any) and the command that resumes it."""
    output = config.output_folder()
    checkpoints = output / "checkpoints"
    try:
        last = Checkpoints(checkpoints).path("last")  # the pointer as resuming reads it
        name = last.name if last is not None else ""
        done = int(name.rsplit("-", 1)[-1])
    except (DetkitError, OSError, ValueError):
        last = None
    if last is None:
        return (f"no checkpoint was saved yet in {checkpoints}; run the same command again to start over "
                "(an epoch is saved as it ends).")
    if (output / "config.yaml").is_file():  # the resolved configuration of this run
        words = ["detkit", "train", str(output / "config.yaml")]
    else:
        words = ["detkit", "train", *([args.config] if args.config else []),
                 *(["--preset", args.preset] if args.preset else []),
                 *(word for item in args.overrides for word in ("--set", item))]
    words += ["--set", "train.resume=true"]
    return (f"the training stopped in epoch {done + 1} of {config.train.epochs}; the last checkpoint, after epoch "
            f"{done}, is {checkpoints / str(name)}. Resume with: {' '.join(shlex.quote(word) for word in words)}")


def _dataset_for(detector: SSDDetector | OnnxDetector, path: str) -> DetectionDataset:
    """The .rec file at ``path`` read with the detector's classes, after comparing the class list beside it."""
    listed = find_classes(Path(path))
    if listed is not None and read_classes(listed) != detector.classes:
        raise InputError(
            f"The classes of {path} ({listed}: {read_classes(listed)}) differ from the detector's "
            f"{detector.classes}."
        )
    return DetectionDataset(path, classes=detector.classes)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas; got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas; got {text!r}") from None


def _area_ranges(specs: list[str] | None) -> dict[str, tuple[float, float]] | None:
    if specs is None:
        return None
    ranges = {}
    for spec in specs:
        name, _, bounds = spec.partition("=")
        low, _, high = bounds.partition(":")
        try:
            ranges[name.strip()] = (float(low), float(high))
        except ValueError:
            raise InputError(f"--area-range must be NAME=LOW:HIGH in pixels, e.g. small=0:1024; "
                             f"got {spec!r}.") from None
    return ranges


def _evaluate(args: argparse.Namespace) -> int:
    check_positive_int("batch_size", args.batch_size)  # before anything is loaded
    if args.detailed and not args.json:
        raise InputError("--detailed adds arrays to the JSON output; give --json with it.")
    options = coco_options(iou_thresholds=args.iou_thresholds, max_detections=args.max_detections,
                           recall_thresholds=args.recall_thresholds, area_ranges=_area_ranges(args.area_ranges),
                           class_agnostic=args.class_agnostic, missing=-1.0 if args.missing == "-1" else math.nan)
    if args.plot is not None:  # before anything is loaded: never onto the model or the data
        model = args.paths[0] if args.detections is None and args.paths else None
        data = args.paths[-1] if args.paths else None
        check_output(args.plot, {"model": model, "data set": data, "detections": args.detections}, what="--plot")
    if args.detections is not None:
        if len(args.paths) != 1:
            raise InputError(f"With --detections, give only DATA (the ground truth); got {len(args.paths)} paths: "
                             f"{args.paths}.")
        if args.save_detections is not None:
            raise InputError("--save-detections writes a model's detections; with --detections there is no model.")
        scores = evaluate_detections(args.detections, args.paths[0], plot=args.plot, detailed=args.detailed,
                                     **options)
    else:
        if len(args.paths) != 2:
            raise InputError(f"Give MODEL and DATA (or --detections FILE and DATA); got {len(args.paths)} path(s): "
                             f"{args.paths}.")
        detector = _load_detector(args, args.paths[0])
        data = _dataset_for(detector, args.paths[1])
        scores = evaluate(detector, data, batch_size=args.batch_size, progress=not args.json, plot=args.plot,
                          save_detections=args.save_detections, detailed=args.detailed, **options)
    if args.json:
        print(json_text(scores, indent=1))  # nan (a mean over no class) -> null, as in metrics.json
        return 0
    print(f"{scores['num_images']} images  mAP@0.5 {scores['map_50']:.4f}  "
          f"VOC07 11-point {scores['map_50_voc07']:.4f}  mAP@[.5:.95] {scores['map_50_95']:.4f}")
    print("COCO summary (object sizes in pixels of the original images):")
    for key, label in _coco_lines(scores["coco"], options):
        print(f"  {label:<44} = {scores['coco'][key]:.4f}")
    names = list(scores["per_class"])
    width = max([5, *(len(name) for name in names)])
    print(f"  {'class':<{width}}  {'AP@0.5':>6}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}  {'APs':>6}  {'APm':>6}  "
          f"{'APl':>6}  {'AR@100':>6}  {'objects':>7}  {'difficult':>9}  {'crowd':>5}")
    for name in names:
        values = scores["per_class"][name]
        coco = values["coco"]
        cells = [values["ap_50"], coco["map"], coco["map_50"], coco["map_75"], coco.get("map_small", math.nan),
                 coco.get("map_medium", math.nan), coco.get("map_large", math.nan),
                 coco.get("mar_100", math.nan)]
        print(f"  {name:<{width}}  " + "  ".join(f"{value:6.4f}" for value in cells)
              + f"  {values['num_ground_truth']:>7}  {values['num_difficult']:>9}  {values['num_crowd']:>5}")
    if args.plot:
        print(f"precision-recall curves: {args.plot}")
    return 0


def _coco_lines(coco: dict[str, float], options: dict[str, Any]) -> list[tuple[str, str]]:
    """Each key of COCO's summary with the label pycocotools prints for it (its own for the defaults)."""
    defaults = dict(_COCO_LINES)
    if all(options.get(key) is None for key in ("iou_thresholds", "max_detections", "area_ranges")):
        return [(key, defaults[key]) for key in coco if key in defaults]
    metric = DetectionMetric(1, **options)  # the metric's own defaults for the options not given
    thresholds = metric.iou_thresholds.tolist()
    max_dets = [int(limit) for limit in metric.max_detections]
    areas = list(metric.area_ranges)
    span = f"{thresholds[0]:.2f}:{thresholds[-1]:.2f}" if len(thresholds) > 1 else f"{thresholds[0]:.2f}     "
    lines = []
    for key in coco:
        kind, _, rest = key.partition("_")
        iou, area, limit = span, areas[0], max_dets[-1]
        if kind == "map" and rest in ("50", "75"):
            iou = f"0.{rest}     "
        elif rest.isdigit():
            limit = int(rest)
        elif rest:
            area = rest
        lines.append((key, f"{'AP' if kind == 'map' else 'AR'}   @[ IoU={iou} | area={area:>6} | maxDets={limit:>3} ]"))
    return lines


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


def _image_files(paths: list[str], out: Path) -> list[str]:
    """The image files named, a folder giving its image files (sorted; not the pictures of an earlier run)."""
    files: list[str] = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            files.append(name)
            continue
        found = sorted(
            child for child in path.iterdir()
            if child.is_file() and child.suffix.lower() in _IMAGE_SUFFIXES
            and not (child.parent.resolve() == out.resolve() and "-detections" in child.stem)
        )
        if not found:
            raise InputError(f"{path} holds no image files ({', '.join(_IMAGE_SUFFIXES)}); pass image files, "
                             "or a folder of them.")
        files.extend(str(child) for child in found)
    return files


def _predict(args: argparse.Namespace) -> int:
    form = args.format or ("json" if args.json else "text")
    if args.json and form != "json":
        raise InputError(f"--json and --format {form} ask for two formats; give one.")
    if form != "coco-json" and (args.annotations or args.save_detections):
        raise InputError("--annotations and --save-detections are for --format coco-json.")
    threshold = args.threshold if args.threshold is not None else (0.0 if form == "coco-json" else 0.5)
    out = Path(args.out)
    images = _image_files(list(args.images), out)
    if args.save_detections:
        sources = [*images, *([args.annotations] if args.annotations else [])]
        if args.annotations and Path(args.annotations).suffix == ".rec":
            sources.append(str(sidecar_path(args.annotations)))
        check_results_path(args.save_detections, sources)
    detector = _load_detector(args, args.model)
    if form == "coco-json":
        image_ids, category_ids = coco_ids_for(images, detector.classes, args.annotations)
        found = detector.predict(images, threshold=threshold)
        rows = [np.array([[d.class_id, d.score, *d.box] for d in image], dtype=np.float64).reshape(-1, 6)
                for image in found]  # the same float64 numbers: pixel corners, as predict gives them
        entries = coco_results(image_ids, category_ids, rows, "xyxy")
        if args.save_detections:
            path = write_coco_results(args.save_detections, entries)
            print(f"{len(entries)} detections in {len(found)} images -> {path}", file=sys.stderr)
        else:
            # A non-finite score or box is an error (ValueError), never null: pycocotools reads no null number.
            print(json_text(entries, finite=True, separators=(",", ":")))
        return 0
    args.json = form == "json"
    results: list[Any] = []
    # mininterval=0: every chunk (many images) redraws the bar, so the last count always shows.
    with tqdm(total=len(images), unit="image", desc="predict", disable=args.json or len(images) < 2, mininterval=0,
              file=sys.stderr, leave=False) as bar:
        for start in range(0, len(images), _PREDICT_CHUNK):  # a folder of any size, a step at a time
            chunk = images[start:start + _PREDICT_CHUNK]
            results.extend(detector.predict(chunk, threshold=threshold))
            bar.update(len(chunk))
    report = []
    inputs = {Path(image).resolve() for image in images}
    taken: set[Path] = set()
    for image, detections in zip(images, results):
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
        print(json_text(report, indent=1))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    # The INT8 detector never goes over the float32 one it is made from, nor over the data.
    check_output(args.out, {"model": args.model, "data set": args.data}, what="--out folder")
    if args.runtime == "onnxruntime":
        onnx_detector = OnnxDetector.load(args.model)
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


def _export(args: argparse.Namespace) -> int:
    shape = args.data_shape
    if shape is not None and len(shape) not in (1, 2):
        raise InputError(f"The 'data_shape' argument must be one size S or two, H W; got {len(shape)} numbers.")
    out = args.out if args.out is not None else f"{str(Path(args.model)).rstrip('/')}-{args.format}"
    check_output(out, {"model": args.model}, what="--out folder")
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
