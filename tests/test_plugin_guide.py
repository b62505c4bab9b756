"""The plugin guide's package installs next to detkit without pip replacing detkit (offline)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins" / "writing.rst"
TEMPLATE = ROOT / "examples" / "plugin-template"


def _guide_dependency_lines() -> set[str]:
    return set(re.findall(r'dependencies = \[[^\]]*\]', GUIDE.read_text(encoding="utf-8")))


def test_the_guide_shows_the_templates_whole_pyproject_and_its_dependency_line() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    # The whole file, not a part of it: the literalinclude has no :start-at:/:end-before: options.
    include = re.search(r"\.\. literalinclude:: \.\./\.\./examples/plugin-template/pyproject\.toml\n((?:   :.*\n)*)",
                        guide)
    assert include is not None and include.group(1) == "   :language: toml\n"
    module = re.search(r"\.\. literalinclude:: \.\./\.\./examples/plugin-template/src/detkit_myplugin/__init__\.py\n"
                       r"((?:   :.*\n)*)", guide)
    assert module is not None and module.group(1) == "   :language: python\n"  # the complete module, imports too
    template_lines = set(re.findall(r'dependencies = \[[^\]]*\]', (TEMPLATE / "pyproject.toml").read_text()))
    assert _guide_dependency_lines() == template_lines == {'dependencies = ["gluon-detkit>=0.1.0.dev0,<1"]'}


def test_the_specifier_admits_detkits_own_prerelease() -> None:
    installed = metadata.version("gluon-detkit")
    assert SpecifierSet(">=0.1.0.dev0,<1").contains(installed)
    # What the guide said before: it excludes a pre-release such as 0.1.0.dev0, and pip replaced detkit.
    assert "dev" not in installed or not SpecifierSet(">=0.1,<1").contains(installed)


def _can_build_offline() -> bool:
    try:
        version = tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return version >= (70, 1) or _has_wheel()  # older setuptools builds wheels with the wheel package


def _has_wheel() -> bool:
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return True


def _dry_run(tmp_path: Path, dependency_line: str) -> subprocess.CompletedProcess:
    """Build the template (renamed, as the guide says) with ``dependency_line``; dry-run installing its wheel."""
    project = shutil.copytree(TEMPLATE, tmp_path / "coolnet", ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8").replace('name = "gluon-detkit-myplugin"', 'name = "gluon-detkit-coolnet"')
    text = re.sub(r'dependencies = \[[^\]]*\]', lambda _: dependency_line, text)
    pyproject.write_text(text, encoding="utf-8")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(pip + ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                                  "-w", str(wheels), str(project)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    report = tmp_path / "report.json"
    return subprocess.run(pip + ["install", "--dry-run", "--quiet", "--no-index", "--find-links", str(wheels),
                                 "--report", str(report), "gluon-detkit-coolnet"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.skipif(not _can_build_offline(), reason="building offline needs setuptools >= 70.1 or wheel")
def test_a_plugin_built_from_the_guide_installs_next_to_the_editable_detkit(tmp_path) -> None:
    (line,) = _guide_dependency_lines()
    result = _dry_run(tmp_path, line)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    # pip installs the plugin alone: the detkit already installed satisfies it, nothing is replaced.
    assert [item["metadata"]["name"] for item in report["install"]] == ["gluon-detkit-coolnet"]
    checked = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout
    # The negative control: a specifier that excludes the installed pre-release makes pip look for
    # another detkit, which offline it cannot find.
    if "dev" in metadata.version("gluon-detkit"):
        refused = _dry_run(tmp_path / "control", 'dependencies = ["gluon-detkit>=0.1,<1"]')
        assert refused.returncode != 0 and "gluon-detkit" in refused.stderr


def test_the_guides_copy_of_the_template_leaves_build_outputs_behind(tmp_path) -> None:
    # The README's install leaves build/ and src/*.egg-info in the template; the guide's copy command must
    # not take them (a second distribution of the template would be visible to the new plugin's tests).
    root = TEMPLATE.parents[1]
    guide = (root / "docs" / "plugins" / "writing.rst").read_text(encoding="utf-8")
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    command = "git archive HEAD:examples/plugin-template | tar -x -C ~/src/detkit-coolnet"
    assert command in guide and command in readme
    assert "cp -r examples/plugin-template ~/src/detkit-coolnet\n" not in guide  # only with the clean-up after it
    if shutil.which("git") is None or shutil.which("tar") is None or not (root / ".git").exists():
        pytest.skip("needs git, tar and a git checkout")
    target = tmp_path / "detkit-coolnet"
    target.mkdir()
    subprocess.run(command.replace("~/src/detkit-coolnet", str(target)), shell=True, cwd=root, check=True,
                   timeout=60)
    copied = {path.relative_to(target).as_posix() for path in target.rglob("*")}
    assert "pyproject.toml" in copied and "src/detkit_myplugin/__init__.py" in copied
    assert not [name for name in copied if name.startswith("build") or ".egg-info" in name or "__pycache__" in name]
