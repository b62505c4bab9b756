"""Fail early, with the pip command to run, when MXNet is missing or cannot import."""

from __future__ import annotations

import os
import platform
import sys
import warnings

from ..errors import MissingDependencyError, PerformanceWarning
from ._roles import prepare_process

# gluon-detkit is not on the package index yet: the hint names commands that work for an
# installed detkit (MXNet alone) and for a checkout or a built wheel (detkit with its extra).
_INSTALL_HINT = (
    "detkit needs Apache MXNet 1.9.1. Install the build for your machine into this environment:\n"
    "    pip install mxnet==1.9.1          # CPU build\n"
    "    pip install mxnet-cu112==1.9.1    # NVIDIA GPUs with CUDA 11.2\n"
    "or install detkit with its extra, from a detkit checkout: pip install '.[cpu]' (or '.[cu112]'),\n"
    "or from a wheel built there (python -m build): pip install 'dist/gluon_detkit-VERSION-py3-none-any.whl[cpu]'.\n"
    "MXNet 1.9.1 needs numpy < 1.24 and Python <= 3.11."
)


# MXNet halves its OpenMP thread count (assuming hyper-threads) on x86 only.
_HALVING_MACHINES = ("x86_64", "amd64", "i386", "i686")


def _cores() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _default_threads() -> None:
    """Use one OpenMP thread per available core unless the user chose.

    MXNet 1.9.1 otherwise starts half as many as there are processors (it
    assumes hyper-threading), which halves convolution speed on a machine with
    real cores. This only works before MXNet is first imported: MXNet's engine
    threads read the count once, and ``MXSetNumOMPThreads`` does not reach
    them (measured), so a late import gets a warning instead.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return
    cores = _cores()
    if sys.modules.get("mxnet") is None:  # not imported (None: an import blocked on purpose)
        os.environ["OMP_NUM_THREADS"] = str(cores)
    elif cores > 1 and "MXNET_OMP_MAX_THREADS" not in os.environ and platform.machine().lower() in _HALVING_MACHINES:
        warnings.warn(
            f"MXNet was imported before detkit, without OMP_NUM_THREADS: it computes on {max(cores // 2, 1)} of "
            f"the {cores} cores, about half the speed. Import detkit before mxnet, or set "
            f"OMP_NUM_THREADS={cores} before starting Python.",
            PerformanceWarning,
            stacklevel=4,  # the user's import line (the warnings module skips importlib's frames)
        )


def _is_the_detkit_command() -> bool:
    """Whether this process is the ``detkit`` command (its console script), not a Python program importing detkit."""
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(argv[0]).lower()
    for suffix in (".exe", "-script.py"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name == "detkit"


def require_mxnet() -> None:
    """Import MXNet once; raise :class:`~detkit.errors.MissingDependencyError` (an ImportError) naming the pip command when that fails.

    In the ``detkit`` command, whose entry point imports this package before its
    error handling exists, the failure is printed as the command prints every
    error, ``detkit: error: ...`` without a traceback, and the command exits with status 2.
    """
    try:
        _import_mxnet()
    except MissingDependencyError as error:
        if not _is_the_detkit_command():
            raise
        print(f"detkit: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _import_mxnet() -> None:
    if "mxnet" not in sys.modules:
        prepare_process()
    _default_threads()
    try:
        import mxnet  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(f"{_INSTALL_HINT}\n(import mxnet failed: {error})") from error
    except AttributeError as error:
        # numpy >= 1.24 removed the aliases (np.bool) that MXNet 1.9.1 uses at import time.
        import numpy

        raise MissingDependencyError(
            f"MXNet 1.9.1 cannot import with numpy {numpy.__version__}: "
            f"run  pip install 'numpy<1.24'\n(import mxnet failed: {error})"
        ) from error
