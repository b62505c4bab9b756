"""DetectionDataset: a detection RecordIO file on disk, and its batch loader."""

from __future__ import annotations

import math
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Generator, Iterator, NamedTuple, Optional, Sequence, cast

import mxnet as mx
import numpy as np
from PIL import Image

from .._base import PathLike, check_classes, check_int, check_size
from ..errors import DataError, InputError
from . import _recordio
from ._summary import PackSummary
from ._transforms import AUGMENTS, decode_image, random_crop, resize_normalize, ssd_augment

# The seed pads every label to at least 3 rows ("the CUDA implementation
# requires each image has at least 3 labels").
MIN_LABEL_ROWS = 3
_PREFETCH_BATCHES = 2
_DECODE_THREADS = 2  # images of a batch are decoded by this many threads (Pillow releases the GIL)
_LABEL_PREFIX_BYTES = 4096  # enough for the header and ~200 objects; longer labels are read whole


class DetectionBatch(NamedTuple):
    """One batch from :meth:`DetectionDataset.loader`.

    Attributes
    ----------
    data : mxnet.nd.NDArray
        ``(B, 3, H, W)`` float32 on the CPU: RGB images resized to ``data_shape``
        minus :data:`RGB_MEAN`.
    label : mxnet.nd.NDArray
        ``(B, M, 5)`` float32 rows ``[class_id, xmin, ymin, xmax, ymax]``, boxes
        normalised to [0, 1] of the (cropped) image; padding rows are all ``-1``.
        Each image's ordinary objects come first, then its difficult objects and
        crowd regions, then the padding.
    pad : int
        How many images at the end of this batch are padding (repeats of the
        epoch's first images), only ever non-zero in the last batch.
    flags : mxnet.nd.NDArray
        ``(B, M)`` float32, the kind of each label row: 0 an ordinary object,
        1 a difficult one (Pascal VOC ``<difficult>``), 2 a crowd region (COCO
        ``iscrowd``), -1 padding.
    areas : mxnet.nd.NDArray
        ``(B, M)`` float32, each object's area in pixels of the original image as
        the file stores it (COCO's annotation ``"area"``, else the box's); ``nan``
        where the file has none (labels 5 values wide); -1 for padding.
    image_size : mxnet.nd.NDArray
        ``(B, 2)`` float32, the ``(width, height)`` in pixels of each image as
        stored, before any crop or resize: what areas are measured in.
    """

    data: mx.nd.NDArray
    label: mx.nd.NDArray
    pad: int
    flags: Optional[mx.nd.NDArray] = None
    areas: Optional[mx.nd.NDArray] = None
    image_size: Optional[mx.nd.NDArray] = None


class DetectionDataset:
    """A detection dataset stored as MXNet RecordIO (``.rec`` and ``.idx``), like the seed's pikachu.

    Opening a dataset reads every record's label (not its image) and checks it:
    a truncated or corrupt file, an ``.idx`` that does not match, or a malformed
    label raises :class:`~detkit.errors.DataError` naming the file and the record
    index. Images are decoded only when batches are read, and an undecodable one
    raises the same way then.

    Parameters
    ----------
    rec_path : str or os.PathLike
        The ``.rec`` file.
    idx_path : str or os.PathLike, optional
        Its index. By default ``rec_path`` with the suffix ``.idx`` if that file
        exists; otherwise the records are found by walking the ``.rec`` file once
        (``detkit data index FILE.rec`` writes the index to disk).
    classes : list of str
        The class names; record class id ``i`` is ``classes[i]``.
    augment : {"seed", "ssd", "none"}, default "seed"
        The augmentation of its training loaders (``loader(..., train=True)``, which
        :func:`~detkit.fit` reads): ``"seed"`` the seed's random crop, ``"ssd"`` SSD's
        photometric distortion, expand, IoU-constrained crop and flip
        (:func:`~detkit.data.ssd_augment`), ``"none"`` the images whole. A loader's own
        ``augment`` argument overrides it.

    Attributes
    ----------
    rec_path, idx_path : pathlib.Path
        The files read (``idx_path`` is ``None`` when the index was rebuilt in memory).
    classes : list of str
    augment : str
    pack_summary : PackSummary or None
        What :func:`pack_voc` / :func:`pack_coco` packed and skipped, for a dataset
        they returned; ``None`` otherwise.
    """

    def __init__(
        self, rec_path: PathLike, idx_path: PathLike | None = None, *, classes: Sequence[str], augment: str = "seed"
    ) -> None:
        self.classes: list[str] = check_classes(classes)
        self.augment: str = check_augment(augment)
        self.rec_path = Path(rec_path)
        if self.rec_path.suffix.lower() == ".idx":  # the index beside the data, given in its place
            rec = self.rec_path.with_suffix(".rec")
            raise DataError(
                f"{self.rec_path} is the index of a RecordIO file, not the images: pass the .rec file"
                f"{f' ({rec})' if rec.is_file() else ''}; the .idx beside it is found by itself."
            )
        if not self.rec_path.is_file():
            raise DataError(f"{self.rec_path}: no such RecordIO file")
        if idx_path is None:
            default = self.rec_path.with_suffix(".idx")
            self.idx_path: Path | None = default if default.is_file() else None
        else:
            self.idx_path = Path(idx_path)
            if not self.idx_path.is_file():
                raise DataError(
                    f"{self.idx_path}: no such index file; leave out idx_path to rebuild the index "
                    f"in memory, or write one with `detkit data index {self.rec_path}`"
                )
        self.pack_summary: PackSummary | None = None
        if self.idx_path is not None:
            self._keys, self._offsets = _recordio.read_index(self.idx_path)
        else:
            self._offsets = _recordio.scan_offsets(self.rec_path)
            self._keys = list(range(len(self._offsets)))
        if not self._offsets:
            raise DataError(f"{self.rec_path}: the dataset has no records")
        self._objects: list[np.ndarray] = []
        self._flags: list[np.ndarray] = []
        self._areas: list[np.ndarray] = []
        self._image_starts: list[int] = []
        self._read_labels()

    def _read_labels(self) -> None:
        size = os.path.getsize(self.rec_path)
        with open(self.rec_path, "rb") as file:
            for index, offset in enumerate(self._offsets):
                if offset >= size:
                    raise DataError(
                        f"{self.rec_path}: record {index} (byte {offset}) lies beyond the end of the "
                        f"file ({size} bytes): the file is truncated or {self.idx_path} belongs to "
                        "another file"
                    )
                head = _recordio.read_record_prefix(file, offset, size, self.rec_path, index, _LABEL_PREFIX_BYTES)
                if len(head) == _LABEL_PREFIX_BYTES and _needs_more(head):
                    head = _recordio.read_record(file, offset, size, self.rec_path, index)
                parsed = _recordio.parse_detection(head, self._where(index, offset), self._class_limit())
                self._objects.append(parsed.objects)
                self._flags.append(parsed.flags)
                self._areas.append(parsed.areas)
                self._image_starts.append(parsed.image_start)

    def _class_limit(self) -> int | None:
        return len(self.classes)

    def _class_name(self, class_id: int) -> str:
        return self.classes[class_id]

    def _sample(
        self, file: BinaryIO, size: int, index: int, shape_hw: tuple[int, int], rng: np.random.Generator | None,
        out: np.ndarray, augment: str = "seed",
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """Decode image ``index``, augment it (``augment``, one of :data:`AUGMENTS`) when ``rng`` is given,
        resize and normalise it into ``out``
        ``(3, H, W)``; return its objects ``(K, 7)`` ``[class_id, xmin, ymin, xmax, ymax, flag, area]``
        in the coordinates of the (cropped) image, and the decoded image's ``(width, height)``."""
        image = self._decode(file, size, index)
        objects = np.concatenate(
            [self._objects[index], self._flags[index][:, None], self._areas[index][:, None]], axis=1
        ).astype(np.float32)  # (K, 7)
        box = None
        decoded_size = image.size
        if rng is not None and augment == "seed":
            crop = random_crop(rng, objects, image.height, image.width)
            if crop is not None:
                box, objects = crop
        elif rng is not None and augment == "ssd":
            image, objects = ssd_augment(rng, image, objects)
        resize_normalize(image, shape_hw, out=out, crop=box)
        return objects, decoded_size

    def _where(self, index: int, offset: int | None = None) -> str:
        offset = self._offsets[index] if offset is None else offset
        key = self._keys[index]
        return f"{self.rec_path}: record {index} ({'' if key == index else f'key {key}, '}byte {offset})"

    def __len__(self) -> int:
        return len(self._offsets)

    def __repr__(self) -> str:
        return (
            f"DetectionDataset({str(self.rec_path)!r}, {len(self)} images, "
            f"max_objects={self.max_objects}, classes={self.classes!r})"
        )

    @property
    def max_objects(self) -> int:
        """The largest number of objects in one image of this file."""
        return max(len(o) for o in self._objects)

    def objects(self, index: int) -> np.ndarray:
        """The objects of image ``index`` as stored: ``(K, 5)`` float32 ``[class_id, xmin, ymin, xmax, ymax]``."""
        if not -len(self) <= index < len(self):
            raise InputError(f"The 'index' argument must be in [0, {len(self)}); got {index} instead.")
        return self._objects[index].copy()

    def flags(self, index: int) -> np.ndarray:
        """The kind of each object of image ``index``, in :meth:`objects` order: ``(K,)`` int8,
        0 ordinary, 1 difficult (Pascal VOC), 2 a crowd region (COCO ``iscrowd``)."""
        if not -len(self) <= index < len(self):
            raise InputError(f"The 'index' argument must be in [0, {len(self)}); got {index} instead.")
        return self._flags[index].copy()

    def areas(self, index: int) -> np.ndarray:
        """The area in pixels of the original image of each object of image ``index``: ``(K,)``
        float32, ``nan`` where the file stores none."""
        if not -len(self) <= index < len(self):
            raise InputError(f"The 'index' argument must be in [0, {len(self)}); got {index} instead.")
        return self._areas[index].copy()

    def image(self, index: int) -> np.ndarray:
        """Decode image ``index``: ``(H, W, 3)`` uint8 RGB, as stored (no resize, no mean subtraction)."""
        if not -len(self) <= index < len(self):
            raise InputError(f"The 'index' argument must be in [0, {len(self)}); got {index} instead.")
        index %= len(self)
        size = os.path.getsize(self.rec_path)
        with open(self.rec_path, "rb") as file:
            return np.asarray(self._decode(file, size, index))

    def _decode(self, file: BinaryIO, size: int, index: int) -> "Image.Image":
        data = _recordio.read_record(file, self._offsets[index], size, self.rec_path, index)
        return decode_image(data[self._image_starts[index]:], self._where(index))

    def loader(
        self,
        batch_size: int,
        data_shape: int | Sequence[int] = 256,
        *,
        train: bool,
        shuffle: bool | None = None,
        seed: int | None = None,
        num_objects: int | None = None,
        last_batch: str = "pad",
        num_parts: int = 1,
        part_index: int = 0,
        augment: str | None = None,
    ) -> "DetectionLoader":
        """Batches of images and labels, with the seed's pipeline.

        Parameters
        ----------
        batch_size : int
            Images per batch, ``B``.
        data_shape : int or tuple of int
            Output image size: ``S`` for ``S x S`` or ``(H, W)``.
        train : bool
            ``True``: the training augmentation (``augment``) and shuffling by
            default. ``False``: no augmentation, file order.
        shuffle : bool, optional
            Shuffle every epoch; defaults to ``train``.
        seed : int, optional
            Makes the shuffling and the crops reproducible (each epoch still differs).
        num_objects : int, optional
            Label rows per image, ``M``; defaults to ``max(max_objects, 3)``. Pass the
            same value to the training and validation loaders to give their labels
            one shape (the seed's ``sync_label_shape``).
        last_batch : {"pad", "discard"}
            ``"pad"`` fills the last batch with the epoch's first images and says how
            many in :attr:`DetectionBatch.pad`; ``"discard"`` drops an incomplete one.
        num_parts, part_index : int, default 1 and 0
            For training on several machines: the epoch's images (shuffled alike on
            every machine, given the same ``seed``) are dealt into ``num_parts``
            disjoint shares of equal size, and this loader reads share ``part_index``:
            of every ``num_parts * batch_size`` consecutive images, the
            ``part_index``-th ``batch_size``, so that ``num_parts`` machines see in each
            step what one machine at batch ``num_parts * batch_size`` sees on as many
            devices (with the same crops). The last ``len(dataset) % num_parts`` images
            of each (shuffled) epoch are left out, so that every machine runs the same
            number of batches (an unequal count would leave one machine waiting for
            the others forever).
        augment : {"seed", "ssd", "none"}, optional
            The training augmentation; defaults to the dataset's :attr:`augment`.
            ``"seed"``: the seed's random crop that keeps more than 95 % of every object
            it touches (200 attempts, else the whole image). ``"ssd"``: SSD's
            (:func:`~detkit.data.ssd_augment`). ``"none"``: the images whole. Ignored
            when ``train`` is ``False``. Each image's augmentation depends only on
            ``seed``, the epoch and the image's position in it, so a resumed run
            reads the same batches.

        Returns
        -------
        DetectionLoader
            Re-iterable: every ``iter()`` is one epoch of :class:`DetectionBatch`;
            ``len()`` is the number of batches an epoch. Images are decoded in a
            background thread, a few batches ahead.
        """
        return DetectionLoader(
            self,
            batch_size,
            data_shape,
            train=train,
            shuffle=shuffle,
            seed=seed,
            num_objects=num_objects,
            last_batch=last_batch,
            num_parts=num_parts,
            part_index=part_index,
            augment=augment,
        )


def check_augment(augment: Any) -> str:
    """Check an ``augment`` argument: one of :data:`AUGMENTS`."""
    if not isinstance(augment, str) or augment not in AUGMENTS:
        choices = ", ".join(repr(a) for a in AUGMENTS)
        raise InputError(f"The 'augment' argument must be one of {choices}; got {augment!r} instead.")
    return augment


def _needs_more(head: bytes) -> bool:
    flag = int.from_bytes(head[:4], "little")
    return 24 + 4 * flag > len(head)


class DetectionLoader:
    """The iterable that :meth:`DetectionDataset.loader` returns (see there)."""

    def __init__(
        self,
        dataset: DetectionDataset,
        batch_size: int,
        data_shape: int | Sequence[int] = 256,
        *,
        train: bool,
        shuffle: bool | None = None,
        seed: int | None = None,
        num_objects: int | None = None,
        last_batch: str = "pad",
        num_parts: int = 1,
        part_index: int = 0,
        augment: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.augment = dataset.augment if augment is None else check_augment(augment)
        self.num_parts = check_int("num_parts", num_parts, minimum=1)
        self.part_index = check_int("part_index", part_index, minimum=0)
        if self.part_index >= self.num_parts:
            raise InputError(
                f"The 'part_index' argument must be below num_parts ({self.num_parts}); got {part_index} instead."
            )
        if self.num_parts > len(dataset):
            raise InputError(
                f"The 'num_parts' argument must not exceed the {len(dataset)} images of {dataset.rec_path}; "
                f"got {num_parts} instead."
            )
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.data_shape = check_size("data_shape", data_shape)
        self.train = bool(train)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        if last_batch not in ("pad", "discard"):
            raise InputError(f"The 'last_batch' argument must be 'pad' or 'discard'; got {last_batch!r} instead.")
        self.last_batch = last_batch
        if num_objects is None:
            num_objects = max(dataset.max_objects, MIN_LABEL_ROWS)
        num_objects = check_int("num_objects", num_objects, minimum=1)
        if num_objects < dataset.max_objects:
            raise InputError(
                f"The 'num_objects' argument must be at least {dataset.max_objects}, the most objects "
                f"in one image of {dataset.rec_path}; got {num_objects} instead."
            )
        self.num_objects = num_objects
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self._entropy = cast(int, np.random.SeedSequence(seed).entropy)  # an int: seed is an int or None
        self._epoch = 0

    def _share(self) -> int:
        """How many images this loader's share of an epoch holds: the same for every part."""
        return len(self.dataset) // self.num_parts

    def _share_positions(self) -> np.ndarray:
        """The positions, in the epoch's order, of this loader's share, in the order it reads them."""
        usable = self._share() * self.num_parts
        positions = np.arange(usable)
        if self.num_parts == 1:
            return positions
        block = self.batch_size * self.num_parts  # one step of every part
        full = usable // block * block
        steps = positions[:full].reshape(-1, self.num_parts, self.batch_size)[:, self.part_index].ravel()
        rest = positions[full:].reshape(self.num_parts, -1)[self.part_index]  # a shorter last step, dealt alike
        return np.concatenate([steps, rest])

    def __len__(self) -> int:
        n = self._share()
        return math.ceil(n / self.batch_size) if self.last_batch == "pad" else n // self.batch_size

    def __iter__(self) -> Iterator[DetectionBatch]:
        epoch = self._epoch
        self._epoch += 1
        return _prefetch(self._epoch_arrays(epoch))

    def _epoch_arrays(self, epoch: int) -> Generator[tuple[Any, ...], None, None]:
        dataset = self.dataset
        order = np.arange(len(dataset))
        if self.shuffle:
            order = np.random.default_rng([self._entropy, epoch]).permutation(len(dataset))
        share = self._share_positions()
        order = order[share]
        n = len(order)
        height, width = self.data_shape
        size = os.path.getsize(dataset.rec_path)
        files = [open(dataset.rec_path, "rb") for _ in range(_DECODE_THREADS)]
        pool = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="detkit-decode")

        def fill(part: int, positions: range, data: np.ndarray, label: np.ndarray, flags: np.ndarray,
                 areas: np.ndarray, sizes: np.ndarray) -> None:
            for j, position in enumerate(positions):
                if j % _DECODE_THREADS != part:
                    continue
                index = int(order[position % n])
                # Keyed by the position in the whole epoch, so that every share crops differently
                # (a padding image, past the share's end, by one of its own).
                overall = int(share[position]) if position < n else position * self.num_parts + self.part_index
                rng = np.random.default_rng([self._entropy, epoch, overall]) if self.train else None
                objects, sizes[j] = dataset._sample(files[part], size, index, (height, width), rng, data[j],
                                                    self.augment)
                # Ordinary objects first: the target assigner reads the rows up to the first -1, and
                # the training graph hides the difficult and crowd ones from it (TrainingGraph).
                objects = objects[np.argsort(objects[:, 5] != 0, kind="stable")]
                label[j, : len(objects)] = objects[:, :5]
                flags[j, : len(objects)] = objects[:, 5]
                areas[j, : len(objects)] = objects[:, 6]

        try:
            for b in range(len(self)):
                data = np.empty((self.batch_size, 3, height, width), np.float32)
                label = np.full((self.batch_size, self.num_objects, 5), -1.0, np.float32)
                flags = np.full((self.batch_size, self.num_objects), -1.0, np.float32)
                areas = np.full((self.batch_size, self.num_objects), -1.0, np.float32)
                sizes = np.zeros((self.batch_size, 2), np.float32)
                start = b * self.batch_size
                positions = range(start, start + self.batch_size)
                futures = [pool.submit(fill, part, positions, data, label, flags, areas, sizes)
                           for part in range(_DECODE_THREADS)]
                for future in futures:
                    future.result()
                yield data, label, max(0, start + self.batch_size - n), flags, areas, sizes
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for file in files:
                file.close()


def _prefetch(source: Generator[tuple[Any, ...], None, None]) -> Iterator[DetectionBatch]:
    """Run ``source`` in a background thread, a few items ahead; re-raise its errors here."""
    items: queue.Queue = queue.Queue(_PREFETCH_BATCHES)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as error:  # handed to the consumer, raised there
            put(("error", error))
        finally:
            source.close()

    thread = threading.Thread(target=work, name="detkit-loader", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            data, label, pad, flags, areas, sizes = item
            yield DetectionBatch(
                mx.nd.array(data, dtype="float32"), mx.nd.array(label, dtype="float32"), pad,
                mx.nd.array(flags, dtype="float32"), mx.nd.array(areas, dtype="float32"),
                mx.nd.array(sizes, dtype="float32"),
            )
    finally:
        stop.set()
