"""The hooks a detkit plugin implements.

A plugin is a module (or object) with functions decorated by
:data:`detkit.hookimpl`, named after the hooks below. An installed package makes
its plugin known through the entry point group ``detkit``::

    [project.entry-points.detkit]
    resnet = "detkit_resnet"

detkit loads plugins lazily, once, the first time a component is looked up (by
``SSDDetector(...)``, :func:`detkit.build_component`, ``detkit plugins``, ...),
and calls each registration hook of each plugin exactly once, passing a
``register`` callback. The plugin calls ``register(name, factory)`` inside the
hook, once for each component it provides:

* ``name``, a non-empty ``str``, is what configs and ``SSDDetector(backbone=...)``
  use; it must be unique per kind among all plugins (the first plugin to register
  a name keeps it; a later one is skipped with a warning naming both);
* ``factory`` is the component's class (preferred: detkit then checks at
  registration that it implements the hook's interface, and finds the name of an
  instance passed to ``SSDDetector``), or any callable that takes the component's
  keyword arguments and returns an instance of the hook's interface (checked
  when it is built).

A hook returns nothing. detkit's own components are registered through these
same hooks, by the built-in plugin ``detkit.components``.

A plugin implements only the hooks it needs. A plugin whose hook raises, or
that registers something breaking these rules, is skipped as a whole with a
:class:`~detkit.errors.PluginWarning` (an exception in strict mode); a function
marked as an implementation of a hook that detkit does not have (a typo such as
``register_backbone``) is such an error, unless marked
``@detkit.hookimpl(optionalhook=True)`` (for the hooks of a newer plugin API).
A plugin module may declare the plugin API versions it supports,
``DETKIT_PLUGIN_API = ">=1.0,<2"``; detkit's is :data:`detkit.PLUGIN_API_VERSION`.

Example, a complete plugin module::

    import detkit
    from detkit.interfaces import Backbone

    DETKIT_PLUGIN_API = ">=1.0,<2"


    class MyBackbone(Backbone):
        ...


    @detkit.hookimpl
    def register_backbones(register):
        register("my_backbone", MyBackbone)
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
    """Register :class:`~detkit.interfaces.Backbone` implementations (feature extractors).

    When it is called
        Once per plugin, when detkit first loads its plugins (the first time a
        component of any kind is looked up), in plugin load order.

    What it receives
        ``register``, a callable ``register(name, factory)``, valid only during this call.

    What it must do
        Call ``register(name, factory)`` once for each backbone it provides:
        ``name`` a non-empty string unique among backbones, ``factory`` a
        :class:`~detkit.interfaces.Backbone` subclass (or a callable returning
        an instance of one) that ``factory(**kwargs)`` builds from a config's
        keyword arguments. Return nothing.

    The built-in plugin registers ``toy``, the seed's three halving blocks.

    Examples
    --------
    ::

        @detkit.hookimpl
        def register_backbones(register):
            register("my_backbone", MyBackbone)
    """


@hookspec
def register_anchor_generators(register: Register) -> None:
    """Register :class:`~detkit.interfaces.AnchorGenerator` implementations.

    When it is called
        Once per plugin, when detkit first loads its plugins (the first time a
        component of any kind is looked up), in plugin load order.

    What it receives
        ``register``, a callable ``register(name, factory)``, valid only during this call.

    What it must do
        Call ``register(name, factory)`` once for each anchor generator it
        provides: ``name`` a non-empty string unique among anchor generators,
        ``factory`` an :class:`~detkit.interfaces.AnchorGenerator` subclass (or
        a callable returning an instance of one) that ``factory(**kwargs)``
        builds from a config's keyword arguments. Return nothing.

    The built-in plugin registers ``multibox_prior``, the seed's sizes and ratios.

    Examples
    --------
    ::

        @detkit.hookimpl
        def register_anchor_generators(register):
            register("my_anchors", MyAnchorGenerator)
    """


@hookspec
def register_target_assigners(register: Register) -> None:
    """Register :class:`~detkit.interfaces.TargetAssigner` implementations.

    When it is called
        Once per plugin, when detkit first loads its plugins (the first time a
        component of any kind is looked up), in plugin load order.

    What it receives
        ``register``, a callable ``register(name, factory)``, valid only during this call.

    What it must do
        Call ``register(name, factory)`` once for each target assigner it
        provides: ``name`` a non-empty string unique among target assigners,
        ``factory`` a :class:`~detkit.interfaces.TargetAssigner` subclass (or a
        callable returning an instance of one) that ``factory(**kwargs)`` builds
        from a config's keyword arguments. Return nothing.

    The built-in plugin registers ``multibox_target``, MXNet's ``MultiBoxTarget``.

    Examples
    --------
    ::

        @detkit.hookimpl
        def register_target_assigners(register):
            register("my_targets", MyTargetAssigner)
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register :class:`~detkit.interfaces.Loss` implementations.

    When it is called
        Once per plugin, when detkit first loads its plugins (the first time a
        component of any kind is looked up), in plugin load order.

    What it receives
        ``register``, a callable ``register(name, factory)``, valid only during this call.

    What it must do
        Call ``register(name, factory)`` once for each loss it provides:
        ``name`` a non-empty string unique among losses, ``factory`` a
        :class:`~detkit.interfaces.Loss` subclass (or a callable returning an
        instance of one) that ``factory(**kwargs)`` builds from a config's
        keyword arguments. Return nothing.

    The built-in plugin registers ``focal_smooth_l1``, the seed's focal loss plus smooth L1.

    Examples
    --------
    ::

        @detkit.hookimpl
        def register_losses(register):
            register("my_loss", MyLoss)
    """


@hookspec
def register_post_processors(register: Register) -> None:
    """Register :class:`~detkit.interfaces.PostProcessor` implementations.

    When it is called
        Once per plugin, when detkit first loads its plugins (the first time a
        component of any kind is looked up), in plugin load order.

    What it receives
        ``register``, a callable ``register(name, factory)``, valid only during this call.

    What it must do
        Call ``register(name, factory)`` once for each post-processor it
        provides: ``name`` a non-empty string unique among post-processors,
        ``factory`` a :class:`~detkit.interfaces.PostProcessor` subclass (or a
        callable returning an instance of one) that ``factory(**kwargs)`` builds
        from a config's keyword arguments. Return nothing.

    The built-in plugin registers ``multibox_detection``, softmax and MXNet's ``MultiBoxDetection``.

    Examples
    --------
    ::

        @detkit.hookimpl
        def register_post_processors(register):
            register("my_post_processor", MyPostProcessor)
    """
