"""``detkit plugins``: the table, ``--json``, and the exit status."""

from __future__ import annotations

import argparse
import io
import json
import warnings

import pytest
from plugin_fixtures import forget_modules, install

from detkit import _plugins
from detkit._plugins import (
    ENV_ONLY,
    ENV_STRICT,
    PLUGIN_API_VERSION,
)
from detkit._cli._plugins import add_commands
from detkit._plugins import KINDS
from detkit.errors import PluginWarning


@pytest.fixture
def site(plugin_site):
    """A site directory on ``sys.path`` with a good, a broken and an incompatible plugin installed."""
    for key in ("good", "broken_import", "incompatible"):
        install(plugin_site, key)
    forget_modules()
    yield plugin_site
    forget_modules()


def run(*argv: str) -> tuple[int, str]:
    """Run ``detkit plugins ARGV`` as the ``detkit`` command does; return the status and the output."""
    parser = argparse.ArgumentParser(prog="detkit")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plugins", *argv])
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = args.handler(args, out)
    assert not [w for w in caught if issubclass(w.category, PluginWarning)], "the listing reports; it does not warn"
    return status, out.getvalue()


def test_the_table_shows_each_plugin_with_distribution_components_and_status(site) -> None:
    status, text = run()
    assert status == 0
    lines = text.splitlines()
    assert lines[0].startswith(f"detkit plugin API {PLUGIN_API_VERSION}: ")
    assert "1 incompatible" in lines[0] and "1 failed" in lines[0]
    assert lines[2].split() == ["PLUGIN", "DISTRIBUTION", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines[3:] if not line.startswith(" ")}
    assert rows["detkit.components"][1] == "gluon-detkit" and rows["detkit.components"][-1] == "active"
    assert rows["good"] == ["good", "detkit-fixture-good", "1.2.0", "active"]
    assert rows["broken_import"] == ["broken_import", "detkit-fixture-broken-import", "0.1.0", "failed"]
    assert rows["incompatible"][-1] == "incompatible"
    block = text[text.index("\ngood "):text.index("\nincompatible ")]
    assert "\n    backbone: fixture_tiny\n" in block and block.endswith("\n    post_processor: fixture_post_processor")
    assert ("    reason: importing 'detkit_fixture_broken_import' failed: ModuleNotFoundError: No module named "
            "'detkit_fixture_missing_dependency'") in text
    assert "    supports plugin API: >=2.0,<3" in text


def test_json_lists_every_plugin_with_every_kind(site) -> None:
    status, text = run("--json")
    assert status == 0
    listing = json.loads(text)
    assert listing["plugin_api_version"] == PLUGIN_API_VERSION
    plugins = {plugin["name"]: plugin for plugin in listing["plugins"]}
    assert listing["plugins"][0]["name"] == "detkit.components"
    good = plugins["good"]
    assert set(good) == {"name", "distribution", "version", "status", "reason", "components", "module", "api"}
    assert list(good["components"]) == list(KINDS)
    assert good["components"]["loss"] == ["fixture_loss"]
    assert (good["distribution"], good["version"], good["status"], good["reason"]) == (
        "detkit-fixture-good", "1.2.0", "active", None)
    broken = plugins["broken_import"]
    assert broken["status"] == "failed" and "ModuleNotFoundError" in broken["reason"]
    assert all(names == [] for names in broken["components"].values())
    assert plugins["incompatible"]["status"] == "incompatible" and plugins["incompatible"]["api"] == ">=2.0,<3"


def test_disabled_plugins_are_listed_with_the_reason(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_ONLY, "good")
    status, text = run("--json")
    plugins = {plugin["name"]: plugin for plugin in json.loads(text)["plugins"]}
    assert status == 0 and plugins["good"]["status"] == "active"
    assert plugins["broken_import"]["status"] == "disabled"
    assert plugins["broken_import"]["reason"] == "not listed in DETKIT_PLUGINS=good"


@pytest.mark.parametrize("argv", [["--check"], ["--check", "--json"]])
def test_check_exits_1_when_a_plugin_failed(site, argv) -> None:
    assert run(*argv)[0] == 1


def test_check_exits_0_when_every_plugin_works(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_ONLY, "good")
    assert run("--check")[0] == 0


def test_strict_mode_still_lists_everything_and_exits_1(site, monkeypatch) -> None:
    monkeypatch.setenv(ENV_STRICT, "1")
    status, text = run("--json")
    assert status == 1
    assert {p["name"]: p["status"] for p in json.loads(text)["plugins"]}["broken_import"] == "failed"


def test_the_detkit_command_has_the_plugins_command(site, capsys) -> None:
    from detkit.cli import main

    assert main(["plugins", "--json"]) == 0
    assert {p["name"] for p in json.loads(capsys.readouterr().out)["plugins"]} >= {"good", "broken_import"}


def test_the_command_prints_warnings_as_one_line(site, capsys) -> None:
    from detkit.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["train", "--preset", "fast", "--print-config"]) == 0
        shown = warnings.showwarning
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "broken_import" in line or "incompatible" in line]
    assert len(lines) == 2 and all(line.startswith("detkit: warning: detkit plugin '") for line in lines)
    assert "PluginWarning" not in err and "sys.exit" not in err and ".py:" not in err
    assert shown is not None and shown.__module__ == "warnings"  # Python's own printer is back afterwards
