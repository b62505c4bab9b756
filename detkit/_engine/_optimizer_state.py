"""The optimizer state of a :class:`mxnet.gluon.Trainer`, saved and loaded without pickle.

MXNet's ``Trainer.save_states``/``load_states`` pickle the updater states and
the optimizer, so loading a checkpoint could run any code planted in it. detkit
writes the same information in two files that cannot:

``optimizer.params``
    Every state array, in MXNet's binary NDArray format (``mx.nd.save`` of a
    dict), named ``"<device>:<index>"`` or ``"<device>:<index>:<path>"`` for
    the arrays of a tuple state (the momentum of SGD is one array; Adam keeps a
    tuple of two; ``None`` where an optimizer keeps nothing).
``optimizer.json``
    The structure of each state (``null``, ``"array"`` or a list of those,
    nested), the update counters (``num_update`` and the per-device,
    per-index counts that learning-rate schedules and bias corrections use)
    and the optimizer's other scalar attributes.

Loading puts back exactly what was saved, so a resumed run continues
bit-identically. It needs the optimizer state in the trainer's updaters, not
in a kvstore: :func:`fit` builds its trainer with ``update_on_kvstore=False``.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

import mxnet as mx
from mxnet import gluon

from .._base import load_json_file, storage_errors
from .._model import file_sha256
from ..errors import CheckpointError

__all__ = ["OPTIMIZER_ARRAYS", "OPTIMIZER_FILE", "OPTIMIZER_FORMAT", "initialize_trainer", "load_optimizer_state",
           "save_optimizer_state", "trainer_internals"]

OPTIMIZER_FORMAT = "detkit-optimizer/1"
OPTIMIZER_FILE = "optimizer.json"
OPTIMIZER_ARRAYS = "optimizer.params"
#: Attributes handled on their own (counters) or never restored (bound to this process).
_SKIPPED = {"num_update", "begin_num_update", "_all_index_update_counts", "_index_update_count", "param_dict",
            "lr_scheduler", "idx2name", "sym_info", "lr_mult", "wd_mult"}


def initialize_trainer(trainer: gluon.Trainer) -> None:
    """Set up the kvstore of ``trainer`` now, before the first forward pass (MXNet 1.9.1 internals).

    MXNet does it lazily in the first ``step``, after that batch's forward pass,
    and then copies every parameter of the first device to the others,
    batch-norm running statistics included: the other devices' statistics of
    the first batch would be lost, and a resumed run (which starts with such a
    first batch) would drift from an uninterrupted one.
    """
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
        # The kvstore's copies to every device run in MXNet's engine; a hybridized (static_alloc) step does
        # not wait for them (measured with a dist kvstore on two devices: the copy of the first device's
        # BatchNorm statistics landed on the second after the first batch had updated them, 4-6 % off at
        # the end). Wait here, once.
        mx.nd.waitall()


def trainer_internals(trainer: gluon.Trainer) -> tuple[mx.optimizer.Optimizer, list[Any], list[mx.Context]]:
    """The optimizer, the per-device updaters and their devices of ``trainer`` (MXNet 1.9.1 internals).

    With :func:`initialize_trainer`, the one place that reads private attributes of a Trainer. In MXNet 1.9.1 a
    Trainer keeps one ``mxnet.optimizer.Updater`` per device in ``_updaters``
    (all sharing ``_optimizer``), in the order of ``_contexts``; each updater
    holds ``states`` (parameter index -> state) and ``states_synced``. When
    the trainer updates on a kvstore (``update_on_kvstore``) the state lives
    in the kvstore instead, which this module cannot save: that is refused.
    """
    initialize_trainer(trainer)
    if trainer._update_on_kvstore:
        raise CheckpointError(
            "The optimizer state lives in the kvstore (update_on_kvstore), which detkit cannot checkpoint; "
            "train without checkpoints or with a synchronous kvstore."
        )
    optimizer = trainer._optimizer
    updaters = list(trainer._updaters)
    contexts = list(trainer._contexts)
    if not isinstance(optimizer, mx.optimizer.Optimizer) or len(updaters) != len(contexts):
        raise CheckpointError("This MXNet Trainer keeps its optimizer state in a way detkit does not know.")
    return optimizer, updaters, contexts


def _flatten(state: Any, name: str, arrays: dict[str, mx.nd.NDArray]) -> Any:
    """The JSON structure of ``state``; its arrays go into ``arrays`` under names derived from ``name``."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        arrays[name] = state.copyto(mx.cpu())
        return "array"
    if isinstance(state, (tuple, list)):
        return [_flatten(part, f"{name}:{i}", arrays) for i, part in enumerate(state)]
    raise CheckpointError(f"An optimizer state of type {type(state).__name__} cannot be checkpointed.")


def _rebuild(structure: Any, name: str, arrays: dict[str, mx.nd.NDArray], ctx: mx.Context, source: Path) -> Any:
    if structure is None:
        return None
    if structure == "array":
        if name not in arrays:
            raise CheckpointError(f"{source} lacks the optimizer state array {name!r}; the checkpoint is damaged.")
        return arrays[name].as_in_context(ctx)
    if isinstance(structure, list):
        return tuple(_rebuild(part, f"{name}:{i}", arrays, ctx, source) for i, part in enumerate(structure))
    raise CheckpointError(f"{source} describes an optimizer state as {structure!r}; the checkpoint is damaged.")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, str)) or (
        isinstance(value, numbers.Real) and not isinstance(value, bool))


def save_optimizer_state(trainer: gluon.Trainer, folder: Path) -> None:
    """Write the optimizer state of ``trainer`` to ``folder`` (``optimizer.json`` and ``optimizer.params``)."""
    optimizer, updaters, _ = trainer_internals(trainer)
    arrays: dict[str, mx.nd.NDArray] = {}
    states = []
    for device, updater in enumerate(updaters):
        states.append({str(index): _flatten(state, f"{device}:{index}", arrays)
                       for index, state in sorted(updater.states.items())})
    counts = optimizer._all_index_update_counts
    current = next((device for device, c in counts.items() if c is optimizer._index_update_count), None)
    scalars = {key: (float(value) if isinstance(value, numbers.Real) and not isinstance(value, (bool, int))
                     else value)
               for key, value in vars(optimizer).items() if key not in _SKIPPED and _scalar(value)}
    description: dict[str, Any] = {
        "format": OPTIMIZER_FORMAT,
        "optimizer": type(optimizer).__name__.lower(),
        "num_update": int(optimizer.num_update),
        "begin_num_update": int(optimizer.begin_num_update),
        "index_update_counts": {str(device): {str(i): int(n) for i, n in c.items()} for device, c in counts.items()},
        "current_device": current,
        "states": states,
        "scalars": scalars,
    }
    # mx.nd.save refuses an empty dict; an optimizer without state (plain SGD before any step) saves none.
    if arrays:
        with storage_errors(folder / OPTIMIZER_ARRAYS):
            mx.nd.save(str(folder / OPTIMIZER_ARRAYS), arrays)
        description["sha256"] = file_sha256(folder / OPTIMIZER_ARRAYS)
    with storage_errors(folder / OPTIMIZER_FILE):
        (folder / OPTIMIZER_FILE).write_text(json.dumps(description, indent=1), encoding="utf-8")


def load_optimizer_state(trainer: gluon.Trainer, folder: Path, max_updates: int | None = None) -> None:
    """Put the optimizer state saved in ``folder`` back into ``trainer``, exactly.

    Every field is checked against a schema with ranges first: the settings
    (learning rate, weight decay, momentum, ...) must be within the ranges
    :func:`fit` accepts *and* equal to the trainer's own, which :func:`fit`
    built from checked arguments equal to the checkpoint's recorded settings,
    and are never taken from the file; the update counters must agree with each
    other and stay below ``max_updates`` (the images seen in the epochs trained);
    the checksum of the state arrays is mandatory.

    Raises :class:`CheckpointError` when the files are missing, malformed, or do
    not fit the trainer (another optimizer, another number of devices).
    """
    source = folder / OPTIMIZER_FILE
    if not source.exists():
        raise CheckpointError(f"{source} is missing: the checkpoint is incomplete; start afresh.")
    if not source.is_file():  # a pipe would block the read
        raise CheckpointError(f"{source} is not a regular file; the checkpoint is damaged.")
    description = load_json_file(
        source, what="optimizer state", max_bytes=64 << 20,
        error=lambda why: CheckpointError(f"{source} cannot be read: {why}; the checkpoint is damaged "
                                          "(resume from another one, or start afresh)."))
    optimizer, updaters, contexts = trainer_internals(trainer)
    try:
        _check_description(description, optimizer, max_updates)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise CheckpointError(f"{source} is not a valid optimizer state: {error}; the checkpoint is damaged "
                              "(resume from another one, or start afresh).") from None
    arrays: dict[str, mx.nd.NDArray] = {}
    params = folder / OPTIMIZER_ARRAYS
    if any(structure is not None for states in description["states"] for structure in states.values()):
        if not params.is_file():
            raise CheckpointError(f"{params} is missing: the checkpoint is incomplete; start afresh.")
        if "sha256" not in description:
            raise CheckpointError(f"{source} records no SHA-256 of {params.name}; the checkpoint is damaged "
                                  "(resume from another one, or start afresh).")
        if file_sha256(params) != description["sha256"]:
            raise CheckpointError(
                f"{params} is damaged: its SHA-256 differs from the one {OPTIMIZER_FILE} recorded; "
                "resume from another checkpoint, or start afresh."
            )
        try:
            loaded = mx.nd.load(str(params))
        except mx.base.MXNetError as error:
            raise CheckpointError(f"{params} cannot be read; the checkpoint is damaged.") from error
        if not isinstance(loaded, dict):
            raise CheckpointError(f"{params} holds no named arrays; the checkpoint is damaged.")
        arrays = loaded
    saved = description["states"]
    for device, (updater, ctx) in enumerate(zip(updaters, contexts)):
        # Resumed on another number of devices, every device starts from the first one's state
        # (data-parallel devices apply the same summed gradients, so their states are equal).
        source_device = device if len(saved) == len(updaters) else 0
        updater.states = {
            int(index): _rebuild(structure, f"{source_device}:{index}", arrays, ctx, params)
            for index, structure in saved[source_device].items()
        }
        updater.states_synced = dict.fromkeys(updater.states, True)
    optimizer.num_update = description["num_update"]
    optimizer.begin_num_update = description["begin_num_update"]
    optimizer._all_index_update_counts = {
        int(device): {int(i): n for i, n in counts.items()}
        for device, counts in description["index_update_counts"].items()
    } or {0: {}}
    current = description["current_device"]
    optimizer._index_update_count = optimizer._all_index_update_counts.setdefault(
        int(current) if current is not None else 0, {})
    for key, value in description["scalars"].items():
        if key not in _SETTINGS:  # the settings stay those of the trainer: checked, and equal (above)
            setattr(optimizer, key, value)


#: Optimizer attributes that are settings of fit, by the name fit takes them under, with their ranges.
_SETTINGS = {"lr": "learning_rate", "wd": "wd", "momentum": "momentum", "clip_gradient": "clip_gradient",
             "epsilon": "epsilon", "beta1": "beta1", "beta2": "beta2", "gamma1": "gamma1", "gamma2": "gamma2",
             "rho": "rho", "lamda1": "lamda1"}
_BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "learning_rate": (0.0, None, True), "wd": (0.0, None, False), "momentum": (0.0, 1.0, False),
    "rescale_grad": (0.0, None, True), "clip_gradient": (0.0, None, True), "epsilon": (0.0, None, True),
    "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False), "gamma1": (0.0, 1.0, False),
    "gamma2": (0.0, 1.0, False), "rho": (0.0, 1.0, False), "lamda1": (0.0, None, False),
}
_MAX_COUNT = 1 << 53


def _count(value: Any, name: str, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"{name!r} must be a count from 0 to {maximum}; got {value!r}")
    return value


def _check_scalars(scalars: Any, optimizer: mx.optimizer.Optimizer) -> None:
    if not isinstance(scalars, dict) or not all(isinstance(k, str) and _scalar(v) for k, v in scalars.items()):
        raise TypeError("'scalars' must map names to numbers, strings or null")
    current = vars(optimizer)
    unknown = sorted(set(scalars) - set(current))
    if unknown or any(key in _SKIPPED for key in scalars):
        raise ValueError(f"it names attributes the optimizer does not have: {', '.join(unknown)}")
    for key, value in scalars.items():
        mine = current[key]
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
            raise ValueError(f"'scalars.{key}' must be a finite number; got {value!r}")
        name = _SETTINGS.get(key, key)
        if name in _BOUNDS and value is not None:
            low, high, strict = _BOUNDS[name]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"'scalars.{key}' ({name}) must be a number; got {value!r}")
            if (value < low or (strict and value == low) or (high is not None and value > high)
                    or (name in ("beta1", "beta2") and value >= 1)):
                raise ValueError(f"'scalars.{key}' ({name}) is out of the range fit accepts; got {value!r}")
        number = (numbers.Real, type(None)) if key == "clip_gradient" else numbers.Real
        if isinstance(mine, bool) or isinstance(value, bool):
            if type(mine) is not type(value):
                raise TypeError(f"'scalars.{key}' must be {type(mine).__name__}; got {value!r}")
        elif isinstance(mine, numbers.Real) or key == "clip_gradient":
            if not isinstance(value, number):
                raise TypeError(f"'scalars.{key}' must be a number; got {value!r}")
        elif mine is not None and type(mine) is not type(value):
            raise TypeError(f"'scalars.{key}' must be {type(mine).__name__}; got {value!r}")
        if key in _SETTINGS and value != mine and not (
                isinstance(value, float) and isinstance(mine, numbers.Real) and math.isclose(value, mine, rel_tol=1e-9)):
            raise ValueError(
                f"'scalars.{key}' is {value!r}, but the checkpoint's settings give {name}={mine!r}: a resume uses "
                "the settings it checked, never another value"
            )


def _check_description(description: Any, optimizer: mx.optimizer.Optimizer, max_updates: int | None = None) -> None:
    """Raise KeyError/TypeError/ValueError unless ``description`` is a well-formed optimizer state for ``optimizer``."""
    if not isinstance(description, dict) or description.get("format") != OPTIMIZER_FORMAT:
        raise ValueError(f"its format is not {OPTIMIZER_FORMAT!r}")
    name = type(optimizer).__name__.lower()
    if description["optimizer"] != name:
        raise ValueError(f"it holds the state of optimizer {description['optimizer']!r}, not {name!r}")
    limit = _MAX_COUNT if max_updates is None else max(0, int(max_updates))
    num_update = _count(description["num_update"], "num_update", limit)
    begin = _count(description["begin_num_update"], "begin_num_update", num_update)
    counts = description["index_update_counts"]
    if not isinstance(counts, dict) or not all(isinstance(c, dict) for c in counts.values()) or len(counts) > 4096:
        raise TypeError("'index_update_counts' must map devices to counts")
    highest = begin
    for key in counts:
        _count(int(key), "index_update_counts device", 4096)
        for index, count in counts[key].items():
            _count(int(index), "index_update_counts index", _MAX_COUNT)
            highest = max(highest, _count(count, f"index_update_counts[{key}][{index}]", num_update))
    if counts and any(counts.values()) and highest != num_update:
        raise ValueError(f"'num_update' ({num_update}) differs from the highest update count ({highest})")
    current = description["current_device"]
    if current is not None and (not isinstance(current, int) or isinstance(current, bool) or not 0 <= current < 4096):
        raise TypeError(f"'current_device' must be a device number; got {current!r}")
    states = description["states"]
    if not isinstance(states, list) or not all(isinstance(s, dict) for s in states):
        raise TypeError("'states' must be a list of mappings")
    if not states:
        raise ValueError("it holds no device's state")
    for per_device in states:
        for index in per_device:
            int(index)
    checksum = description.get("sha256", "0" * 64)
    if not isinstance(checksum, str) or len(checksum) != 64 or set(checksum) - set("0123456789abcdef"):
        raise TypeError(f"'sha256' must be 64 hex digits; got {checksum!r}")
    _check_scalars(description["scalars"], optimizer)
