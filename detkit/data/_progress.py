"""Progress bars for long work (tqdm on stderr, off when ``progress=False``)."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, enabled: bool, desc: str, total: int | None = None,
                 unit: str = "img") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``; otherwise return it unchanged."""
    if not enabled:
        return iterable
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
