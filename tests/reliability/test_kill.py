"""kill -9 at any point of a tiny training, checkpoint writes included; the resumed run ends bit-identical.

Each run is a subprocess (``_train_child.py``). The deterministic kill points
are inside a checkpoint write; the random ones at a uniformly drawn moment of
the run. After every kill every checkpoint on disk must load, and resuming
until the run completes must give exactly the weights of an uninterrupted run.
``DETKIT_RELIABILITY_KILLS`` sets the number of random kills (default 1;
``DETKIT_RELIABILITY_KILLS=50`` for the long run, see docs/guides/reliability.rst).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import detkit
from detkit import SSDDetector

CHILD = Path(__file__).with_name("_train_child.py")
RANDOM_KILLS = int(os.environ.get("DETKIT_RELIABILITY_KILLS", "1"))


def _run(data: Path, checkpoints: Path, out: Path, kill: str | None = None,
         after: float | None = None) -> int:
    """Run the child; with ``after``, SIGKILL it that many seconds after its start. Its exit status."""
    argv = [sys.executable, str(CHILD), str(data), str(checkpoints), str(out)] + ([kill] if kill else [])
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if after is not None:
            try:
                process.wait(timeout=after)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, -signal.SIGKILL), err
    return process.returncode


def _weights(folder: Path) -> dict[str, np.ndarray]:
    return {name: array.asnumpy() for name, array in mx.nd.load(str(folder / "network.params")).items()}


def _check_on_disk(checkpoints: Path) -> None:
    """Every checkpoint folder loads; a pointer names one of them."""
    for folder in checkpoints.glob("epoch-*"):
        SSDDetector.load(folder, ctx=mx.cpu())
        state = json.loads((folder / "state.json").read_text())
        assert state["format"] == "detkit-checkpoint/2"
    for pointer in ("last.json", "best.json"):
        if (checkpoints / pointer).exists():
            assert (checkpoints / json.loads((checkpoints / pointer).read_text())["checkpoint"]).is_dir()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    detkit.data.synthetic_pikachu(root / "data", num_train=16, num_val=4, image_size=32, seed=3, progress=False)
    started = time.monotonic()
    assert _run(root / "data", root / "reference-checkpoints", root / "reference") == 0
    return root, _weights(root / "reference"), time.monotonic() - started


def _resume_to_the_end(root: Path, checkpoints: Path, out: Path, reference_weights) -> None:
    _check_on_disk(checkpoints)
    assert _run(root / "data", checkpoints, out) == 0
    got = _weights(out)
    assert got.keys() == reference_weights.keys()
    for name in got:
        np.testing.assert_array_equal(got[name], reference_weights[name], err_msg=name)
    assert not [p.name for p in checkpoints.iterdir()
                if p.name.startswith(".") and p.name not in (".detkit.lock", ".detkit-manifest.json")]


# Inside a checkpoint write: after its weights, after its optimizer arrays, between its rename and the pointer.
WRITE_KILLS = ["network:2", "optimizer:1", "rename:1"]


def test_kills_inside_checkpoint_writes_and_at_random_moments_resume_bit_identically(reference, tmp_path) -> None:
    """One run, killed again and again (each time in the run resumed from the last kill), then finished."""
    root, expected, seconds = reference
    rng = random.Random(int(os.environ.get("DETKIT_RELIABILITY_SEED", "13")))
    checkpoints = tmp_path / "checkpoints"
    finished = False
    for kill in WRITE_KILLS:
        assert _run(root / "data", checkpoints, tmp_path / "unused", kill=kill) == -signal.SIGKILL, kill
        _check_on_disk(checkpoints)
    for _ in range(RANDOM_KILLS):
        if _run(root / "data", checkpoints, tmp_path / "unused", after=rng.uniform(0.2, 1.0) * seconds) == 0:
            finished = True  # the run ended before its kill
            break
        _check_on_disk(checkpoints)
    if finished:
        got = _weights(tmp_path / "unused")  # what the finished run saved
        for name in got:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    _resume_to_the_end(root, checkpoints, tmp_path / "out", expected)
