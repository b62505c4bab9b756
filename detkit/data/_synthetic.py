"""The synthetic pikachu: the seed's kind of data, rendered locally and packed as RecordIO."""

from __future__ import annotations

import dataclasses
import io
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from tqdm.auto import tqdm

from .._base import PathLike, check_int, folder_generation, load_json_text, read_manifest
from ..errors import DataError, InputError, StorageError
from . import _recordio
from ._classes import write_classes
from ._dataset import DetectionDataset
from ._download import sha1_of
from ._render import render_sample
from ._show import show

CLASSES = ["pikachu"]
MANIFEST = "synthetic.json"
# Bump when the renderer or the packing changes, so that old sets are not re-used.
GENERATOR_VERSION = 1
_JPEG_QUALITY = 90
_SPLITS = {"train": 0, "val": 1}
_OUTPUTS = ("train.rec", "train.idx", "val.rec", "val.idx", "classes.txt", "preview.png")


def _sample_record(seed: int, split: int, index: int, image_size: int) -> bytes:
    """The record data of image ``index`` of a split: depends only on its arguments."""
    rng = np.random.default_rng([seed, split, index])
    image, objects = render_sample(rng, image_size)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return _recordio.pack_detection(index, buffer.getvalue(), objects, image_size, image_size)


def _sample_record_args(args: tuple[int, int, int, int]) -> bytes:
    return _sample_record(*args)


@dataclasses.dataclass(frozen=True)
class SetKind:
    """A kind of synthetic set: what its manifest says made it, and how one record is rendered."""

    generator: str  # the public function, as the manifest names it
    version: int  # bump when the renderer or the packing changes, so that old sets are not re-used
    label: str  # of the progress bar
    render: Callable[[Any], bytes]  # a job's record data; module-level, so that worker processes can run it
    job: Callable[[dict, int, int], Any]  # (arguments, split, index) -> the job of one image


PIKACHU = SetKind("detkit.data.synthetic_pikachu", GENERATOR_VERSION, "synthetic pikachu", _sample_record_args,
                  lambda arguments, split, i: (arguments["seed"], split, i, arguments["image_size"]))


def _read_manifest(root: Path) -> dict | None:
    if not (root / MANIFEST).is_file():  # missing, or a pipe that would block the read
        return None
    try:
        manifest = load_json_text((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _settled(root: Path) -> bool:
    """Whether every file of the folder's committed generation has its final name (no interrupted write)."""
    try:
        return (read_manifest(root) or {}).get("moving") is None
    except StorageError:
        return False


def _legacy_files(root: Path) -> list[str]:
    """The files that an earlier detkit's synthetic set left in ``root`` (no manifest), known by their SHA-1 sums."""
    manifest = _read_manifest(root)
    if manifest is None or not isinstance(manifest.get("sha1"), dict):
        return []
    names = [MANIFEST]
    for name in _OUTPUTS:
        try:
            if (root / name).is_file() and manifest["sha1"].get(name) == sha1_of(root / name):
                names.append(name)
        except OSError:
            continue
    return names


def _reusable(root: Path, arguments: dict, kind: SetKind = PIKACHU) -> bool:
    """Whether ``root`` holds a complete set made with ``arguments`` (checked against its SHA-1 sums)."""
    manifest = _read_manifest(root)
    if manifest is None or not _settled(root):
        return False
    if (manifest.get("arguments") != arguments or manifest.get("generator_version") != kind.version
            or manifest.get("generator") != kind.generator):
        return False
    files = manifest.get("sha1", {})
    try:
        return all((root / name).is_file() and files.get(name) == sha1_of(root / name) for name in _OUTPUTS)
    except OSError:
        return False


def made_with(root: PathLike, *, num_train: int, num_val: int, image_size: int, seed: int) -> bool:
    """Whether ``root`` holds a complete synthetic set made with these arguments (which
    :func:`synthetic_pikachu` then keeps instead of rendering it again)."""
    arguments = {"num_train": num_train, "num_val": num_val, "image_size": image_size, "seed": seed}
    return _reusable(Path(root), arguments)


def synthetic_pikachu(
    root: PathLike,
    *,
    num_train: int = 1000,
    num_val: int = 100,
    image_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
    force: bool = False,
) -> tuple[DetectionDataset, DetectionDataset]:
    """Render a pikachu-like dataset and pack it in the seed's RecordIO layout.

    Each image has one cartoon character (yellow, black-tipped pointed ears, red
    cheeks, zig-zag tail) at a random size (15 % to 50 % of the image side),
    position, rotation (±30°), flip and colour, over a random background (gradients,
    stripes, checkerboards, clouds, landscapes) with clutter shapes, many in the
    character's own colours. Its box is the exact extent of its pixels.

    The same arguments give byte-identical files, whatever ``workers`` is: image
    ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split, i])``.
    When ``root`` already holds a set made with the same arguments (its
    ``synthetic.json`` manifest and SHA-1 sums agree) nothing is rendered again,
    unless ``force``.

    Parameters
    ----------
    root : str or os.PathLike
        Folder for ``train.rec``, ``train.idx``, ``val.rec``, ``val.idx``,
        ``classes.txt``, ``preview.png`` (the first 9 training images, boxes drawn)
        and ``synthetic.json``.
    num_train, num_val : int
        Images in each split; the seed has 1000 and 100.
    image_size : int
        Side of the square images in pixels.
    seed : int
        Seed of everything random.
    progress : bool
        Show a progress bar.
    workers : int
        Processes that render in parallel.
    force : bool
        Render the set again even when ``root`` holds one made with the same arguments.

    Returns
    -------
    (DetectionDataset, DetectionDataset)
        The training and validation sets, classes ``["pikachu"]``.
    """
    num_train = check_int("num_train", num_train, minimum=1)
    num_val = check_int("num_val", num_val, minimum=1)
    image_size = check_int("image_size", image_size, minimum=32)
    seed = check_int("seed", seed, minimum=0)
    workers = check_int("workers", workers, minimum=1)
    arguments = {"num_train": num_train, "num_val": num_val, "image_size": image_size, "seed": seed}
    return make_set(Path(root), arguments, CLASSES, PIKACHU, force=force, progress=progress, workers=workers)


def make_set(root: Path, arguments: dict, classes: list[str], kind: SetKind, *, force: bool, progress: bool,
             workers: int) -> tuple[DetectionDataset, DetectionDataset]:
    """Render the set of ``kind`` into ``root`` unless it holds one made with ``arguments``; open its splits."""
    if force or not _reusable(root, arguments, kind):
        maker = kind.generator.rsplit(".", 1)[-1]
        if not (root / MANIFEST).exists() and any((root / name).exists() for name in ("train.rec", "val.rec")):
            raise DataError(
                f"{root}: holds a dataset that {maker} did not make (no {MANIFEST}); "
                "choose another folder, or delete its train.rec and val.rec"
            )
        other = (_read_manifest(root) or {}).get("generator", kind.generator)
        if other != kind.generator:
            raise DataError(
                f"{root}: holds a set that {other} made; choose another folder, or delete its {MANIFEST}"
            )
        _generate(root, arguments, classes, kind, progress=progress, workers=workers)
    return (
        DetectionDataset(root / "train.rec", root / "train.idx", classes=classes),
        DetectionDataset(root / "val.rec", root / "val.idx", classes=classes),
    )


def _generate(root: Path, arguments: dict, classes: list[str], kind: SetKind, *, progress: bool,
              workers: int) -> None:

    counts = {"train": arguments["num_train"], "val": arguments["num_val"]}
    executor = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        # One generation of the folder: all of the set or the earlier one, and no file of the user's replaced.
        with folder_generation(root, "synthetic", purpose="making a synthetic set", legacy=_legacy_files) as gen:
            paths = {name: gen.path(name) for name in _OUTPUTS + (MANIFEST,)}
            for split, count in counts.items():
                jobs = [kind.job(arguments, _SPLITS[split], i) for i in range(count)]
                if executor is not None:
                    records = executor.map(kind.render, jobs, chunksize=16)
                else:
                    records = map(kind.render, jobs)
                with open(paths[f"{split}.rec"], "wb") as rec:
                    writer = _recordio.RecordWriter(rec)
                    bar = tqdm(records, desc=f"{kind.label} ({split})", total=count, unit="img", leave=False, dynamic_ncols=True,
                               disable=not progress)
                    for i, data in enumerate(bar):
                        writer.write(i, data)
                with open(paths[f"{split}.idx"], "w", encoding="ascii", newline="\n") as idx:
                    writer.write_index(idx)
            write_classes(paths["classes.txt"], classes)
            show(paths["train.rec"], paths["preview.png"], num=9, classes=classes, idx_path=paths["train.idx"])
            manifest = {
                "generator": kind.generator,
                "generator_version": kind.version,
                "arguments": arguments,
                "sha1": {name: sha1_of(paths[name]) for name in _OUTPUTS},
            }
            paths[MANIFEST].write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
