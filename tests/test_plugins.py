"""The plugin host: hooks, discovery of installed distributions, isolation, environment, version gate.

Fixture plugins live in ``tests/plugin_fixtures``; the ``site`` fixture gives a
directory on ``sys.path`` into which :func:`plugin_fixtures.install` installs
them as real distributions (a ``*.dist-info`` with an entry point), so discovery
goes through ``importlib.metadata`` exactly as for a pip-installed package.
``test_pip_installed_plugins_*`` runs pip itself.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from importlib import metadata
from pathlib import Path

import mxnet as mx
import pytest
import yaml
from plugin_fixtures import FIXTURES, forget_modules, install, write_project

import detkit
from detkit import _plugins, hookspecs
from detkit._plugins import (
    ENV_DISABLE_AUTOLOAD,
    ENV_ONLY,
    ENV_STRICT,
    PLUGIN_API_VERSION,
    api_compatible,
    parse_api_requirement,
)
from detkit._plugins import KINDS
from detkit.components import FocalSmoothL1Loss, ToyBackbone
from detkit.errors import (
    ComponentNotFoundError,
    DuplicateComponentError,
    IncompatiblePluginError,
    InputError,
    PluginError,
    PluginWarning,
)

REPOSITORY = Path(__file__).resolve().parents[1]
HOOK_NAMES = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
                    if hasattr(getattr(hookspecs, name), "detkit_spec"))


@pytest.fixture
def site(plugin_site):
    """A fresh site directory on ``sys.path``, no plugin environment variable, and an unloaded host."""
    forget_modules()
    yield plugin_site
    forget_modules()


def load(site: Path, *keys: str) -> dict[str, _plugins.PluginInfo]:
    """Install the fixture plugins ``keys``, load every plugin afresh; return the plugins by name."""
    for key in keys:
        install(site, key)
    _plugins.reset_plugins()
    return {plugin.name: plugin for plugin in detkit.list_plugins()}


def plugin_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def fixture_warnings(caught) -> list[str]:
    """The PluginWarnings about fixture plugins (not about whatever else the environment has installed)."""
    return [message for message in plugin_warnings(caught) if "detkit-fixture-" in message or "fixture" in message]


# -- the hooks: each has a test, named test_hook_<hook> -----------------------------------------


def _check_registered(site, kind: str, name: str, cls_name: str) -> None:
    plugins = load(site, "good")
    assert plugins["good"].status == "active"
    component = detkit.build_component(kind, name)
    assert type(component).__name__ == cls_name
    (info,) = [i for i in detkit.list_components() if (i.kind, i.name) == (kind, name)]
    assert (info.plugin, info.distribution, info.version) == ("good", "detkit-fixture-good", "1.2.0")
    detector = detkit.SSDDetector(classes=["a"], ctx=mx.cpu(), **{kind: name})
    anchors, class_preds, box_preds = detector(mx.nd.zeros((1, 3, 64, 64)))
    assert class_preds.shape == (1, anchors.shape[1], 2) and box_preds.shape == (1, anchors.shape[1] * 4)
    assert detector.get_config()["components"][kind]["provided_by"] == {
        "plugin": "good", "distribution": "detkit-fixture-good", "version": "1.2.0"}


# Each hook of hookspecs, with the fixture plugin's component it registers (one case per hook: a
# hook added to detkit without a case here fails the assertion on FIXTURE_COMPONENTS below).
FIXTURE_COMPONENTS = {
    "register_anchor_generators": ("anchor_generator", "fixture_anchors", "FixtureAnchors"),
    "register_backbones": ("backbone", "fixture_tiny", "TinyBackbone"),
    "register_losses": ("loss", "fixture_loss", "FixtureLoss"),
    "register_post_processors": ("post_processor", "fixture_post_processor", "FixturePostProcessor"),
    "register_target_assigners": ("target_assigner", "fixture_targets", "FixtureTargets"),
}


def test_every_hook_has_a_case() -> None:
    assert HOOK_NAMES == sorted(hook for _, hook in KINDS.values()) == sorted(FIXTURE_COMPONENTS)


@pytest.mark.parametrize("hook", sorted(FIXTURE_COMPONENTS))
def test_each_hook_registers_a_working_component(site, hook) -> None:
    kind, name, cls = FIXTURE_COMPONENTS[hook]
    assert KINDS[kind][1] == hook
    _check_registered(site, kind, name, cls)
    if kind == "anchor_generator":
        assert detkit.build_component(kind, name).num_anchors == (3,) * 5


def test_plugin_hooks_are_documented() -> None:
    guide = (REPOSITORY / "examples" / "plugin-template" / "README.md").read_text(encoding="utf-8")
    for hook in HOOK_NAMES:
        doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
        for section in ("When it is called", "What it receives", "What it must do", "Examples"):
            assert section in doc, f"the docstring of {hook} lacks {section!r}"
        assert f"`{hook}(register)`" in guide, f"{hook} is not in the hook reference of the plugin guide"


# -- built-ins and discovery ------------------------------------------------------------------------


def test_builtins_are_a_plugin_registered_through_the_same_hooks(site) -> None:
    first = detkit.list_plugins()[0]
    assert (first.name, first.distribution, first.status) == ("detkit.components", "gluon-detkit", "active")
    assert first.components == {
        "backbone": ["toy"], "anchor_generator": ["multibox_prior", "gluoncv_anchors"],
        "target_assigner": ["multibox_target"], "loss": ["focal_smooth_l1"],
        "post_processor": ["multibox_detection", "gluoncv_decoder"]}
    manager = detkit.get_plugin_manager()
    assert manager.get_plugin("detkit.components") is detkit.components
    plugins = [impl.plugin for impl in manager.hook.register_backbones.get_hookimpls()]
    assert detkit.components in plugins


def test_an_installed_distribution_is_discovered_through_its_entry_point(site) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = load(site, "good")
    assert not fixture_warnings(caught)
    good = plugins["good"]
    assert (good.distribution, good.version, good.status, good.reason) == (
        "detkit-fixture-good", "1.2.0", "active", None)
    assert (good.module, good.api) == ("detkit_fixture_good", ">=1.0,<2")
    assert good.components == {
        "backbone": ["fixture_tiny"], "anchor_generator": ["fixture_anchors"],
        "target_assigner": ["fixture_targets"], "loss": ["fixture_loss"],
        "post_processor": ["fixture_post_processor"]}
    assert good.to_dict()["components"]["backbone"] == ["fixture_tiny"]
    assert json.loads(json.dumps(good.to_dict()))["distribution"] == "detkit-fixture-good"


def test_plugins_load_lazily_and_once(site) -> None:
    install(site, "good")
    _plugins.reset_plugins()
    assert "detkit_fixture_good" not in sys.modules  # nothing is imported before the first lookup
    detkit.component_names("backbone")
    module = sys.modules["detkit_fixture_good"]
    detkit.component_names("loss")
    detkit.list_plugins()
    detkit.SSDDetector(classes=["a"], ctx=mx.cpu(), backbone="fixture_tiny")
    assert sorted(module.CALLS) == HOOK_NAMES  # every hook called exactly once


def test_installed_plugins_load_after_the_builtins_in_entry_point_order(site) -> None:
    names = [p.name for p in load(site, "second", "good").values()]
    assert names[0] == "detkit.components"
    assert names.index("good") < names.index("second")


# -- environment variables --------------------------------------------------------------------------


def test_disable_autoload_loads_only_the_builtins(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    plugins = load(site, "good")
    assert plugins["good"].status == "disabled"
    assert ENV_DISABLE_AUTOLOAD in plugins["good"].reason
    assert plugins["good"].distribution == "detkit-fixture-good"
    assert "detkit_fixture_good" not in sys.modules
    assert "fixture_tiny" not in detkit.component_names("backbone")
    assert plugins["detkit.components"].status == "active"


@pytest.mark.parametrize("value", ["0", "false", "no", "off", ""])
def test_falsy_values_leave_autoload_on(site, monkeypatch, value) -> None:
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, value)
    assert load(site, "good")["good"].status == "active"


def test_plugins_variable_limits_loading_to_the_listed_names(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_ONLY, " good ")
    plugins = load(site, "good", "second", "broken_import")
    assert plugins["good"].status == "active"
    for name in ("second", "broken_import"):  # not imported, so not failed either
        assert plugins[name].status == "disabled" and ENV_ONLY in plugins[name].reason
    assert "detkit_fixture_broken_import" not in sys.modules
    assert "second_loss" not in detkit.component_names("loss")


def test_plugins_variable_accepts_distribution_names(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_ONLY, "detkit_fixture_second,good")
    plugins = load(site, "good", "second")
    assert plugins["second"].status == plugins["good"].status == "active"


def test_plugins_variable_warns_about_names_it_does_not_find(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_ONLY, "good,godo")
    install(site, "good")
    with pytest.warns(PluginWarning, match=r"names 'godo', which matches no installed detkit plugin"):
        detkit.list_plugins()


def test_strict_mode_raises_and_stays_unloaded_until_fixed(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_STRICT, "1")
    install(site, "broken_import")
    install(site, "good")
    for _ in range(2):  # no half-loaded registry is kept: every lookup raises again
        with pytest.raises(PluginError, match=r"'broken_import' \(distribution detkit-fixture-broken-import 0.1.0\)"):
            detkit.component_names("backbone")
    monkeypatch.delenv(ENV_STRICT)
    with pytest.warns(PluginWarning, match="broken_import"):
        assert "fixture_tiny" in detkit.component_names("backbone")


# -- isolation: every failure mode ------------------------------------------------------------------

FAILURES = [
    ("broken_import", r"importing 'detkit_fixture_broken_import' failed: ModuleNotFoundError: "
                      r"No module named 'detkit_fixture_missing_dependency'"),
    ("raising_hook", r"its hook register_losses\(\) raised RuntimeError: the loss registry exploded"),
    ("not_a_component", r"registered backbone 'not_a_backbone' as detkit_fixture_not_a_component.NotABackbone, "
                        r"which does not implement detkit.interfaces.Backbone"),
    ("abstract", r"does not implement the abstract member\(s\) out_strides of detkit.interfaces.Backbone"),
    ("bad_name", r"registered a backbone whose name is 42"),
    ("typo_hook", r"implements register_backbone\(\), which is not a detkit hook"),
    ("bad_signature", r"invalid hook implementation: .*config"),
    ("lookup_at_import", r"looked up detkit components while detkit was loading its plugins"),
    ("bad_api", r"DETKIT_PLUGIN_API must be a string such as '>=1.0,<2'.*'version one please'"),
]


@pytest.mark.parametrize(("key", "reason"), FAILURES, ids=[key for key, _ in FAILURES])
def test_a_failing_plugin_is_skipped_with_one_warning_and_the_rest_works(site, key, reason) -> None:
    fixture = FIXTURES[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = load(site, key, "second")
    (message,) = fixture_warnings(caught)
    assert message.startswith(f"detkit plugin '{key}' (distribution {fixture.distribution} {fixture.version}) "
                              "was skipped: ")
    assert re.search(reason, message), message
    failed = plugins[key]
    assert failed.status == "failed" and re.search(reason, failed.reason)
    assert failed.components == {} and (failed.distribution, failed.version) == (fixture.distribution, fixture.version)
    # Nothing of the failed plugin is registered (all or nothing), everything else works.
    assert not [info for info in detkit.list_components() if info.plugin == key]
    assert detkit.get_plugin_manager().get_plugin(key) is None
    assert plugins["second"].status == "active"
    detector = detkit.SSDDetector(classes=["a"], ctx=mx.cpu(), loss="second_loss")
    assert detector.detect(mx.nd.zeros((1, 3, 64, 64))).shape[2] == 6


@pytest.mark.parametrize(("key", "reason"), FAILURES, ids=[key for key, _ in FAILURES])
def test_strict_mode_turns_each_failure_into_an_error(site, monkeypatch, key, reason) -> None:
    monkeypatch.setenv(ENV_STRICT, "true")
    install(site, key)
    with pytest.raises(PluginError) as caught:
        detkit.list_plugins()
    assert re.search(reason, str(caught.value)) and f"'{key}'" in str(caught.value)


def test_a_factory_that_builds_the_wrong_kind_fails_when_built_naming_the_plugin(site) -> None:
    assert load(site, "bad_factory")["bad_factory"].status == "active"  # a function cannot be checked earlier
    with pytest.raises(PluginError, match=r"backbone 'bad_factory_backbone' of plugin 'bad_factory' \(distribution "
                                          r"detkit-fixture-bad-factory 0.1.0\) built a FocalSmoothL1Loss"):
        detkit.build_component("backbone", "bad_factory_backbone")


# -- the plugin API version gate ----------------------------------------------------------------------


def test_plugin_api_version_is_major_dot_minor() -> None:
    assert re.fullmatch(r"\d+\.\d+", PLUGIN_API_VERSION)


def test_an_incompatible_plugin_is_reported_incompatible_not_failed(site) -> None:
    with pytest.warns(PluginWarning, match=r"'incompatible' \(distribution detkit-fixture-incompatible 2.0.0\) was "
                                           r"skipped: it supports the detkit plugin API >=2.0,<3, but this detkit "
                                           rf"provides plugin API {PLUGIN_API_VERSION}"):
        plugins = load(site, "incompatible")
    assert plugins["incompatible"].status == "incompatible"
    assert plugins["incompatible"].api == ">=2.0,<3"
    assert "future_backbone" not in detkit.component_names("backbone")


def test_strict_mode_raises_incompatible_plugin_error(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_STRICT, "1")
    install(site, "incompatible")
    with pytest.raises(IncompatiblePluginError, match="'incompatible'"):
        detkit.list_plugins()


@pytest.mark.parametrize(
    ("requirement", "version", "expected"),
    [
        (">=1.0,<2", "1.0", True),
        (">=1.0,<2", "1.9", True),
        (">=1.0,<2", "2.0", False),
        (">=1.1", "1.0", False),
        ("  >= 1 , < 2 ", "1.5", True),
        ("==1.0", "1.0", True),
        ("==1", "1.0", True),
        ("==1", "1.1", False),
        ("!=1.3", "1.3", False),
        (">1.0", "1.0", False),
        ("<=1.2", "1.2", True),
        (1, "1.7", True),
        (1, "2.0", False),
        (2, "1.9", False),
        ("~=1.0", "1.5", True),
        ("~=1.1", "2.0", False),
    ],
)
def test_api_requirements(requirement, version, expected) -> None:
    assert api_compatible(requirement, version) is expected


@pytest.mark.parametrize("requirement", ["1.0", ">=1.0;<2", ">=one", "", "  ", None, 1.5, True, -1, [">=1"]])
def test_unparseable_api_requirements_say_what_is_expected(requirement) -> None:
    with pytest.raises(InputError, match=r"DETKIT_PLUGIN_API must be a string such as '>=1.0,<2'"):
        parse_api_requirement(requirement)


# -- duplicate names ------------------------------------------------------------------------------------


def test_a_name_registered_by_two_plugins_stays_with_the_first_and_skips_the_second(site) -> None:
    # Entry points load in name order: "duplicate" before "good".
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = load(site, "good", "duplicate")
    (message,) = fixture_warnings(caught)
    assert "'good' (distribution detkit-fixture-good 1.2.0) was skipped" in message
    assert ("its backbone 'fixture_tiny' is already registered by plugin 'duplicate' (distribution "
            "detkit-fixture-duplicate 0.5.0)") in message
    assert "Uninstall one of the two, or choose one with DETKIT_PLUGINS" in message
    assert plugins["good"].status == "failed" and plugins["duplicate"].status == "active"
    assert type(detkit.build_component("backbone", "fixture_tiny")).__name__ == "OtherTiny"
    assert "fixture_loss" not in detkit.component_names("loss")  # all or nothing
    assert "duplicate_loss" in detkit.component_names("loss")


def test_strict_mode_raises_duplicate_component_error_naming_both(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_STRICT, "1")
    install(site, "good")
    install(site, "duplicate")
    with pytest.raises(DuplicateComponentError) as caught:
        detkit.list_plugins()
    assert "detkit-fixture-good" in str(caught.value) and "detkit-fixture-duplicate" in str(caught.value)


def test_the_user_resolves_a_duplicate_with_the_plugins_variable(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_ONLY, "good")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = load(site, "good", "duplicate")
    assert not fixture_warnings(caught)
    assert plugins["good"].status == "active" and plugins["duplicate"].status == "disabled"


def test_a_plugin_cannot_take_a_builtin_name(site) -> None:
    with pytest.warns(PluginWarning, match=r"its backbone 'toy' is already registered by plugin 'detkit.components' "
                                           r"\(distribution gluon-detkit"):
        plugins = load(site, "builtin_clash")
    assert plugins["builtin_clash"].status == "failed"
    assert type(detkit.build_component("backbone", "toy")) is ToyBackbone


def test_two_distributions_with_one_entry_point_name(site) -> None:
    install(site, "good")
    install(site, "second", entry_point="good")
    _plugins.reset_plugins()
    with pytest.warns(PluginWarning, match=r"another plugin named 'good' \(distribution detkit-fixture-good 1.2.0\) "
                                           "is already registered"):
        records = [p for p in detkit.list_plugins() if p.name == "good"]
    assert [(p.distribution, p.status) for p in records] == [
        ("detkit-fixture-good", "active"), ("detkit-fixture-second", "failed")]


def test_a_plugin_that_registers_one_name_twice_fails(site) -> None:
    class Twice:
        @detkit.hookimpl
        def register_losses(self, register):
            register("twice", FocalSmoothL1Loss)
            register("twice", FocalSmoothL1Loss)

    with pytest.warns(PluginWarning, match="it registers loss 'twice' twice"):
        assert detkit.register_plugin(Twice(), "twice").status == "failed"


# -- in-process plugins ---------------------------------------------------------------------------------


class _Small(ToyBackbone):
    def __init__(self, filters=(4,)):
        super().__init__(filters)


def test_register_and_unregister_an_in_process_plugin(site) -> None:
    class Plugin:
        @detkit.hookimpl
        def register_backbones(self, register):
            register("small", _Small)

    info = detkit.register_plugin(Plugin(), "in-process")
    assert (info.status, info.distribution, info.components) == ("active", None, {"backbone": ["small"]})
    assert isinstance(detkit.build_component("backbone", "small"), _Small)
    assert detkit.list_plugins()[-1].name == "in-process"
    assert _plugins.unregister_plugin("in-process").name == "in-process"
    with pytest.raises(ComponentNotFoundError):
        detkit.build_component("backbone", "small")
    assert "in-process" not in [p.name for p in detkit.list_plugins()]
    assert detkit.get_plugin_manager().get_plugin("in-process") is None
    with pytest.raises(InputError, match=r"'name' argument must name a loaded plugin; got 'in-process'"):
        _plugins.unregister_plugin("in-process")


def test_an_in_process_plugin_that_fails_is_skipped_with_a_warning(site) -> None:
    class Failing:
        @detkit.hookimpl
        def register_backbones(self, register):
            register("never", _Small)

        @detkit.hookimpl
        def register_losses(self, register):
            raise ValueError("no losses today")

    with pytest.warns(PluginWarning, match=r"'failing' was skipped: its hook register_losses\(\) raised ValueError"):
        info = detkit.register_plugin(Failing(), "failing")
    assert info.status == "failed" and "never" not in detkit.component_names("backbone")


def test_a_hook_of_a_newer_api_marked_optional_is_accepted(site) -> None:
    class Newer:
        DETKIT_PLUGIN_API = ">=1.0"

        @detkit.hookimpl(optionalhook=True)
        def register_heads(self, register):
            raise AssertionError("detkit has no such hook; it is never called")

        @detkit.hookimpl
        def register_backbones(self, register):
            register("newer_small", _Small)

    info = detkit.register_plugin(Newer(), "newer")
    assert (info.status, info.api) == ("active", ">=1.0")


def test_a_registration_hook_cannot_be_a_wrapper(site) -> None:
    class Wrapping:
        @detkit.hookimpl(hookwrapper=True)
        def register_backbones(self, register):
            yield

    with pytest.warns(PluginWarning, match=r"its register_backbones\(\) is a hook wrapper"):
        assert detkit.register_plugin(Wrapping(), "wrapping").status == "failed"


def test_a_hook_implementation_may_take_no_argument(site) -> None:
    class Quiet:
        @detkit.hookimpl
        def register_backbones(self):
            pass

    assert detkit.register_plugin(Quiet(), "quiet").status == "active"


def test_register_called_after_its_hook_returned_is_an_error(site) -> None:
    kept = []

    class Late:
        @detkit.hookimpl
        def register_backbones(self, register):
            kept.append(register)

    detkit.register_plugin(Late(), "late")
    with pytest.raises(PluginError, match="called register\\(\\) after its hook returned"):
        kept[0]("late_small", _Small)


# -- checkpoint provenance ------------------------------------------------------------------------------


def test_loading_a_detector_whose_plugin_is_gone_names_the_package_to_install(site, tmp_path) -> None:
    load(site, "good")
    detector = detkit.SSDDetector(classes=["a"], ctx=mx.cpu(), backbone="fixture_tiny")
    detector(mx.nd.zeros((1, 3, 64, 64)))  # shapes are inferred, and the parameters made, on the first batch
    detector.save(tmp_path / "model")
    # The plugin is uninstalled: its distribution leaves sys.path, and detkit loads afresh without it.
    sys.path.remove(str(site))
    forget_modules()
    _plugins.reset_plugins()
    assert "fixture_tiny" not in detkit.component_names("backbone")
    with pytest.raises(ComponentNotFoundError) as caught:
        detkit.SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    message = str(caught.value)
    assert "There is no backbone named 'fixture_tiny'" in message
    assert "plugin 'good' of the package detkit-fixture-good 1.2.0" in message
    assert "pip install detkit-fixture-good" in message


@pytest.mark.parametrize("source, status, reason", [
    ("raise RuntimeError('broken on purpose')\n", "failed", "RuntimeError: broken on purpose"),
    ("DETKIT_PLUGIN_API = '>=7.0'\n", "incompatible", "plugin API >=7.0"),
])
def test_loading_a_detector_whose_plugin_is_installed_but_not_active_says_why(site, tmp_path, source, status,
                                                                            reason) -> None:
    load(site, "good")
    detector = detkit.SSDDetector(classes=["a"], ctx=mx.cpu(), backbone="fixture_tiny")
    detector(mx.nd.zeros((1, 3, 64, 64)))
    detector.save(tmp_path / "model")
    # The plugin stays installed, but its module now fails to import or declares another plugin API.
    (site / f"{FIXTURES['good'].module}.py").write_text(source, encoding="utf-8")
    forget_modules()
    _plugins.reset_plugins()
    with pytest.warns(PluginWarning):
        detkit.list_plugins()
    with pytest.raises(ComponentNotFoundError) as caught:
        detkit.SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    message = str(caught.value)
    assert f"is installed (detkit-fixture-good 1.2.0) but {status}: " in message and reason in message
    assert "pip install" not in message


def test_a_detector_saved_under_the_former_distribution_names_still_loads(builtins_only, tmp_path) -> None:
    detector = detkit.SSDDetector(classes=["a"], ctx=mx.cpu())
    detector(mx.nd.zeros((1, 3, 64, 64)))
    detector.save(tmp_path / "model")
    config = (tmp_path / "model" / "detector.yaml").read_text(encoding="utf-8")
    assert "distribution: gluon-detkit" in config
    (tmp_path / "model" / "detector.yaml").write_text(
        config.replace("distribution: gluon-detkit", "distribution: detkit"), encoding="utf-8")
    loaded = detkit.SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    assert loaded.get_config()["components"] == detector.get_config()["components"]
    # A plugin recorded under its former name is looked up, and named for pip, under the current one.
    config = yaml.safe_load((tmp_path / "model" / "detector.yaml").read_text(encoding="utf-8"))
    config["components"]["backbone"].update(
        name="not_here", provided_by={"plugin": "resnet", "distribution": "detkit-resnet", "version": "0.1.0"})
    (tmp_path / "model" / "detector.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ComponentNotFoundError) as caught:
        detkit.SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    # Installed here but disabled (DETKIT_DISABLE_PLUGIN_AUTOLOAD), or not installed: named by its current name.
    assert "the plugin 'resnet' of the package gluon-detkit-resnet 0.1.0" in str(caught.value)
    assert "disabled: DETKIT_DISABLE_PLUGIN_AUTOLOAD is set" in str(caught.value) or (
        "`pip install gluon-detkit-resnet`" in str(caught.value))


# -- real installs by pip -------------------------------------------------------------------------------

_PIP_CHECK = textwrap.dedent("""
    import argparse, io, json, warnings
    import mxnet as mx
    from mxnet import autograd
    import detkit
    from detkit._cli._plugins import add_commands

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = detkit.SSDDetector(classes=["pikachu"], backbone="resnet18_v1", loss="giou", ctx=mx.cpu())
    skipped = [str(w.message) for w in caught if issubclass(w.category, detkit.errors.PluginWarning)]
    images = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    labels = mx.nd.array([[[0, 0.1, 0.1, 0.6, 0.7]]])
    with autograd.record():
        anchors, class_preds, box_preds = detector.network(images)
        targets = detector.target_assigner(anchors, labels, class_preds)
        loss = detector.loss(class_preds, box_preds, targets[2], targets[0], targets[1])[0]
    loss.backward()
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["plugins", "--json"])
    out = io.StringIO()
    status = args.handler(args, out)
    print(json.dumps({"skipped": skipped, "loss": float(loss.asscalar()), "status": status,
                      "listing": json.loads(out.getvalue())}))
""")


def _can_build_offline() -> bool:
    """Whether this environment builds wheels itself (setuptools >= 70.1, or the wheel package).

    Otherwise pip builds in an isolated environment and fetches setuptools from the package index.
    """
    try:
        version = tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_pip_installed_plugins_are_discovered_next_to_a_broken_one(tmp_path) -> None:
    target = tmp_path / "target"
    broken = write_project(tmp_path / "broken", "broken_import")
    # Copies: building in place would write build/ and *.egg-info/ into the source tree.
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    projects = [shutil.copytree(REPOSITORY / "plugins" / name, tmp_path / name, ignore=ignore)
                for name in ("detkit-resnet", "detkit-zoo", "detkit-losses")] + [broken]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if _can_build_offline():
        command += ["--no-build-isolation", "--no-index"]
    installed = subprocess.run(command + [str(p) for p in projects], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    assert list(target.glob("gluon_detkit_resnet-*.dist-info")) and list(target.glob("gluon_detkit_losses-*.dist-info"))
    assert list(target.glob("gluon_detkit_zoo-*.dist-info"))
    environment = {key: value for key, value in os.environ.items()
                   if key not in (ENV_DISABLE_AUTOLOAD, ENV_ONLY, ENV_STRICT)}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), environment.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", _PIP_CHECK], capture_output=True, text=True, timeout=300,
                            env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    plugins = {p["name"]: p for p in report["listing"]["plugins"]}
    assert plugins["resnet"]["status"] == "active" and plugins["resnet"]["distribution"] == "gluon-detkit-resnet"
    assert "resnet18_v1" in plugins["resnet"]["components"]["backbone"]
    assert plugins["zoo"]["status"] == "active" and plugins["zoo"]["distribution"] == "gluon-detkit-zoo"
    assert {"mobilenet0_25", "mobilenetv2_1_0", "vgg16_atrous"} <= set(plugins["zoo"]["components"]["backbone"])
    assert plugins["losses"]["components"]["loss"] == ["ssd_multibox", "giou"]
    assert plugins["broken_import"]["status"] == "failed"
    assert "ModuleNotFoundError" in plugins["broken_import"]["reason"]
    (skipped,) = report["skipped"]
    assert "'broken_import' (distribution detkit-fixture-broken-import 0.1.0) was skipped" in skipped
    assert report["status"] == 0 and report["loss"] > 0
