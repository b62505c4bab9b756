"""Atomic file writing, written once: a file or folder appears complete under its name, or not at all.

Every writer here stages its output beside the target (same folder, so the
final ``os.replace`` is atomic), flushes the staged data to disk with
``fsync`` before the rename and the folder after it (a power cut leaves the
old file or the new one, never an empty one), and removes what it staged when
anything fails. Failures of the file system (a full disk, a read-only folder,
missing permissions, a parent that is a file) become :class:`~detkit.errors.StorageError`
naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator, Sequence, Union

from ..errors import StorageError

#: A file system path: a ``str`` or an ``os.PathLike`` such as ``pathlib.Path``.
PathLike = Union[str, os.PathLike[str]]

_HINTS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you may write to",
    errno.EPERM: "permission denied; choose a folder you may write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a file stands where a folder is needed; choose another path",
    errno.ELOOP: "it is a symbolic link, which detkit does not follow there; remove the link",
}


def storage_error(path: PathLike, error: OSError) -> StorageError:
    """A :class:`StorageError` for ``error`` met while writing ``path``, with what to do about it."""
    hint = _HINTS.get(error.errno or 0, "check the path and the disk")
    return StorageError(f"Cannot write {path}: {error.strerror or error}; {hint}.")


#: Errors of a write that the writer's own code cannot cause: reported as StorageError wherever they arise.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@contextlib.contextmanager
def storage_errors(path: PathLike) -> Iterator[None]:
    """Report a failed write of ``path`` in the block as :class:`StorageError`, MXNet's own writers included.

    MXNet writes ``.params`` files through its C++ streams and raises an
    ``MXNetError`` without an errno ("FileStream.Write incomplete"); the hint
    then comes from the folder: full, or not writable.
    """
    try:
        yield
    except OSError as error:
        if isinstance(error, StorageError):
            raise
        raise storage_error(path, error) from error
    except RuntimeError as error:
        if type(error).__name__ != "MXNetError":
            raise
        folder = Path(path).parent
        try:
            full = shutil.disk_usage(folder).free < (1 << 20)
        except OSError:
            full = False
        if full:
            hint = _HINTS[errno.ENOSPC]
        elif not os.access(folder, os.W_OK):
            hint = _HINTS[errno.EACCES]
        else:
            hint = "the disk may be full or the folder not writable; check both"
        lines = [line for line in str(error).splitlines() if line.strip()]
        detail = lines[-1].replace("MXNetError: ", "MXNet: ") if lines else "MXNet failed"
        raise StorageError(f"Cannot write {path}: {detail}; {hint}.") from None


def make_dirs(path: PathLike) -> Path:
    """``mkdir -p`` that reports a file system failure as :class:`StorageError`."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(folder, error) from error
    if not folder.is_dir():
        raise storage_error(folder, FileExistsError(errno.EEXIST, "not a folder"))
    return folder


def _staged_name(target: Path, suffix: str) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_tree(path: Path) -> None:
    """fsync every file below ``path`` and every folder, deepest first."""
    for root, _, files in os.walk(path, topdown=False):
        for name in files:
            _fsync_file(Path(root) / name)
        fsync_dir(root)


def fsync_dir(path: PathLike) -> None:
    """Make a rename in ``path`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[PathLike]) -> Iterator[list[Path]]:
    """Yield one staged file path per output path; move them all into place only if the block succeeds.

    When the block raises (or is interrupted), every staged file is removed and
    no output path is touched, so a failed run never leaves a file that looks
    valid. The renames happen in the given order: put the file that marks a
    complete result (a manifest) last.
    """
    finals = [Path(p) for p in paths]
    staged: list[Path] = []
    try:
        for final in finals:
            make_dirs(final.parent)
            temp = _staged_name(final, ".part")
            try:
                # mode 0o666 less the umask, as for any new file (tempfile.mkstemp would give 0o600)
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except OSError as error:
                raise storage_error(final, error) from error
            staged.append(temp)
        try:
            yield staged
        except OSError as error:
            # A full disk or a read-only file system while writing; other errors of the block
            # (the read of an input, ...) pass through as they were raised.
            if error.errno in _WRITE_ERRNOS and not isinstance(error, StorageError):
                raise storage_error(finals[0] if len(finals) == 1 else finals[0].parent, error) from error
            raise
        for temp, final in zip(staged, finals):
            try:
                _fsync_file(temp)
                os.replace(temp, final)
            except OSError as error:
                raise storage_error(final, error) from error
        for folder in {final.parent for final in finals}:
            fsync_dir(folder)
    finally:
        for temp in staged:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a staged path beside ``path``; move it onto ``path`` only if the block succeeds."""
    with atomic_outputs([path]) as (staged,):
        yield staged


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as staged:
        staged.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yield a staged folder beside ``path``; it replaces ``path`` only if the block succeeds.

    A folder that already stands at ``path`` is moved aside first and removed
    after the swap, so at every instant ``path`` is either the old complete
    folder, absent (between two renames), or the new complete one. A symbolic
    link at ``path`` is replaced by the new folder and removed, not followed
    (resolve ``path`` first to write where a link points).
    """
    target = Path(path)
    make_dirs(target.parent)
    staged = _staged_name(target, ".partial")
    try:
        staged.mkdir()
    except OSError as error:
        raise storage_error(target, error) from error
    try:
        try:
            yield staged
        except OSError as error:
            if error.errno in _WRITE_ERRNOS and not isinstance(error, StorageError):
                raise storage_error(target, error) from error
            raise
        try:
            _fsync_tree(staged)
            old = None
            if os.path.lexists(target):  # a dangling symlink included: renaming a folder onto it fails
                old = _staged_name(target, ".old")
                os.replace(target, old)
            os.replace(staged, target)
            fsync_dir(target.parent)
        except OSError as error:
            raise storage_error(target, error) from error
        if old is not None:
            if old.is_symlink() or not old.is_dir():  # rmtree refuses these: they would stay as .NAME.*.old
                with contextlib.suppress(OSError):
                    old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


@contextlib.contextmanager
def scratch_folder(parent: PathLike) -> Iterator[Path]:
    """A private, empty folder inside ``parent`` for work whose results are moved out; removed afterwards."""
    folder = _staged_name(make_dirs(parent) / "scratch", ".tmp")
    try:
        folder.mkdir()
    except OSError as error:
        raise storage_error(parent, error) from error
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def file_digest(path: PathLike, algorithm: str = "sha256") -> str:
    """The ``algorithm`` digest (``"sha256"``, ``"sha1"``, ...) of the file ``path``, as hex digits."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
