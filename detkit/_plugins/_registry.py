"""Components by kind and name, filled by the plugins' registration hooks."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Mapping, Sequence

from ..errors import ComponentNotFoundError, DetkitError, DuplicateComponentError, InputError, PluginError
from ..interfaces import AnchorGenerator, Backbone, Component, Loss, PostProcessor, TargetAssigner

#: kind -> (interface, registration hook name). The order is the data flow's.
KINDS: Mapping[str, tuple[type[Component], str]] = {
    "backbone": (Backbone, "register_backbones"),
    "anchor_generator": (AnchorGenerator, "register_anchor_generators"),
    "target_assigner": (TargetAssigner, "register_target_assigners"),
    "loss": (Loss, "register_losses"),
    "post_processor": (PostProcessor, "register_post_processors"),
}


@dataclasses.dataclass(frozen=True)
class ComponentInfo:
    """A registered component: what it is and which plugin provides it.

    Attributes
    ----------
    kind : str
        One of ``"backbone"``, ``"anchor_generator"``, ``"target_assigner"``,
        ``"loss"``, ``"post_processor"``.
    name : str
        The name it is built by.
    factory : callable
        The class (or callable) that ``factory(**kwargs)`` builds it with.
    plugin : str
        The name of the plugin that registered it.
    distribution : str or None
        The installed distribution that provides the plugin (``None`` if unknown).
    version : str or None
        That distribution's version.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str | None = None
    version: str | None = None


def check_kind(kind: str) -> tuple[type[Component], str]:
    """Return ``(interface, hook name)`` of ``kind``; raise :class:`InputError` for an unknown kind."""
    try:
        return KINDS[kind]
    except KeyError:
        raise InputError(
            f"The 'kind' argument must be one of {', '.join(KINDS)}; got {kind!r} instead."
        ) from None


class Registry:
    """Components by kind and name."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, ComponentInfo]] = {kind: {} for kind in KINDS}

    def add(self, info: ComponentInfo) -> None:
        """Add a component; two components of one kind may not share a name."""
        interface, _ = check_kind(info.kind)
        if not isinstance(info.name, str) or not info.name:
            raise PluginError(
                f"plugin {info.plugin!r} registered a {info.kind} whose name is {info.name!r}; "
                "a name must be a non-empty string"
            )
        if not callable(info.factory):
            raise PluginError(
                f"plugin {info.plugin!r} registered {info.kind} {info.name!r} with a factory "
                f"that is not callable: {info.factory!r}"
            )
        if inspect.isclass(info.factory) and not issubclass(info.factory, interface):
            raise PluginError(
                f"plugin {info.plugin!r} registered {info.kind} {info.name!r} as "
                f"{info.factory.__module__}.{info.factory.__qualname__}, which does not "
                f"implement {interface.__module__}.{interface.__qualname__}"
            )
        existing = self._components[info.kind].get(info.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{info.kind} {info.name!r} is registered twice: by plugin {existing.plugin!r}"
                f"{_from(existing)} and by plugin {info.plugin!r}{_from(info)}; "
                "uninstall one of them, or limit loading with DETKIT_PLUGINS"
            )
        self._components[info.kind][info.name] = info

    def get(self, kind: str, name: str) -> ComponentInfo:
        """Return the component ``name`` of ``kind``; an unknown name lists the known ones."""
        check_kind(kind)
        try:
            return self._components[kind][name]
        except (KeyError, TypeError):
            known = sorted(self._components[kind])
            close = _close_names(str(name), known)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ComponentNotFoundError(
                f"There is no {kind} named {name!r}. Registered {kind} names: "
                f"{', '.join(known) or '(none)'}.{hint} Components of installed plugins "
                "are listed by `detkit plugins`."
            ) from None

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        check_kind(kind)
        return sorted(self._components[kind])

    def infos(self) -> list[ComponentInfo]:
        """Every registered component, by kind then name."""
        return [self._components[kind][name] for kind in KINDS for name in sorted(self._components[kind])]

    def find(self, kind: str, component: Component) -> ComponentInfo | None:
        """The registration whose factory is ``type(component)``, or ``None``."""
        for info in self._components[kind].values():
            if info.factory is type(component):
                return info
        return None

    def check(self, kind: str, name: str, kwargs: Mapping[str, Any] | None = None) -> ComponentInfo:
        """Check that ``name`` of ``kind`` exists and takes ``kwargs``, without building it (no network is made)."""
        info = self.get(kind, name)
        _check_arguments(info, dict(kwargs or {}))
        return info

    def build(self, kind: str, name: str, kwargs: Mapping[str, Any] | None = None) -> Component:
        """Build the component ``name`` of ``kind`` from keyword arguments."""
        interface, _ = check_kind(kind)
        info = self.check(kind, name, kwargs)
        kwargs = dict(kwargs or {})
        try:
            component = info.factory(**kwargs)
        except (DetkitError, KeyboardInterrupt):  # a checked argument: its message names it already
            raise
        except BaseException as error:  # a plugin's bug, sys.exit() too, must not take detkit down
            raise PluginError(
                f"{kind} {name!r} of plugin {info.plugin!r}{_from(info)} could not be built with "
                f"{kwargs!r}: {type(error).__name__}: {error}"
            ) from error
        if not isinstance(component, interface):
            raise PluginError(
                f"{kind} {name!r} of plugin {info.plugin!r}{_from(info)} built a "
                f"{type(component).__qualname__}, which does not implement "
                f"{interface.__module__}.{interface.__qualname__}"
            )
        return component


def _close_names(name: str, known: Sequence[str]) -> list[str]:
    """The names to suggest for ``name``: those it begins (``resnet18`` -> ``resnet18_v1``), else the closest one."""
    lowered = name.lower()
    started = [k for k in known if lowered and k.lower().startswith(lowered)]
    if started:
        return started[:2]
    return difflib.get_close_matches(name, known, n=1)


def parse_component_spec(kind: str, spec: Any) -> tuple[str, dict[str, Any]]:
    """``(name, kwargs)`` of a component given by name, ``(name, kwargs)`` pair or mapping (not an instance).

    A mapping is ``{"name": ..., "kwargs": {...}}`` or ``{"name": ..., **kwargs}``;
    a ``provided_by`` key (written by ``SSDDetector.save``) is ignored.
    """
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        return spec[0], dict(spec[1])
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        rest = {key: value for key, value in spec.items() if key not in ("name", "provided_by")}
        if "kwargs" in rest:
            if set(rest) != {"kwargs"} or not isinstance(rest["kwargs"], Mapping):
                raise InputError(
                    f"The '{kind}' mapping must be {{'name': ..., 'kwargs': {{...}}}} or {{'name': ..., **kwargs}}; "
                    f"got {dict(spec)!r} instead."
                )
            rest = dict(rest["kwargs"])
        return spec["name"], rest
    raise InputError(
        f"The '{kind}' argument must be a registered name, a (name, kwargs) pair, a mapping with a "
        f"'name' key, or a component instance; got {spec!r} instead."
    )


def _from(info: ComponentInfo) -> str:
    if info.distribution is None:
        return ""
    return f" (distribution {info.distribution} {info.version or ''})".replace(" )", ")")


def _check_arguments(info: ComponentInfo, kwargs: Mapping[str, Any]) -> None:
    """Name unknown or missing keyword arguments before the factory fails deep inside."""
    try:
        signature = inspect.signature(info.factory)
    except (TypeError, ValueError):  # builtins and C callables: let the call itself complain
        return
    parameters = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [
        p.name
        for p in parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("prefix", "params")
    ]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise InputError(
            f"{info.kind} {info.name!r} does not take the argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted) or '(no arguments)'}."
        )
    missing = [
        p.name
        for p in parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs
    ]
    if missing:
        raise InputError(
            f"{info.kind} {info.name!r} needs the argument(s) {', '.join(map(repr, missing))}."
        )
