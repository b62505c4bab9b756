"""Faults of the file system become clear StorageErrors and leave nothing half-written.

A full disk is real where a small tmpfs can be mounted (as root), and injected
otherwise (a writer that fails part-way with ENOSPC, as MXNet's and Python's
do); a read-only folder is a read-only mount as root and a chmod otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import pytest
from PIL import Image

import detkit
from detkit import SSDDetector
from detkit.cli import main
from detkit.data import pack_coco
from detkit.errors import StorageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_data_pack import make_coco  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return detkit.data.synthetic_pikachu(root / "data", num_train=8, num_val=4, image_size=32, seed=3,
                                         progress=False)


def _detector() -> SSDDetector:
    mx.random.seed(1)
    return SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())


def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 300 KiB file system: a detector's weights (about 1 MiB) do not fit."""
    folder = tmp_path / "small"
    if not _mount(folder, "size=300k"):
        pytest.skip("no tmpfs can be mounted here (needs root); the injected faults below stand in")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "read-only"
    if _mount(folder, "ro,size=64k"):
        yield folder
        subprocess.run(["umount", str(folder)], check=False)
        return
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root without mount: a chmod does not stop root
        pytest.skip("no read-only folder can be made here")
    yield folder
    folder.chmod(0o755)


def _leftovers(folder: Path) -> list[str]:
    """Files under ``folder`` other than folders and the lock: what a failed write left behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".detkit.lock")


def test_a_full_disk_while_checkpointing_is_a_storage_error_and_leaves_nothing(tiny, small_disk) -> None:
    train, _ = tiny
    with pytest.raises(StorageError, match=r"epoch-0001/network.params.*disk is full.*previous checkpoint is intact"):
        detkit.fit(_detector(), train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=small_disk)
    assert _leftovers(small_disk) == []


@pytest.mark.parametrize("write", [
    lambda folder, tiny: _detector().save(folder / "model"),
    lambda folder, tiny: _detector().export(folder / "export"),
    lambda folder, tiny: detkit.data.synthetic_pikachu(folder / "synth", num_train=40, num_val=4, image_size=96,
                                                       progress=False),
], ids=["save", "export", "synthetic"])
def test_a_full_disk_in_any_writer_is_a_storage_error_and_leaves_nothing(tiny, small_disk, write) -> None:
    with pytest.raises(StorageError, match="disk is full|No space left"):
        write(small_disk, tiny)
    assert _leftovers(small_disk) == []


def _failing_after_part(real, path_argument: int = 0):
    """A writer that writes half of what the real one would, then fails as a full disk does."""
    def write(*args, **kwargs):
        real(*args, **kwargs)
        target = Path(str(args[path_argument]))
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        raise mx.base.MXNetError("Check failed: fwrite(ptr, 1, size, fp_) == size: FileStream.Write incomplete")
    return write


@pytest.mark.parametrize("inject", ["network", "optimizer", "state"])
def test_an_injected_write_failure_while_checkpointing_keeps_the_previous_checkpoint(tiny, tmp_path, monkeypatch,
                                                                                     inject) -> None:
    train, _ = tiny
    detkit.fit(_detector(), train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=tmp_path,
               optimizer_params={"learning_rate": 0.01, "momentum": 0.9})
    before = {p: p.read_bytes() for p in (tmp_path / "epoch-0001").iterdir()}
    if inject == "network":
        monkeypatch.setattr(mx.gluon.Block, "save_parameters",
                            _failing_after_part(mx.gluon.Block.save_parameters, 1))
    elif inject == "optimizer":
        monkeypatch.setattr(mx.nd, "save", _failing_after_part(mx.nd.save))
    else:
        real = Path.write_text

        def full(self, text, *args, **kwargs):
            if self.name == "state.json":
                real(self, text[: len(text) // 2], *args, **kwargs)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, text, *args, **kwargs)
        monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(StorageError, match=r"epoch-0002.*(disk|space).*previous checkpoint is intact"):
        detkit.fit(_detector(), train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=tmp_path, resume=True,
                   optimizer_params={"learning_rate": 0.01, "momentum": 0.9})
    assert json.loads((tmp_path / "last.json").read_text())["checkpoint"] == "epoch-0001"
    assert {p: p.read_bytes() for p in (tmp_path / "epoch-0001").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".detkit-manifest.json", ".detkit.lock", "best.json",
                                                           "epoch-0001", "last.json"]


def test_an_injected_enospc_in_pack_is_a_storage_error_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    items, path, images, _ = make_coco(tmp_path)
    from detkit.data import _recordio

    def full(self, key, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(_recordio.RecordWriter, "write", full)
    with pytest.raises(StorageError, match="disk is full"):
        pack_coco(path, images, tmp_path / "out" / "coco", progress=False)
    assert _leftovers(tmp_path / "out") == []


def test_a_read_only_folder_is_a_storage_error(tiny, read_only) -> None:
    train, _ = tiny
    with pytest.raises(StorageError, match="read-only|permission denied"):
        detkit.fit(_detector(), train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=read_only / "ck")
    with pytest.raises(StorageError, match="read-only|permission denied"):
        _detector().save(read_only)
    assert _leftovers(read_only) == []


def test_an_out_whose_parent_is_a_file_is_a_clear_error_on_the_command_line(tiny, tmp_path, capsys) -> None:
    train, _ = tiny
    blocker = tmp_path / "file"
    blocker.write_text("")
    model = tmp_path / "model"
    _detector().save(model)
    Image.new("RGB", (64, 64)).save(tmp_path / "image.png")
    items, coco, images, _ = make_coco(tmp_path / "coco")
    commands = [
        ["predict", str(model), str(tmp_path / "image.png"), "--out", str(blocker / "pictures")],
        ["data", "pack", "--format", "coco", "--images", str(images), "--annotations", str(coco), "--out",
         str(blocker / "x" / "train"), "--quiet"],
        ["data", "synth", str(blocker / "data"), "--num-train", "2", "--num-val", "1", "--quiet"],
        ["data", "show", str(train.rec_path), "-o", str(blocker / "preview.png")],
        ["train", "--set", f"train.output_dir={blocker / 'run'}", "--set", "data.root=" + str(tmp_path / "d")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert any(m in err for m in ("a part of the path is a file", "a file stands where a folder")), (argv, err)
        assert "Traceback" not in err
