"""A Pascal VOC folder as training and validation sets: packed once into a RecordIO cache, reused after.

A VOC year folder (``VOCdevkit/VOC2007``) holds ``JPEGImages/``, ``Annotations/``
and ``ImageSets/Main/{train,val,trainval,test}.txt`` (one image id a line). The
splits are packed with :func:`pack_voc`'s code into a cache folder outside the
dataset, which is swapped in whole (:func:`atomic_directory`): a packing that
fails or is interrupted leaves the previous cache, or none. ``voc.json`` in the
cache records what it was made from (the folder, the splits, the class list,
and the size and modification time of every split list, annotation and image
packed); a later call reuses the cache only when all of them are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from .._base import PathLike, atomic_directory, check_classes
from ..errors import DataError, InputError
from ._dataset import DetectionDataset
from ._pack import (
    file_exists,
    pack_voc_parsed,
    parse_voc_files,
    shortened,
    voc_class_names,
    warn_on_names_equal_but_for_case,
)
from ._truth import SIDECAR_SUFFIX

#: The files each packed split has in a cache.
_OUTPUT_SUFFIXES = (".rec", ".idx", ".classes.txt", SIDECAR_SUFFIX)

__all__ = ["MANIFEST", "VOC_CLASSES", "VocData", "check_split", "default_cache", "pascal_voc", "prepare_voc"]

#: The 20 classes of Pascal VOC 2007-2012, in the devkit's order (class id = position).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
MANIFEST = "voc.json"
_FORMAT = 1  # of the cache; a cache of another format is packed again
_SPLIT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")
_FORBIDDEN_IN_ID = ("/", "\\", ":", "\0")
_NAMES = ["train", "val"]  # the cache's files: train.rec, val.rec, ...


class VocData(NamedTuple):
    """What :func:`prepare_voc` made: the datasets, and what to tell the user about them."""

    train: DetectionDataset
    val: DetectionDataset | None
    root: Path
    cache: Path
    packed: bool  # packed now; False: an earlier cache made from the same files was reused
    train_split: str | None  # None: every annotation (a folder without ImageSets/Main)
    val_split: str | None
    classes_from: str  # "given", "voc" (the 20 classes) or "annotations" (the sorted names found)

    def summary(self) -> str:
        """One paragraph for the log: the splits, the classes and the cache."""
        if self.train_split is None:
            splits = "training on every annotation in Annotations/ (no ImageSets/Main), no validation"
        else:
            splits = f"training on '{self.train_split}' ({len(self.train)} images)"
            splits += (f", validating on '{self.val_split}' ({len(self.val)} images)" if self.val is not None
                       else ", no validation")
        classes = self.train.classes
        if self.classes_from == "voc":
            named = "the classes are the 20 Pascal VOC classes"
        elif self.classes_from == "annotations":
            count = "1 class" if len(classes) == 1 else f"{len(classes)} classes"
            named = (f"{count} found in the annotations: {', '.join(classes)} (not only Pascal VOC's; data.classes "
                     "sets the list and its order)")
        else:
            named = f"the classes as given: {', '.join(classes)}"
        cache = "packed now" if self.packed else "reused, made from the same files"
        return f"Pascal VOC {self.root}: {splits}; {named}; RecordIO cache {self.cache} ({cache})."


def check_split(argument: str, name: Any, *, optional: bool = False) -> None:
    """Refuse a split name that is not a plain file name of ``ImageSets/Main`` (or ``"auto"``)."""
    if optional and name is None:
        return
    if not isinstance(name, str) or not _SPLIT.match(name):
        allowed = "'auto', null (no validation) or" if optional else "'auto' or"
        raise InputError(
            f"The '{argument}' argument must be {allowed} the name of a list in ImageSets/Main such as "
            f"'trainval' (letters, digits, '_', '-', '.', '+', no '/'); got {name!r} instead."
        )


def default_cache(root: PathLike) -> Path:
    """``data/cache/NAME-HASH``: the default cache of the VOC folder ``root`` (NAME its name, HASH of its
    absolute path), outside the dataset, which may be read-only."""
    resolved = Path(root).resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return Path("data") / "cache" / f"{resolved.name or 'voc'}-{digest}"


class _Split(NamedTuple):
    name: str | None  # None: every annotation
    list_file: Path | None
    xml_paths: list[Path]


def _check_split_file(root: Path, path: Path) -> None:
    """Refuse a split list that is not a regular file of the dataset (a pipe, a folder, a link out of it)."""
    # Resolved whole: a linked ImageSets/ or Main/ folder leads out of the dataset as a linked file does.
    if root.resolve() not in path.resolve().parents:
        raise DataError(f"{path}: is a symbolic link to a file outside {root} (or lies in a linked folder); detkit "
                        "reads split lists of the dataset only: copy the list into ImageSets/Main instead of linking "
                        "it.")
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error}); check the link or the file.") from None
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise DataError(f"{path}: is {kind}, not a split list; replace it with a text file of image ids.")


def _read_split(root: Path, name: str) -> _Split:
    """The annotation files of the ids in ``ImageSets/Main/NAME.txt``; each id a plain file name."""
    path = root / "ImageSets" / "Main" / f"{name}.txt"
    _check_split_file(root, path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: is not UTF-8 text ({error.reason} at byte {error.start})") from None
    seen: dict[str, int] = {}
    xml_paths = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 2 and fields[1] in ("-1", "0", "1"):  # a per-class list: -1 marks an image without it
            if fields[1] == "-1":
                continue
        elif len(fields) != 1:
            raise DataError(f"{path}, line {number}: expected one image id a line; got {line.strip()!r}; "
                            "correct the line.")
        ident = fields[0]
        if ident in (".", "..") or any(c in ident for c in _FORBIDDEN_IN_ID):
            raise DataError(
                f"{path}, line {number}: the id {ident!r} is not a file name inside {root} (an id names "
                "Annotations/ID.xml and its image, without '/', '\\', ':' or '..'); correct the line."
            )
        if ident in seen:
            raise DataError(f"{path}, line {number}: the id {ident!r} repeats line {seen[ident]}; remove one of them.")
        seen[ident] = number
        xml_path = root / "Annotations" / f"{ident}.xml"
        try:
            exists = xml_path.is_file()
        except OSError as error:  # a name longer than the file system allows, ...
            raise DataError(
                f"{path}, line {number}: the id {shortened(ident)} cannot name an annotation file "
                f"({error.strerror or error}); correct the line."
            ) from None
        if not exists:
            raise DataError(
                f"{path}, line {number}: the image {ident!r} has no annotation {xml_path}; add the file, remove "
                "the line, or choose another split."
            )
        xml_paths.append(xml_path)
    if not xml_paths:
        raise DataError(f"{path}: lists no image ids; choose another split.")
    return _Split(name, path, xml_paths)


def _splits(root: Path, train_split: str, val_split: str | None) -> tuple[_Split, _Split | None]:
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        if train_split == "auto" and val_split in ("auto", None):
            xml_paths = sorted(path for path in (root / "Annotations").glob("*.xml") if path.is_file())
            if not xml_paths:
                raise DataError(f"{root / 'Annotations'}: no *.xml annotation files")
            return _Split(None, None, xml_paths), None
        argument, name = ("train_split", train_split) if train_split != "auto" else ("val_split", val_split)
        raise InputError(
            f"The '{argument}' argument names the list ImageSets/Main/{name}.txt, but {root} has no "
            "ImageSets/Main folder; set it to 'auto' to train on every annotation."
        )
    available = sorted(path.stem for path in main.glob("*.txt") if "_" not in path.stem)
    has_test = (main / "test.txt").is_file()
    if train_split == "auto":
        train_split = "trainval" if has_test and (main / "trainval.txt").is_file() else "train"
    if val_split == "auto":
        val_split = "test" if has_test else ("val" if (main / "val.txt").is_file() else None)
    for argument, name in (("train_split", train_split), ("val_split", val_split)):
        if name is not None and os.path.lexists(main / f"{name}.txt") and not file_exists(main / f"{name}.txt"):
            _check_split_file(root, main / f"{name}.txt")  # there, but a pipe, a folder or a dangling link
        if name is not None and not file_exists(main / f"{name}.txt"):
            raise InputError(
                f"The '{argument}' argument names the list {main / (name + '.txt')}, which does not exist; the "
                f"lists there are: {', '.join(available) or 'none'}."
            )
    return _read_split(root, train_split), (_read_split(root, val_split) if val_split is not None else None)


def _stat(path: Path) -> list[int]:
    status = os.stat(path)
    return [status.st_size, status.st_mtime_ns]


def _fingerprint(root: Path, splits: Sequence[_Split], images: Sequence[str]) -> str:
    """A digest of what a cache is made from: the split lists' text, and the size and time of each file."""
    digest = hashlib.sha256()
    for split in splits:
        if split.list_file is not None:
            digest.update(split.list_file.read_bytes())
        for path in split.xml_paths:
            digest.update(json.dumps([path.relative_to(root).as_posix(), *_stat(path)]).encode())
    for relative in images:
        digest.update(json.dumps([relative, *_stat(root / relative)]).encode())
    return digest.hexdigest()


def _manifest(cache: Path) -> dict | None:
    """The parsed ``voc.json`` of ``cache`` when it has the fields this module writes, of their types; else
    None. (Their values are checked when reused: a manifest names no file to read or delete.)"""
    path = cache / MANIFEST
    try:
        if not path.is_file():  # a folder or a pipe: not a manifest (a pipe would block the read)
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8 or JSON, nested too deep
        return None
    if not isinstance(manifest, dict):
        return None
    request, splits = manifest.get("request"), manifest.get("splits")
    if not (isinstance(request, dict) and type(request.get("format")) is int
            and isinstance(request.get("root"), str)
            and all(key in request and (request[key] is None or isinstance(request[key], str))
                    for key in ("train_split", "val_split"))
            and "classes" in request and (request["classes"] is None or isinstance(request["classes"], list))
            and isinstance(splits, list) and all(isinstance(split, str) for split in splits)):
        return None
    return manifest


def _check_cache(cache: Path, root: Path, shown: Path, *, default: bool) -> None:
    """Refuse a cache folder inside the dataset, or whose replacement would delete files that are not an
    earlier cache's. ``cache`` is resolved; ``shown`` is the path as given (for messages)."""
    dataset = root.resolve()
    named = repr(str(shown)) + (f" (which resolves to {cache})" if os.path.abspath(shown) != str(cache) else "")
    if cache == dataset or cache in dataset.parents:
        raise InputError(f"The 'cache' argument must be a folder outside the VOC folder {root} (it is replaced "
                         f"whole when packed); got {named}, which holds it, instead.")
    if dataset in cache.parents:
        if default:
            raise InputError(
                f"The default cache {shown} in the working directory {Path.cwd()} lies inside the VOC folder "
                f"{dataset}, which is only read; run from another folder, or set data.cache (in Python the cache "
                "argument) to a folder outside it."
            )
        raise InputError(f"The 'cache' argument must be a folder outside the VOC folder {root}, which is only "
                         f"read; got {named}, which is inside it, instead: choose a folder elsewhere.")
    if cache.exists() and not cache.is_dir():
        raise InputError(f"The 'cache' argument must be a folder; got {named}, which is a file, instead.")
    if not cache.is_dir():
        return
    try:
        with os.scandir(cache) as scan:
            entries = sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan)
    except OSError as error:
        raise InputError(f"The 'cache' argument must be a folder that can be read; got {named}, which cannot "
                         f"({error.strerror or error}), instead.") from None
    if not entries:
        return
    manifest = _manifest(cache)
    # a cache's files: its manifest, and those of the splits a cache has (one of an earlier packing included)
    own = {MANIFEST} | {f"{split}{suffix}" for split in (_NAMES if manifest else [])
                        for suffix in _OUTPUT_SUFFIXES}
    other = [f"{name}/" if is_dir else name for name, is_dir in entries
             if (is_dir or name not in own) and (name, is_dir) != (MANIFEST, False)]
    if manifest is None or other:
        listed = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        if manifest is None and (MANIFEST, False) in entries:
            listed = f"a {MANIFEST} that is not a cache's manifest" + (f"; {listed}" if listed else "")
        raise InputError(
            f"The 'cache' argument must be a new or empty folder, or an earlier cache (with {MANIFEST}); "
            f"{named} holds other files ({listed}), which packing would replace: choose another folder."
        )


def _inside(relative: Any) -> bool:
    """Whether a path read from a manifest is relative and without '..' (it then stays inside its folder)."""
    if not isinstance(relative, str) or "\0" in relative:
        return False
    path = Path(relative)
    return not (path.is_absolute() or path.drive or path.root or ".." in path.parts)


def _reusable(cache: Path, request: dict, splits: Sequence[_Split], root: Path) -> dict | None:
    """The manifest of ``cache`` when it was made from ``request`` and unchanged files; else None."""
    path = cache / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("request") != request:
            return None
        images = manifest["images"]
        if not (isinstance(images, list) and all(_inside(relative) for relative in images)):
            return None
        if manifest["inputs"] != _fingerprint(root, splits, images):
            return None
        if manifest["splits"] != _NAMES[:len(splits)] or manifest["classes_from"] not in ("given", "voc",
                                                                                           "annotations"):
            return None
        outputs = manifest["outputs"]
        names = [f"{split}{suffix}" for split in manifest["splits"] for suffix in _OUTPUT_SUFFIXES]
        if sorted(outputs) != sorted(names) or any(outputs[name] != _stat(cache / name) for name in names):
            return None
        check_classes(manifest["classes"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError, InputError):
        return None  # unreadable, damaged (nested too deep included), or made from other files: packed again
    return manifest


def prepare_voc(
    root: PathLike,
    cache: PathLike | None = None,
    *,
    train_split: str = "auto",
    val_split: str | None = "auto",
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> VocData:
    """:func:`pascal_voc`, with what it did (for the log of ``detkit train``)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"The 'root' argument must be a Pascal VOC folder (with JPEGImages/ and Annotations/); "
                         f"got {str(root)!r}, which is not a folder, instead.")
    for folder in ("Annotations", "JPEGImages"):
        if not (root / folder).is_dir():
            raise InputError(f"The 'root' argument must be a Pascal VOC folder (with JPEGImages/ and "
                             f"Annotations/); {str(root)!r} has no {folder}/ folder.")
    check_split("train_split", train_split)
    check_split("val_split", val_split, optional=True)
    given = check_classes(classes) if classes is not None else None
    default = cache is None
    shown = Path(cache) if cache is not None else default_cache(root)
    try:  # written where a symlink points: the link itself stays
        cache = shown.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop
        raise InputError(f"The 'cache' argument must be a folder path; got {str(shown)!r}, which cannot be "
                         f"resolved ({error}), instead.") from None
    _check_cache(cache, root, shown, default=default)
    train, val = _splits(root, train_split, val_split)
    splits = [split for split in (train, val) if split is not None]
    request = {
        "format": _FORMAT,
        "root": str(root.resolve()),
        "train_split": train.name,
        "val_split": val.name if val is not None else None,
        "classes": given,
    }
    manifest = _reusable(cache, request, splits, root)
    packed = manifest is None
    if manifest is None:
        manifest = _pack(root, cache, request, splits, given, progress=progress)
    names = manifest["classes"]
    datasets = [DetectionDataset(cache / f"{split}.rec", cache / f"{split}.idx", classes=names)
                for split in manifest["splits"]]
    return VocData(datasets[0], datasets[1] if len(datasets) > 1 else None, root, shown, packed, train.name,
                   val.name if val is not None else None, manifest["classes_from"])


def _pack(root: Path, cache: Path, request: dict, splits: Sequence[_Split], given: list[str] | None, *,
          progress: bool) -> dict:
    parsed = [parse_voc_files(split.xml_paths) for split in splits]
    if given is not None:
        classes, classes_from = given, "given"
    else:
        found = set().union(*(voc_class_names(result) for result in parsed))
        if not found:
            raise DataError(f"{root / 'Annotations'}: the annotations of the splits name no objects; "
                            "give the classes (data.classes)")
        warn_on_names_equal_but_for_case(found, root / "Annotations")
        classes, classes_from = ((list(VOC_CLASSES), "voc") if found <= set(VOC_CLASSES)
                                 else (sorted(found), "annotations"))
    names = _NAMES[:len(splits)]
    images: list[Path] = []
    with atomic_directory(cache) as staged:
        for name, split, result in zip(names, splits, parsed):
            pack_voc_parsed(split.xml_paths, root / "JPEGImages", result, staged / name, classes,
                            progress=progress, images_used=images)
        relative = [path.relative_to(root).as_posix() for path in images]
        outputs = {f"{name}{suffix}": _stat(staged / f"{name}{suffix}")
                   for name in names for suffix in _OUTPUT_SUFFIXES}
        manifest = {"request": request, "splits": names, "classes": classes, "classes_from": classes_from,
                    "inputs": _fingerprint(root, splits, relative), "images": relative, "outputs": outputs}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def pascal_voc(
    root: PathLike,
    cache: PathLike | None = None,
    *,
    train_split: str = "auto",
    val_split: str | None = "auto",
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[DetectionDataset, DetectionDataset | None]:
    """The training and validation sets of a Pascal VOC folder, packed once into a RecordIO cache.

    ``root`` is a VOC year folder (``VOCdevkit/VOC2007``): ``JPEGImages/``,
    ``Annotations/`` and ``ImageSets/Main/NAME.txt`` lists of image ids. The
    splits are packed as :func:`pack_voc` packs (difficult objects kept and
    marked) into ``cache``; a later call reuses that cache when it was made
    from the same folder, splits and classes and no split list, annotation or
    packed image has changed since (size and modification time), and packs
    again otherwise. The cache appears whole or not at all: a failed or
    interrupted packing leaves the previous one (or none).

    Parameters
    ----------
    root : str or os.PathLike
        The VOC folder; it is only read. Without ``ImageSets/Main``, every
        ``Annotations/*.xml`` trains and there is no validation set (the splits
        must then be ``"auto"``).
    cache : str or os.PathLike, optional
        The folder of the packed files (``train.rec``, ``val.rec``, their
        ``.idx`` and ``.classes.txt``, and the ``voc.json`` manifest); its
        contents are replaced when packed again, so it must be a new or empty
        folder or an earlier cache, outside ``root`` (a symbolic link is
        followed: the cache is written where it points). Default:
        ``data/cache/NAME-HASH`` in the working directory (``NAME`` the VOC
        folder's name, ``HASH`` 8 hex digits of its absolute path).
    train_split, val_split : str
        Names of lists in ``ImageSets/Main`` (``"trainval"`` for
        ``trainval.txt``). ``"auto"``: ``trainval`` and ``test`` when
        ``test.txt`` exists (VOC2007 with its test set), else ``train`` and
        ``val`` (no validation set when there is no ``val.txt``).
        ``val_split=None``: no validation set. A line holds an id, or an id and
        a flag as in the per-class lists (``-1`` leaves the image out).
    classes : list of str, optional
        The class names in class-id order; an object of another class is an
        error. Default: the 20 Pascal VOC classes in the devkit's order when
        every class the annotations name is one of them, else the sorted names
        found.
    progress : bool
        Show a progress bar while packing.

    Returns
    -------
    (DetectionDataset, DetectionDataset or None)
        The training and the validation set (None without one).

    Raises
    ------
    detkit.errors.InputError
        A missing folder, a split list that does not exist, an invalid split
        name, a cache inside ``root`` or one that holds other files than an
        earlier cache's.
    detkit.errors.DataError
        Naming the list file and line of an id that is not a plain file name
        (``/``, ``..``, an absolute path, too long) or has no annotation, and, as
        :func:`pack_voc`, the file of an invalid annotation or image.
    """
    data = prepare_voc(root, cache, train_split=train_split, val_split=val_split, classes=classes,
                       progress=progress)
    return data.train, data.val
