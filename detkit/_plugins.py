"""Plugin discovery, isolation and the component registry they fill.

Plugins are loaded lazily, once, the first time a component is looked up:

1. the built-in plugins (:data:`DEFAULT_PLUGINS`), always;
2. the installed plugins of the entry point group ``detkit``, unless
   ``DETKIT_DISABLE_PLUGIN_AUTOLOAD`` is set; ``DETKIT_PLUGINS=a,b`` loads only
   the entry points named ``a`` and ``b``.

A plugin that cannot be imported, raises in a hook, or registers something that
breaks its interface's contract is skipped as a whole (none of its components
are registered) with one :class:`~detkit.errors.PluginWarning` naming the plugin,
its distribution and the reason. With ``DETKIT_STRICT_PLUGINS=1`` the failure
raises :class:`~detkit.errors.PluginError` instead (for plugin authors and CI).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import threading
import warnings
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from ._registry import KINDS, ComponentInfo, Registry
from .errors import DuplicateComponentError, PluginError, PluginWarning

#: Modules registered as plugins before any installed one: detkit's own components.
DEFAULT_PLUGINS: tuple[str, ...] = ("detkit.components",)

ENV_DISABLE_AUTOLOAD = "DETKIT_DISABLE_PLUGIN_AUTOLOAD"
ENV_ONLY = "DETKIT_PLUGINS"
ENV_STRICT = "DETKIT_STRICT_PLUGINS"

ACTIVE, DISABLED, FAILED = "active", "disabled", "failed"


@dataclasses.dataclass
class PluginInfo:
    """What detkit knows of one plugin.

    Attributes
    ----------
    name : str
        The plugin's name (its entry point name, or module name for built-ins).
    distribution : str or None
        The distribution (pip package) that provides it.
    version : str or None
        That distribution's version.
    status : str
        ``"active"``, ``"disabled"`` (not loaded by the environment's choice) or
        ``"failed"`` (skipped; ``reason`` says why).
    reason : str or None
        Why the plugin is not active.
    components : dict of str to list of str
        The names it registered, by kind (only for active plugins).
    """

    name: str
    distribution: str | None
    version: str | None
    status: str
    reason: str | None = None
    components: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() not in ("", "0", "false", "no", "off")


class _PluginHost:
    """The plugin manager, the registry and the plugin list, built once on first use."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._manager: pluggy.PluginManager | None = None
        self._registry = Registry()
        self._plugins: list[PluginInfo] = []

    @property
    def manager(self) -> pluggy.PluginManager:
        self._ensure_loaded()
        assert self._manager is not None  # set by _ensure_loaded; not an input check
        return self._manager

    @property
    def registry(self) -> Registry:
        self._ensure_loaded()
        return self._registry

    @property
    def plugins(self) -> list[PluginInfo]:
        self._ensure_loaded()
        return list(self._plugins)

    def reset(self) -> None:
        """Forget everything; the next lookup loads the plugins again (tests use this)."""
        with self._lock:
            self._manager = None
            self._registry = Registry()
            self._plugins = []

    def register_plugin(self, plugin: object, name: str, *, distribution: str | None = None,
                        version: str | None = None) -> PluginInfo:
        """Register an in-process plugin object (a module or class instance with hook implementations)."""
        manager = self.manager
        with self._lock:
            return self._add(manager, plugin, name, distribution, version)

    # -- loading -----------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._manager is not None:
            return
        with self._lock:
            if self._manager is not None:
                return
            manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            manager.add_hookspecs(hookspecs)
            self._manager = manager
            detkit_version = _distribution_version("detkit")
            for module_name in DEFAULT_PLUGINS:
                module = importlib.import_module(module_name)
                self._add(manager, module, module_name, "detkit", detkit_version)
            if _flag(ENV_DISABLE_AUTOLOAD):
                return
            only = {n.strip() for n in os.environ.get(ENV_ONLY, "").split(",") if n.strip()} or None
            for entry_point, distribution, version in _entry_points(hookspecs.PROJECT_NAME):
                if only is not None and entry_point.name not in only:
                    self._plugins.append(PluginInfo(
                        entry_point.name, distribution, version, DISABLED,
                        f"not listed in {ENV_ONLY}",
                    ))
                    continue
                try:
                    plugin = entry_point.load()
                except Exception as error:  # any import failure must not take detkit down
                    self._fail(entry_point.name, distribution, version,
                               f"import of {entry_point.value!r} failed: {type(error).__name__}: {error}")
                    continue
                self._add(manager, plugin, entry_point.name, distribution, version)

    def _add(self, manager: pluggy.PluginManager, plugin: object, name: str,
             distribution: str | None, version: str | None) -> PluginInfo:
        """Register one plugin and its components, all or nothing."""
        try:
            manager.register(plugin, name=name)
        except ValueError as error:  # pluggy: name already registered, or the same object twice
            return self._fail(name, distribution, version, str(error))
        except pluggy.PluginValidationError as error:
            return self._fail(name, distribution, version, f"invalid hook implementation: {error}", manager)
        staged: list[ComponentInfo] = []
        try:
            for kind, (_, hook_name) in KINDS.items():
                for implementation in getattr(manager.hook, hook_name).get_hookimpls():
                    if implementation.plugin is not plugin:
                        continue
                    implementation.function(register=_stager(staged, kind, name, distribution, version))
            trial = Registry()
            for info in staged:
                trial.add(info)  # checks names and interfaces before anything is committed
            for info in staged:
                self._registry.add(info)
        except DuplicateComponentError:
            manager.unregister(plugin)
            raise
        except Exception as error:  # a plugin's bug must not take detkit down
            reason = str(error) if isinstance(error, PluginError) else (
                f"a registration hook raised {type(error).__name__}: {error}")
            return self._fail(name, distribution, version, reason, manager, plugin)
        components: dict[str, list[str]] = {}
        for info in staged:
            components.setdefault(info.kind, []).append(info.name)
        record = PluginInfo(name, distribution, version, ACTIVE, None, components)
        self._plugins.append(record)
        return record

    def _fail(self, name: str, distribution: str | None, version: str | None, reason: str,
              manager: pluggy.PluginManager | None = None, plugin: object = None) -> PluginInfo:
        if manager is not None and plugin is not None and manager.is_registered(plugin):
            manager.unregister(plugin)
        record = PluginInfo(name, distribution, version, FAILED, reason)
        self._plugins.append(record)
        source = f" (distribution {distribution} {version or ''})".replace(" )", ")") if distribution else ""
        message = f"detkit plugin {name!r}{source} was skipped: {reason}"
        if _flag(ENV_STRICT):
            raise PluginError(message)
        warnings.warn(message, PluginWarning, stacklevel=4)
        return record


def _stager(staged: list[ComponentInfo], kind: str, plugin: str, distribution: str | None,
            version: str | None) -> Callable[[str, Callable[..., Any]], None]:
    def register(name: str, factory: Callable[..., Any]) -> None:
        staged.append(ComponentInfo(kind, name, factory, plugin, distribution, version))

    return register


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _entry_points(group: str) -> Iterable[tuple[Any, str | None, str | None]]:
    """Yield ``(entry_point, distribution name, version)`` of ``group``, sorted by name."""
    seen = set()
    found = []
    for distribution in metadata.distributions():
        for entry_point in distribution.entry_points:
            if entry_point.group != group:
                continue
            dist_name = distribution.metadata["Name"]
            key = (entry_point.name, dist_name)
            if key in seen:  # the same distribution on sys.path twice
                continue
            seen.add(key)
            found.append((entry_point, dist_name, distribution.version))
    return sorted(found, key=lambda item: (item[0].name, item[1] or ""))


_host = _PluginHost()


def get_registry() -> Registry:
    """The registry of every loaded plugin's components (loads the plugins on first use)."""
    return _host.registry


def get_plugin_manager() -> pluggy.PluginManager:
    """detkit's :class:`pluggy.PluginManager` (loads the plugins on first use)."""
    return _host.manager


def list_plugins() -> list[PluginInfo]:
    """Every plugin detkit found, active or not, in load order."""
    return _host.plugins


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Register an in-process plugin: a module or object with :data:`detkit.hookimpl` functions.

    Useful in scripts, notebooks and tests, where installing a package for one
    component is too much. Its components are available at once. A plugin that
    fails is skipped with a :class:`~detkit.errors.PluginWarning` (or raises in
    strict mode), as an installed one would be.

    Parameters
    ----------
    plugin : module or object
        Holds hook implementations such as ``register_backbones(register)``.
    name : str, optional
        The plugin's name; default: the module's ``__name__`` or the class name.

    Returns
    -------
    PluginInfo
        Its status and the components it registered.
    """
    if name is None:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return _host.register_plugin(plugin, name)
