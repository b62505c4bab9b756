"""Tests of the example plugin: the detkit conformance kit, and discovery once installed."""

from importlib import metadata

import pytest

# These tests run against the installed package: `pip install ./examples/plugin-template`.
pytest.importorskip("detkit_myplugin", reason="the plugin is not installed: pip install ./examples/plugin-template")

from detkit_myplugin import MyBackbone

import detkit
from detkit.testing import parametrize_with_checks


# Every contract of the Backbone interface, for two configurations, each check a test of its
# own; one of them trains an SSDDetector built with the backbone for a step.
@parametrize_with_checks([MyBackbone(), MyBackbone(width=8)])
def test_detkit_conformance(component, check):
    check(component)


def _installed():
    try:
        metadata.distribution("gluon-detkit-myplugin")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="install the plugin first: pip install -e .")
def test_detkit_finds_the_installed_plugin():
    (plugin,) = [p for p in detkit.list_plugins() if p.distribution == "gluon-detkit-myplugin"]
    assert plugin.status == "active", plugin.reason
    assert plugin.components == {"backbone": ["my_backbone"]}
    assert isinstance(detkit.build_component("backbone", "my_backbone"), MyBackbone)
