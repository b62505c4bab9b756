"""The layering contract (pyproject.toml, [tool.importlinter]): dependencies point down only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept() -> None:
    # import-linter comes with the test extra; run it as CI does, from the repository root.
    result = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                             "sys.exit(lint_imports_command())"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_contract_catches_an_upward_import(tmp_path) -> None:
    """A lower layer importing a higher one breaks the layers contract (the check is not vacuous)."""
    import shutil

    shutil.copytree(ROOT / "detkit", tmp_path / "detkit")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    blocks = tmp_path / "detkit" / "_blocks.py"
    blocks.write_text(blocks.read_text() + "\nfrom ._engine import fit  # an upward import\n")
    result = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                             "from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "detkit._blocks -> detkit._engine" in result.stdout
