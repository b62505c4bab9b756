"""Configuration: what a YAML file (or a preset) says about the model, the data and the training.

A configuration has four sections (``model``, ``data``, ``train`` and ``eval``),
each a dataclass whose fields are the allowed keys; every key has a default, so a
file names only what it changes::

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
allowed; components are checked through the registry (the name exists, the
arguments fit its constructor) without building any network. :func:`preset`
gives the named recipes; :func:`run_config` trains, evaluates and writes the
results of a configuration.
"""

from __future__ import annotations

from ._base import publish as _publish
from ._config import PRESETS, Config, DataConfig, EvalConfig, ModelConfig, TrainConfig, load_config, preset
from ._run import build_detector, run_config

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "PRESETS",
    "TrainConfig",
    "build_detector",
    "load_config",
    "preset",
    "run_config",
]
_publish(globals(), __all__)
