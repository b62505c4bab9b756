"""The class list that sits beside a packed dataset: one name a line, class id = line number - 1."""

from __future__ import annotations

from pathlib import Path

from .._base import check_classes
from ..errors import DataError, InputError


def write_classes(path: Path, classes: list[str]) -> None:
    path.write_text("".join(f"{name}\n" for name in classes), encoding="utf-8")


def read_classes(path: Path) -> list[str]:
    """Read a class list; raise :class:`DataError` naming the file when it is empty or repeats a name."""
    if Path(path).exists() and not Path(path).is_file():  # a pipe would block the read
        raise DataError(f"{path}: the class list is not a regular file")
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as error:
        raise DataError(f"{path}: cannot read the class list ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: the class list is not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        return check_classes([n for n in names if n], subject="The class list")
    except InputError as error:  # the same rules as for a class list given in Python, named by the file
        raise DataError(f"{path}: {error}") from None


def find_classes(rec_path: Path) -> Path | None:
    """The class list of a ``.rec`` file: ``PREFIX.classes.txt`` beside it, else ``classes.txt`` in its folder."""
    rec_path = Path(rec_path)
    for candidate in (rec_path.with_suffix(".classes.txt"), rec_path.parent / "classes.txt"):
        if candidate.is_file():
            return candidate
    return None
