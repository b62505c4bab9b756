"""The plugin API version gate: a plugin's ``DETKIT_PLUGIN_API`` range, read with ``packaging``."""

from __future__ import annotations

from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from ..errors import InputError

#: The version of the plugin API (the hooks, the interfaces and their contracts)
#: that this detkit implements, ``"MAJOR.MINOR"``.
PLUGIN_API_VERSION = "1.0"

#: The module attribute in which a plugin declares the plugin API versions it supports.
API_ATTRIBUTE = "DETKIT_PLUGIN_API"


def parse_api_requirement(requirement: Any) -> SpecifierSet:
    """A plugin's ``DETKIT_PLUGIN_API`` declaration as a :class:`packaging.specifiers.SpecifierSet`.

    Parameters
    ----------
    requirement : str or int
        A PEP 440 version specifier such as ``">=1.0,<2"`` (comma-separated
        clauses, all of which must hold; ``~=1.1`` too); or an int ``N``, short
        for ``">=N.0,<N+1"``.

    Raises
    ------
    InputError
        If the declaration is neither; the message shows the expected form.
    """
    if isinstance(requirement, int) and not isinstance(requirement, bool) and requirement >= 0:
        return SpecifierSet(f">={requirement}.0,<{requirement + 1}")
    if isinstance(requirement, str) and requirement.strip():
        try:
            # packaging takes no spaces inside a clause; "  >= 1 , < 2 " is still plainly meant.
            return SpecifierSet(",".join(clause.replace(" ", "") for clause in requirement.split(",")))
        except InvalidSpecifier:
            pass
    raise InputError(
        f"{API_ATTRIBUTE} must be a string such as '>=1.0,<2' (a version specifier: comma-separated "
        "clauses of >=, >, <=, <, ==, !=, ~= and a version MAJOR or MAJOR.MINOR) or a major version as an "
        f"int; got {requirement!r} instead."
    )


def api_compatible(requirement: Any, version: str = PLUGIN_API_VERSION) -> bool:
    """Whether the plugin API ``version`` satisfies a plugin's declared ``requirement``.

    >>> api_compatible(">=1.0,<2", "1.3"), api_compatible(">=1.1", "1.0"), api_compatible(1, "1.7")
    (True, False, True)
    """
    return parse_api_requirement(requirement).contains(Version(version), prereleases=True)
