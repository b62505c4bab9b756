"""Plugin discovery, isolation, the API version gate, and the component registry they fill.

Loading
-------
Plugins are loaded lazily, once, the first time a component is looked up, in
this order:

1. the built-in plugins (:data:`DEFAULT_PLUGINS`), always: detkit's own
   components are registered through the same hooks as everyone else's;
2. the installed plugins, the entry points of the group ``detkit``, sorted by
   entry point name, unless :data:`ENV_DISABLE_AUTOLOAD` is set;
   :data:`ENV_ONLY` (``DETKIT_PLUGINS=resnet,losses``) loads only the listed
   ones (entry point names or distribution names); the others are listed as
   ``"disabled"``;
3. plugins registered in-process with :func:`register_plugin`, when it is called.

detkit loads entry points itself rather than through pluggy's
``load_setuptools_entrypoints``, so that one plugin's import error cannot stop
the others from loading.

Isolation
---------
A plugin is registered all or nothing. It is skipped, none of its components
registered, with one :class:`~detkit.errors.PluginWarning` that names the
plugin, its distribution and the reason, when it

* cannot be imported;
* declares a plugin API range (``DETKIT_PLUGIN_API``) that excludes
  :data:`PLUGIN_API_VERSION` (status ``"incompatible"``) or cannot be parsed;
* has an invalid hook implementation, or implements a hook that detkit does not
  have (a typo such as ``register_backbone``), unless it is marked
  ``@hookimpl(optionalhook=True)``;
* raises in a registration hook;
* registers a name that is not a non-empty string, a factory that is not
  callable, a class that does not implement the hook's interface or leaves some
  of its abstract members unimplemented, or the same kind and name twice;
* registers a kind and name that an earlier plugin already registered.

Everything else keeps working. ``DETKIT_STRICT_PLUGINS=1`` (:data:`ENV_STRICT`)
turns each of these into an exception instead: :class:`~detkit.errors.PluginError`,
or its subclasses :class:`~detkit.errors.IncompatiblePluginError` and
:class:`~detkit.errors.DuplicateComponentError`; detkit then stays unloaded, and
every lookup raises again until the environment is fixed.

Duplicate names
---------------
Component names are unique per kind, and nothing overrides anything: the first
plugin to register a kind and name keeps it, in the load order above (so a
built-in can never be shadowed), and a later plugin that registers it again is
skipped as a whole, with a warning (or, in strict mode, a
:class:`~detkit.errors.DuplicateComponentError`) that names both plugins and
their distributions. Uninstall one of them, or choose with ``DETKIT_PLUGINS``.

The plugin API version
----------------------
:data:`PLUGIN_API_VERSION` is ``"MAJOR.MINOR"``. A minor release adds hooks or
optional features and keeps every plugin of the same major version working; a
major release may break plugins. A plugin module declares the versions it
supports in a module attribute::

    DETKIT_PLUGIN_API = ">=1.0,<2"   # comma-separated, all must hold

a PEP 440 version specifier read by ``packaging`` (``>=``, ``>``, ``<=``, ``<``,
``==``, ``!=``, ``~=``; missing parts are 0, so ``<2`` means below 2.0); an int
``N`` is short for ``">=N.0,<N+1"``. A plugin that declares nothing is assumed
compatible.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import threading
import warnings
from importlib import metadata
from typing import Any, Callable, Iterable, Optional

import pluggy

from .. import hookspecs
from .._base import DISTRIBUTION
from ._api import API_ATTRIBUTE, PLUGIN_API_VERSION, api_compatible
from ._registry import KINDS, ComponentInfo, Registry
from ..errors import (
    DuplicateComponentError,
    IncompatiblePluginError,
    InputError,
    PluginError,
    PluginWarning,
)

#: Modules registered as plugins before any installed one: detkit's own components.
DEFAULT_PLUGINS: tuple[str, ...] = ("detkit.components",)

#: Set (to anything but ``0``/``false``/``no``/``off``) to load no installed plugin.
ENV_DISABLE_AUTOLOAD = "DETKIT_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated entry point or distribution names: load only these installed plugins.
ENV_ONLY = "DETKIT_PLUGINS"
#: Set to make every plugin failure an exception instead of a warning.
ENV_STRICT = "DETKIT_STRICT_PLUGINS"

ACTIVE, DISABLED, INCOMPATIBLE, FAILED = "active", "disabled", "incompatible", "failed"
#: Every status a plugin can have, in the order ``detkit plugins`` explains them.
STATUSES = (ACTIVE, DISABLED, INCOMPATIBLE, FAILED)

_HOOK_NAMES = frozenset(hook_name for _, hook_name in KINDS.values())


@dataclasses.dataclass
class PluginInfo:
    """What detkit knows of one plugin.

    Attributes
    ----------
    name : str
        The plugin's name: its entry point name, the module name of a built-in,
        or the name given to :func:`register_plugin`.
    distribution : str or None
        The distribution (pip package) that provides it; ``None`` for in-process plugins.
    version : str or None
        That distribution's version.
    status : str
        ``"active"``; ``"disabled"`` (not loaded, by the environment's choice);
        ``"incompatible"`` (its declared plugin API range excludes
        :data:`PLUGIN_API_VERSION`); or ``"failed"`` (skipped; ``reason`` says why).
    reason : str or None
        Why the plugin is not active.
    components : dict of str to list of str
        The names it registered, by kind (only for active plugins).
    module : str or None
        What its entry point points at (``"detkit_resnet"``), or the module name.
    api : str or None
        The plugin API range it declares (``">=1.0,<2"``), or ``None``.
    """

    name: str
    distribution: Optional[str]
    version: Optional[str]
    status: str
    reason: Optional[str] = None
    components: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    module: Optional[str] = None
    api: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``components`` has every kind, with an empty list where it registers none."""
        record = dataclasses.asdict(self)
        record["components"] = {kind: list(self.components.get(kind, [])) for kind in KINDS}
        return record


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() not in ("", "0", "false", "no", "off")


# -- the host ---------------------------------------------------------------------------


@dataclasses.dataclass
class _State:
    """One complete load: the manager, the registry and the plugin records."""

    manager: pluggy.PluginManager
    registry: Registry
    plugins: list[PluginInfo]


class _Skip(Exception):
    """Internal: a plugin is skipped; carries the status and the exception class of strict mode."""

    def __init__(self, reason: str, status: str = FAILED, error_class: type[PluginError] = PluginError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.error_class = error_class


class _PluginHost:
    """The plugin manager, the registry and the plugin list, built once on first use."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state: _State | None = None
        self._loading = False

    @property
    def manager(self) -> pluggy.PluginManager:
        return self.ensure_loaded().manager

    @property
    def registry(self) -> Registry:
        return self.ensure_loaded().registry

    @property
    def plugins(self) -> list[PluginInfo]:
        return list(self.ensure_loaded().plugins)

    def reset(self) -> None:
        """Forget everything; the next lookup loads the plugins again (tests use this)."""
        with self._lock:
            self._state = None

    def ensure_loaded(self, *, strict: bool | None = None) -> _State:
        """Load the plugins unless loaded; ``strict`` overrides :data:`ENV_STRICT` for this load."""
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is not None:
                return self._state
            if self._loading:
                raise PluginError(
                    "a plugin looked up detkit components while detkit was loading its plugins; "
                    "look components up when they are used, not at import time or in a registration hook"
                )
            self._loading = True
            try:
                state = self._load(_flag(ENV_STRICT) if strict is None else strict)
            finally:
                self._loading = False
            self._state = state  # only a complete load is kept; strict mode raises before this
            return state

    def register_plugin(self, plugin: object, name: str) -> PluginInfo:
        state = self.ensure_loaded()
        with self._lock:
            return self._add(state, plugin, name, None, None, _module_name(plugin), _flag(ENV_STRICT))

    def unregister_plugin(self, name: str) -> PluginInfo:
        state = self.ensure_loaded()
        with self._lock:
            records = [record for record in state.plugins if record.name == name]
            if not records:
                raise InputError(
                    f"The 'name' argument must name a loaded plugin; got {name!r} instead. Loaded plugins: "
                    f"{', '.join(record.name for record in state.plugins) or '(none)'}."
                )
            if state.manager.has_plugin(name):
                state.manager.unregister(name=name)
            registry = Registry()
            for info in state.registry.infos():
                if info.plugin != name:
                    registry.add(info)
            self._state = _State(state.manager, registry, [r for r in state.plugins if r.name != name])
            return records[-1]

    # -- loading -----------------------------------------------------------------

    def _load(self, strict: bool) -> _State:
        manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        manager.add_hookspecs(hookspecs)
        state = _State(manager, Registry(), [])
        detkit_version = _distribution_version(DISTRIBUTION)
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            self._add(state, module, module_name, DISTRIBUTION, detkit_version, module_name, strict)
        entry_points = _entry_points(hookspecs.PROJECT_NAME)
        if _flag(ENV_DISABLE_AUTOLOAD):
            for entry_point, distribution, version in entry_points:
                state.plugins.append(PluginInfo(
                    entry_point.name, distribution, version, DISABLED,
                    f"{ENV_DISABLE_AUTOLOAD} is set", module=entry_point.value,
                ))
            return state
        only = _only_names()
        if only is not None:
            unknown = [name for name in only if not any(_selected(name, ep, dist) for ep, dist, _ in entry_points)]
            if unknown:
                installed = sorted({entry_point.name for entry_point, _, _ in entry_points})
                warnings.warn(
                    f"{ENV_ONLY} names {', '.join(map(repr, unknown))}, which matches no installed detkit "
                    f"plugin (entry point or distribution name); installed plugins: "
                    f"{', '.join(installed) or '(none)'}",
                    PluginWarning,
                    stacklevel=_outside_detkit(),
                )
        for entry_point, distribution, version in entry_points:
            if only is not None and not any(_selected(name, entry_point, distribution) for name in only):
                state.plugins.append(PluginInfo(
                    entry_point.name, distribution, version, DISABLED,
                    f"not listed in {ENV_ONLY}={os.environ.get(ENV_ONLY, '')}", module=entry_point.value,
                ))
                continue
            try:
                plugin = entry_point.load()
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # any import failure, sys.exit() too, must not take detkit down
                self._fail(state, entry_point.name, distribution, version, entry_point.value, None, _Skip(
                    f"importing {entry_point.value!r} failed: {type(error).__name__}: {error}"), strict)
                continue
            self._add(state, plugin, entry_point.name, distribution, version, entry_point.value, strict)
        return state

    def _add(self, state: _State, plugin: object, name: str, distribution: str | None, version: str | None,
             module: str | None, strict: bool) -> PluginInfo:
        """Register one plugin and its components, all or nothing."""
        declared = getattr(plugin, API_ATTRIBUTE, None)
        api = None if declared is None else str(declared)
        manager = state.manager
        try:
            if not isinstance(name, str) or not name:
                raise _Skip(f"a plugin name must be a non-empty string; got {name!r}")
            if declared is not None:
                _check_api(declared)
            if manager.has_plugin(name):
                other = next((r for r in state.plugins if r.name == name), None)
                raise _Skip(
                    f"another plugin named {name!r}{_source(other.distribution, other.version) if other else ''} "
                    "is already registered; plugin names must be unique"
                )
            try:
                manager.register(plugin, name=name)
            except ValueError as error:  # pluggy: the same object registered twice
                raise _Skip(str(error)) from None
            except pluggy.PluginValidationError as error:
                lines = (line.strip() for line in str(error).splitlines())
                raise _Skip(f"invalid hook implementation: {'; '.join(line for line in lines if line)}") from None
            try:
                staged = _stage(manager, plugin, name, distribution, version)
                _check_duplicates(state.registry, staged)
            except BaseException:
                manager.unregister(plugin)
                raise
        except _Skip as skip:
            return self._fail(state, name, distribution, version, module, api, skip, strict)
        for info in staged:
            state.registry.add(info)  # cannot fail: checked above
        components: dict[str, list[str]] = {}
        for info in staged:
            components.setdefault(info.kind, []).append(info.name)
        record = PluginInfo(name, distribution, version, ACTIVE, None, components, module, api)
        state.plugins.append(record)
        return record

    def _fail(self, state: _State, name: str, distribution: str | None, version: str | None,
              module: str | None, api: str | None, skip: _Skip, strict: bool) -> PluginInfo:
        message = f"detkit plugin {name!r}{_source(distribution, version)} was skipped: {skip.reason}"
        if strict:
            raise skip.error_class(message)
        record = PluginInfo(name, distribution, version, skip.status, skip.reason, {}, module, api)
        state.plugins.append(record)
        warnings.warn(message, PluginWarning, stacklevel=_outside_detkit())
        return record


def _outside_detkit() -> int:
    """The ``stacklevel`` of the first caller outside the detkit package: the user's line that loaded plugins."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = inspect.currentframe()
    level = 0
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    return max(level, 1)


def _check_api(declared: Any) -> None:
    try:
        compatible = api_compatible(declared)
    except InputError as error:
        raise _Skip(str(error)) from None
    if not compatible:
        raise _Skip(
            f"it supports the detkit plugin API {declared}, but this detkit provides plugin API "
            f"{PLUGIN_API_VERSION}; install a version of the plugin made for it",
            INCOMPATIBLE,
            IncompatiblePluginError,
        )


def _stage(manager: pluggy.PluginManager, plugin: object, name: str, distribution: str | None,
           version: str | None) -> list[ComponentInfo]:
    """Call the plugin's registration hooks and check what they register; commit nothing."""
    try:
        # Every plugin registered before this one passed the same check, so what fails is this one's.
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        unknown = [caller.name for caller in manager.get_hookcallers(plugin) or []
                   if caller.name not in _HOOK_NAMES
                   and not all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin)]
        raise _Skip(
            f"it implements {', '.join(f'{hook}()' for hook in unknown) or error}, which is not a detkit hook "
            f"(detkit's hooks: {', '.join(sorted(_HOOK_NAMES))}); fix the name, or mark a hook of a newer "
            "detkit @hookimpl(optionalhook=True)"
        ) from None
    staged: list[ComponentInfo] = []
    for kind, (_, hook_name) in KINDS.items():
        for implementation in getattr(manager.hook, hook_name).get_hookimpls():
            if implementation.plugin is not plugin:
                continue
            if getattr(implementation, "hookwrapper", False) or getattr(implementation, "wrapper", False):
                raise _Skip(f"its {hook_name}() is a hook wrapper; a registration hook is a plain @hookimpl")
            open_ = [True]

            def register(component_name: str, factory: Callable[..., Any], *, _kind: str = kind,
                         _open: list[bool] = open_) -> None:
                if not _open[0]:
                    raise PluginError(
                        f"plugin {name!r} called register() after its hook returned; call it inside the hook"
                    )
                staged.append(ComponentInfo(_kind, component_name, factory, name, distribution, version))

            arguments = {argument: register for argument in implementation.argnames}
            try:
                implementation.function(**arguments)
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # a plugin's bug, sys.exit() too, must not take detkit down
                raise _Skip(f"its hook {hook_name}() raised {type(error).__name__}: {error}") from None
            finally:
                open_[0] = False
    seen: set[tuple[str, Any]] = set()
    for info in staged:
        interface = KINDS[info.kind][0]
        key = (info.kind, info.name)
        if key in seen:
            raise _Skip(f"it registers {info.kind} {info.name!r} twice", FAILED, DuplicateComponentError)
        seen.add(key)
        if not isinstance(info.name, str) or not info.name:
            raise _Skip(f"it registered a {info.kind} whose name is {info.name!r}; a name must be a non-empty string")
        if not callable(info.factory):
            raise _Skip(
                f"it registered {info.kind} {info.name!r} with a factory that is not callable: {info.factory!r}"
            )
        if inspect.isclass(info.factory):
            where = f"{info.factory.__module__}.{info.factory.__qualname__}"
            required = f"{interface.__module__}.{interface.__qualname__}"
            if not issubclass(info.factory, interface):
                raise _Skip(
                    f"it registered {info.kind} {info.name!r} as {where}, which does not implement {required}"
                )
            if inspect.isabstract(info.factory):
                missing = ", ".join(sorted(getattr(info.factory, "__abstractmethods__", ())))
                raise _Skip(
                    f"it registered {info.kind} {info.name!r} as {where}, which does not implement "
                    f"the abstract member(s) {missing} of {required}"
                )
    return staged


def _check_duplicates(registry: Registry, staged: list[ComponentInfo]) -> None:
    for info in staged:
        if info.name not in registry.names(info.kind):
            continue
        existing = registry.get(info.kind, info.name)
        raise _Skip(
            f"its {info.kind} {info.name!r} is already registered by plugin {existing.plugin!r}"
            f"{_source(existing.distribution, existing.version)}; the first plugin keeps a name. "
            f"Uninstall one of the two, or choose one with {ENV_ONLY}",
            FAILED,
            DuplicateComponentError,
        )


def _source(distribution: str | None, version: str | None) -> str:
    if not distribution:
        return ""
    return f" (distribution {distribution} {version})" if version else f" (distribution {distribution})"


def _module_name(plugin: object) -> str | None:
    if inspect.ismodule(plugin):
        return plugin.__name__
    kind = plugin if inspect.isclass(plugin) else type(plugin)
    return f"{kind.__module__}.{kind.__qualname__}"


def _normalise(name: str) -> str:
    """A distribution name as PEP 503 compares it: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


normalise_distribution = _normalise


def _only_names() -> list[str] | None:
    """The names listed in :data:`ENV_ONLY`, or ``None`` when it is unset or empty."""
    names = [name.strip() for name in os.environ.get(ENV_ONLY, "").split(",") if name.strip()]
    return names or None


def _selected(name: str, entry_point: Any, distribution: str | None) -> bool:
    """Whether a name listed in :data:`ENV_ONLY` selects this entry point (by its name or distribution's)."""
    return name == entry_point.name or (distribution is not None and _normalise(name) == _normalise(distribution))


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _entry_points(group: str) -> list[tuple[Any, str | None, str | None]]:
    """``(entry_point, distribution name, version)`` of ``group``, sorted by entry point name.

    A distribution found twice on ``sys.path`` counts once, as the first found
    (the one that ``import`` would use).
    """
    seen = set()
    found = []
    for distribution in metadata.distributions():
        try:
            dist_name = distribution.metadata["Name"]
            entry_points: Iterable[Any] = distribution.entry_points
        except Exception:  # a distribution with unreadable metadata is no plugin of ours
            continue
        for entry_point in entry_points:
            if entry_point.group != group:
                continue
            key = (entry_point.name, _normalise(dist_name or ""))
            if key in seen:
                continue
            seen.add(key)
            found.append((entry_point, dist_name, distribution.version))
    return sorted(found, key=lambda item: (item[0].name, item[1] or ""))


_HOST = _PluginHost()


def reset_plugins() -> None:
    """Forget every loaded plugin; the next lookup loads them again (tests use it)."""
    _HOST.reset()


def load_plugins(*, strict: bool | None = None) -> None:
    """Load the plugins now if they are not loaded yet (``strict=None``: as :data:`ENV_STRICT` says)."""
    _HOST.ensure_loaded(strict=strict)


def strict_mode() -> bool:
    """Whether :data:`ENV_STRICT` asks for plugin failures to be exceptions."""
    return _flag(ENV_STRICT)


def get_registry() -> Registry:
    """The registry of every loaded plugin's components (loads the plugins on first use)."""
    return _HOST.registry


def get_plugin_manager() -> pluggy.PluginManager:
    """detkit's :class:`pluggy.PluginManager` (loads the plugins on first use)."""
    return _HOST.manager


def list_plugins() -> list[PluginInfo]:
    """Every plugin detkit found, active or not, in load order (loads the plugins on first use).

    Returns
    -------
    list of PluginInfo
        The built-in plugins first, then the installed ones by entry point name,
        then the in-process ones in the order they were registered.
    """
    return _HOST.plugins


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Register an in-process plugin: a module or object with :data:`detkit.hookimpl` functions.

    Useful in scripts, notebooks and tests, where installing a package for one
    component is too much. Its components are available at once. A plugin that
    fails is skipped with a :class:`~detkit.errors.PluginWarning` (or raises in
    strict mode), as an installed one would be; so is one that registers a
    component name that is taken.

    Parameters
    ----------
    plugin : module or object
        Holds hook implementations such as ``register_backbones(register)``, and
        optionally a ``DETKIT_PLUGIN_API`` declaration.
    name : str, optional
        The plugin's name, unique among plugins; default: the module's
        ``__name__`` or the class name.

    Returns
    -------
    PluginInfo
        Its status and the components it registered.

    Examples
    --------
    >>> import detkit
    >>> from detkit.components import ToyBackbone
    >>> class Tiny(ToyBackbone):
    ...     def __init__(self, filters=(4, 8)):
    ...         super().__init__(filters)
    >>> class MyPlugin:
    ...     @detkit.hookimpl
    ...     def register_backbones(self, register):
    ...         register("tiny", Tiny)
    >>> detkit.register_plugin(MyPlugin(), name="my-plugin").components
    {'backbone': ['tiny']}
    >>> detkit.unregister_plugin("my-plugin").name
    'my-plugin'
    """
    if name is None:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return _HOST.register_plugin(plugin, name)


def unregister_plugin(name: str) -> PluginInfo:
    """Remove a plugin and the components it registered (an in-process one, typically).

    Detectors already built keep working; new lookups of its components fail.
    The plugin's record disappears from :func:`list_plugins`.

    Parameters
    ----------
    name : str
        The plugin's name, as :func:`list_plugins` shows it.

    Returns
    -------
    PluginInfo
        The record of the removed plugin.

    Raises
    ------
    InputError
        If no plugin of that name is loaded; the message lists the loaded ones.
    """
    return _HOST.unregister_plugin(name)
