"""A plugin that looks components up while detkit is loading plugins (at import time)."""

import detkit

KNOWN_BACKBONES = detkit.component_names("backbone")
