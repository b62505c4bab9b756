"""The README's examples work: its Python block trains a working model (at a small size here)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

import detkit
import detkit.config

README = Path(__file__).resolve().parents[1] / "README.md"

#: The small size of the test, given through the documented arguments of the two calls that size the
#: run: synthetic_pikachu's image counts and size, and preset's overrides (a smaller input, fewer epochs).
SMALL_DATA = {"num_train": 192, "num_val": 24, "image_size": 128, "progress": False}
SMALL_RECIPE = ["model.data_shape=128", "train.epochs=6", "train.batch_size=16", "train.quiet=true"]


def python_block(section: str) -> str:
    """The first ```python block of the README section that starts with ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no python block in the README section {section!r}"
    return block.group(1)


def test_the_readme_python_block_trains_a_working_model(tmp_path, monkeypatch, builtins_only) -> None:
    block = python_block("## In Python")
    assert "**recipe.fit_arguments()" in block and "build_detector(recipe" in block  # the recipe, model and training
    original_preset = detkit.config.preset
    monkeypatch.setattr(detkit.data, "synthetic_pikachu",
                        functools.partial(detkit.data.synthetic_pikachu, **SMALL_DATA))
    monkeypatch.setattr(detkit.config, "preset",
                        lambda name, overrides=(): original_preset(name, [*SMALL_RECIPE, *overrides]))
    monkeypatch.chdir(tmp_path)
    printed: list[object] = []
    namespace = {"print": lambda *values: printed.extend(values)}
    exec(compile(block, str(README), "exec"), namespace)
    map_50 = printed[0]
    assert isinstance(map_50, float) and map_50 > 0.4, f"mAP@0.5 {map_50}"  # about 0.6; untrained: below 0.05
    detector, images, detections = namespace["detector"], namespace["images"], namespace["detections"]
    assert detector.get_config()["components"]["loss"]["kwargs"]["normalization"] == "positives"
    assert [Path(p).name for p in images] == [f"val-0000{i}.jpg" for i in range(4)]
    assert 1 <= len(detections) <= 3 and detections[0].class_name == "pikachu"  # one object per image
    assert (tmp_path / "runs" / "pikachu-detections.png").is_file()
    assert detkit.SSDDetector.load(tmp_path / "runs" / "pikachu").classes == ["pikachu"]


def test_the_readme_shell_commands_exist() -> None:
    from detkit.cli import _build_parser

    text = README.read_text(encoding="utf-8")
    shell = text[text.index("## From the shell"):text.index("## Documentation")]
    commands = [line.split("#")[0].split() for line in shell.splitlines() if line.startswith("detkit ")]
    assert len(commands) >= 8
    parser = _build_parser()
    for words in commands:
        parser.parse_args(words[1:])  # exits (SystemExit) on an unknown command or option
    assert "source .venv/bin/activate" in shell


def test_the_readme_first_command_brings_pip_up_to_date() -> None:
    # The pip bundled with Python 3.11's venv (23.2) fails to resolve `-e ".[cpu,...]"` together with the
    # plugins that depend on gluon-detkit; `venv --upgrade-deps` installs a current pip first.
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```sh\n(python3 -m venv[^\n]*)\n```", text)
    assert first is not None
    assert first.group(1).startswith("python3 -m venv --upgrade-deps .venv && .venv/bin/pip install -e ")
    assert first.group(1).endswith("&& .venv/bin/detkit train examples/quickstart.yaml")


def test_the_readme_commands_write_under_data_or_runs_and_name_files_that_exist() -> None:
    # Outputs under data/ or runs/ (ignored by git), never loose in the checkout's root; a YAML file
    # a command names is one of the checkout's.
    text = README.read_text(encoding="utf-8")
    shell = text[text.index("## From the shell"):text.index("## Documentation")]
    commands = [line.split("#")[0].split() for line in shell.splitlines() if line.startswith("detkit ")]
    outputs = [words[words.index("--out") + 1] for words in commands if "--out" in words]
    assert len(outputs) >= 4
    for output in outputs:
        assert output.split("/")[0] in ("data", "runs"), output
    for words in commands:
        for word in words:
            if word.endswith(".yaml"):
                assert (README.parent / word).is_file(), word
    python = python_block("## In Python")
    for written in re.findall(r'"([^"]+\.(?:png|jpg))"', python):
        assert written.split("/")[0] in ("data", "runs"), written
    ignored = (README.parent / ".gitignore").read_text(encoding="utf-8").split()
    assert "/data/" in ignored and "/runs/" in ignored


def test_the_install_lines_work_before_a_release() -> None:
    # gluon-detkit is not on the package index yet: the README and the getting-started page install from a
    # checkout or a built wheel, whose file name carries the project's version; the index only "once released".
    root = README.parent
    version = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M)
    assert version is not None
    getting_started = (root / "docs" / "getting-started.rst").read_text(encoding="utf-8")
    for name, text in (("README.md", README.read_text(encoding="utf-8")), ("getting-started.rst", getting_started)):
        assert "not on the package index yet" in text, name
        for wheel in re.findall(r"gluon_detkit-([^-\s]+)-py3-none-any\.whl", text):
            assert wheel == version.group(1), (name, wheel)
        for match in re.finditer(r'pip install "gluon-detkit\[', text):
            assert "Once released" in text[max(match.start() - 80, 0):match.start()], (name, match.start())
    assert (root / "tools" / "check_release.sh").is_file()
    assert "tools/check_release.sh" in (root / ".ci" / "run").read_text()
