"""A lock on a folder that one detkit process writes into (a checkpoint directory, a training's output).

The lock is an advisory ``fcntl.flock`` on ``FOLDER/.detkit.lock``, which
holds the holder's pid, host and start time for the message of whoever finds
it taken. The operating system releases a ``flock`` when its process ends,
however it ends (``kill -9`` included), so the lock of a dead process is never
in the way: the file stays behind and the next process takes it over. Where
``fcntl`` does not exist (Windows), the file is created exclusively instead,
and one left by a process of this host that no longer runs is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import StorageError
from ._io import PathLike, make_dirs, storage_error

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "folder_lock"]

LOCK_FILE = ".detkit.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {int(info['pid'])} on host {info['host']!s}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its lock file cannot be read)"


def _busy(folder: Path, path: Path, purpose: str) -> StorageError:
    return StorageError(
        f"{folder} is in use by another detkit process ({_holder(path)}) for {purpose}; wait for it to end, "
        f"or choose another folder. (If no such process runs, delete {path}.)"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_if_unused(folder: Path, path: Path) -> None:
    """Remove a folder that the lock created and nothing else used: a refused run leaves no trace."""
    try:
        if [entry.name for entry in folder.iterdir()] == [LOCK_FILE]:
            path.unlink()
            folder.rmdir()
    except OSError:
        pass  # written to meanwhile, or not ours to remove: leave it


@contextlib.contextmanager
def folder_lock(folder: PathLike, purpose: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if needed) for the block; :class:`StorageError` if it is taken.

    A folder created here that holds nothing but the lock at the end is removed again.

    ``purpose`` says what the holder does there ("training checkpoints"); it
    goes into the message that another process gets.
    """
    created = not Path(folder).exists()
    folder = make_dirs(folder)
    path = folder / LOCK_FILE
    me: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                          "purpose": purpose}
    if fcntl is not None:
        try:
            # Never through a symbolic link: the lock is written to, and must be this folder's own file.
            handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as error:
            raise storage_error(path, error) from error
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            os.close(handle)
            raise StorageError(f"{path} is not a regular file; delete it so that detkit can lock {folder}.")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(folder, path, purpose) from None
            except OSError as error:
                raise storage_error(path, error) from error
            os.ftruncate(handle, 0)
            os.pwrite(handle, json.dumps(me).encode("utf-8"), 0)
            try:
                yield path
            finally:
                os.ftruncate(handle, 0)
                if created:
                    _remove_if_unused(folder, path)
        finally:
            os.close(handle)  # releases the flock
        return
    # Without fcntl: an exclusively created file; a stale one (dead pid on this host) is taken over.
    for _ in range(2):  # pragma: no cover - Windows
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
                stale = info["host"] == me["host"] and not _alive(int(info["pid"]))
            except (OSError, ValueError, KeyError, TypeError):
                stale = False
            if not stale:
                raise _busy(folder, path, purpose) from None
            path.unlink(missing_ok=True)
            continue
        except OSError as error:
            raise storage_error(path, error) from error
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(me))
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
        return
    raise _busy(folder, path, purpose)  # pragma: no cover
