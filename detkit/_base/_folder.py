"""The folder rule, written once: a write into a folder completes or leaves the earlier result, and touches only detkit's files.

Every folder that detkit writes a *result* into (a saved model, an INT8
model, a checkpoint directory, a synthetic set, the output of ``data
extract``) is written through :func:`folder_generation`. The folder then holds
a manifest, ``.detkit-manifest.json``, that lists the files detkit made there
(the *generation*); nothing else in the folder is ever replaced or deleted.

A write is a redo log with one commit point:

1. Under the folder's lock (:func:`~detkit._base.folder_lock`), finish or
   clean what a killed writer left (below), then record a staging folder
   ``.detkit-stage-N`` in the manifest as *pending* and create it.
2. The writer puts every new file into the staging folder, under its final name.
3. Commit: after an ``fsync`` of every staged file, the manifest is replaced
   atomically (``fsync``, rename, ``fsync`` of the folder) by one that lists
   the new files and says that they are *moving*. This is the commit point.
4. Each staged file is renamed onto its final name, then the files of the
   previous generation that the new one does not have are removed, the staging
   folder too, and the manifest is rewritten without the move.

A kill before 3 leaves the previous generation in place and a pending staging
folder that the next writer removes (the manifest names it: it is detkit's). A
kill after 3 leaves a committed generation whose files lie partly in the
staging folder: readers find each file with :func:`resolve` (the staged copy
while it exists, else the final name), and the next writer finishes the moves.
So at every instant the folder loads as the old result or the new one, and the
final names stay the ones users know (``network.params``, ``train.rec``).

A name that the new generation would write and that the folder holds *without*
the manifest listing it is a file of the user's: the write is refused with a
:class:`~detkit.errors.StorageError` naming it, before anything is written. A
folder written by an older detkit (no manifest) is adopted through the
``legacy`` callback of the writer, which names the files it recognises as its
own by their content (a detector's ``detector.yaml`` with the checksums of its
weights), never by a name pattern.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

from ..errors import InputError, StorageError
from ._io import PathLike, _fsync_tree, fsync_dir, make_dirs, storage_error
from ._lock import LOCK_FILE, folder_lock
from ._safe_load import load_json_file

__all__ = ["MANIFEST_FILE", "FolderSnapshot", "Generation", "check_output", "check_writable", "folder_generation", "owned_files",
           "read_consistent", "read_manifest", "resolve", "settle"]

#: The manifest of a folder that detkit writes results into: the files it made there.
MANIFEST_FILE = ".detkit-manifest.json"
MANIFEST_FORMAT = "detkit-folder/1"
_MANIFEST_STAGED = ".detkit-manifest.json.new"
_STAGE_PREFIX = ".detkit-stage-"
_RESERVED = {MANIFEST_FILE, _MANIFEST_STAGED, LOCK_FILE}
_MAX_MANIFEST_BYTES = 16 << 20


def _plain(name: Any) -> bool:
    return (isinstance(name, str) and bool(name) and name not in (".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name and name not in _RESERVED
            and not name.startswith(_STAGE_PREFIX))


def _bad(path: Path, why: str) -> StorageError:
    return StorageError(
        f"{path} is not a valid detkit manifest ({why}); detkit will not write into {path.parent} while it "
        f"cannot tell its own files there: move the folder's files you want to keep elsewhere and delete {path}."
    )


def read_manifest(folder: PathLike) -> dict[str, Any] | None:
    """The manifest of ``folder`` (checked), or ``None`` where it has none (a folder of an older detkit, or new).

    Returns a dict with ``files`` (the names of the committed generation),
    ``generation``, ``kind``, ``moving`` (``{"stage": NAME, "names": [...]}`` while
    a committed generation is being moved into place, else ``None``),
    ``remove`` (names of the previous generation still to delete) and
    ``pending`` (the staging folder of an uncommitted writer, or ``None``).
    """
    path = Path(folder) / MANIFEST_FILE
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_file():
        raise _bad(path, "not a regular file")
    data = load_json_file(path, what="detkit manifest", max_bytes=_MAX_MANIFEST_BYTES, max_depth=4,
                          error=lambda why: _bad(path, why))
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise _bad(path, f"its format is not {MANIFEST_FORMAT!r}")
    files = data.get("files")
    if not isinstance(files, list) or not all(_plain(name) for name in files):
        raise _bad(path, "'files' is not a list of plain file names")
    generation = data.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool) or not 0 <= generation < 1 << 62:
        raise _bad(path, "'generation' is not a count")
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise _bad(path, "'kind' is not a name")
    moving = data.get("moving")
    if moving is not None:
        if (not isinstance(moving, dict) or not _is_stage(moving.get("stage"))
                or not isinstance(moving.get("names"), list) or not all(_plain(n) for n in moving["names"])
                or not set(moving["names"]) <= set(files)):
            raise _bad(path, "'moving' is malformed")
    remove = data.get("remove", [])
    if not isinstance(remove, list) or not all(_plain(name) for name in remove):
        raise _bad(path, "'remove' is not a list of plain file names")
    pending = data.get("pending")
    if pending is not None and not _is_stage(pending):
        raise _bad(path, "'pending' is not a staging folder")
    return {"format": MANIFEST_FORMAT, "kind": kind, "generation": generation, "files": list(files),
            "moving": moving, "remove": list(remove), "pending": pending}


def _is_stage(name: Any) -> bool:
    return (isinstance(name, str) and name.startswith(_STAGE_PREFIX) and name[len(_STAGE_PREFIX):].isdigit()
            and len(name) < 64)


def owned_files(folder: PathLike) -> frozenset[str] | None:
    """The names of the files of ``folder``'s committed generation, or ``None`` without a manifest."""
    manifest = read_manifest(folder)
    return None if manifest is None else frozenset(manifest["files"])


def resolve(folder: PathLike, name: str) -> Path:
    """Where to read ``name`` of ``folder``'s committed generation.

    That is ``folder / name``, but for a write that was killed after its commit
    and before all of its files reached their final names: their staged copies
    are the committed ones. A folder without a manifest reads ``folder / name``.
    """
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except StorageError:
        return folder / name
    if manifest is not None and manifest["moving"] and name in manifest["moving"]["names"]:
        staged = folder / manifest["moving"]["stage"] / name
        if os.path.lexists(staged):
            return staged
    return folder / name


class FolderSnapshot:
    """The committed generation of a folder as one reading of its manifest saw it: every name of a load from it.

    :func:`resolve` reads the manifest anew for each name, so a load that reads
    two files of a folder while another process saves into it could pair one
    generation's ``detector.yaml`` with the other's weights. A load reads every
    name through one snapshot (:meth:`path`), then asks :meth:`changed`: a
    manifest that differs from the one the snapshot read means a write committed
    or moved files meanwhile, and the load is repeated (:func:`read_consistent`).
    """

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        self._manifest = self._read()

    def _read(self) -> dict[str, Any] | None:
        try:
            return read_manifest(self.folder)
        except (StorageError, OSError):
            return None

    def path(self, name: str) -> Path:
        """Where to read ``name`` of the generation this snapshot saw (as :func:`resolve`, from its one manifest)."""
        manifest = self._manifest
        if manifest is not None and manifest["moving"] and name in manifest["moving"]["names"]:
            staged = self.folder / manifest["moving"]["stage"] / name
            if os.path.lexists(staged):
                return staged
        return self.folder / name

    def changed(self) -> bool:
        """Whether the folder's manifest now differs from the one this snapshot read (a write came between)."""
        return self._read() != self._manifest


_T = TypeVar("_T")
_READ_ATTEMPTS = 8


def read_consistent(folder: PathLike, load: Callable[[FolderSnapshot], _T]) -> _T:
    """``load(snapshot)`` of ``folder``, repeated until no write into the folder came between its reads.

    ``load`` reads every file of the folder through ``snapshot.path(name)``. When the
    manifest changed while it ran (another process committed a generation or moved
    its files into place), what it read may mix two generations: it runs again on a
    fresh snapshot, and an error it raised then counts only if the folder did not change.

    Raises
    ------
    StorageError
        If the folder changed during every one of several attempts (another process keeps writing into it).
    """
    for _ in range(_READ_ATTEMPTS):
        snapshot = FolderSnapshot(folder)
        try:
            result = load(snapshot)
        except Exception:
            if snapshot.changed():
                continue
            raise
        if not snapshot.changed():
            return result
    raise StorageError(f"{folder} changed while it was read, {_READ_ATTEMPTS} times (another process keeps saving "
                       "into it); read it again once that process has finished writing.")


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically: written in full beside it under a fixed name of its own, ``fsync``-ed,
    renamed, the folder ``fsync``-ed. (A fixed name, not a fresh temporary one: a kill leaves at most this
    one file, which the next write, holding the lock, overwrites.)"""
    staged = folder / _MANIFEST_STAGED
    try:
        # Never through a symbolic link planted under that name: it would truncate the link's target.
        handle = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            os.write(handle, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8"))
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(staged, folder / MANIFEST_FILE)
    except OSError as error:
        raise storage_error(folder / MANIFEST_FILE, error) from error
    fsync_dir(folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _kind_clash(target: Path, staged: Path, name: str) -> str | None:
    """Why the staged ``name`` cannot take ``target``'s place (a folder where a file goes, or a file where a folder
    goes: one cannot be renamed onto the other), or ``None``."""
    if not os.path.lexists(target) or _is_folder(target) == _is_folder(staged):
        return None
    kinds = ("folder", "file") if _is_folder(target) else ("file", "folder")
    return f"{target} is a {kinds[0]} where detkit's new {name} is a {kinds[1]}, and detkit does not replace one kind " \
           "with the other"


def _roll_forward(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Finish a committed write: move its staged files into place, remove what it replaced and its stage."""
    moving = manifest["moving"]
    if moving:
        stage = folder / moving["stage"]
        trash = stage / ".replaced"
        for name in moving["names"]:
            source = stage / name
            if not os.path.lexists(source):
                continue  # moved before the kill
            target = folder / name
            clash = _kind_clash(target, source, name)
            if clash:  # a write of an earlier detkit committed it: the user's move lets the next write finish it
                raise StorageError(f"{clash}; move {target} away, then write into {folder} again to finish its "
                                   "committed write.")
            try:
                if target.is_dir() and not target.is_symlink():
                    # A folder (a checkpoint) cannot be renamed onto another: move the old one into the stage first.
                    make_dirs(trash)
                    _remove(trash / name)
                    os.replace(target, trash / name)
                os.replace(source, target)
            except OSError as error:
                raise storage_error(target, error) from error
        fsync_dir(folder)
        for name in manifest["remove"]:
            if name not in manifest["files"]:
                _remove(folder / name)
        _remove(stage)
    else:
        for name in manifest["remove"]:
            if name not in manifest["files"]:
                _remove(folder / name)
    settled = dict(manifest, moving=None, remove=[])
    if settled["pending"] is not None:
        _remove(folder / settled["pending"])
        settled["pending"] = None
    if settled != manifest:
        _write_manifest(folder, settled)
    return settled


def check_output(output: PathLike, inputs: Mapping[str, PathLike | None], *, what: str) -> Path:
    """Refuse an output of a command that is empty, or is or lies inside one of the same command's inputs.

    ``inputs`` maps what each input is ("data set", "model") to its path
    (``None``: none given). Returns ``output`` as a path.

    Raises
    ------
    InputError
        Naming the output and the input it would overwrite.
    """
    if not str(output).strip():
        raise InputError(f"The {what} path is empty; give a file or folder name.")
    target = Path(output)
    resolved = target.resolve()
    for label, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if resolved == source or source in resolved.parents:
            raise InputError(
                f"The {what} {target} would overwrite the {label} {path} that the same command reads; "
                f"choose another {what}."
            )
    return target


def settle(folder: PathLike) -> None:
    """Finish a write into ``folder`` that was killed after its commit; remove what an uncommitted one left.

    The caller holds the folder's lock. Afterwards every file of the committed
    generation has its final name. A folder without a manifest is left as it is.
    """
    folder = Path(folder)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is not None:
        _roll_forward(folder, manifest)


def _check_free(folder: Path, name: str, previous: frozenset[str]) -> None:
    target = folder / name
    if os.path.lexists(target) and name not in previous:
        raise StorageError(
            f"{target} was not made by detkit (the folder's manifest {MANIFEST_FILE} does not list it), "
            "and detkit never replaces a file of yours; move it away or choose another folder."
        )


def _check_kind(folder: Path, manifest: dict[str, Any], kind: str) -> None:
    if manifest["kind"] != kind and manifest["files"]:
        # Another kind of result (a model saved into a synthetic set's folder): replacing the set would
        # delete files detkit made for another purpose.
        raise StorageError(
            f"{folder} holds detkit's {manifest['kind']} files ({', '.join(sorted(manifest['files'])[:4])}"
            f"{', ...' if len(manifest['files']) > 4 else ''}), not a {kind}; write the {kind} into "
            "another folder."
        )


def check_writable(folder: PathLike, kind: str, names: Iterable[str]) -> None:
    """Refuse, before anything is made or written, a write that :func:`folder_generation` would refuse.

    For a writer that prepares its files in ``folder`` before its generation (an
    ONNX export's scratch folder): ``folder`` holding detkit's results of another
    ``kind``, or a file of the user's under one of ``names``. (A folder without a
    manifest is checked as a new one: a writer with a ``legacy`` callback checks
    in :func:`folder_generation`.)

    Raises
    ------
    StorageError
        Naming the folder's kind or the user's file, as :func:`folder_generation` does.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    manifest = read_manifest(folder)
    if manifest is not None:
        _check_kind(folder, manifest, kind)
    previous = frozenset(manifest["files"]) if manifest is not None else frozenset()
    for name in names:
        _check_free(folder, name, previous)


class Generation:
    """A write of a new generation of files into a folder, handed out by :func:`folder_generation`.

    Attributes
    ----------
    folder : pathlib.Path
        The folder written into.
    previous : frozenset of str
        The files of the folder's committed generation before this write (detkit's own).
    """

    def __init__(self, folder: Path, stage: Path, previous: frozenset[str], keep_previous: bool) -> None:
        self.folder = folder
        self.stage = stage
        self.previous = previous
        self._names: dict[str, None] = {}
        self._kept: set[str] = set(previous) if keep_previous else set()

    def _check_free(self, name: str) -> None:
        _check_free(self.folder, name, self.previous)

    def path(self, name: str) -> Path:
        """The staged path where the new generation's file ``name`` (a plain file or folder name) is written.

        Raises
        ------
        StorageError
            If the folder holds a file of that name that detkit did not make.
        """
        if not _plain(name):
            raise StorageError(f"{name!r} is not a plain file name that detkit may write into {self.folder}.")
        self._check_free(name)
        self._names[name] = None
        return self.stage / name

    def keep(self, name: str) -> None:
        """Keep the previous generation's ``name`` unchanged in the new one."""
        if name in self.previous:
            self._kept.add(name)

    def drop(self, name: str) -> None:
        """Do not keep the previous generation's ``name`` (a folder written with ``keep_previous``)."""
        self._kept.discard(name)

    @property
    def names(self) -> list[str]:
        """The names written so far by this generation."""
        return list(self._names)


@contextlib.contextmanager
def folder_generation(
    folder: PathLike,
    kind: str,
    *,
    purpose: str,
    legacy: Callable[[Path], Iterable[str]] | None = None,
    keep_previous: bool = False,
    locked: bool = False,
) -> Iterator[Generation]:
    """Write a new generation of detkit's files into ``folder``: all of it, or none, and nothing of the user's.

    Yields a :class:`Generation`; the block writes each file at
    ``generation.path(name)``. When the block ends normally the generation is
    committed (see the module's documentation); when it raises or the process
    dies, the folder keeps its previous generation, and files that are not
    detkit's are never touched.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder (made if missing).
    kind : str
        What the folder holds (``"detector"``, ``"checkpoints"``, ...), recorded in the manifest.
    purpose : str
        What the writer does, for the message of a concurrent writer that finds the folder locked.
    legacy : callable, optional
        For a folder without a manifest: the names of the files that an earlier
        detkit made there, recognised by their content (they become the
        previous generation, replaced and removed like it).
    keep_previous : bool
        Keep the previous generation's files in the new one (unless rewritten
        or :meth:`Generation.drop`-ped) instead of replacing the whole set.
    locked : bool
        The caller already holds ``folder``'s lock (:func:`folder_lock`).

    Raises
    ------
    StorageError
        If another process writes into the folder, a name the write needs is a
        file of the user's, the manifest is damaged, or the disk fails.
    """
    folder = Path(folder)
    if locked:
        make_dirs(folder)
    # folder_lock makes the folder, and removes it again when a failed write leaves nothing there but the lock.
    lock = contextlib.nullcontext() if locked else folder_lock(folder, purpose)
    with lock:
        manifest = read_manifest(folder)
        if manifest is None:
            previous = frozenset(name for name in (legacy(folder) if legacy else ()) if _plain(name))
            manifest = {"format": MANIFEST_FORMAT, "kind": kind, "generation": 0, "files": sorted(previous),
                        "moving": None, "remove": [], "pending": None}
        else:
            _check_kind(folder, manifest, kind)
            manifest = _roll_forward(folder, manifest)
            previous = frozenset(manifest["files"])
        number = manifest["generation"] + 1
        stage = folder / f"{_STAGE_PREFIX}{number}"
        # Record the staging folder before making it: whatever a kill leaves of it is then known to be detkit's.
        _write_manifest(folder, dict(manifest, pending=stage.name))
        try:
            _remove(stage)
            stage.mkdir()
        except OSError as error:
            raise storage_error(stage, error) from error
        generation = Generation(folder, stage, previous, keep_previous)
        committed = False
        try:
            try:
                yield generation
            except OSError as error:
                if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) and not isinstance(error, StorageError):
                    raise storage_error(folder, error) from error
                raise
            names = generation.names
            for name in names:
                generation._check_free(name)  # a file of the user's that appeared meanwhile
                if not os.path.lexists(stage / name):
                    raise StorageError(f"{stage / name} was not written; nothing was changed in {folder}.")
                clash = _kind_clash(folder / name, stage / name, name)
                if clash:  # refused before the commit: a move that cannot happen would leave the write unfinished
                    raise StorageError(f"{clash}; move {folder / name} away (or write into another folder), then "
                                       f"write again: nothing was changed in {folder}.")
            try:
                _fsync_tree(stage)
            except OSError as error:
                raise storage_error(folder, error) from error
            files = sorted((set(generation._kept) - set(names)) | set(names))
            new = {"format": MANIFEST_FORMAT, "kind": kind, "generation": number, "files": files,
                   "moving": {"stage": stage.name, "names": names},
                   "remove": sorted(previous - set(files)), "pending": None}
            _write_manifest(folder, new)  # the commit point (written, fsynced, renamed, folder fsynced)
            committed = True
            _roll_forward(folder, new)
        finally:
            if not committed:
                _remove(stage)
                with contextlib.suppress(OSError, StorageError):
                    if manifest["generation"] == 0 and not manifest["files"]:
                        (folder / MANIFEST_FILE).unlink()  # a folder new to detkit: left as it was
                    else:
                        _write_manifest(folder, dict(manifest, pending=None))
