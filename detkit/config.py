"""Configuration: what a YAML file (or a preset) says about the model, the data and the training.

A configuration has three sections, each a dataclass whose fields are the
allowed keys; every key has a default, so a file names only what it changes::

    model:
      backbone: toy                 # a registered name, or {name: ..., kwargs...}
      loss: {name: focal_smooth_l1, normalization: positives}
    data:
      source: synthetic
      root: data/pikachu
    train:
      epochs: 10
      optimizer_params: {learning_rate: 0.01, momentum: 0.9, wd: 0.0005}

:func:`load_config` reads a file, applies ``KEY=VALUE`` overrides
(``train.epochs=5``) and validates everything — unknown keys, wrong types,
unknown component names or arguments, missing files — before anything runs,
raising :class:`~detkit.errors.ConfigError` with the key path and what is
allowed. :func:`preset` gives the named recipes; :func:`run_config` trains,
evaluates and writes the results of a configuration.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import yaml

from .errors import ComponentNotFoundError, ConfigError, InputError

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "PRESETS",
    "TrainConfig",
    "build_detector",
    "load_config",
    "preset",
    "run_config",
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
    data_shape: Union[int, List[int]] = _field(256, "Input size: S for S x S, or [H, W].", minimum=1)
    scale_filters: int = _field(128, "Filters of the halving blocks added after the backbone.", minimum=1)
    backbone: Component = _field("toy", "Backbone: a registered name, or a mapping {name: ..., other arguments}.")
    anchor_generator: Component = _field("multibox_prior", "Anchor generator (name or mapping).")
    target_assigner: Component = _field("multibox_target", "Target assigner (name or mapping).")
    loss: Component = _field("focal_smooth_l1", "Loss (name or mapping).")
    post_processor: Component = _field("multibox_detection", "Post-processor (name or mapping).")


@dataclasses.dataclass
class DataConfig:
    """The ``data`` section: where the images come from."""

    source: str = _field("synthetic", "Where the data comes from: 'synthetic' (generated offline into root), "
                         "'pikachu' (the seed's download into root) or 'recordio' (your own files: train, val).",
                         choices=("synthetic", "pikachu", "recordio"))
    root: str = _field("data/pikachu", "Directory of the synthetic or downloaded dataset.")
    num_train: int = _field(1000, "Synthetic: training images.", minimum=1)
    num_val: int = _field(100, "Synthetic: validation images.", minimum=1)
    image_size: int = _field(256, "Synthetic: image side in pixels.", minimum=32)
    seed: int = _field(0, "Synthetic: generator seed (same seed, same files).", minimum=0)
    train: Optional[str] = _field(None, "RecordIO: the training .rec file.")
    val: Optional[str] = _field(None, "RecordIO: the validation .rec file (optional).")
    classes: Optional[List[str]] = _field(None, "RecordIO: class names; default: the class list beside the .rec.")


@dataclasses.dataclass
class TrainConfig:
    """The ``train`` section: the arguments of :func:`~detkit.fit` and where results go."""

    epochs: int = _field(30, "Epochs to train (the seed: 30).", minimum=1)
    batch_size: int = _field(32, "Images per step (the seed: 32).", minimum=1)
    optimizer: str = _field("sgd", "An MXNet optimizer name: sgd, nag, adam, ...")
    optimizer_params: Dict[str, Any] = _field({"learning_rate": 0.1, "wd": 0.0005},
                                              "The optimizer's settings (the seed: learning_rate 0.1, wd 5e-4).")
    lr_schedule: str = _field("constant", "Learning-rate schedule.", choices=("constant", "cosine", "step"))
    warmup_epochs: float = _field(0.0, "Linear learning-rate warm-up, in epochs (cosine or step only).", minimum=0)
    devices: Union[str, List[str]] = _field("auto", "'auto' (every GPU, else the CPU) or a list such as [gpu(0), gpu(1)].")
    seed: Optional[int] = _field(0, "Random seed of the run: initial weights, data order, crops (null: a random one).",
                                 minimum=0)
    output_dir: str = _field("runs/pikachu", "Where the checkpoints, the trained model, metrics and pictures go.")
    resume: bool = _field(False, "Continue from the last checkpoint in output_dir.")
    quiet: bool = _field(False, "No progress bar and no per-epoch lines.")
    num_pictures: int = _field(4, "Validation images drawn with their detections after training.", minimum=0)
    threshold: float = _field(0.5, "Score threshold of the detections drawn.", minimum=0, maximum=1)


@dataclasses.dataclass
class Config:
    """A whole configuration: ``model``, ``data`` and ``train`` sections."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (what a YAML file holds)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The configuration as YAML text that :func:`load_config` reads back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


#: Named recipes: ``"seed"`` is the tutorial's training recipe exactly (detection
#: keeps each image's 400 best boxes before NMS, where the tutorial keeps all: see
#: ``MultiBoxDetectionPostProcessor``); ``"fast"`` reaches a higher mAP in fewer
#: epochs with the same components (see the training guide).
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "seed": {},
    "fast": {
        "model": {"loss": {"name": "focal_smooth_l1", "normalization": "positives"}},
        "train": {
            "epochs": 10,
            "optimizer_params": {"learning_rate": 0.01, "momentum": 0.9, "wd": 0.0005},
            "lr_schedule": "cosine",
            "warmup_epochs": 1.0,
        },
    },
}


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
    return _from_mapping(json.loads(json.dumps(PRESETS[name])), overrides, source=f"preset {name!r}")


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
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with the sections model, data and train")
    named = raw.pop("preset", None)
    if named is not None and base is not None and named != base:
        raise ConfigError(f"{path} starts from the preset {named!r}, but {base!r} was asked for", "preset")
    base = named or base or "seed"
    if base not in PRESETS:
        raise ConfigError(f"unknown preset {base!r}; the presets are: {', '.join(PRESETS)}", "preset")
    merged = _merge(json.loads(json.dumps(PRESETS[base])), raw)
    return _from_mapping(merged, overrides, source=str(path))


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Section-wise merge: a file's key replaces the preset's value of that key."""
    for section, values in update.items():
        if isinstance(values, Mapping) and isinstance(base.get(section), dict):
            base[section].update(values)
        else:
            base[section] = values
    return base


def _from_mapping(raw: dict[str, Any], overrides: Sequence[str], source: str) -> Config:
    for assignment in overrides:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"an override must look like section.key=value; got {assignment!r}", "--set")
        try:
            value = yaml.safe_load(text)
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
    _check_semantics(config)
    return config


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"must be a mapping of keys to values; got {raw!r}", prefix or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key; the allowed keys here are: {', '.join(fields)}", key)
    hints = typing.get_type_hints(cls)
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
        if minimum is not None and isinstance(number, (int, float)) and number < minimum:
            raise ConfigError(f"must be at least {minimum}; got {value!r}", key)
        if maximum is not None and isinstance(number, (int, float)) and number > maximum:
            raise ConfigError(f"must be at most {maximum}; got {value!r}", key)
    return float(value) if hint is float else value


def _check_semantics(config: Config) -> None:
    """What types alone cannot say: component names and arguments, files, devices."""
    from ._detector import _build as build_component_spec

    for kind in ("backbone", "anchor_generator", "target_assigner", "loss", "post_processor"):
        spec = getattr(config.model, kind)
        key = f"model.{kind}"
        if isinstance(spec, dict) and not isinstance(spec.get("name"), str):
            raise ConfigError("a component mapping needs a 'name' key naming a registered component", key)
        try:
            build_component_spec(kind, spec)
        except ComponentNotFoundError as error:
            raise ConfigError(str(error), key) from None
        except (InputError, TypeError, ValueError) as error:
            raise ConfigError(str(error), key) from None
    data = config.data
    if data.source == "recordio":
        if data.train is None:
            raise ConfigError("the 'recordio' source needs the training file", "data.train")
        for name in ("train", "val"):
            path = getattr(data, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"the file {path} does not exist", f"data.{name}")
    if isinstance(config.model.data_shape, list) and len(config.model.data_shape) != 2:
        raise ConfigError(f"must be S or [H, W]; got {config.model.data_shape!r}", "model.data_shape")
    train = config.train
    from ._training import _check_optimizer

    try:
        _check_optimizer(train.optimizer, {"learning_rate": 0.1, "wd": 5e-4, **train.optimizer_params})
    except InputError as error:
        key = "train.optimizer" if "'optimizer' argument" in str(error) else "train.optimizer_params"
        raise ConfigError(str(error), key) from None
    if train.warmup_epochs and train.lr_schedule == "constant":
        raise ConfigError("a warm-up needs the 'cosine' or 'step' lr_schedule", "train.warmup_epochs")
    _devices(train.devices)


def _devices(devices: str | list[str]) -> Any:
    import mxnet as mx

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
                "(the CPU build of MXNet sees none; install detkit[cu112] for GPUs)", "train.devices")
        contexts.append(mx.cpu(int(number)) if kind == "cpu" else mx.gpu(int(number)))
    return contexts


def _datasets(config: Config) -> tuple[Any, Any]:
    from . import data as data_module
    from .data._classes import find_classes, read_classes

    data = config.data
    if data.source == "synthetic":
        return data_module.synthetic_pikachu(data.root, num_train=data.num_train, num_val=data.num_val,
                                             image_size=data.image_size, seed=data.seed,
                                             progress=not config.train.quiet)
    if data.source == "pikachu":
        return data_module.pikachu(data.root, progress=not config.train.quiet)
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
    """
    from ._detector import SSDDetector

    model = config.model
    classes = list(classes) if classes is not None else model.classes
    if not classes:
        raise ConfigError("name the object classes (or let the dataset name them)", "model.classes")
    return SSDDetector(
        classes, backbone=model.backbone, anchor_generator=model.anchor_generator,
        target_assigner=model.target_assigner, loss=model.loss, post_processor=model.post_processor,
        scale_filters=model.scale_filters, data_shape=model.data_shape, ctx=ctx,
    )


def run_config(config: Config) -> tuple[Any, Any]:
    """Train, evaluate and report as ``config`` says; return ``(detector, history)``.

    Writes into ``train.output_dir``: ``checkpoints/`` (last and best),
    ``model/`` (the detector after the last epoch, :meth:`SSDDetector.load` reads
    it; ``checkpoints/best.json`` names the epoch of the best validation mAP),
    ``config.yaml`` (the resolved configuration), ``history.json`` and
    ``history.png`` (per-epoch figures), ``metrics.json`` (the final validation
    metrics) and ``detections/`` (validation images with their detections).
    """
    from ._evaluate import evaluate
    from ._io import atomic_write_text
    from ._predict import draw_detections
    from ._training import fit

    output = Path(config.train.output_dir)
    train_data, val_data = _datasets(config)
    model = config.model
    classes = model.classes or list(train_data.classes)
    if list(train_data.classes) != classes:
        raise ConfigError(f"the data's classes {train_data.classes} differ from model.classes {classes}",
                          "model.classes")
    if config.train.seed is not None:
        import mxnet as mx

        mx.random.seed(config.train.seed)  # the initial weights too, so that a run repeats exactly
    detector = build_detector(config, classes)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "config.yaml", config.to_yaml())
    train = config.train
    history = fit(
        detector, train_data, val_data, epochs=train.epochs, batch_size=train.batch_size,
        optimizer=train.optimizer, optimizer_params=train.optimizer_params, lr_schedule=train.lr_schedule,
        warmup_epochs=train.warmup_epochs, devices=_devices(train.devices), seed=train.seed,
        checkpoint_dir=output / "checkpoints", resume=train.resume, quiet=train.quiet,
    )
    detector.save(output / "model")
    atomic_write_text(output / "history.json", history.to_json())
    if len(history):
        history.plot(output / "history.png")
    if val_data is not None:
        metrics = evaluate(detector, val_data, batch_size=train.batch_size)
        atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=1))
        pictures = output / "detections"
        for index in range(min(train.num_pictures, len(val_data))):
            image = val_data.image(index)
            draw_detections(image, detector.predict(image, threshold=train.threshold),
                            pictures / f"val-{index:03d}.png", title=f"validation image {index}")
    return detector, history
