"""Shared fixtures: everything runs on the CPU with small inputs."""

from __future__ import annotations

import detkit  # noqa: F401  (before mxnet, so that MXNet computes on every core)
import mxnet as mx
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Fixed random state for every test, so that failures reproduce."""
    mx.random.seed(7)
    np.random.seed(7)


@pytest.fixture
def cpu() -> mx.Context:
    return mx.cpu()


@pytest.fixture
def builtins_only(monkeypatch):
    """Only detkit's own components, whatever plugins are installed."""
    from detkit import _plugins

    monkeypatch.setenv("DETKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    _plugins.reset_plugins()
    yield
    _plugins.reset_plugins()


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """An empty site directory on ``sys.path``, no plugin environment variable, and an unloaded plugin host.

    Tests install fixture plugins into it; the host is reset again afterwards.
    """
    from detkit import _plugins

    for variable in (_plugins.ENV_DISABLE_AUTOLOAD, _plugins.ENV_ONLY, _plugins.ENV_STRICT):
        monkeypatch.delenv(variable, raising=False)
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    _plugins.reset_plugins()
    yield directory
    _plugins.reset_plugins()
