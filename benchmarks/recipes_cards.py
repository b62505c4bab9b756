"""detkit's presets and GluonCV's SSD on a real photo set at one equal budget, scored by one metric.

    pip install gluoncv==0.10.5.post0 "numpy<1.24"   # the peer: only this benchmark uses it
    python benchmarks/recipes_cards.py --root ../shared/data/cards-voc --budget 240 --jobs 3 \\
        --runs fast:0 fast:1 fast:2 ssd:0 ssd:1 ssd:2 gluoncv:0 --out benchmarks/results/recipes-cards

Every run trains from random weights (no ImageNet file: ``ssd`` with
``model.backbone.pretrained=false``, GluonCV's body with ``pretrained_base=False``)
on the set's training split at ``--data-shape``, for the same budget of
**process CPU seconds of training** (``time.process_time``, every thread of the
run's own process; evaluation excluded). Each run is a child process with
``OMP_NUM_THREADS=1``, so that a CPU second is the same amount of work whatever else
loads the machine: a wall-clock budget on a shared machine measures the neighbours.
A run stops after the epoch that brings it within half an epoch of the budget.

GluonCV's SSD follows its ``train_ssd.py`` recipe: ``ssd_512_resnet18_v1_custom``
(``--gluoncv-model``), ``SSDDefaultTrainTransform``, ``SSDMultiBoxLoss``, SGD at
learning rate 0.001, momentum 0.9, weight decay 5e-4, batch 32 (``--gluoncv-batch``).
detkit's recipes are the presets at their own defaults, with ``train.epochs`` from
``--epochs`` (sized so that the schedule ends near the budget).

Every validated epoch (``--val-every``) and the end are scored on the test split with
detkit's :class:`~detkit.DetectionMetric`: VOC mAP@0.5 and COCO mAP@[.5:.95], boxes in
the pixels of the original photos (GluonCV's clipped to the image, as its
``train_ssd.py`` validation does). Writes OUT.json: ``rows`` (one per system, recipe
and seed: ``system``, ``recipe``, ``seed``, ``epochs``, ``seconds``, ``map_50``,
``map_50_95``, ``diverged``, and the curve), rewritten after each run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

GLUONCV_RECIPE = "ssd_512_resnet18_v1_custom"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/cards-voc", help="the VOC folder (cards-voc)")
    parser.add_argument("--cache", default=None, help="detkit's packed cache (default: data/cache/...)")
    parser.add_argument("--budget", type=float, default=240, help="CPU seconds of training per run")
    parser.add_argument("--data-shape", type=int, default=256)
    parser.add_argument("--runs", nargs="+", default=["fast:0", "ssd:0", "gluoncv:0"], metavar="RECIPE:SEED",
                        help="fast, ssd (detkit presets) or gluoncv, each with a seed")
    parser.add_argument("--epochs", nargs="*", default=["fast=12", "ssd=5"], metavar="RECIPE=N",
                        help="train.epochs of a detkit recipe (its schedule's length)")
    parser.add_argument("--set", action="append", default=[], metavar="RECIPE:KEY=VALUE",
                        help="override one detkit recipe's key")
    parser.add_argument("--val-every", type=int, default=1, help="score the test split every N epochs (and at the end)")
    parser.add_argument("--gluoncv-model", default=GLUONCV_RECIPE)
    parser.add_argument("--gluoncv-batch", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each one thread)")
    parser.add_argument("--out", default="benchmarks/results/recipes-cards")
    parser.add_argument("--append", action="store_true",
                        help="keep OUT.json's rows of other runs (a rerun recipe:seed replaces its row)")
    parser.add_argument("--save", default=None, help="save each detkit run's final detector into SAVE/RECIPE-SEED")
    parser.add_argument("--draw", default=None, metavar="MODEL",
                        help="draw four test photos with MODEL's detections into OUT-detections.jpg, and stop")
    parser.add_argument("--draw-threshold", type=float, default=0.5, help="the least score drawn")
    parser.add_argument("--one", nargs=3, metavar=("RECIPE", "SEED", "ROW_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.draw:
        draw(args, Path(args.draw))
        return
    if args.one:
        recipe, seed, row_file = args.one
        row = run_one(args, recipe, int(seed))
        Path(row_file).write_text(json.dumps(row))
        return
    out = Path(args.out).with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    commands: list[str] = []
    if args.append and out.is_file():
        earlier = json.loads(out.read_text())
        if (earlier.get("budget_cpu_seconds"), earlier.get("data_shape")) != (args.budget, args.data_shape):
            raise SystemExit(f"{out} was measured at another budget or input size: rows must share both")
        rerun = {(recipe, int(seed or 0)) for recipe, _, seed in (run.partition(":") for run in args.runs)}
        rows = [row for row in earlier["rows"]
                if (row["recipe"] if row["system"] == "detkit" else "gluoncv", row["seed"]) not in rerun]
        commands = earlier.get("commands", [earlier["command"]] if "command" in earlier else [])
    commands.append("python benchmarks/recipes_cards.py " + " ".join(sys.argv[1:]))
    pending = list(args.runs)
    running: list[tuple[str, subprocess.Popen, Path]] = []
    work = Path(tempfile.mkdtemp(prefix="recipes-cards-"))
    passed = [a for a in sys.argv[1:]]
    environment = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1")
    started = time.time()
    while pending or running:
        while pending and len(running) < args.jobs:
            run = pending.pop(0)
            recipe, _, seed = run.partition(":")
            row_file = work / f"{recipe}-{seed or 0}.json"
            command = [sys.executable, __file__, *passed, "--one", recipe, seed or "0", str(row_file)]
            running.append((run, subprocess.Popen(command, env=environment), row_file))
        time.sleep(2)
        for item in list(running):
            run, process, row_file = item
            if process.poll() is None:
                continue
            running.remove(item)
            if process.returncode != 0 or not row_file.is_file():
                print(f"{run}: failed (exit {process.returncode})", flush=True)
                continue
            rows.append(json.loads(row_file.read_text()))
            write(out, args, rows, commands, time.time() - started)
    plot(rows, out.with_suffix(".png"))


def write(out: Path, args: argparse.Namespace, rows: list[dict[str, Any]], commands: list[str], wall: float) -> None:
    import detkit

    order = {"fast": 0, "ssd": 1}
    rows = sorted(rows, key=lambda r: (r["system"] != "detkit", order.get(r["recipe"], 9), r["recipe"], r["seed"]))
    summary = {
        "data": Path(args.root).name, "data_shape": args.data_shape, "budget_cpu_seconds": args.budget,
        "budget": "process CPU seconds of training per run, one thread (OMP_NUM_THREADS=1), evaluation excluded",
        "val_every": args.val_every,
        "gluoncv": {"model": args.gluoncv_model, "batch_size": args.gluoncv_batch, "optimizer": "sgd",
                    "learning_rate": 0.001, "momentum": 0.9, "wd": 0.0005, "pretrained_base": False},
        "commands": commands,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), detkit {detkit.__version__}",
        "wall_seconds_last_command": round(wall), "rows": rows,
    }
    temporary = out.with_suffix(".json.part")
    temporary.write_text(json.dumps(summary, indent=1))
    os.replace(temporary, out)


# -- one run ---------------------------------------------------------------------------------


def cpu_seconds() -> float:
    return time.process_time()


class Budget:
    """Counts the training CPU seconds between epochs; scores the test split; says when to stop."""

    def __init__(self, budget: float, every: int, score: Callable[[], dict[str, float]],
                 also: Callable[[], dict[str, float]] | None = None) -> None:
        self.budget, self.every, self.score, self.also = budget, every, score, also
        self.used = 0.0
        self.mark = cpu_seconds()
        self.curve: list[dict[str, Any]] = []

    def epoch_done(self, epoch: int, loss: float, **extra: float) -> bool:
        """Record epoch ``epoch`` (1-based) and ``extra`` figures of it; return True to stop."""
        spent = cpu_seconds() - self.mark
        self.used += spent
        stop = self.used + spent / 2 >= self.budget or not math.isfinite(loss)
        point: dict[str, Any] = {"epoch": epoch, "cpu_seconds": round(self.used, 1), "loss": loss, **extra}
        if (stop or epoch % self.every == 0) and math.isfinite(loss):
            point.update(self.score())
            if self.also is not None:
                point.update(self.also())
        self.curve.append(point)
        print(f"  {epoch}: {point}", flush=True)
        self.mark = cpu_seconds()
        return stop


def run_one(args: argparse.Namespace, recipe: str, seed: int) -> dict[str, Any]:
    import detkit  # noqa: F401 -- before mxnet

    from detkit.data import pascal_voc

    train, val = pascal_voc(args.root, args.cache, progress=False)
    if val is None:
        raise SystemExit(f"{args.root} has no test split")
    wall = time.time()
    if recipe == "gluoncv":
        row = run_gluoncv(args, train, val, seed)
    else:
        row = run_detkit(args, recipe, train, val, seed)
    row["wall_seconds"] = round(time.time() - wall, 1)
    curve = [p for p in row["curve"] if "map_50" in p]
    if not row["diverged"] and curve:
        best = max(p["map_50"] for p in curve)
        last_third = [p for p in curve if p["epoch"] > row["epochs"] * 2 / 3]
        row["best_map_50"] = best
        row["collapsed"] = any(p["map_50"] < 0.8 * best for p in last_third)
    print(f"{recipe}:{seed} -> {json.dumps({k: v for k, v in row.items() if k != 'curve'})}", flush=True)
    return row


def score(predict: Callable[[Any], Any], val: Any) -> dict[str, float]:
    """VOC mAP@0.5 and COCO mAP@[.5:.95] of ``predict`` (image -> rows [class, score, x0, y0, x1, y1] in pixels)."""
    import numpy as np

    import detkit

    metric = detkit.DetectionMetric(len(val.classes), class_names=val.classes)
    for index in range(len(val)):
        image = val.image(index)
        height, width = image.shape[:2]
        objects = val.objects(index).astype("float64")
        objects[:, 1:] *= [width, height, width, height]
        detections = np.asarray(predict(image), dtype="float64").reshape(-1, 6)
        metric.update(detections[None], objects[None], (val.flags(index) == 1)[None], image_size=[[1, 1]])
    result = metric.compute()
    return {"map_50": round(float(result["map_50"]), 4), "map_50_95": round(float(result["map_50_95"]), 4)}


def run_detkit(args: argparse.Namespace, recipe: str, train: Any, val: Any, seed: int) -> dict[str, Any]:
    import mxnet as mx
    import numpy as np

    import detkit
    from detkit.config import build_detector, preset
    from detkit.errors import NonFiniteLossError

    overrides = [f"model.data_shape={args.data_shape}"]
    if recipe == "ssd":
        overrides.append("model.backbone.pretrained=false")
    for item in args.epochs:
        name, _, epochs = item.partition("=")
        if name == recipe:
            overrides.append(f"train.epochs={epochs}")
    overrides += [item.partition(":")[2] for item in args.set if item.partition(":")[0] == recipe]
    config = preset(recipe, overrides)
    mx.random.seed(seed)
    detector = build_detector(config, train.classes)
    train.augment = config.data.augment

    def predict(image: Any) -> Any:
        found = detector.predict(image, threshold=0.0)
        return [[d.class_id, d.score, *d.box] for d in found] or np.zeros((0, 6))

    # With train.ema_epochs the callbacks see the weights' average; the last step's weights are scored
    # too (last_step_map_50...): training is the same either way, so one run measures both.
    from detkit._engine import _fit

    averages: list[Any] = []

    class Recorded(_fit.WeightAverage):  # type: ignore[misc,name-defined]
        def __init__(self, *arguments: Any, **keywords: Any) -> None:
            super().__init__(*arguments, **keywords)
            averages.append(self)

    _fit.WeightAverage = Recorded

    def score_last_step() -> dict[str, float]:
        if not averages:
            return {}
        parameters = dict(detector.network._collect_params_with_prefix())
        held = {name: p.data().copy() for name, p in parameters.items()}
        for name, weights in averages[0].training_weights().items():
            weights.copyto(parameters[name].data())
        scores = score(predict, val)
        for name, weights in held.items():
            weights.copyto(parameters[name].data())
        return {f"last_step_{key}": value for key, value in scores.items()}

    budget = Budget(args.budget, args.val_every, lambda: score(predict, val), score_last_step)

    class Stop(detkit.Callback):
        def on_epoch_end(self, epoch: int, record: Any, detector: Any) -> bool:
            clipping = {key: round(float(record[key]), 4) for key in ("grad_norm", "clipped") if key in record}
            return budget.epoch_done(epoch + 1, float(record["loss"]), **clipping)

    diverged = False
    try:
        detkit.fit(detector, train, None, callbacks=[Stop()], **dict(config.fit_arguments(), seed=seed, quiet=True))
    except NonFiniteLossError as error:
        print(f"  diverged: {error}", flush=True)
        diverged = True
    if args.save and not diverged:
        detector.save(Path(args.save) / f"{recipe}-{seed}")
    return finish("detkit", recipe, seed, budget, diverged, predict, val, overrides)


def finish(system: str, recipe: str, seed: int, budget: Budget, diverged: bool, predict: Callable[[Any], Any],
           val: Any, settings: Any) -> dict[str, Any]:
    epochs = len([p for p in budget.curve if math.isfinite(p["loss"])])
    final: dict[str, Any] = {"map_50": 0.0, "map_50_95": 0.0}
    if not diverged:
        last = budget.curve[-1] if budget.curve else {}
        final = {k: last[k] for k in ("map_50", "map_50_95")} if "map_50" in last else score(predict, val)
    return {"system": system, "recipe": recipe, "seed": seed, "epochs": epochs,
            "seconds": round(budget.used, 1), "seconds_per_epoch": round(budget.used / max(epochs, 1), 2),
            "map_50": final["map_50"], "map_50_95": final["map_50_95"], "diverged": diverged,
            "settings": settings, "curve": budget.curve}


def run_gluoncv(args: argparse.Namespace, train: Any, val: Any, seed: int) -> dict[str, Any]:
    import random
    import warnings

    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    import gluoncv as gcv
    from gluoncv.data.batchify import Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform

    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)
    size = args.data_shape
    classes = list(train.classes)

    class Photos(gluon.data.Dataset):
        """detkit's packed photos as GluonCV reads a VOC set: (image NDArray HWC, label (K, 5) in pixels)."""

        def __init__(self, data: Any) -> None:
            self.data = data

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int) -> Any:
            image = self.data.image(index)
            height, width = image.shape[:2]
            objects = self.data.objects(index)
            ordinary = self.data.flags(index) == 0
            label = np.concatenate([objects[:, 1:] * [width, height, width, height], objects[:, :1]], axis=1)
            return mx.nd.array(image, dtype="uint8"), label[ordinary].astype("float32")

    from gluoncv.model_zoo.ssd import presets

    # The preset function itself: 0.10.5's get_model lists no ssd_512_resnet18_v1_custom, but presets.py has it.
    net = getattr(presets, args.gluoncv_model.replace(".", "_"))(classes=classes, pretrained_base=False)
    with warnings.catch_warnings(record=True):
        net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    loader = gluon.data.DataLoader(
        Photos(train).transform(SSDDefaultTrainTransform(size, size, anchors)), args.gluoncv_batch, shuffle=True,
        batchify_fn=Tuple(Stack(), Stack(), Stack()), last_batch="rollover", num_workers=0)
    loss_function = gcv.loss.SSDMultiBoxLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001, "wd": 0.0005, "momentum": 0.9})
    val_transform = SSDDefaultValTransform(size, size)

    def predict(image: Any) -> Any:
        height, width = image.shape[:2]
        data, _ = val_transform(mx.nd.array(image, dtype="uint8"), np.zeros((1, 5), dtype="float32"))
        ids, scores, boxes = net(data.expand_dims(0))
        ids, scores, boxes = ids[0].asnumpy(), scores[0].asnumpy(), boxes[0].asnumpy()
        keep = ids[:, 0] >= 0
        boxes = np.clip(boxes[keep], 0, size) * [width / size, height / size, width / size, height / size]
        return np.concatenate([ids[keep], scores[keep], boxes], axis=1)

    def validate() -> dict[str, float]:
        # set_nms (as train_ssd.py's validation calls it) also clears the graph traced in training mode, so
        # that the network returns detections; called again after, so that training traces its own again.
        net.set_nms(nms_thresh=0.45, nms_topk=400)
        scores = score(predict, val)
        net.set_nms(nms_thresh=0.45, nms_topk=400)  # clears the inference graph again: training traces its own
        return scores

    budget = Budget(args.budget, args.val_every, validate)
    diverged = False
    epoch = 0
    while True:
        epoch += 1
        total, count = 0.0, 0
        for batch in loader:
            data, class_targets, box_targets = (part.as_in_context(mx.cpu()) for part in batch)
            with autograd.record():
                class_preds, box_preds, _ = net(data)
                losses, _, _ = loss_function([class_preds], [box_preds], [class_targets], [box_targets])
                autograd.backward(losses)
            trainer.step(1)  # as train_ssd.py: the loss is already normalised by the positives
            total += float(sum(value.mean().asscalar() for value in losses))
            count += 1
        mean = total / max(count, 1)
        if not math.isfinite(mean):
            diverged = True
        if budget.epoch_done(epoch, mean) or diverged:
            break
    settings = {"model": args.gluoncv_model, "batch_size": args.gluoncv_batch, "data_shape": size}
    net.set_nms(nms_thresh=0.45, nms_topk=400)
    return finish("gluoncv", args.gluoncv_model, seed, budget, diverged, predict, val, settings)


def draw(args: argparse.Namespace, model: Path) -> None:
    """Four test photos, spread over the split, with ``model``'s detections (score >= --draw-threshold), in one
    2 x 2 JPEG."""
    import numpy as np
    from PIL import Image

    import detkit
    from detkit.data import pascal_voc

    _, val = pascal_voc(args.root, args.cache, progress=False)
    detector = detkit.SSDDetector.load(model)
    tiles = []
    with tempfile.TemporaryDirectory() as folder:
        for number, index in enumerate(np.linspace(0, len(val) - 1, 4).round().astype(int)):
            image = val.image(int(index))
            found = detector.predict(image, threshold=args.draw_threshold)
            path = detkit.draw_detections(image, found, Path(folder) / f"{number}.png",
                                          title=f"test photo {index}: {model.name}, scores >= {args.draw_threshold:g}")
            tile = Image.open(path).convert("RGB")
            tile.thumbnail((480, 480))
            tiles.append(tile)
    width, height = max(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new("RGB", (2 * width, 2 * height), "white")
    for number, tile in enumerate(tiles):
        sheet.paste(tile, ((number % 2) * width + (width - tile.width) // 2, (number // 2) * height))
    target = Path(args.out + "-detections.jpg")
    sheet.save(target, quality=85)
    print(f"wrote {target}")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colours: dict[str, Any] = {}
    for row in rows:
        points = [p for p in row["curve"] if "map_50" in p]
        name = row["recipe"] if row["system"] == "detkit" else "GluonCV SSD"
        colour = colours.setdefault(name, f"C{len(colours)}")
        for axis, key in zip(axes, ("map_50", "map_50_95")):
            axis.plot([p["cpu_seconds"] for p in points], [p[key] for p in points], marker="o", color=colour,
                      label=name if row["seed"] == min(r["seed"] for r in rows if r["recipe"] == row["recipe"])
                      else None, alpha=0.8)
    for axis, title in zip(axes, ("test mAP@0.5 (VOC)", "test mAP@[.5:.95] (COCO)")):
        axis.set(xlabel="CPU seconds of training (one thread)", ylabel=title, ylim=(0, None), title=title)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
