"""Plugins cannot end the host: SystemExit (any BaseException but KeyboardInterrupt) from a plugin's import
or hook is a plugin failure with a warning, and a component constructor that fails names plugin and component."""

from __future__ import annotations

import importlib
import sys
import textwrap
import warnings

import mxnet as mx
import pytest

import detkit
from detkit import _plugins
from detkit._plugins import ENV_STRICT
from detkit.cli import main
from detkit.errors import PluginError, PluginWarning

EXIT_AT_IMPORT = "import sys\nsys.exit(3)\n"
EXIT_IN_HOOK = """
import sys
import detkit

@detkit.hookimpl
def register_backbones(register):
    sys.exit(4)
"""
BASE_EXCEPTION_IN_HOOK = """
import detkit

class Odd(BaseException):
    pass

@detkit.hookimpl
def register_losses(register):
    raise Odd("odd")
"""
INTERRUPT_AT_IMPORT = "raise KeyboardInterrupt\n"
FAILING_CONSTRUCTORS = """
import sys
import detkit
from detkit.components import ToyBackbone

class DividingBackbone(ToyBackbone):
    def __init__(self, filters=(16, 32, 64)):
        1 / 0

class ExitingBackbone(ToyBackbone):
    def __init__(self, filters=(16, 32, 64)):
        sys.exit(5)

@detkit.hookimpl
def register_backbones(register):
    register("dividing", DividingBackbone)
    register("exiting", ExitingBackbone)
"""


@pytest.fixture
def site(plugin_site):
    yield plugin_site
    for name in list(sys.modules):
        if name.startswith("detkit_hostile_"):
            del sys.modules[name]


def _install(site, name: str, source: str) -> None:
    module = f"detkit_hostile_{name}"
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist_info = site / f"detkit_hostile_{name}-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: detkit-hostile-{name}\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[detkit]\n{name} = {module}\n")
    importlib.invalidate_caches()


@pytest.mark.parametrize("name, source, reason", [
    ("exit_at_import", EXIT_AT_IMPORT, "importing 'detkit_hostile_exit_at_import' failed: SystemExit: 3"),
    ("exit_in_hook", EXIT_IN_HOOK, r"its hook register_backbones\(\) raised SystemExit: 4"),
    ("odd_in_hook", BASE_EXCEPTION_IN_HOOK, r"its hook register_losses\(\) raised Odd: odd"),
])
def test_a_plugin_that_exits_or_raises_a_base_exception_is_skipped_with_a_warning(site, name, source, reason):
    _install(site, name, source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = {plugin.name: plugin for plugin in detkit.list_plugins()}
    assert plugins[name].status == "failed"
    assert any(issubclass(w.category, PluginWarning) and name in str(w.message) for w in caught)
    import re

    assert re.search(reason, plugins[name].reason), plugins[name].reason
    assert "toy" in detkit.component_names("backbone")  # the rest works


def test_detkit_plugins_lists_an_exiting_plugin_instead_of_exiting_with_its_status(site, capsys):
    _install(site, "exit_at_import", EXIT_AT_IMPORT)
    _install(site, "exit_in_hook", EXIT_IN_HOOK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "exit_at_import" in out and "exit_in_hook" in out and "failed" in out


def test_strict_mode_turns_an_exiting_plugin_into_a_plugin_error(site, monkeypatch):
    _install(site, "exit_in_hook", EXIT_IN_HOOK)
    monkeypatch.setenv(ENV_STRICT, "1")
    with pytest.raises(PluginError, match="SystemExit"):
        detkit.component_names("backbone")


def test_a_keyboard_interrupt_in_a_plugin_still_interrupts(site):
    _install(site, "interrupt", INTERRUPT_AT_IMPORT)
    with pytest.raises(KeyboardInterrupt):
        detkit.list_plugins()


@pytest.mark.parametrize("component, error", [("dividing", "ZeroDivisionError"), ("exiting", "SystemExit: 5")])
def test_a_failing_component_constructor_names_plugin_and_component(site, component, error):
    _install(site, "constructors", FAILING_CONSTRUCTORS)
    with pytest.raises(PluginError, match=f"backbone '{component}' of plugin 'constructors' "
                                          rf"\(distribution detkit-hostile-constructors 0.1.0\).*{error}"):
        detkit.SSDDetector(classes=["a"], backbone=component, data_shape=64, ctx=mx.cpu())
