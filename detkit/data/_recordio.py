"""MXNet RecordIO, read and written in pure Python so that bad files give clear errors.

The on-disk format is dmlc-core's (``dmlc/recordio.h``), the one MXNet's
``mx.recordio``, ``im2rec.py``, ``ImageDetIter`` and ``ImageDetRecordIter`` use:
each record is ``magic (u32) | lrecord (u32) | data | zero padding to 4 bytes``,
little-endian, where ``lrecord`` holds the data length (low 29 bits) and a
continuation flag (high 3 bits: 0 whole record, 1 first part, 2 middle part,
3 last part). A record whose data contains the magic number at a 4-byte aligned
position is split there and the magic is dropped; the reader puts it back.

An image record's data is MXNet's ``IRHeader`` (``<IfQQ``: flag, label, id, id2)
followed by ``flag`` float32 label values and the encoded image. A detection
label (``im2rec.py --pack-label``) is ``[A, B, extra..., objects...]``: ``A`` is
the header width (at least 2), ``B`` the width of one object (at least 5), the
``A - 2`` extra values are free (detkit writes the image width and height), and
each object starts with ``[class_id, xmin, ymin, xmax, ymax]``, boxes normalised
to [0, 1]. ``detkit data pack`` writes ``B = 7``: two more values an object,
``flag`` (0 an ordinary object, 1 difficult as in Pascal VOC, 2 a COCO crowd
region) and ``area``, the object's area in pixels of the original image (COCO's
annotation ``"area"``, else the box's); they are read from every label with
``B >= 7``. Labels with ``B = 5`` (MXNet's ``im2rec.py``, the seed's pikachu) or
``B = 6`` still read, their further values ignored as before: their objects
are ordinary and their areas unknown.
The ``.idx`` file has one ``key<TAB>byte offset`` line per record.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple, TextIO

import numpy as np

from ..errors import DataError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_MAX_RECORD = 1 << 29
_IR_FORMAT = "<IfQQ"  # flag, label, id, id2: MXNet's IRHeader
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24 bytes
#: detkit's detection header: A = 4 values (A, B, width, height), B = 5 values an object.
HEADER_WIDTH = 4
OBJECT_WIDTH = 5
#: With flags and areas: ``[class_id, xmin, ymin, xmax, ymax, flag, area]``.
FLAGGED_OBJECT_WIDTH = 7
#: The values of the ``flag`` column.
ORDINARY, DIFFICULT, CROWD = 0, 1, 2
#: Box coordinates may stray this far outside [0, 1] (rounding in other tools); they are clipped.
BOX_TOLERANCE = 0.01


def encode_record(data: bytes) -> bytes:
    """The on-disk bytes of one record holding ``data`` (split where ``data`` contains the magic)."""
    if len(data) >= _MAX_RECORD:
        raise DataError(f"a RecordIO record holds less than 2**29 bytes; got {len(data)} bytes")
    parts = []
    start = 0
    position = data.find(_MAGIC_BYTES)
    while position != -1:
        if position % 4 == 0:
            parts.append((1 if start == 0 else 2, data[start:position]))
            start = position + 4
            position = data.find(_MAGIC_BYTES, start)
        else:
            position = data.find(_MAGIC_BYTES, position + 1)
    parts.append((3 if start else 0, data[start:]))
    out = bytearray()
    for cflag, chunk in parts:
        out += _MAGIC_BYTES
        out += struct.pack("<I", (cflag << 29) | len(chunk))
        out += chunk
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


class RecordWriter:
    """Append records to an open binary file, remembering each record's key and byte offset."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.keys: list[int] = []
        self.offsets: list[int] = []

    def write(self, key: int, data: bytes) -> None:
        self.keys.append(int(key))
        self.offsets.append(self._file.tell())
        self._file.write(encode_record(data))

    def write_index(self, file: TextIO) -> None:
        """Write the ``.idx`` lines (``key<TAB>offset``) to a text file."""
        for key, offset in zip(self.keys, self.offsets):
            file.write(f"{key}\t{offset}\n")


def _where(path: Path, index: int, offset: int) -> str:
    return f"{path}: record {index} (byte {offset})"


def _parts(file: BinaryIO, offset: int, file_size: int, path: Path, index: int) -> Iterator[tuple[int, int]]:
    """Yield ``(data position, length)`` of each part of the record at ``offset``, checking headers."""
    position = offset
    first = True
    while True:
        if position + 8 > file_size:
            raise DataError(
                f"{_where(path, index, offset)}: the file ends inside the record "
                f"(file size {file_size} bytes): it is truncated"
            )
        file.seek(position)
        magic, lrecord = struct.unpack("<II", file.read(8))
        if magic != MAGIC:
            raise DataError(
                f"{_where(path, index, offset)}: no RecordIO record starts at byte {position} "
                f"(bad magic number {magic:#010x}): the file is corrupt or its .idx belongs to "
                "another file; rebuild the index with `detkit data index FILE.rec`"
            )
        cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
        if cflag > 3 or (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
            raise DataError(f"{_where(path, index, offset)}: invalid record part flag {cflag}: the file is corrupt")
        if position + 8 + length > file_size:
            raise DataError(
                f"{_where(path, index, offset)}: the record needs {length} bytes but the file ends "
                f"{file_size - position - 8} bytes later: it is truncated"
            )
        yield position + 8, length
        position += 8 + length + (-length % 4)
        first = False
        if cflag in (0, 3):
            return


def read_record(file: BinaryIO, offset: int, file_size: int, path: Path, index: int) -> bytes:
    """Read the data of the record that starts at ``offset``; a damaged record raises :class:`DataError`."""
    chunks = []
    for position, length in _parts(file, offset, file_size, path, index):
        file.seek(position)
        chunks.append(file.read(length))
    return _MAGIC_BYTES.join(chunks)


def read_record_prefix(
    file: BinaryIO, offset: int, file_size: int, path: Path, index: int, limit: int
) -> bytes:
    """The first ``limit`` bytes (or fewer) of a record's data; still checks the whole record's extent."""
    chunks = []
    have = 0
    for position, length in _parts(file, offset, file_size, path, index):
        if have < limit:
            file.seek(position)
            chunk = file.read(min(length, limit - have))
            chunks.append(chunk)
            have += len(chunk) + 4
    return _MAGIC_BYTES.join(chunks)[:limit]


def record_end(file: BinaryIO, offset: int, file_size: int, path: Path, index: int) -> int:
    """The byte offset just after the record starting at ``offset`` (checked like :func:`read_record`)."""
    end = offset
    for position, length in _parts(file, offset, file_size, path, index):
        end = position + length + (-length % 4)
    return min(end, file_size)


def scan_offsets(path: Path) -> list[int]:
    """The byte offset of every record in ``path``, found by walking the file from its start."""
    size = os.path.getsize(path)
    offsets = []
    with open(path, "rb") as file:
        position = 0
        while position < size:
            offsets.append(position)
            position = record_end(file, position, size, path, len(offsets) - 1)
    return offsets


def read_index(idx_path: Path) -> tuple[list[int], list[int]]:
    """Parse an ``.idx`` file into ``(keys, offsets)``; raise :class:`DataError` naming a bad line."""
    keys, offsets = [], []
    seen_keys: dict[int, int] = {}
    seen_offsets: dict[int, int] = {}
    with open(idx_path, encoding="ascii", errors="replace") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            try:
                key, offset = int(fields[0]), int(fields[1])
                if len(fields) != 2 or offset < 0:
                    raise ValueError
            except (ValueError, IndexError):
                raise DataError(
                    f"{idx_path}: line {number} is not 'key<TAB>byte offset': {line.strip()[:60]!r}; "
                    "rebuild the index with `detkit data index FILE.rec`"
                ) from None
            # A record listed twice would be read twice (a doubled dataset), a key twice is ambiguous.
            for what, value, seen in (("offset", offset, seen_offsets), ("key", key, seen_keys)):
                if value in seen:
                    raise DataError(
                        f"{idx_path}: line {number} repeats the {what} {value} of line {seen[value]}; each record "
                        "must be listed once: rebuild the index with `detkit data index FILE.rec`"
                    )
                seen[value] = number
            keys.append(key)
            offsets.append(offset)
    return keys, offsets


def pack_detection(
    key: int, image: bytes, objects: np.ndarray, width: int, height: int,
    flags: np.ndarray | None = None, areas: np.ndarray | None = None,
) -> bytes:
    """The record data of one image: IRHeader, ``[4, B, width, height, objects...]``, image bytes.

    Parameters
    ----------
    objects : numpy.ndarray
        ``(K, 5)`` rows ``[class_id, xmin, ymin, xmax, ymax]``, boxes normalised to [0, 1];
        ``K`` may be 0.
    flags, areas : numpy.ndarray, optional
        ``(K,)`` each: :data:`ORDINARY`, :data:`DIFFICULT` or :data:`CROWD`, and the area in
        pixels. With either, objects are written 7 wide (``B = 7``; flags default to
        ordinary, areas to the box's in pixels); without both, 5 wide.
    """
    objects = np.asarray(objects, dtype=np.float64).reshape(-1, OBJECT_WIDTH)
    if flags is not None or areas is not None:
        if flags is None:
            flags = np.zeros(len(objects))
        if areas is None:
            areas = (objects[:, 3] - objects[:, 1]) * width * (objects[:, 4] - objects[:, 2]) * height
        objects = np.concatenate([objects, np.reshape(flags, (-1, 1)), np.reshape(areas, (-1, 1))], axis=1)
    object_width = objects.shape[1]
    label = np.concatenate(
        [np.array([HEADER_WIDTH, object_width, width, height], np.float32), objects.astype(np.float32).ravel()]
    )
    return struct.pack(_IR_FORMAT, label.size, 0.0, int(key), 0) + label.tobytes() + image


class DetectionRecord(NamedTuple):
    """The parsed label of one record: ``objects`` ``(K, 5)`` float32, where the image starts,
    each object's ``flags`` ``(K,)`` int8 and ``areas`` ``(K,)`` float32 in pixels (``nan``: unknown)."""

    objects: np.ndarray
    image_start: int
    flags: np.ndarray
    areas: np.ndarray


def parse_detection(data: bytes, where: str, num_classes: int | None = None) -> DetectionRecord:
    """Parse and validate the detection label at the start of a record's data.

    Rows with ``class_id == -1`` are padding and dropped. Box coordinates within
    :data:`BOX_TOLERANCE` outside [0, 1] are clipped; anything else malformed
    raises :class:`DataError` prefixed with ``where``.
    """
    if len(data) < _IR_SIZE:
        raise DataError(f"{where}: the record has {len(data)} bytes, fewer than an image record header")
    flag, _, _, _ = struct.unpack_from(_IR_FORMAT, data)
    if flag == 0:
        raise DataError(
            f"{where}: the record has a single number as its label, not a detection label "
            "[header width, object width, ..., objects]; was it packed for classification?"
        )
    end = _IR_SIZE + 4 * flag
    if end > len(data):
        raise DataError(f"{where}: the label claims {flag} values but the record has only {len(data)} bytes")
    label = np.frombuffer(data, np.float32, flag, _IR_SIZE)
    if flag < 2 or not np.all(np.isfinite(label[:2])):
        raise DataError(f"{where}: malformed detection label {label[:8].tolist()}")
    header_width, object_width = label[0], label[1]
    if (
        header_width != int(header_width)
        or object_width != int(object_width)
        or header_width < 2
        or object_width < 5
        or header_width > flag
        or (flag - int(header_width)) % int(object_width)
    ):
        raise DataError(
            f"{where}: malformed detection label: header width {header_width:g}, object width "
            f"{object_width:g} do not fit its {flag} values (need width >= 2, object width >= 5, "
            "and a whole number of objects)"
        )
    full = label[int(header_width):].reshape(-1, int(object_width))
    full = full[full[:, 0] != -1]
    rows = full[:, :OBJECT_WIDTH]
    flags = np.zeros(len(full), np.int8)
    areas = np.full(len(full), np.nan, np.float32)
    if object_width >= FLAGGED_OBJECT_WIDTH and len(full):
        bad = ~np.isin(full[:, 5], (ORDINARY, DIFFICULT, CROWD))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}: object {i} has flag {full[i, 5]:g} in its sixth value; in labels 7 or more values "
                f"an object detkit reads it as 0 "
                f"(ordinary), {DIFFICULT} (difficult) or {CROWD} (crowd region)"
            )
        flags = full[:, 5].astype(np.int8)
    if object_width >= FLAGGED_OBJECT_WIDTH and len(full):
        bad = np.isinf(full[:, 6]) | (full[:, 6] < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: object {i} has area {full[i, 6]:g} (need a number >= 0, in pixels)")
        areas = full[:, 6].astype(np.float32)
    if rows.size:
        bad = ~np.all(np.isfinite(rows), axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: object {i} has a non-finite value: {rows[i].tolist()}")
        cls = rows[:, 0]
        bad = (cls < 0) | (cls != np.round(cls))
        if num_classes is not None:
            bad |= cls >= num_classes
        if bad.any():
            i = int(np.argmax(bad))
            known = f" (the dataset has {num_classes} classes: 0 to {num_classes - 1})" if num_classes else ""
            raise DataError(f"{where}: object {i} has invalid class id {cls[i]:g}{known}")
        boxes = rows[:, 1:]
        bad = np.any((boxes < -BOX_TOLERANCE) | (boxes > 1 + BOX_TOLERANCE), axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}: object {i} has box {boxes[i].tolist()} outside the image "
                "(coordinates must be normalised to [0, 1])"
            )
        rows = rows.copy()
        rows[:, 1:] = np.clip(boxes, 0.0, 1.0)
        bad = (rows[:, 3] <= rows[:, 1]) | (rows[:, 4] <= rows[:, 2])
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}: object {i} has an empty box {rows[i, 1:].tolist()} "
                "(need xmin < xmax and ymin < ymax)"
            )
    return DetectionRecord(np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, OBJECT_WIDTH), end, flags, areas)
