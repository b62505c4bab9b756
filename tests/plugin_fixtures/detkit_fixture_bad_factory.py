"""A plugin that registers a factory function building something that is not a Backbone.

Registration cannot tell (the factory is no class); building it raises a PluginError naming the plugin.
"""

import detkit
from detkit.components import FocalSmoothL1Loss


def make_backbone():
    return FocalSmoothL1Loss()


@detkit.hookimpl
def register_backbones(register):
    register("bad_factory_backbone", make_backbone)
