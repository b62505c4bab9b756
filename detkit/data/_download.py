"""The seed's pikachu dataset: verified, atomic downloads."""

from __future__ import annotations

from pathlib import Path

from .._base import FetchFailed, PathLike, atomic_outputs, atomic_path, fetch, file_digest, make_dirs
from ..errors import DownloadError
from . import _recordio
from ._classes import write_classes
from ._dataset import DetectionDataset

#: Where the seed downloads its pikachu dataset from.
PIKACHU_URL = "https://apache-mxnet.s3-accelerate.amazonaws.com/gluon/dataset/pikachu/"
#: The seed's SHA-1 sums of the files (the seed has no ``val.idx``: it is rebuilt locally).
PIKACHU_SHA1 = {
    "train.rec": "e6bcb6ffba1ac04ff8a9b1115e650af56ee969c8",
    "train.idx": "dcf7318b2602c06428b9988470c731621716c393",
    "val.rec": "d6c33f799b4d058e82f2cb5bd9a976f69d72d520",
}
PIKACHU_CLASSES = ["pikachu"]
_TIMEOUT_S = 30.0
_OFFLINE_HINT = (
    "Without network access, make the synthetic pikachu instead: "
    "detkit.data.synthetic_pikachu(root), or `detkit data synth ROOT`"
)


def sha1_of(path: Path) -> str:
    """The SHA-1 of ``path`` (the seed publishes its files' SHA-1 sums)."""
    return file_digest(path, "sha1")


def download(url: str, path: PathLike, sha1: str, *, progress: bool = True, timeout: float = _TIMEOUT_S) -> bool:
    """Download ``url`` to ``path`` and check its SHA-1; return whether anything was downloaded.

    A file already at ``path`` with the right SHA-1 is kept. The data goes to a
    temporary file beside ``path`` that is renamed only once complete and
    verified, so an interrupted or corrupt download never leaves a file that
    looks valid. Every failure raises :class:`~detkit.errors.DownloadError`.
    """
    path = Path(path)
    if path.is_file() and sha1_of(path) == sha1:
        return False
    with atomic_path(path) as temp:
        try:
            received = fetch(url, temp, label=path.name, progress=progress, timeout=timeout)
        except FetchFailed as failure:
            raise DownloadError(f"{failure}. {_OFFLINE_HINT}") from None
        if received != sha1:
            raise DownloadError(
                f"{url}: SHA-1 mismatch: expected {sha1}, got {received} "
                f"({temp.stat().st_size} bytes); the file was not saved"
            )
    return True


def write_index(rec_path: PathLike, idx_path: PathLike | None = None) -> Path:
    """Write the ``.idx`` of a ``.rec`` file (keys 0, 1, ...) by walking the file; atomic."""
    rec_path = Path(rec_path)
    idx_path = rec_path.with_suffix(".idx") if idx_path is None else Path(idx_path)
    offsets = _recordio.scan_offsets(rec_path)
    with atomic_outputs([idx_path]) as (temp,):
        temp.write_text("".join(f"{i}\t{offset}\n" for i, offset in enumerate(offsets)), encoding="ascii")
    return idx_path


def pikachu(
    root: PathLike, *, base_url: str = PIKACHU_URL, progress: bool = True
) -> tuple[DetectionDataset, DetectionDataset]:
    """Download the seed's pikachu dataset (``train.rec``, ``train.idx``, ``val.rec``) into ``root``.

    Each file is checked against the seed's SHA-1 sum; files already there and
    verified are not downloaded again; a failed or corrupt download leaves no
    file behind. ``val.idx``, which the seed does not have, is built locally.

    Parameters
    ----------
    root : str or os.PathLike
        Folder for the files (created if needed).
    base_url : str
        Where the three files are, the seed's server by default.
    progress : bool
        Show a progress bar per file.

    Returns
    -------
    (DetectionDataset, DetectionDataset)
        The training and validation sets, classes ``["pikachu"]``.

    Raises
    ------
    detkit.errors.DownloadError
        The server cannot be reached (the message suggests
        :func:`synthetic_pikachu`), answers with an error, the transfer breaks
        off, or a file does not match its SHA-1 sum.
    """
    root = Path(root)
    if (root / "synthetic.json").exists():
        raise DownloadError(f"{root}: holds the synthetic pikachu; download the real one into another folder")
    make_dirs(root)
    base = base_url if base_url.endswith("/") else base_url + "/"
    fetched = {name: download(base + name, root / name, sha1, progress=progress) for name, sha1 in PIKACHU_SHA1.items()}
    if fetched["val.rec"] or not (root / "val.idx").is_file():
        write_index(root / "val.rec", root / "val.idx")
    if not (root / "classes.txt").is_file():
        with atomic_outputs([root / "classes.txt"]) as (temp,):
            write_classes(temp, PIKACHU_CLASSES)
    return (
        DetectionDataset(root / "train.rec", root / "train.idx", classes=PIKACHU_CLASSES),
        DetectionDataset(root / "val.rec", root / "val.idx", classes=PIKACHU_CLASSES),
    )
