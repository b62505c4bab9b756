"""Deprecating public names: they keep working, warn, and say what replaces them.

detkit's policy (``docs/compatibility.rst``): a public name, argument or
behaviour that is going away is first *deprecated* — it keeps working for at
least one minor release and issues a :class:`DeprecationWarning` that names the
version it was deprecated in, the replacement, and the version that may remove
it — and is removed only in a major release. Each deprecation also gets a
``.. deprecated::`` note in its docstring (added by these helpers) and an entry
under "Deprecated" in ``CHANGELOG.md``.

The helpers, for detkit's maintainers:

:func:`deprecated`
    Decorates a function, method or class that is going away.
:func:`renamed_argument`
    Decorates a function whose keyword argument was renamed.
:func:`deprecated_attributes`
    Returns a module ``__getattr__`` (:pep:`562`) that serves renamed or removed
    module attributes with a warning.
:func:`warn_deprecated`
    Issues the warning, for everything else (a deprecated argument value, say).

Examples
--------
A renamed function keeps its old name as a deprecated alias::

    from detkit._base._deprecation import deprecated

    def component_names(kind): ...

    @deprecated(since="0.2", replacement="detkit.component_names")
    def registered_names(kind):
        \"\"\"The registered component names of ``kind``.\"\"\"
        return component_names(kind)

A module attribute that moved, in the module that had it::

    from detkit._base._deprecation import deprecated_attributes

    __getattr__ = deprecated_attributes(__name__, {
        "PRESET_NAMES": ("detkit.config.PRESETS", lambda: tuple(PRESETS), "0.2"),
    })
"""

from __future__ import annotations

import functools
import inspect
import re
import textwrap
import warnings
from typing import Any, Callable, Mapping, Optional, Tuple, TypeVar

__all__ = [
    "deprecated",
    "deprecated_attributes",
    "deprecation_message",
    "removal_version",
    "renamed_argument",
    "warn_deprecated",
]

_T = TypeVar("_T")
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?$")


def removal_version(since: str) -> str:
    """The first version that may remove what was deprecated in ``since``: the next major one.

    Before 1.0 that is ``"1.0"``: detkit does not remove a deprecated name in a
    0.x minor release either.

    >>> removal_version("0.3")
    '1.0'
    >>> removal_version("1.4.2")
    '2.0'
    """
    match = _VERSION.match(since)
    if match is None:
        raise ValueError(f"The 'since' argument must be a version such as '1.2'; got {since!r} instead.")
    return f"{int(match.group(1)) + 1}.0"


def _check_removal(since: str, removal: Optional[str]) -> str:
    earliest = removal_version(since)
    if removal is None:
        return earliest
    match = _VERSION.match(removal)
    if match is None or match.group(2) != "0" or int(match.group(1)) < int(earliest.split(".")[0]):
        raise ValueError(
            f"The 'removal' argument must be a major version (X.0) after {since}, at the earliest "
            f"{earliest}; got {removal!r} instead."
        )
    return removal


def deprecation_message(name: str, *, since: str, replacement: Optional[str] = None,
                        removal: Optional[str] = None, details: str = "") -> str:
    """The text of the warning: what is deprecated, since when, until when, and what to use.

    >>> deprecation_message("detkit.old", since="0.2", replacement="detkit.new")
    'detkit.old is deprecated since detkit 0.2 and will be removed in detkit 1.0; use detkit.new instead.'
    """
    removal = _check_removal(since, removal)
    text = f"{name} is deprecated since detkit {since} and will be removed in detkit {removal}"
    text += f"; use {replacement} instead." if replacement else "."
    return f"{text} {details}".strip()


def warn_deprecated(name: str, *, since: str, replacement: Optional[str] = None, removal: Optional[str] = None,
                    details: str = "", stacklevel: int = 2) -> None:
    """Issue the :class:`DeprecationWarning` of ``name`` (see :func:`deprecation_message`).

    ``stacklevel`` counts as for :func:`warnings.warn` from the caller of this
    function: the default 2 points at the code that called the deprecated function.
    """
    warnings.warn(
        deprecation_message(name, since=since, replacement=replacement, removal=removal, details=details),
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )


def _note(doc: Optional[str], since: str, text: str) -> str:
    """``doc`` with a ``.. deprecated::`` directive after its summary line."""
    doc = inspect.cleandoc(doc or "")
    summary, _, rest = doc.partition("\n")
    directive = f".. deprecated:: {since}\n" + textwrap.indent(textwrap.fill(text, 76), "   ")
    return f"{summary}\n\n{directive}\n" + (f"\n{rest.strip()}\n" if rest.strip() else "")


def deprecated(*, since: str, replacement: Optional[str] = None, removal: Optional[str] = None,
               details: str = "") -> Callable[[_T], _T]:
    """Mark a function, method or class as deprecated.

    Calling it (instantiating the class) issues a :class:`DeprecationWarning`
    that points at the caller; its docstring gets a ``.. deprecated::`` note.
    Everything else about it stays as it was.

    Parameters
    ----------
    since : str
        The version that deprecates it, ``"MAJOR.MINOR"``.
    replacement : str, optional
        What to use instead, as users write it (``"detkit.component_names"``).
    removal : str, optional
        The major version that may remove it; default and earliest: the next major version.
    details : str, optional
        A sentence added to the message.

    Examples
    --------
    >>> import warnings
    >>> @deprecated(since="0.2", replacement="new_function")
    ... def old_function(x):
    ...     "Double x."
    ...     return 2 * x
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     old_function(21)
    42
    >>> print("warning:", caught[0].message)  # doctest: +ELLIPSIS
    warning: ...old_function is deprecated since detkit 0.2 and will be removed in detkit 1.0; use new_function instead.
    """
    removal = _check_removal(since, removal)

    def decorate(obj: _T) -> _T:
        target: Any = obj
        name = _public_name(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}")

        def warn() -> None:
            # stacklevel 3: warn_deprecated's caller is warn, whose caller is the wrapper,
            # whose caller is the user's code.
            warn_deprecated(name, since=since, replacement=replacement, removal=removal, details=details,
                            stacklevel=3)

        note = deprecation_message(name, since=since, replacement=replacement, removal=removal, details=details)
        if inspect.isclass(target):
            original_init = target.__init__

            @functools.wraps(original_init)
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                warn()
                original_init(self, *args, **kwargs)

            setattr(target, "__init__", __init__)  # noqa: B010 (mypy forbids assigning a method)
            target.__doc__ = _note(target.__doc__, since, note)
            return obj
        if not callable(target):
            raise TypeError(f"@deprecated decorates functions, methods and classes; got {target!r} instead.")

        @functools.wraps(target)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            warn()
            return target(*args, **kwargs)

        wrapper.__doc__ = _note(getattr(target, "__doc__", None), since, note)
        result: Any = wrapper
        return result

    return decorate


def _public_name(name: str) -> str:
    """``detkit._training.fit`` -> ``detkit.fit``: the name users import, where the package re-exports it."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "detkit" and parts[1].startswith("_"):
        return ".".join([parts[0], *parts[2:]])
    return name


def renamed_argument(old: str, new: str, *, since: str, removal: Optional[str] = None) -> Callable[[_T], _T]:
    """Accept the keyword argument ``old`` as a deprecated spelling of ``new``.

    A call that passes ``old=...`` warns and is forwarded as ``new=...``; passing
    both is a :class:`TypeError`.

    >>> import warnings
    >>> @renamed_argument("thresh", "threshold", since="0.2")
    ... def keep(scores, threshold=0.5):
    ...     return [s for s in scores if s >= threshold]
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     keep([0.2, 0.7], thresh=0.6)
    [0.7]
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    The 'thresh' argument of ...keep is deprecated since detkit 0.2 and will be removed in detkit 1.0; use 'threshold' instead.
    """
    removal = _check_removal(since, removal)

    def decorate(function: _T) -> _T:
        target: Any = function
        name = _public_name(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}")

        @functools.wraps(target)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{name}() got both {old!r} (deprecated) and {new!r}; pass only {new!r}.")
                warn_deprecated(f"The {old!r} argument of {name}", since=since, replacement=repr(new),
                                removal=removal, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return target(*args, **kwargs)

        result: Any = wrapper
        return result

    return decorate


#: A deprecated module attribute: ``(replacement, getter, since)``, the getter returning its value.
DeprecatedAttribute = Tuple[Optional[str], Callable[[], Any], str]


def deprecated_attributes(module: str, attributes: Mapping[str, DeprecatedAttribute]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (:pep:`562`) that serves deprecated attributes with a warning.

    Parameters
    ----------
    module : str
        The module's ``__name__``.
    attributes : mapping
        Deprecated name -> ``(replacement, getter, since)``: what to use instead
        (or ``None``), a function returning the value, and the version that
        deprecated it.

    Returns
    -------
    callable
        Assign it to the module's ``__getattr__``; other unknown names raise
        :class:`AttributeError` as usual.

    Examples
    --------
    >>> import types, warnings
    >>> module = types.ModuleType("example")
    >>> module.__getattr__ = deprecated_attributes("example", {"OLD": ("example.NEW", lambda: 42, "0.2")})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     module.__getattr__("OLD")
    42
    >>> print(caught[0].message)
    example.OLD is deprecated since detkit 0.2 and will be removed in detkit 1.0; use example.NEW instead.
    """
    for name, (_, _, since) in attributes.items():
        _check_removal(since, None)

    def __getattr__(name: str) -> Any:
        if name in attributes:
            replacement, getter, since = attributes[name]
            warn_deprecated(f"{_public_name(module)}.{name}", since=since, replacement=replacement, stacklevel=2)
            return getter()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
