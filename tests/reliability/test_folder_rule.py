"""The folder rule: a write into a folder leaves the old or the new result, and never touches a file of the user's.

The kill loop runs each writer (``save``, ``quantize --out``, ``extract``,
``synth``) into a folder that holds an earlier result of the same writer and a
file of the user's, each time in a process of its own (forked from the test, so
that detkit and MXNet are imported once), and SIGKILLs it at a random moment of
its write, again and again: after every kill the folder must load as the old result or the new one,
and the user's file must be byte-identical. ``DETKIT_FOLDER_KILLS`` sets the
kills per writer (default 30; ``DETKIT_FOLDER_KILLS=300`` for the long run, see
docs/guides/reliability.rst); ``DETKIT_RELIABILITY_SEED`` the random moments.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import mxnet as mx
import pytest

import detkit
from detkit import SSDDetector
from detkit._base import MANIFEST_FILE, folder_lock, read_manifest, resolve
from detkit.errors import StorageError

KILLS = int(os.environ.get("DETKIT_FOLDER_KILLS", "30"))
USER_BYTES = b"my notes, not detkit's\n" * 3

sys.path.insert(0, str(Path(__file__).parent))
import _writer_child as child  # noqa: E402  (the same writers, run here once to make the old and new results)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    detkit.data.synthetic_pikachu(root / "data", num_train=4, num_val=4, image_size=32, seed=5, progress=False)
    return root


def _weights(folder: Path) -> bytes:
    return hashlib.sha256(resolve(folder, "network.params").read_bytes()).digest()


def _detector_state(folder: Path) -> bytes:
    """Loads the saved detector (whatever the kill left) and names it by its weights."""
    loaded = SSDDetector.load(folder, hybridize=False)
    assert loaded.classes == ["pikachu"]
    return _weights(folder)


def _extract_state(folder: Path) -> str:
    sidecar = json.loads(resolve(folder, "val.boxes.json").read_text(encoding="utf-8"))
    for entry in sidecar["images"]:
        assert resolve(folder, entry["file"]).stat().st_size > 0, entry
        mx.image.imdecode(resolve(folder, entry["file"]).read_bytes())
    return ",".join(str(entry["index"]) for entry in sidecar["images"])


def _synth_state(folder: Path) -> int:
    record = json.loads(resolve(folder, "synthetic.json").read_text(encoding="utf-8"))
    for name, sha1 in record["sha1"].items():
        assert hashlib.sha1(resolve(folder, name).read_bytes()).hexdigest() == sha1, name
    train = detkit.data.DetectionDataset(resolve(folder, "train.rec"), resolve(folder, "train.idx"),
                                         classes=["pikachu"])
    assert len(train) == record["arguments"]["num_train"]
    return record["arguments"]["seed"]


# Built once in this process: a forked writer inherits them and only writes (quantize --out's calibration
# happens before its write, so the kills fall into the write itself).
_detector = functools.lru_cache(maxsize=None)(child.detector)
_quantized = functools.lru_cache(maxsize=None)(child.quantized)

WRITERS = {
    # writer: (make the earlier result, make the new one, read the folder's state)
    "save": (lambda f, w: _detector(1).save(f), lambda f, w: _detector(2).save(f), _detector_state),
    "quantize": (lambda f, w: _quantized(1, w).save(f), lambda f, w: _quantized(2, w).save(f), _detector_state),
    "extract": (lambda f, w: child.extract(f, w, 0, 2), lambda f, w: child.extract(f, w, 1, 3), _extract_state),
    "synth": (lambda f, w: child.synth(f, 1), lambda f, w: child.synth(f, 2), _synth_state),
}


def _fork(write) -> int:
    """Run ``write()`` in a child process forked from this one (detkit and MXNet already imported): its pid."""
    pid = os.fork()
    if pid == 0:  # the child: write, and leave without pytest's exit handlers
        code = 1
        try:
            write()
            code = 0
        except BaseException:  # noqa: BLE001 - reported by the exit status
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_killed_write_leaves_the_old_or_the_new_result_and_the_users_file(work, tmp_path, writer) -> None:
    make_old, make_new, state = WRITERS[writer]
    make_old(tmp_path / "warm-up", work)  # builds what the writers prepare, outside the measured write
    make_new(tmp_path / "new", work)
    new = state(tmp_path / "new")
    # How long a forked write lives, from the fork to its exit: the kills fall anywhere in it (and a little after).
    started = time.monotonic()
    _, status = os.waitpid(_fork(lambda: make_new(tmp_path / "timed", work)), 0)
    timed = seconds = time.monotonic() - started
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    folder = tmp_path / "folder"
    make_old(folder, work)
    old = state(folder)
    assert old != new
    (folder / "notes.txt").write_bytes(USER_BYTES)
    rng = random.Random(int(os.environ.get("DETKIT_RELIABILITY_SEED", "23")))
    outcomes = {"old": 0, "new": 0, "mid-write": 0}
    # The loop must test something: kills inside writes, not only before or after them. A manifest with a
    # pending stage or a commit still moving, read right after a kill, shows a kill inside a write (a state left
    # by an earlier kill is one too: the folder starts settled). The moments are drawn over the timed write, but
    # a busy machine makes one write slower than the next: the span the moments are drawn from adapts (below),
    # and the loop goes on past KILLS (up to 4 x KILLS) until a kill has landed inside a write and one has left
    # the old result.
    wanted = ("mid-write", "old") if KILLS >= 20 else ()
    kill = 0
    while kill < KILLS or (kill < 4 * KILLS and not all(outcomes[name] for name in wanted)):
        # A process per kill, as a killed command is: forked at once, SIGKILLed at a random moment of its write.
        pid = _fork(lambda: make_new(folder, work))
        time.sleep(rng.uniform(0.0, 1.1) * seconds)
        os.kill(pid, signal.SIGKILL)  # a child that finished is a zombie until reaped: the signal is harmless
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, f"kill {kill}: the write failed"
        # The span follows the machine both ways, so that about one write in ten finishes before its kill and
        # the kills still reach a write's last moments (its commit): shorter after a write that finished,
        # a little longer after one that was killed.
        seconds *= 0.9 if os.WIFEXITED(status) else 0.9 ** (-1 / 9)
        manifest = read_manifest(folder)  # read before anything settles the folder: what the kill left
        if manifest is not None and (manifest["pending"] or manifest["moving"]):
            outcomes["mid-write"] += 1
        found = state(folder)
        assert found in (old, new), f"kill {kill}: the folder holds neither result"
        outcomes["old" if found == old else "new"] += 1
        assert (folder / "notes.txt").read_bytes() == USER_BYTES, f"kill {kill}: the user's file changed"
        if found == new:  # start the next kill from the earlier result again
            make_old(folder, work)
        kill += 1
    for name in wanted:
        assert outcomes[name] >= 1, f"no kill of {kill} was {name}: {outcomes}"
    # The new result is asserted only for long runs: a save's commit comes at the very end of its write, so
    # about 1 kill in 10 leaves it (3 of 30 measured), and at 30 kills a run without one is a few percent likely.
    if KILLS >= 100:
        assert outcomes["new"] >= 1, f"no kill of {KILLS} left the new result: {outcomes}"
    # A write that is not killed settles whatever the kills left: nothing hidden but the manifest and the lock.
    make_new(folder, work)
    assert state(folder) == new
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".detkit-manifest.json",
                                                                                   ".detkit.lock"]
    assert (folder / "notes.txt").read_bytes() == USER_BYTES
    print(f"{writer}: {kill} kills, {outcomes['old']} left the old result, {outcomes['new']} the new one, "
          f"{outcomes['mid-write']} a write in progress; one write {timed:.2f} s timed, {seconds:.2f} s at the end")


# --------------------------------------------------------------- what detkit will not touch


def test_a_file_of_the_users_under_a_name_a_write_needs_is_refused_not_replaced(work, tmp_path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("classes.txt", "preview.png"):
        (folder / name).write_bytes(USER_BYTES)
        with pytest.raises(StorageError, match=rf"{name} was not made by detkit.*move it away"):
            child.synth(folder, 1)
        assert (folder / name).read_bytes() == USER_BYTES
        assert not (folder / "train.rec").exists() and not (folder / MANIFEST_FILE).exists()
        (folder / name).unlink()
    model = tmp_path / "model"
    model.mkdir()
    (model / "network.params").write_bytes(USER_BYTES)
    with pytest.raises(StorageError, match="network.params was not made by detkit"):
        child.detector(1).save(model)
    assert (model / "network.params").read_bytes() == USER_BYTES
    out = tmp_path / "images"
    out.mkdir()
    (out / "val-00001.jpg").write_bytes(USER_BYTES)
    with pytest.raises(StorageError, match="val-00001.jpg was not made by detkit"):
        child.extract(out, work, 0, 3)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["val-00001.jpg"]  # all or none


def test_a_result_of_another_kind_in_the_folder_is_not_replaced(work, tmp_path) -> None:
    folder = tmp_path / "set"
    child.synth(folder, 1)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(StorageError, match="holds detkit's synthetic files .*not a detector"):
        _detector(1).save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_saving_while_another_process_saves_into_the_folder_is_refused(tmp_path) -> None:
    folder = tmp_path / "model"
    child.detector(1).save(folder)
    before = _weights(folder)
    with folder_lock(folder, "saving a detector"):  # what a concurrent save holds
        with pytest.raises(StorageError, match="in use by another detkit process"):
            child.detector(2).save(folder)
    assert _weights(folder) == before
    SSDDetector.load(folder, hybridize=False)


def test_a_folder_saved_by_an_older_detkit_is_adopted_by_its_checksums(tmp_path) -> None:
    folder = tmp_path / "model"
    child.detector(1).save(folder)
    (folder / MANIFEST_FILE).unlink()  # as an older detkit left it
    (folder / "notes.txt").write_bytes(USER_BYTES)
    SSDDetector.load(folder, hybridize=False)
    child.detector(2).save(folder)
    assert _detector_state(folder) != b""
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "detector.yaml", "network.params", "notes.txt"]
    assert (folder / "notes.txt").read_bytes() == USER_BYTES


def test_pruning_checkpoints_reads_the_manifest_and_keeps_the_users_copies(work, tmp_path) -> None:
    data = detkit.data.DetectionDataset(work / "data" / "train.rec", classes=["pikachu"])
    checkpoints = tmp_path / "checkpoints"
    settings = dict(batch_size=2, seed=1, quiet=True, checkpoint_dir=checkpoints)
    mx.random.seed(1)
    detkit.fit(SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu()), data, epochs=1, **settings)
    (checkpoints / "epoch-0001-backup").mkdir()
    (checkpoints / "epoch-0001-backup" / "note.txt").write_bytes(USER_BYTES)
    (checkpoints / "epoch-notes").mkdir()
    (checkpoints / "epoch-9999").mkdir()  # even a name like detkit's: not in the manifest, not detkit's
    mx.random.seed(1)
    detkit.fit(SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu()), data, epochs=3, resume=True,
               **settings)
    names = sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith("."))
    pointed = {json.loads((checkpoints / f"{which}.json").read_text())["checkpoint"] for which in ("last", "best")}
    assert "epoch-0003" in pointed
    assert {name for name in names if name in ("epoch-0001", "epoch-0002", "epoch-0003")} == pointed
    for mine in ("epoch-0001-backup", "epoch-notes", "epoch-9999"):
        assert mine in names
    assert (checkpoints / "epoch-0001-backup" / "note.txt").read_bytes() == USER_BYTES


# --------------------------------------------------------------- reads during a save


def test_a_load_during_a_save_reads_one_generation(tmp_path, monkeypatch) -> None:
    """A save that commits between the load's read of detector.yaml and of the weights: the load is of one save."""
    import detkit._model._detector as detector_module

    folder = tmp_path / "model"
    child.detector(1).save(folder)
    newer = child.detector(2)
    read = detector_module.read_detector_config
    saves = []

    def read_then_save(path: Path):
        config = read(path)
        if not saves:  # once: the configuration of the first save is read, then the second commits
            saves.append(newer.save(folder))
        return config

    monkeypatch.setattr(detector_module, "read_detector_config", read_then_save)
    loaded = SSDDetector.load(folder, hybridize=False)
    assert saves
    mine, theirs = loaded.network.collect_params().values(), newer.network.collect_params().values()
    assert len(mine) == len(theirs)
    for param, expected in zip(mine, theirs):
        assert (param.data().asnumpy() == expected.data().asnumpy()).all(), param.name


def test_a_snapshot_reads_every_name_from_one_manifest(tmp_path) -> None:
    """A write committed after the snapshot (its files still staged) is not seen by it; ``changed`` tells."""
    from detkit._base import FolderSnapshot, folder_generation, read_consistent

    folder = tmp_path / "set"
    with folder_generation(folder, "test", purpose="a test") as generation:
        for name in ("a", "b"):
            generation.path(name).write_text("1")
    snapshot = FolderSnapshot(folder)
    assert snapshot.path("a").read_text() == "1" and not snapshot.changed()
    with folder_generation(folder, "test", purpose="a test") as generation:
        for name in ("a", "b"):
            generation.path(name).write_text("2")
    assert snapshot.changed()
    reads: list[str] = []

    def load(snap) -> str:
        text = snap.path("a").read_text()
        if not reads:  # a third generation commits between the two names of the first attempt
            with folder_generation(folder, "test", purpose="a test") as generation:
                for name in ("a", "b"):
                    generation.path(name).write_text("3")
        reads.append(text)
        return text + snap.path("b").read_text()

    assert read_consistent(folder, load) == "33"
    assert reads == ["2", "3"]


# --------------------------------------------------------------- a file where a folder goes, and back


def _write(folder: Path, name: str, as_folder: bool, text: str) -> None:
    from detkit._base import folder_generation

    with folder_generation(folder, "test", purpose="a test") as generation:
        path = generation.path(name)
        if as_folder:
            path.mkdir()
            (path / "inside").write_text(text)
        else:
            path.write_text(text)


def _listing(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.name != ".detkit.lock"}


@pytest.mark.parametrize("old_is_folder", [False, True], ids=["file-then-folder", "folder-then-file"])
def test_a_generation_that_swaps_a_file_and_a_folder_is_refused_before_its_commit(tmp_path, old_is_folder) -> None:
    from detkit._base import read_manifest

    folder = tmp_path / "result"
    _write(folder, "x", old_is_folder, "old")
    before = _listing(folder)
    kinds = ("folder", "file") if old_is_folder else ("file", "folder")
    with pytest.raises(StorageError, match=rf"result/x is a {kinds[0]} where detkit's new x is a {kinds[1]}.*move "
                                           r".*result/x away .*nothing was changed"):
        _write(folder, "x", not old_is_folder, "new")
    assert _listing(folder) == before  # the old generation as it was: no stage, no manifest in "moving"
    assert read_manifest(folder)["moving"] is None
    # The fix the message gives: the old one moved away, the write goes through and settles.
    (folder / "x").rename(tmp_path / "kept")
    _write(folder, "x", not old_is_folder, "new")
    manifest = read_manifest(folder)
    assert manifest["moving"] is None and manifest["files"] == ["x"]
    assert (folder / "x" / "inside" if not old_is_folder else folder / "x").read_text() == "new"
    assert not [p for p in folder.iterdir() if p.name.startswith(".detkit-stage-")]


def test_a_committed_swap_left_by_an_earlier_detkit_names_the_fix_and_then_finishes(tmp_path) -> None:
    from detkit._base import read_manifest, settle
    from detkit._base._folder import MANIFEST_FORMAT

    folder = tmp_path / "result"
    _write(folder, "x", False, "old")
    (folder / ".detkit-stage-2" / "x").mkdir(parents=True)  # committed: a folder x waits to replace the file x
    (folder / ".detkit-stage-2" / "x" / "inside").write_text("new")
    (folder / MANIFEST_FILE).write_text(json.dumps({
        "format": MANIFEST_FORMAT, "kind": "test", "generation": 2, "files": ["x"], "remove": [], "pending": None,
        "moving": {"stage": ".detkit-stage-2", "names": ["x"]}}))
    with pytest.raises(StorageError, match=r"result/x is a file where .*move .*result/x away, then write"):
        _write(folder, "y", False, "y")
    (folder / "x").rename(tmp_path / "kept")
    settle(folder)
    assert read_manifest(folder)["moving"] is None and (folder / "x" / "inside").read_text() == "new"
