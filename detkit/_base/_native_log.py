"""MXNet's own C++ log lines, kept off the user's terminal where detkit knows them to be noise.

MXNet's C++ code logs to the process's standard error directly (file descriptor 2),
past Python's ``sys.stderr`` and ``logging``; only a redirection of the descriptor
itself catches it. :func:`native_stderr_filtered` redirects it into a temporary file
for the duration of a block, then writes back every line but those matching the
patterns given, so that a warning or an error of MXNet is still seen.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator, Pattern


@contextlib.contextmanager
def native_stderr_filtered(drop: Pattern[str]) -> Iterator[None]:
    """Inside the block, lines written to file descriptor 2 that match ``drop`` are dropped; the rest pass after it."""
    fd = 2  # where C++'s std::cerr writes, whatever Python's sys.stderr is now
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        _flush()
        os.dup2(captured.fileno(), fd)
        try:
            yield
        finally:
            _flush()
            os.dup2(saved, fd)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not drop.search(line)]
            if kept:
                os.write(fd, "".join(kept).encode("utf-8"))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


#: MXNet 1.9.1's lines of a quantization: one per quantized layer (quantize_graph_pass.cc) and the
#: MKL-DNN subgraph backend's notice.
QUANTIZATION_NOISE = re.compile(r"quantize_graph_pass\.cc:\d+:|Subgraph backend MKLDNN is activated")
