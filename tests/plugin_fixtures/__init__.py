"""Fixture plugins, and a way to install them as real distributions for a test.

Each fixture plugin is a module in this directory. :func:`install` copies one
into a site directory and writes its ``*.dist-info`` (``METADATA`` and
``entry_points.txt``), so that ``importlib.metadata`` finds an installed
distribution with an entry point in the group ``detkit``: discovery runs exactly
as for a package installed by pip, without pip's cost. :func:`write_project`
writes a pip-installable project of a fixture for the tests that run pip itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A fixture plugin: its distribution, version, entry point name and module."""

    distribution: str
    version: str
    entry_point: str
    module: str


#: Every fixture plugin, by a short key.
FIXTURES = {
    fixture.entry_point: fixture
    for fixture in (
        Fixture("detkit-fixture-good", "1.2.0", "good", "detkit_fixture_good"),
        Fixture("detkit-fixture-second", "0.3.0", "second", "detkit_fixture_second"),
        Fixture("detkit-fixture-broken-import", "0.1.0", "broken_import", "detkit_fixture_broken_import"),
        Fixture("detkit-fixture-raising-hook", "0.1.0", "raising_hook", "detkit_fixture_raising_hook"),
        Fixture("detkit-fixture-not-a-component", "0.1.0", "not_a_component", "detkit_fixture_not_a_component"),
        Fixture("detkit-fixture-abstract", "0.1.0", "abstract", "detkit_fixture_abstract"),
        Fixture("detkit-fixture-bad-factory", "0.1.0", "bad_factory", "detkit_fixture_bad_factory"),
        Fixture("detkit-fixture-bad-name", "0.1.0", "bad_name", "detkit_fixture_bad_name"),
        Fixture("detkit-fixture-incompatible", "2.0.0", "incompatible", "detkit_fixture_incompatible"),
        Fixture("detkit-fixture-bad-api", "0.1.0", "bad_api", "detkit_fixture_bad_api"),
        Fixture("detkit-fixture-duplicate", "0.5.0", "duplicate", "detkit_fixture_duplicate"),
        Fixture("detkit-fixture-builtin-clash", "0.1.0", "builtin_clash", "detkit_fixture_builtin_clash"),
        Fixture("detkit-fixture-typo-hook", "0.1.0", "typo_hook", "detkit_fixture_typo_hook"),
        Fixture("detkit-fixture-bad-signature", "0.1.0", "bad_signature", "detkit_fixture_bad_signature"),
        Fixture("detkit-fixture-lookup-at-import", "0.1.0", "lookup_at_import", "detkit_fixture_lookup_at_import"),
    )
}

MODULES = tuple(fixture.module for fixture in FIXTURES.values())


def install(site: Path, key: str, *, entry_point: str | None = None) -> Fixture:
    """Install the fixture plugin ``key`` into the directory ``site`` (which must be on ``sys.path``).

    ``entry_point`` overrides the entry point name (to make two plugins share one).
    """
    fixture = FIXTURES[key]
    shutil.copy(HERE / f"{fixture.module}.py", site / f"{fixture.module}.py")
    dist_info = site / f"{fixture.distribution.replace('-', '_')}-{fixture.version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {fixture.distribution}\nVersion: {fixture.version}\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[detkit]\n{entry_point or fixture.entry_point} = {fixture.module}\n", encoding="utf-8"
    )
    importlib.invalidate_caches()  # the path finders and importlib.metadata cache directory listings
    return fixture


def forget_modules() -> None:
    """Drop the fixture modules from ``sys.modules``, so that the next load imports them afresh."""
    for module in MODULES:
        sys.modules.pop(module, None)


def write_project(directory: Path, key: str) -> Path:
    """Write a pip-installable project of the fixture plugin ``key`` into ``directory``; return it."""
    fixture = FIXTURES[key]
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / f"{fixture.module}.py", directory / f"{fixture.module}.py")
    (directory / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{fixture.distribution}"\nversion = "{fixture.version}"\n\n'
        f'[project.entry-points.detkit]\n{fixture.entry_point} = "{fixture.module}"\n\n'
        f'[tool.setuptools]\npy-modules = ["{fixture.module}"]\n',
        encoding="utf-8",
    )
    return directory
