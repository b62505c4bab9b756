"""The run layer: a configuration turned into datasets, a detector, a fit call and its reports."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Sequence

import mxnet as mx

from . import data as data_module
from ._base import folder_generation, folder_lock, json_text
from ._config import Config, DataConfig, ModelConfig, TrainConfig, parse_devices, validate_config
from ._engine import Callback, evaluate, fit, is_lead_worker, lead_first, worker_rank
from ._model import SSDDetector, draw_detections
from ._pretrained import checkpoint_weights_follow
from .data._classes import find_classes, read_classes
from .data._voc import prepare_voc
from .errors import CheckpointError, ComponentNotFoundError, ConfigError, InputError

__all__ = ["build_detector", "run_config"]


def _datasets(config: Config) -> tuple[Any, Any]:
    data = config.data
    if data.source == "synthetic":
        return data_module.synthetic_pikachu(data.root, num_train=data.num_train, num_val=data.num_val,
                                             image_size=data.image_size, seed=data.seed,
                                             progress=not config.train.quiet)
    if data.source == "shapes":
        return data_module.synthetic_shapes(data.root, classes=data.num_classes,
                                            objects=(data.objects[0], data.objects[1]),
                                            num_train=data.num_train, num_val=data.num_val,
                                            image_size=data.image_size, seed=data.seed,
                                            progress=not config.train.quiet)
    if data.source == "pikachu":
        return data_module.pikachu(data.root, progress=not config.train.quiet)
    if data.source == "voc":
        try:
            voc = prepare_voc(data.root, data.cache, train_split=data.train_split, val_split=data.val_split,
                              classes=data.classes, progress=not config.train.quiet)
        except ConfigError:
            raise
        except InputError as error:
            raise _in_config_terms(error, "data", DataConfig) from None
        if not config.train.quiet and is_lead_worker():
            print(voc.summary(), flush=True)
        return voc.train, voc.val
    datasets: list[Any] = []
    for name in ("train", "val"):
        path = getattr(data, name)
        if path is None:
            datasets.append(None)
            continue
        classes = data.classes
        if classes is None:
            found = find_classes(Path(path))
            if found is None:
                raise ConfigError(f"no class list found beside {path}; give data.classes", "data.classes")
            classes = read_classes(found)
        datasets.append(data_module.DetectionDataset(path, classes=classes))
    return datasets[0], datasets[1]


def build_detector(config: Config, classes: Sequence[str] | None = None, ctx: Any = None) -> Any:
    """The :class:`~detkit.SSDDetector` that ``config.model`` describes.

    ``classes`` default to ``config.model.classes``; ``ctx`` to the GPU if any, else the CPU.
    With ``model.init``, the saved detector there with its class heads reset for
    ``classes`` (:meth:`SSDDetector.with_classes`) and this configuration's target
    assigner and loss.
    """
    model = config.model
    classes = list(classes) if classes is not None else model.classes
    if not classes:
        raise ConfigError("name the object classes (or let the dataset name them)", "model.classes")
    if model.init is not None:
        try:
            saved = SSDDetector.load(model.init, ctx=ctx)
        except (CheckpointError, ComponentNotFoundError) as error:
            raise ConfigError(str(error), "model.init") from None
        return saved.with_classes(classes, target_assigner=model.target_assigner, loss=model.loss)
    return SSDDetector(
        classes, backbone=model.backbone, anchor_generator=model.anchor_generator,
        target_assigner=model.target_assigner, loss=model.loss, post_processor=model.post_processor,
        scale_filters=model.scale_filters, data_shape=model.data_shape, ctx=ctx,
    )


def run_config(config: Config) -> tuple[Any, Any]:
    """Train, evaluate and report as ``config`` says; return ``(detector, history)``.

    Writes into ``train.output_dir`` (default ``runs/NAME``, see :meth:`Config.output_folder
    <detkit.config.Config.output_folder>`): ``checkpoints/`` (last and best),
    ``model/`` (the detector after the last epoch, :meth:`SSDDetector.load` reads
    it; ``checkpoints/best.json`` names the epoch of the best validation mAP),
    ``config.yaml`` (the resolved configuration), ``history.json`` and
    ``history.png`` (per-epoch figures), ``metrics.json`` (the final validation
    metrics) and ``detections/`` (validation images with their detections).

    In a distributed job (``train.kvstore`` dist_sync, the default under ``detkit launch``)
    rank 0 prepares the data first and alone writes into ``train.output_dir``
    (a folder every worker reads, for resuming); every worker trains.
    """
    validate_config(config)  # a Config changed in Python is checked as a file is
    output = config.output_folder()
    # config.yaml names the folder it was written to.
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, output_dir=str(output)))
    kvstore = config.train.kvstore
    if kvstore is None and os.environ.get("DMLC_ROLE") == "worker":
        kvstore = "dist_sync"  # a worker of `detkit launch`
    if worker_rank(kvstore) != 0:  # another worker of a distributed job: rank 0 holds the folder
        return _run_locked(config, output, kvstore)
    with folder_lock(output, "a training"):  # a second training into the same folder fails here
        return _run_locked(config, output, kvstore)


def _run_locked(config: Config, output: Path, kvstore: str | None) -> tuple[Any, Any]:
    if not config.train.resume and (output / "checkpoints" / "last.json").exists():
        # Before anything is written: a second training must not replace the first one's files.
        raise CheckpointError(
            f"{output} holds an earlier training (checkpoints/last.json); set train.resume=true to continue it, "
            "or choose another train.output_dir."
        )
    train_data, val_data = lead_first(kvstore, lambda: _datasets(config))
    train_data.augment = config.data.augment  # what fit's training loaders read (checked by the schema)
    model = config.model
    classes = model.classes or list(train_data.classes)
    if list(train_data.classes) != classes:
        raise ConfigError(f"the data's classes {train_data.classes} differ from model.classes {classes}",
                          "model.classes")
    if config.train.seed is not None:
        mx.random.seed(config.train.seed)  # the initial weights too, so that a run repeats exactly
    # Resuming: the checkpoint holds every weight, so a backbone's ImageNet file is not read (nor downloaded).
    resuming = config.train.resume and (output / "checkpoints" / "last.json").exists()
    try:
        with checkpoint_weights_follow() if resuming else contextlib.nullcontext():
            detector = build_detector(config, classes)
    except ConfigError:
        raise
    except InputError as error:
        raise _in_config_terms(error, "model", ModelConfig) from None
    train = config.train
    # config.yaml is written once fit has checked every argument, just before the first epoch.
    started = _WriteConfig(output, config)
    try:
        history = fit(
            detector, train_data, val_data, epochs=train.epochs, batch_size=train.batch_size,
            optimizer=train.optimizer, optimizer_params=train.optimizer_params, lr_schedule=train.lr_schedule,
            warmup_epochs=train.warmup_epochs, warmup_steps=train.warmup_steps,
            clip_gradient_norm=train.clip_gradient_norm, ema_epochs=train.ema_epochs, val_every=train.val_every,
            devices=parse_devices(train.devices), seed=train.seed,
            checkpoint_dir=output / "checkpoints", resume=train.resume, quiet=train.quiet, callbacks=[started],
            kvstore=kvstore,
        )
    except InputError as error:
        if started.done or isinstance(error, ConfigError):
            raise
        raise _in_config_terms(error, "train", TrainConfig) from None
    if not is_lead_worker():  # in a distributed job, rank 0 writes the outputs
        return detector, history
    detector.save(output / "model")
    # The reports: one generation of the output folder's manifest, beside the files of yours there.
    with folder_generation(output, "training", purpose="a training", legacy=_legacy_outputs, keep_previous=True,
                           locked=True) as generation:
        generation.path("history.json").write_text(history.to_json(), encoding="utf-8")
        if len(history):
            history.plot(generation.path("history.png"))
        if val_data is not None:
            metrics = evaluate(detector, val_data, batch_size=train.batch_size, **config.eval.metric_options())
            generation.path("metrics.json").write_text(json_text(metrics, indent=1), encoding="utf-8")  # nan -> null
            pictures = generation.path("detections")
            pictures.mkdir()
            for index in range(min(train.num_pictures, len(val_data))):
                image = val_data.image(index)
                draw_detections(image, detector.predict(image, threshold=train.threshold),
                                pictures / f"val-{index:03d}.png", title=f"validation image {index}")
    return detector, history


#: What a training writes into ``train.output_dir`` besides ``model/`` and ``checkpoints/`` (own manifests).
_REPORTS = ("config.yaml", "history.json", "history.png", "metrics.json", "detections")


def _legacy_outputs(output: Path) -> list[str]:
    """In an output folder of an earlier detkit (no manifest, but its checkpoints): its reports."""
    if not (output / "checkpoints" / "last.json").is_file():
        return []
    return [name for name in _REPORTS if (output / name).exists()]


class _WriteConfig(Callback):
    """Writes ``config.yaml`` into the output folder when training begins (after fit's checks)."""

    def __init__(self, output: Path, config: Config) -> None:
        self.output, self.config, self.done = output, config, False

    def on_train_begin(self, detector: Any, history: Any) -> None:
        if is_lead_worker():  # in a distributed job, rank 0 alone (holding the folder's lock)
            with folder_generation(self.output, "training", purpose="a training", legacy=_legacy_outputs,
                                   keep_previous=True, locked=True) as generation:
                generation.path("config.yaml").write_text(self.config.to_yaml(every_source=False), encoding="utf-8")
        self.done = True


def _in_config_terms(error: InputError, section: str, fields_of: type) -> ConfigError:
    """A refusal of an argument, said as the configuration key that set it (``train.warmup_epochs``)."""
    message = str(error)
    named = re.search(r"The '(\w+)' argument", message)
    fields = {field.name for field in dataclasses.fields(fields_of)}
    if named and named.group(1) in fields:
        return ConfigError(message.replace(named.group(0), "The value"), f"{section}.{named.group(1)}")
    if "lower batch_size" in message:
        return ConfigError(message.replace("lower batch_size", "lower train.batch_size"), "train.batch_size")
    return ConfigError(message)
