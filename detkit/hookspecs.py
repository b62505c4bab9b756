"""The hooks a detkit plugin implements.

A plugin is a module (or object) with functions decorated by
:data:`detkit.hookimpl`, named after the hooks below. An installed package makes
its plugin known through the entry point group ``detkit``::

    [project.entry-points.detkit]
    resnet = "detkit_resnet"

detkit loads plugins once, the first time a component is looked up, and calls
each registration hook of each plugin exactly once, passing a ``register``
callback. The plugin calls ``register(name, factory)`` for each component it
provides: ``name`` is what configs and ``SSDDetector(backbone=...)`` use, and
``factory`` is the component's class (or any callable taking the component's
keyword arguments) returning an instance of the hook's interface. detkit's own
components are registered through these same hooks (``detkit.components``).
"""

from __future__ import annotations

from typing import Callable

import pluggy

__all__ = [
    "Register",
    "hookimpl",
    "hookspec",
    "register_anchor_generators",
    "register_backbones",
    "register_losses",
    "register_post_processors",
    "register_target_assigners",
]

#: The pluggy project name, also the entry point group.
PROJECT_NAME = "detkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's hook implementations: ``@detkit.hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: The callback a registration hook receives: ``register(name, factory)``.
Register = Callable[[str, Callable[..., object]], None]


# --- Component registration ------------------------------------------------------


@hookspec
def register_backbones(register: Register) -> None:
    """Register :class:`~detkit.interfaces.Backbone` implementations.

    Called once per plugin when detkit first needs a component. Call
    ``register(name, factory)`` for each backbone; ``factory(**kwargs)`` must
    return a :class:`~detkit.interfaces.Backbone`. Return nothing.
    """


@hookspec
def register_anchor_generators(register: Register) -> None:
    """Register :class:`~detkit.interfaces.AnchorGenerator` implementations.

    Called once per plugin when detkit first needs a component. Call
    ``register(name, factory)`` for each anchor generator; ``factory(**kwargs)``
    must return an :class:`~detkit.interfaces.AnchorGenerator`. Return nothing.
    """


@hookspec
def register_target_assigners(register: Register) -> None:
    """Register :class:`~detkit.interfaces.TargetAssigner` implementations.

    Called once per plugin when detkit first needs a component. Call
    ``register(name, factory)`` for each target assigner; ``factory(**kwargs)``
    must return a :class:`~detkit.interfaces.TargetAssigner`. Return nothing.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register :class:`~detkit.interfaces.Loss` implementations.

    Called once per plugin when detkit first needs a component. Call
    ``register(name, factory)`` for each loss; ``factory(**kwargs)`` must return
    a :class:`~detkit.interfaces.Loss`. Return nothing.
    """


@hookspec
def register_post_processors(register: Register) -> None:
    """Register :class:`~detkit.interfaces.PostProcessor` implementations.

    Called once per plugin when detkit first needs a component. Call
    ``register(name, factory)`` for each post-processor; ``factory(**kwargs)``
    must return a :class:`~detkit.interfaces.PostProcessor`. Return nothing.
    """
