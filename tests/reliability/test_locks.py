"""One process at a time in a checkpoint directory or a training's output folder; stale locks are taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import pytest

import detkit
from detkit import SSDDetector
from detkit._base import folder_lock
from detkit._base._lock import LOCK_FILE
from detkit.cli import main
from detkit.errors import StorageError

HOLD = """
import sys, time
from detkit._base import folder_lock
with folder_lock(sys.argv[1], "a test"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pikachu")
    return detkit.data.synthetic_pikachu(root, num_train=8, num_val=4, image_size=32, seed=3, progress=False)


def _fit(train, folder: Path, **kwargs):
    mx.random.seed(1)
    detector = SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())
    return detkit.fit(detector, train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=folder, **kwargs)


def test_fit_into_a_checkpoint_directory_in_use_names_the_holder_and_takes_over_when_it_dies(tiny, tmp_path):
    train, _ = tiny
    holder = _holder(tmp_path)
    try:
        with pytest.raises(StorageError) as caught:
            _fit(train, tmp_path)
        message = str(caught.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        assert "in use by another detkit process" in message and "choose another folder" in message
        assert not list(tmp_path.glob("epoch-*"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The dead holder's lock file is still there, naming it: the next training takes it over.
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    assert len(_fit(train, tmp_path)) == 1
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released, and says so


def test_a_lock_is_exclusive_within_one_process_too_and_released_on_error(tmp_path):
    with folder_lock(tmp_path, "first"):
        with pytest.raises(StorageError, match=f"pid {os.getpid()}"):
            with folder_lock(tmp_path, "second"):
                pass
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path, "failing"):
            raise RuntimeError
    with folder_lock(tmp_path, "again"):
        pass


@pytest.mark.parametrize("content", [b"", b"garbage", b"\xff\xfe", b'{"pid": "x"}'])
def test_a_leftover_lock_file_of_any_content_does_not_block(tmp_path, content):
    (tmp_path / LOCK_FILE).write_bytes(content)
    with folder_lock(tmp_path, "test") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_lock_in_a_folder_that_cannot_be_made_is_a_storage_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="not a folder|a part of the path is a file"):
        with folder_lock(tmp_path / "file" / "out", "test"):
            pass


DETKIT = [sys.executable, "-c", "import sys; from detkit.cli import main; sys.exit(main())"]


def test_two_trainings_into_one_output_folder_the_second_fails_clearly(tmp_path):
    data = tmp_path / "data"
    out = tmp_path / "out"
    common = ["data.source=synthetic", f"data.root={data}", "data.num_train=8", "data.num_val=4",
              "data.image_size=32", "model.data_shape=64", "train.batch_size=8", "train.quiet=true",
              f"train.output_dir={out}", "train.num_pictures=0"]
    common = [part for setting in common for part in ("--set", setting)]
    # The first runs long enough to be caught in the middle; the second starts while it runs.
    first = subprocess.Popen([*DETKIT, "train", "--preset", "seed", *common,
                              "--set", "train.epochs=500"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("checkpoints/epoch-*")):
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = subprocess.run([*DETKIT, "train", "--preset", "seed", *common,
                                 "--set", "train.epochs=1"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"in use by another detkit process (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first goes on, its results untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_a_second_training_into_a_finished_ones_output_folder_changes_nothing(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    common = ["data.source=synthetic", f"data.root={data}", "data.num_train=8", "data.num_val=4",
              "data.image_size=32", "model.data_shape=64", "train.batch_size=8", "train.quiet=true",
              f"train.output_dir={out}", "train.num_pictures=0", "train.epochs=1"]
    argv = ["train", *[part for setting in common for part in ("--set", setting)]]
    assert main(argv) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".detkit.lock"}
    capsys.readouterr()
    assert main(argv + ["--set", "train.optimizer_params={learning_rate: 0.01}"]) == 2
    assert "holds an earlier training" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".detkit.lock"} == before


def test_a_lock_file_that_is_a_symbolic_link_is_never_written_through(tmp_path):
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("keep me")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_FILE).symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        with folder_lock(folder, "a training"):
            pass
    assert victim.read_text() == "keep me"


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    folder = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with folder_lock(folder, "a training"):
            raise RuntimeError("refused before anything was written")
    assert not folder.exists()
    folder.mkdir()
    with folder_lock(folder, "a training"):
        pass
    assert folder.is_dir()  # a folder that was there before stays
