"""The package itself: public surface, version, the install hint, thread defaults, the registry API."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from importlib import metadata

import pytest

import detkit
from detkit.errors import ComponentNotFoundError, DetkitError, InputError


def test_version_comes_from_the_package_metadata() -> None:
    assert detkit.__version__ == metadata.version("gluon-detkit")


def test_all_is_sorted_unique_and_every_name_exists() -> None:
    assert detkit.__all__ == sorted(set(detkit.__all__))
    for name in detkit.__all__:
        assert hasattr(detkit, name), name


def test_public_callables_and_classes_are_documented() -> None:
    for name in detkit.__all__:
        value = getattr(detkit, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__doc__ or "").strip(), f"detkit.{name} has no docstring"


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def test_import_without_mxnet_names_the_pip_command() -> None:
    # sys.modules["mxnet"] = None makes `import mxnet` raise ImportError, as if it were not installed.
    result = _run_python(
        "import sys; sys.modules['mxnet'] = None\n"
        "try:\n    import detkit\n"
        "except ImportError as error:\n    print(type(error).__name__); print(error)\n"
    )
    assert "MissingDependencyError" in result.stdout
    # Commands that work before gluon-detkit is on the package index: MXNet alone, or detkit
    # with its extra from a checkout or a built wheel.
    assert "pip install mxnet==1.9.1" in result.stdout and "pip install mxnet-cu112==1.9.1" in result.stdout
    assert "pip install '.[cpu]'" in result.stdout and "whl[cpu]" in result.stdout
    assert "gluon-detkit[" not in result.stdout


def test_the_detkit_command_without_mxnet_prints_one_error_line_and_exits_2(tmp_path) -> None:
    # The installed console script, with `import mxnet` blocked at start-up (a sitecustomize).
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['mxnet'] = None\n")
    command = os.path.join(os.path.dirname(sys.executable), "detkit")
    if not os.path.exists(command):
        pytest.skip("the detkit command is not installed next to this Python")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("detkit: error: detkit needs Apache MXNet 1.9.1"), result.stderr
    assert result.stderr.count("detkit: error:") == 1 and "Traceback" not in result.stderr
    assert "pip install mxnet==1.9.1" in result.stderr and result.stdout == ""


def test_detkit_uses_every_core_unless_the_user_chose() -> None:
    code = "import os, detkit; print(os.environ['OMP_NUM_THREADS'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert chosen.stdout.strip() == str(len(os.sched_getaffinity(0)))
    assert _run_python(code, OMP_NUM_THREADS="1").stdout.strip() == "1"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: MXNet's default is already right")
def test_importing_mxnet_first_warns_that_half_the_cores_compute() -> None:
    code = "import warnings; warnings.simplefilter('always'); import mxnet, detkit"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "PerformanceWarning: MXNet was imported before detkit" in late.stderr
    assert "OMP_NUM_THREADS=" in late.stderr
    early = subprocess.run([sys.executable, "-c", code.replace("mxnet, detkit", "detkit, mxnet")],
                           capture_output=True, text=True, timeout=120, env=env)
    assert "PerformanceWarning" not in early.stderr
    chosen = _run_python(code, OMP_NUM_THREADS="2")  # the user chose: nothing to say
    assert "PerformanceWarning" not in chosen.stderr


def test_every_error_is_a_detkit_error_and_keeps_its_builtin() -> None:
    assert issubclass(InputError, ValueError) and issubclass(ComponentNotFoundError, KeyError)
    for name in detkit.errors.__all__:
        cls = getattr(detkit.errors, name)
        assert issubclass(cls, (DetkitError, detkit.errors.DetkitWarning)), name


def test_build_component_and_component_names() -> None:
    backbone = detkit.build_component("backbone", "toy", filters=[8, 16])
    assert isinstance(backbone, detkit.Backbone) and tuple(backbone.out_strides) == (4,)
    assert "focal_smooth_l1" in detkit.component_names("loss")
    assert detkit.component_names("loss") == sorted(detkit.component_names("loss"))
    infos = {(i.kind, i.name): i for i in detkit.list_components()}
    assert infos[("backbone", "toy")].distribution == "gluon-detkit"
    with pytest.raises(InputError, match="'kind' argument must be one of backbone"):
        detkit.component_names("head")
    with pytest.raises(InputError, match="does not take the argument"):
        detkit.build_component("loss", "focal_smooth_l1", alfa=0.5)


def test_the_command_prints_help_without_arguments(capsys) -> None:
    from detkit.cli import main

    assert main([]) == 0
    assert "usage: detkit" in capsys.readouterr().out


def test_every_pyproject_gives_its_license_as_an_spdx_string() -> None:
    # A `license = { text = ... }` table and License :: classifiers make setuptools >= 77 warn on every build.
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11

    root = Path(__file__).resolve().parents[1]
    files = [root / "pyproject.toml", *sorted(root.glob("plugins/*/pyproject.toml")),
             root / "examples" / "plugin-template" / "pyproject.toml"]
    assert len(files) >= 5
    for path in files:
        project = tomllib.loads(path.read_text(encoding="utf-8"))
        assert project["project"]["license"] == "Apache-2.0", path
        assert not [c for c in project["project"].get("classifiers", []) if c.startswith("License ::")], path
        assert "setuptools>=77" in project["build-system"]["requires"], path  # the first to read the string
