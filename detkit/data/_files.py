"""Atomic output files: nothing appears under its final name until it is complete."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator, Sequence


def temp_path_for(path: Path) -> Path:
    """A fresh, hidden temporary path in the directory of ``path`` (so that the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            # mode 0o666 less the umask, as for any new file (tempfile.mkstemp would give 0o600)
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield one temporary path per output path; rename them all into place only on success.

    When the body raises (or is interrupted), every temporary file is removed and
    no output path is touched, so a failed run never leaves a file that looks valid.
    The renames happen in the given order: put the file that marks a complete
    result (a manifest) last.
    """
    finals = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for final in finals:
            temps.append(temp_path_for(final))
        yield temps
        for temp, final in zip(temps, finals):
            os.replace(temp, final)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
