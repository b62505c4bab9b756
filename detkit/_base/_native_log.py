"""MXNet's own C++ log lines, kept off the user's terminal where detkit knows them to be noise.

MXNet's C++ code logs to the process's standard error directly (file descriptor 2),
past Python's ``sys.stderr`` and ``logging``; only a redirection of the descriptor
itself catches it. :func:`native_stderr_filtered` points it at a pipe for the
duration of a block; a thread reads the pipe and writes every line through to the
real standard error as it comes, but those matching the patterns given, so that a
warning or an error of MXNet is still seen — also the last one before a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import threading
from typing import Iterator, Pattern

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def native_stderr_filtered(drop: Pattern[str]) -> Iterator[None]:
    """Inside the block, lines written to file descriptor 2 that match ``drop`` are dropped; the rest pass at once.

    File descriptor 2 is restored when the block ends, however it ends, and every
    descriptor the filter opened is closed. Where the pipe or its thread cannot be
    made, the block runs unfiltered.
    """
    fd = 2  # where C++'s std::cerr writes, whatever Python's sys.stderr is now
    with contextlib.ExitStack() as cleanup:  # undone in reverse: fd 2 restored, the thread ended, descriptors closed
        try:
            saved = os.dup(fd)
            cleanup.callback(os.close, saved)
            read_end, write_end = os.pipe()
            cleanup.callback(os.close, read_end)
            try:
                _widen(write_end)
                stop = threading.Event()
                reader = threading.Thread(target=_forward, args=(read_end, saved, drop, stop),
                                          name="detkit-native-stderr", daemon=True)
                reader.start()
                cleanup.callback(reader.join)
                cleanup.callback(stop.set)
                _flush()
                os.dup2(write_end, fd)
                cleanup.callback(_restore, saved, fd)
            finally:
                os.close(write_end)  # fd 2 holds the pipe's write end now (or nothing does)
        except (OSError, RuntimeError):  # no descriptor or thread left: unfiltered, and nothing left open
            cleanup.close()
        yield


def _restore(saved: int, fd: int) -> None:
    _flush()
    os.dup2(saved, fd)  # the pipe's last write end closed with it (unless a child process inherited one)


def _widen(fd: int) -> None:
    """A larger pipe buffer where the system allows: a burst of lines waits there while the reader is slow."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)  # Linux only


_POLL_MS = 100


def _forward(source: int, target: int, drop: Pattern[str], stop: threading.Event) -> None:
    """Read ``source`` until its end (or ``stop`` and nothing more to read); write the lines not dropped to ``target``.

    ``stop`` ends the reading where a child process keeps the pipe's write end open, so the block never waits on it.
    """
    pending = b""
    try:
        poller = select.poll() if hasattr(select, "poll") else None  # Windows: blocking reads, to the pipe's end
        if poller is not None:
            poller.register(source, select.POLLIN)
        while True:
            stopping = stop.is_set()
            if poller is not None and not poller.poll(0 if stopping else _POLL_MS):
                if stopping:
                    break
                continue
            chunk = os.read(source, 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _write_kept(target, line + b"\n", drop)
    except OSError:
        pass
    if pending:
        _write_kept(target, pending, drop)


def _write_kept(target: int, line: bytes, drop: Pattern[str]) -> None:
    if drop.search(line.decode("utf-8", "replace")):
        return
    with contextlib.suppress(OSError):  # the real standard error closed: nowhere to write the line
        view = memoryview(line)
        while view:
            view = view[os.write(target, view):]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


#: MXNet 1.9.1's lines of a quantization: one per quantized layer (quantize_graph_pass.cc) and the
#: MKL-DNN subgraph backend's notice.
QUANTIZATION_NOISE = re.compile(r"quantize_graph_pass\.cc:\d+:|Subgraph backend MKLDNN is activated")
