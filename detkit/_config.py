"""The config layer: the schema of a configuration, the presets, loading and validation (see :mod:`detkit.config`)."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import mxnet as mx
import yaml

from ._base import load_yaml
from ._engine import DEFAULT_BATCH_SIZE, SEED_OPTIMIZER_PARAMS, check_optimizer
from ._engine._detections import coco_options
from ._model import DEFAULT_COMPONENTS, DEFAULT_DATA_SHAPE, DEFAULT_SCALE_FILTERS
from ._plugins import KINDS, get_registry, parse_component_spec
from .data._voc import check_split
from .errors import ComponentNotFoundError, ConfigError, InputError

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "PRESETS",
    "TrainConfig",
    "load_config",
    "parse_devices",
    "preset",
    "validate_config",
]

Component = Union[str, Dict[str, Any]]


def _field(default: Any, doc: str, choices: Sequence[Any] | None = None, minimum: float | None = None,
           maximum: float | None = None) -> Any:
    metadata = {"doc": doc, "choices": tuple(choices) if choices else None, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(default)), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class ModelConfig:
    """The ``model`` section: the arguments of :class:`~detkit.SSDDetector`."""

    classes: Optional[List[str]] = _field(None, "Object class names; default: the dataset's classes.")
    data_shape: Union[int, List[int]] = _field(DEFAULT_DATA_SHAPE, "Input size: S for S x S, or [H, W].", minimum=1)
    scale_filters: int = _field(DEFAULT_SCALE_FILTERS, "Filters of the halving blocks added after the backbone.",
                                minimum=1)
    backbone: Component = _field(DEFAULT_COMPONENTS["backbone"],
                                 "Backbone: a registered name, or a mapping {name: ..., other arguments}.")
    anchor_generator: Component = _field(DEFAULT_COMPONENTS["anchor_generator"], "Anchor generator (name or mapping).")
    target_assigner: Component = _field(DEFAULT_COMPONENTS["target_assigner"], "Target assigner (name or mapping).")
    loss: Component = _field(DEFAULT_COMPONENTS["loss"], "Loss (name or mapping).")
    post_processor: Component = _field(DEFAULT_COMPONENTS["post_processor"], "Post-processor (name or mapping).")
    init: Optional[str] = _field(None, "A saved detector (SSDDetector.save, e.g. of detkit import gluoncv) to "
                                 "fine-tune: its network, weights and input size, with the class heads reset "
                                 "for the data's classes (the rows of classes it already has kept); "
                                 "target_assigner and loss come from this section, the other model keys are "
                                 "not used.")


@dataclasses.dataclass
class DataConfig:
    """The ``data`` section: where the images come from."""

    source: str = _field("synthetic", "Where the data comes from: 'synthetic' (generated offline into root), "
                         "'shapes' (the multi-class synthetic set, generated offline into root), "
                         "'pikachu' (the seed's download into root), 'recordio' (your own files: train, val) "
                         "or 'voc' (a Pascal VOC folder, root, packed once into cache).",
                         choices=("synthetic", "shapes", "pikachu", "recordio", "voc"))
    root: str = _field("data/pikachu", "Directory of the synthetic or downloaded dataset; VOC: the VOC folder "
                       "(JPEGImages/, Annotations/, ImageSets/Main/), only read.")
    num_train: int = _field(1000, "Synthetic: training images.", minimum=1)
    num_val: int = _field(100, "Synthetic: validation images.", minimum=1)
    image_size: int = _field(256, "Synthetic: image side in pixels.", minimum=32)
    seed: int = _field(0, "Synthetic: generator seed (same seed, same files).", minimum=0)
    num_classes: int = _field(8, "Shapes: kinds of objects (circle, square, ... pikachu: 1 to 8).", minimum=1,
                              maximum=8)
    objects: List[int] = _field([2, 8], "Shapes: the least and most objects in an image, [min, max].", minimum=1,
                                maximum=30)
    train: Optional[str] = _field(None, "RecordIO: the training .rec file.")
    val: Optional[str] = _field(None, "RecordIO: the validation .rec file (optional).")
    classes: Optional[List[str]] = _field(None, "RecordIO: class names; default: the class list beside the .rec. "
                                          "VOC: default the 20 Pascal VOC classes when the annotations use no "
                                          "other, else the sorted names found.")
    train_split: str = _field("auto", "VOC: the list of ImageSets/Main that trains; 'auto': trainval when "
                              "test.txt exists, else train.")
    val_split: Optional[str] = _field("auto", "VOC: the list that validates; 'auto': test when test.txt exists, "
                                      "else val (if any); null: no validation.")
    cache: Optional[str] = _field(None, "VOC: the folder of the packed RecordIO files, reused while made from "
                                  "the same files; default: data/cache/NAME-HASH (NAME the VOC folder's name).")
    augment: str = _field("seed", "Training augmentation: 'seed' (the seed's random crop), 'ssd' (SSD's photometric "
                          "distortion, expand, IoU-constrained crop and flip) or 'none'.",
                          choices=("seed", "ssd", "none"))


@dataclasses.dataclass
class TrainConfig:
    """The ``train`` section: the arguments of :func:`~detkit.fit` and where results go."""

    epochs: int = _field(30, "Epochs to train (the seed: 30).", minimum=1)
    batch_size: int = _field(DEFAULT_BATCH_SIZE, "Images per step (the seed: 32).", minimum=1)
    optimizer: str = _field("sgd", "An MXNet optimizer name: sgd, nag, adam, ...")
    optimizer_params: Dict[str, Any] = _field(dict(SEED_OPTIMIZER_PARAMS),
                                              "The optimizer's settings (the seed: learning_rate 0.1, wd 5e-4).")
    lr_schedule: str = _field("constant", "Learning-rate schedule.", choices=("constant", "cosine", "step"))
    warmup_epochs: float = _field(0.0, "Linear learning-rate warm-up, in epochs (cosine or step only).", minimum=0)
    warmup_steps: int = _field(0, "The least warm-up, in steps: the warm-up lasts the longer of warmup_epochs "
                               "and this, capped at a quarter of the training (a small set has few steps an "
                               "epoch).", minimum=0)
    clip_gradient_norm: Optional[float] = _field(None, "Scale a step's gradient (all weights together) down to "
                                                 "this L2 norm when larger; null: no clipping.", minimum=0)
    ema_epochs: float = _field(0.0, "Validate, checkpoint and keep a moving average of the weights over about "
                               "this many epochs instead of the last step's (steadier on small real sets); "
                               "0: the last step's.", minimum=0)
    val_every: int = _field(1, "Validate after every N-th epoch and after the last; the best checkpoint is "
                            "chosen among the validated epochs.", minimum=1)
    devices: Union[str, List[str]] = _field("auto", "'auto' (every GPU, else the CPU) or a list such as [gpu(0), gpu(1)].")
    kvstore: Optional[str] = _field(None, "MXNet's kvstore: null (the default for the devices; dist_sync for a "
                                    "worker of detkit launch), local, device, or dist_sync / dist_device_sync "
                                    "to train under detkit launch (batch_size is then per worker).",
                                    choices=(None, "local", "device", "nccl", "dist_sync", "dist_device_sync"))
    seed: Optional[int] = _field(0, "Random seed of the run: initial weights, data order, crops (null: a random one).",
                                 minimum=0)
    output_dir: Optional[str] = _field(None, "Where the checkpoints, the trained model, metrics and pictures go; "
                                       "null: runs/NAME, NAME the data's: the folder data.root names (synthetic, "
                                       "shapes, pikachu, voc) or the training file's name (recordio).")
    resume: bool = _field(False, "Continue from the last checkpoint in output_dir.")
    quiet: bool = _field(False, "No progress bar and no per-epoch lines.")
    num_pictures: int = _field(4, "Validation images drawn with their detections after training.", minimum=0)
    threshold: float = _field(0.5, "Score threshold of the detections drawn.", minimum=0, maximum=1)


@dataclasses.dataclass
class EvalConfig:
    """The ``eval`` section: COCOeval's parameters of the evaluation after training (``metrics.json``)."""

    iou_thresholds: Optional[List[float]] = _field(
        None, "IoU thresholds of the COCO metric (pycocotools' iouThrs); null: 0.50, 0.55, ..., 0.95.")
    max_detections: Optional[List[int]] = _field(
        None, "Detections a class and image, increasing (pycocotools' maxDets): AR at each, AP at the last; "
        "null: [1, 10, 100].", minimum=1)
    recall_thresholds: Optional[List[float]] = _field(
        None, "Recall levels of COCO's AP (pycocotools' recThrs); null: 0, 0.01, ..., 1.", minimum=0, maximum=1)
    area_ranges: Optional[Dict[str, List[float]]] = _field(
        None, "Named object-size ranges {name: [low, high]} in pixels (pycocotools' areaRng and areaRngLbl), the "
        "first for the headline numbers; null: all, small, medium, large.")
    class_agnostic: bool = _field(False, "Match detections to objects of any class (pycocotools' useCats=0).")
    missing: Optional[int] = _field(None, "A number with nothing to measure: null (NaN) or -1 (as pycocotools).",
                                    choices=(None, -1))

    def metric_options(self) -> dict[str, Any]:
        """The section as keyword arguments of :func:`detkit.evaluate` (and :class:`~detkit.DetectionMetric`),
        checked as the metric checks them (:class:`~detkit.errors.InputError`)."""
        return coco_options(
            iou_thresholds=self.iou_thresholds, max_detections=self.max_detections,
            recall_thresholds=self.recall_thresholds,
            area_ranges=None if self.area_ranges is None else {k: tuple(v) for k, v in self.area_ranges.items()},
            class_agnostic=self.class_agnostic, missing=math.nan if self.missing is None else float(self.missing),
        )


@dataclasses.dataclass
class Config:
    """A whole configuration: ``model``, ``data``, ``train`` and ``eval`` sections."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def to_dict(self, *, every_source: bool = True) -> dict[str, Any]:
        """The configuration as plain data (what a YAML file holds).

        ``every_source=False`` leaves out the ``data`` keys that another source
        than ``data.source`` reads (``num_train`` for a VOC folder, ...).
        """
        values = dataclasses.asdict(self)
        if not every_source:
            used = _SOURCE_KEYS[self.data.source]
            values["data"] = {key: value for key, value in values["data"].items() if key in used}
        return values

    def to_yaml(self, *, every_source: bool = True) -> str:
        """The configuration as YAML text that :func:`load_config` reads back (``every_source``: see
        :meth:`to_dict`)."""
        return yaml.safe_dump(self.to_dict(every_source=every_source), sort_keys=False)

    def output_folder(self) -> Path:
        """Where a training of this configuration writes: ``train.output_dir``, else ``runs/NAME``.

        ``NAME`` is the data's own name: the last folder of ``data.root`` (the
        synthetic, shapes, pikachu and voc sources) or the training file's name
        without its suffix (recordio), so that a user's data never lands in
        another data set's folder.

        Examples
        --------
        >>> from detkit.config import preset
        >>> preset("fast", ["data.source=shapes", "data.root=data/shapes"]).output_folder().as_posix()
        'runs/shapes'
        """
        if self.train.output_dir is not None:
            return Path(self.train.output_dir)
        data = self.data
        if data.source == "recordio" and data.train is not None:
            name = Path(data.train).stem
        else:
            name = Path(data.root).resolve().name if Path(data.root).name in ("", ".", "..") else Path(data.root).name
        return Path("runs") / (name or data.source)

    def fit_arguments(self) -> dict[str, Any]:
        """The ``train`` section as keyword arguments of :func:`detkit.fit`: the recipe in Python.

        Returns ``epochs``, ``batch_size``, ``optimizer``, ``optimizer_params``,
        ``lr_schedule``, ``warmup_epochs``, ``warmup_steps``, ``clip_gradient_norm``,
        ``ema_epochs``, ``val_every``, ``devices``, ``seed``, ``quiet`` and ``kvstore``
        (not where results go: ``checkpoint_dir`` and ``resume`` are the caller's).
        A recipe is the model and the training together: build the detector
        from the same configuration (:func:`~detkit.config.build_detector`), since
        a preset may set a component, as ``"fast"`` sets the loss's normalization.

        Examples
        --------
        >>> from detkit.config import preset
        >>> arguments = preset("fast").fit_arguments()
        >>> arguments["epochs"], arguments["lr_schedule"], arguments["optimizer_params"]["learning_rate"]
        (10, 'cosine', 0.01)

        With data and a detector built from the same recipe::

            recipe = preset("fast")
            detector = build_detector(recipe, classes=train.classes)
            detkit.fit(detector, train, val_data=val, **recipe.fit_arguments())
        """
        train = self.train
        return {
            "epochs": train.epochs, "batch_size": train.batch_size, "optimizer": train.optimizer,
            "optimizer_params": dict(train.optimizer_params), "lr_schedule": train.lr_schedule,
            "warmup_epochs": train.warmup_epochs, "warmup_steps": train.warmup_steps,
            "clip_gradient_norm": train.clip_gradient_norm, "ema_epochs": train.ema_epochs,
            "val_every": train.val_every,
            "devices": parse_devices(train.devices), "seed": train.seed,
            "quiet": train.quiet, "kvstore": train.kvstore,
        }


# The data keys each source reads (source and augment: all of them).
_SOURCE_KEYS: Mapping[str, Sequence[str]] = {
    "synthetic": ("source", "root", "num_train", "num_val", "image_size", "seed", "augment"),
    "shapes": ("source", "root", "num_train", "num_val", "image_size", "seed", "num_classes", "objects", "augment"),
    "pikachu": ("source", "root", "augment"),
    "recordio": ("source", "train", "val", "classes", "augment"),
    "voc": ("source", "root", "classes", "train_split", "val_split", "cache", "augment"),
}

# The anchor sizes of the "ssd" preset, one pair per feature map (fractions of the
# image side): SSD's scales s = 0.07 (SSD512's smallest), 0.15, 0.33, 0.51, 0.69,
# 0.87, and on each map s_k and sqrt(s_k * s_k+1), on the last map s_k and s_k+1.
# The seed's smallest anchor, 0.2, matches no object of a tenth of the image side.
_SSD_ANCHOR_SIZES: List[List[float]] = [[0.07, 0.1025], [0.15, 0.2225], [0.33, 0.41], [0.51, 0.5932], [0.69, 0.87]]

#: Named recipes: ``"seed"`` is the tutorial's training recipe exactly (detection
#: keeps each image's 400 best boxes before NMS, where the tutorial keeps all: see
#: ``MultiBoxDetectionPostProcessor``); ``"fast"`` reaches a higher mAP in fewer
#: epochs with the same components; ``"ssd"`` is the recipe for real data: a
#: ResNet-18 body from ImageNet weights (gluon-detkit-resnet), SSD's anchor scales,
#: hard-negative mining (``ssd_multibox``, gluon-detkit-losses), the seed's crop and
#: GluonCV's learning rate (see the training guide).
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "seed": {"model": {"post_processor": {"name": "multibox_detection", "clip": False}}},
    "fast": {
        "model": {"loss": {"name": "focal_smooth_l1", "normalization": "positives"}},
        "train": {
            "epochs": 10,
            "batch_size": 8,
            "optimizer_params": {"learning_rate": 0.01, "momentum": 0.9, "wd": 0.0005},
            "lr_schedule": "cosine",
            "warmup_epochs": 1.0,
            "warmup_steps": 150,
            "clip_gradient_norm": 10.0,
        },
    },
    "ssd": {
        "model": {
            "backbone": {"name": "resnet18_v1", "pretrained": True},
            "anchor_generator": {"name": "multibox_prior", "sizes": _SSD_ANCHOR_SIZES},
            "loss": "ssd_multibox",
        },
        # The seed's crop, not SSD's zoom-out and crops: on cards-voc from random weights SSD's
        # augmentation kept mAP@0.5 at noise level for 7 epochs (0.003-0.03; the crop: 0.09), as on
        # the shapes set (the training guide). Long schedules on real data: data.augment=ssd.
        "data": {"augment": "seed"},
        "train": {
            "epochs": 10,
            "batch_size": 8,
            # 0.001 (GluonCV's train_ssd.py): from random weights 0.002 and 0.005 stayed at noise level.
            "optimizer_params": {"learning_rate": 0.001, "momentum": 0.9, "wd": 0.0005},
            # GluonCV's train_ssd.py: the learning rate divided by 10 at 2/3 and 5/6 of training.
            "lr_schedule": "step",
            "warmup_epochs": 1.0,
            "warmup_steps": 150,
            # ResNet-18's mean gradient has a norm of 100-500 in the first epochs (the toy body's: 10-20):
            # a limit for spikes only. At 10, every step was shortened 10-50 times.
            "clip_gradient_norm": 1000.0,
            # On cards-voc the last step's weights scored up to 43 % below the run's best late in training,
            # their average over two epochs up to 22 %, over four at most 17 % (the training guide).
            "ema_epochs": 4.0,
        },
    },
}

# The plugins whose components a preset uses (distribution names), named when one is missing.
_PRESET_PLUGINS: Mapping[str, Sequence[str]] = {"ssd": ("gluon-detkit-resnet", "gluon-detkit-losses")}


def preset(name: str, overrides: Sequence[str] = ()) -> Config:
    """The named recipe ``name`` (see :data:`PRESETS`) as a validated :class:`Config`.

    Examples
    --------
    >>> from detkit.config import preset
    >>> preset("fast").train.epochs
    10
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; the presets are: {', '.join(PRESETS)}", "preset")
    return _from_mapping(json.loads(json.dumps(PRESETS[name])), overrides, base=name)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), *, base: str | None = None) -> Config:
    """Read and validate a YAML configuration, with ``KEY=VALUE`` overrides.

    Parameters
    ----------
    path : path, optional
        A YAML file with any of the sections ``model``, ``data``, ``train``, and
        optionally ``preset: NAME`` to start from a preset. Without a path, the
        preset ``base`` alone.
    overrides : sequence of str
        ``"train.epochs=5"``-style assignments; the value is read as YAML
        (``train.devices=[gpu(0)]``, ``model.loss={name: focal_smooth_l1}``).
    base : str, optional
        The preset the file's values apply to; default: the one the file names
        (``preset: NAME``), else ``"seed"``. Naming a different one than the
        file is an error.

    Raises
    ------
    ConfigError
        For an unreadable file or any invalid key or value; ``error.key`` is the key path.
    """
    if path is None:
        return preset(base or "seed", overrides)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"the configuration file {path} does not exist")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"the configuration file {path} cannot be read: {error.strerror or error}") from None
    except ValueError as error:  # nested too deeply
        raise ConfigError(f"{path} is not a detkit configuration: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with the sections model, data and train")
    named = raw.pop("preset", None)
    if named is not None and not isinstance(named, str):
        raise ConfigError(f"must name a preset ({', '.join(PRESETS)}); got {named!r}", "preset")
    if named is not None and base is not None and named != base:
        raise ConfigError(f"{path} starts from the preset {named!r}, but {base!r} was asked for", "preset")
    base = named or base or "seed"
    if base not in PRESETS:
        raise ConfigError(f"unknown preset {base!r}; the presets are: {', '.join(PRESETS)}", "preset")
    merged = _merge(json.loads(json.dumps(PRESETS[base])), raw)
    return _from_mapping(merged, overrides, base=base)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Section-wise merge: a file's key replaces the preset's value of that key."""
    for section, values in update.items():
        if isinstance(values, Mapping) and isinstance(base.get(section), dict):
            base[section].update(values)
        else:
            base[section] = values
    return base


def _from_mapping(raw: dict[str, Any], overrides: Sequence[str], base: str) -> Config:
    for assignment in overrides:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"an override must look like section.key=value; got {assignment!r}", "--set")
        try:
            value = load_yaml(text)
        except ValueError as error:
            raise ConfigError(f"the value {text!r} {error}", key.strip()) from None
        except yaml.YAMLError as error:
            raise ConfigError(f"the value {text!r} is not valid YAML: {error}", key.strip()) from error
        parts = key.strip().split(".")
        target = raw
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{part!r} is not a section", key.strip())
        target[parts[-1]] = value
    config = _build(Config, raw, "")
    try:
        _check_semantics(config)
    except ConfigError as error:
        plugins = _PRESET_PLUGINS.get(base, ())
        if not (plugins and isinstance(error.__context__, ComponentNotFoundError)):
            raise
        # A preset that names another plugin's component: say which distributions to install.
        raise ConfigError(
            f"{str(error).partition(': ')[2]} The preset {base!r} uses components of {' and '.join(plugins)}: "
            f"install them (pip install {' '.join(plugins)}) or choose other components.", error.key,
        ) from None
    return config


def validate_config(config: Config) -> Config:
    """Check a configuration as :func:`load_config` does (one built or changed in Python, too); return it."""
    if not isinstance(config, Config):
        raise ConfigError(f"a configuration must be a detkit.config.Config; got {type(config).__name__}")
    checked = _build(Config, config.to_dict(), "")
    _check_semantics(checked)
    return config


def field_types(cls: type) -> dict[str, Any]:
    """The evaluated type hints of a section's fields (resolved here: the classes report :mod:`detkit.config`)."""
    return typing.get_type_hints(cls, globalns=globals())


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"must be a mapping of keys to values; got {raw!r}", prefix or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key; the allowed keys here are: {', '.join(fields)}", key)
    hints = field_types(cls)
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key)
        else:
            values[name] = _check_value(value, hint, fields[name].metadata, key)
    return cls(**values)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin in (list, List):
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin in (dict, Dict):
        return "a mapping"
    return {type(None): "null", int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint))


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Union:
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin in (list, List):
        return isinstance(value, list) and all(_matches(v, typing.get_args(hint)[0]) for v in value)
    if origin in (dict, Dict):
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_value(value: Any, hint: Any, metadata: Mapping[str, Any], key: str) -> Any:
    if not _matches(value, hint):
        raise ConfigError(f"must be {_type_name(hint)}; got {value!r}", key)
    choices = metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"must be one of {', '.join(map(str, choices))}; got {value!r}", key)
    minimum, maximum = metadata.get("minimum"), metadata.get("maximum")
    numbers = value if isinstance(value, list) else [value]
    for number in numbers:
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(f"must be a finite number; got {value!r}", key)
        if minimum is not None and isinstance(number, (int, float)) and number < minimum:
            raise ConfigError(f"must be at least {minimum}; got {value!r}", key)
        if maximum is not None and isinstance(number, (int, float)) and number > maximum:
            raise ConfigError(f"must be at most {maximum}; got {value!r}", key)
    if hint is float:
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(f"must be a finite number; got {value!r}", key) from None
    return value


def _check_semantics(config: Config) -> None:
    """What types alone cannot say: component names and arguments, files, devices."""
    registry = get_registry()
    for kind in KINDS:
        spec = getattr(config.model, kind)
        key = f"model.{kind}"
        if isinstance(spec, dict) and not isinstance(spec.get("name"), str):
            raise ConfigError("a component mapping needs a 'name' key naming a registered component", key)
        try:
            # Built through the registry, which checks the name, the arguments and their values;
            # a component alone allocates no weights, and no detector network is made.
            registry.build(kind, *parse_component_spec(kind, spec))
        except (ComponentNotFoundError, InputError) as error:
            raise ConfigError(str(error), key) from None
    init = config.model.init
    if init is not None and not (Path(init) / "detector.yaml").is_file():
        raise ConfigError(f"{init} holds no saved detector (detector.yaml, written by SSDDetector.save or "
                          "detkit import gluoncv)", "model.init")
    data = config.data
    if data.source == "recordio":
        if data.train is None:
            raise ConfigError("the 'recordio' source needs the training file", "data.train")
        for name in ("train", "val"):
            path = getattr(data, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"the file {path} does not exist", f"data.{name}")
    if data.source == "voc":
        if not Path(data.root).is_dir():
            raise ConfigError(f"the folder {data.root} does not exist; set data.root to your Pascal VOC folder "
                              "(the one with JPEGImages/ and Annotations/)", "data.root")
        for name in ("train_split", "val_split"):
            try:
                check_split(name, getattr(data, name), optional=name == "val_split")
            except InputError as error:
                raise ConfigError(str(error).replace(f"The '{name}' argument", "The value"), f"data.{name}") from None
    if data.source == "shapes" and (len(data.objects) != 2 or data.objects[0] > data.objects[1]):
        raise ConfigError(f"must be [min, max] with min <= max; got {data.objects!r}", "data.objects")
    if isinstance(config.model.data_shape, list) and len(config.model.data_shape) != 2:
        raise ConfigError(f"must be S or [H, W]; got {config.model.data_shape!r}", "model.data_shape")
    train = config.train
    try:
        check_optimizer(train.optimizer, {**SEED_OPTIMIZER_PARAMS, **train.optimizer_params})
    except InputError as error:
        key = "train.optimizer" if "'optimizer' argument" in str(error) else "train.optimizer_params"
        raise ConfigError(str(error), key) from None
    if train.warmup_epochs and train.lr_schedule == "constant":
        raise ConfigError("a warm-up needs the 'cosine' or 'step' lr_schedule", "train.warmup_epochs")
    if train.warmup_steps and train.lr_schedule == "constant":
        raise ConfigError("a warm-up needs the 'cosine' or 'step' lr_schedule", "train.warmup_steps")
    if train.clip_gradient_norm is not None and train.clip_gradient_norm <= 0:
        raise ConfigError(f"must be above 0 (or null: no clipping); got {train.clip_gradient_norm!r}",
                          "train.clip_gradient_norm")
    if train.warmup_epochs >= train.epochs:
        raise ConfigError(f"the warm-up ({train.warmup_epochs:g} epoch{'s' if train.warmup_epochs != 1 else ''}) "
                          "must be shorter than the training "
                          f"(train.epochs: {train.epochs}); lower it or train longer", "train.warmup_epochs")
    parse_devices(train.devices)
    try:  # the options as the metric checks them
        config.eval.metric_options()
    except InputError as error:
        text = str(error)
        named = [name for name in dataclasses.asdict(config.eval) if f"'{name}' argument" in text]
        start = text.find("must be")
        raise ConfigError(text[start:] if start >= 0 else text, f"eval.{named[0]}" if named else "eval") from None


def parse_devices(devices: str | list[str]) -> Any:
    """``train.devices`` as :func:`~detkit.fit` takes it: ``"auto"`` or a list of ``mxnet.Context``."""
    if devices == "auto":
        return "auto"
    names = devices if isinstance(devices, list) else [devices]
    contexts = []
    for name in names:
        text = str(name).replace(" ", "")
        kind, _, rest = text.partition("(")
        number = rest.rstrip(")") or "0"
        if kind not in ("cpu", "gpu") or not number.isdigit():
            raise ConfigError(f"a device must be 'auto', 'cpu', 'cpu(0)', 'gpu(N)' or a list of them; got {name!r}",
                              "train.devices")
        if kind == "gpu" and int(number) >= mx.context.num_gpus():
            raise ConfigError(
                f"{name!r} is not available: MXNet sees {mx.context.num_gpus()} GPU(s) "
                "(the CPU build of MXNet sees none; install gluon-detkit[cu112] for GPUs)", "train.devices")
        contexts.append(mx.cpu(int(number)) if kind == "cpu" else mx.gpu(int(number)))
    return contexts
