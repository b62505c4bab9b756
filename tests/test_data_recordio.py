"""RecordIO reading and writing, and every kind of bad input when reading (issue "Data", point 6)."""

from __future__ import annotations

import io
import struct

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from detkit.data import DetectionDataset, write_index
from detkit.data import _recordio
from detkit.errors import DataError

CLASSES = ["a", "b"]


def jpeg(width=32, height=24, color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_rec(path, payloads, *, idx=True):
    """Write raw record payloads with detkit's writer; return the byte offsets."""
    with open(path, "wb") as file:
        writer = _recordio.RecordWriter(file)
        for i, payload in enumerate(payloads):
            writer.write(i, payload)
    if idx:
        with open(path.with_suffix(".idx"), "w") as file:
            writer.write_index(file)
    return writer.offsets


def detection(objects, key=0, image=None, header=(4, 5, 32, 24)):
    """A record payload with an arbitrary label header (to build malformed ones)."""
    label = np.concatenate([np.array(header, np.float32), np.asarray(objects, np.float32).ravel()])
    return struct.pack("<IfQQ", label.size, 0.0, key, 0) + label.tobytes() + (image or jpeg())


def good_payloads(n=4):
    return [
        _recordio.pack_detection(i, jpeg(), [[i % 2, 0.1, 0.2, 0.5, 0.6], [0, 0.5, 0.5, 0.9, 1.0]][: 1 + i % 2], 32, 24)
        for i in range(n)
    ]


# ---------------------------------------------------------------- format


def test_encode_record_splits_at_aligned_magic_and_reads_back(tmp_path):
    magic = struct.pack("<I", _recordio.MAGIC)
    data = b"abcd" + magic + b"efgh" + magic + b"xy" + magic[:2] + b"z" + magic  # last one unaligned
    path = tmp_path / "m.rec"
    offsets = write_rec(path, [data, b"tail"], idx=False)
    assert _recordio.scan_offsets(path) == offsets
    with open(path, "rb") as file:
        size = path.stat().st_size
        assert _recordio.read_record(file, offsets[0], size, path, 0) == data
        assert _recordio.read_record(file, offsets[1], size, path, 1) == b"tail"
    # MXNet's own reader agrees, in both directions
    reader = mx.recordio.MXRecordIO(str(path), "r")
    assert reader.read() == data and reader.read() == b"tail"
    reader.close()
    mx_path = tmp_path / "mx.rec"
    writer = mx.recordio.MXIndexedRecordIO(str(mx_path.with_suffix(".idx")), str(mx_path), "w")
    writer.write_idx(0, data)
    writer.write_idx(1, b"tail")
    writer.close()
    assert mx_path.read_bytes() == path.read_bytes()


def test_detection_records_are_readable_by_mxnet(tmp_path):
    path = tmp_path / "d.rec"
    write_rec(path, good_payloads(3))
    record = mx.recordio.MXIndexedRecordIO(str(path.with_suffix(".idx")), str(path), "r")
    header, image = mx.recordio.unpack(record.read_idx(1))
    record.close()
    image = mx.image.imdecode(image).asnumpy()
    np.testing.assert_allclose(header.label, [4, 5, 32, 24, 1, 0.1, 0.2, 0.5, 0.6, 0, 0.5, 0.5, 0.9, 1.0], atol=1e-6)
    assert image.shape == (24, 32, 3)


def test_reads_labels_with_other_header_widths_and_padding_rows(tmp_path):
    # im2rec-style header [2, 6] (no extra values), 6 values an object, and a -1 padding row
    path = tmp_path / "w.rec"
    objects = [[1, 0.1, 0.1, 0.4, 0.4, 7], [-1, -1, -1, -1, -1, -1]]
    write_rec(path, [detection(objects, header=(2, 6))])
    ds = DetectionDataset(path, classes=CLASSES)
    np.testing.assert_allclose(ds.objects(0), [[1, 0.1, 0.1, 0.4, 0.4]], atol=1e-6)
    assert ds.max_objects == 1


def test_flags_and_areas_are_read_from_seven_wide_labels(tmp_path):
    # detkit's packed layout [class, box, flag, area]; five-wide labels read as ordinary with unknown areas
    path = tmp_path / "f.rec"
    objects = np.array([[1, 0.1, 0.1, 0.4, 0.4], [0, 0.5, 0.5, 0.9, 0.9], [1, 0.0, 0.0, 1.0, 1.0]])
    payloads = [
        _recordio.pack_detection(0, jpeg(), objects, 32, 24, flags=np.array([0, 1, 2]), areas=np.array([50.5, 0, 768])),
        _recordio.pack_detection(1, jpeg(), objects[:1], 32, 24, flags=np.array([0])),  # area: the box's
        _recordio.pack_detection(2, jpeg(), objects[:2], 32, 24),  # the old five-wide layout
    ]
    write_rec(path, payloads)
    ds = DetectionDataset(path, classes=CLASSES)
    assert ds.flags(0).tolist() == [0, 1, 2] and ds.areas(0).tolist() == [50.5, 0.0, 768.0]
    np.testing.assert_allclose(ds.areas(1), [0.3 * 32 * 0.3 * 24], rtol=1e-6)
    assert ds.flags(2).tolist() == [0, 0] and np.isnan(ds.areas(2)).all()
    np.testing.assert_allclose(ds.objects(0), objects, atol=1e-6)
    # MXNet's own reader sees seven values an object
    record = mx.recordio.MXIndexedRecordIO(str(path.with_suffix(".idx")), str(path), "r")
    header, _ = mx.recordio.unpack(record.read_idx(0))
    record.close()
    assert header.label[:4].tolist() == [4, 7, 32, 24] and len(header.label) == 4 + 3 * 7


@pytest.mark.parametrize("row, pattern", [
    ([0, 0.1, 0.1, 0.4, 0.4, 3, 10], r"record 0 .*object 0 has flag 3 .*0 \(ordinary\), 1 \(difficult\) or 2 \(crowd"),
    ([0, 0.1, 0.1, 0.4, 0.4, 0.5, 10], r"object 0 has flag 0.5"),
    ([0, 0.1, 0.1, 0.4, 0.4, 0, -4], r"object 0 has area -4 \(need a number >= 0, in pixels\)"),
    ([0, 0.1, 0.1, 0.4, 0.4, 0, np.inf], r"object 0 has area inf"),
])
def test_bad_flags_and_areas_name_the_record_and_object(tmp_path, row, pattern):
    path = tmp_path / "bad.rec"
    write_rec(path, [detection([row], header=(4, 7, 32, 24))])
    with pytest.raises(DataError, match=pattern):
        DetectionDataset(path, classes=CLASSES)


def test_missing_idx_is_rebuilt_in_memory_and_by_write_index(tmp_path):
    path = tmp_path / "n.rec"
    write_rec(path, good_payloads(5), idx=False)
    ds = DetectionDataset(path, classes=CLASSES)
    assert ds.idx_path is None and len(ds) == 5
    assert ds.objects(3).shape == (2, 5)
    idx = write_index(path)
    assert idx == path.with_suffix(".idx")
    assert DetectionDataset(path, classes=CLASSES).idx_path == idx


def test_explicit_missing_idx_says_how_to_rebuild(tmp_path):
    path = tmp_path / "n.rec"
    write_rec(path, good_payloads(2), idx=False)
    with pytest.raises(DataError, match=r"nope\.idx: no such index file.*detkit data index"):
        DetectionDataset(path, tmp_path / "nope.idx", classes=CLASSES)


def test_missing_rec_file(tmp_path):
    with pytest.raises(DataError, match="no such RecordIO file"):
        DetectionDataset(tmp_path / "absent.rec", classes=CLASSES)


# ---------------------------------------------------------------- bad input when reading


@pytest.mark.parametrize("with_idx", [True, False])
def test_truncated_rec_names_the_record(tmp_path, with_idx):
    path = tmp_path / "t.rec"
    offsets = write_rec(path, good_payloads(4), idx=with_idx)
    data = path.read_bytes()
    path.write_bytes(data[: offsets[2] + 100])  # record 2 is cut in its image
    with pytest.raises(DataError, match=r"t\.rec: record 2 \(byte \d+\).*truncated"):
        DetectionDataset(path, classes=CLASSES)


def test_truncated_before_a_record_listed_in_idx(tmp_path):
    path = tmp_path / "t.rec"
    offsets = write_rec(path, good_payloads(4))
    path.write_bytes(path.read_bytes()[: offsets[3]])
    with pytest.raises(DataError, match=r"record 3 .*beyond the end of the file"):
        DetectionDataset(path, classes=CLASSES)


def test_corrupt_magic_names_the_record(tmp_path):
    path = tmp_path / "c.rec"
    offsets = write_rec(path, good_payloads(4))
    data = bytearray(path.read_bytes())
    data[offsets[1] : offsets[1] + 4] = b"\xde\xad\xbe\xef"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"record 1 \(byte \d+\).*bad magic"):
        DetectionDataset(path, classes=CLASSES)


def test_idx_of_another_file_is_detected(tmp_path):
    path = tmp_path / "c.rec"
    offsets = write_rec(path, good_payloads(3))
    path.with_suffix(".idx").write_text(f"0\t{offsets[0]}\n1\t{offsets[1] + 8}\n")
    with pytest.raises(DataError, match=r"record 1 .*rebuild the index"):
        DetectionDataset(path, classes=CLASSES)


def test_garbage_idx_line_names_the_line(tmp_path):
    path = tmp_path / "g.rec"
    write_rec(path, good_payloads(2))
    path.with_suffix(".idx").write_text("0\t0\nhello world\n")
    with pytest.raises(DataError, match=r"g\.idx: line 2 "):
        DetectionDataset(path, classes=CLASSES)


@pytest.mark.parametrize(
    "payload, message",
    [
        (struct.pack("<IfQQ", 0, 3.0, 0, 0) + jpeg(), "single number as its label"),
        (detection([], header=(1, 5)), "malformed detection label"),
        (detection([], header=(2, 4)), "malformed detection label"),
        (detection([[0, 0.1, 0.1, 0.5]], header=(2, 5)), "whole number of objects"),
        (detection([[0, 0.1, 0.1, np.nan, 0.5]]), "object 0 has a non-finite value"),
        (detection([[0, 0.1, 0.1, 0.5, 0.5], [2, 0.1, 0.1, 0.5, 0.5]]), r"object 1 has invalid class id 2 .*2 classes"),
        (detection([[0.5, 0.1, 0.1, 0.5, 0.5]]), "invalid class id 0.5"),
        (detection([[0, 0.1, 0.1, 1.5, 0.5]]), "outside the image"),
        (detection([[0, 0.5, 0.1, 0.5, 0.5]]), "empty box"),
        (struct.pack("<IfQQ", 40, 0.0, 0, 0) + b"\0" * 12, "label claims 40 values"),
    ],
)
def test_malformed_label_names_file_and_record(tmp_path, payload, message):
    path = tmp_path / "l.rec"
    write_rec(path, good_payloads(2) + [payload])
    with pytest.raises(DataError, match=rf"l\.rec: record 2 \(byte \d+\): .*{message}"):
        DetectionDataset(path, classes=CLASSES)


def test_undecodable_image_fails_when_read_naming_the_record(tmp_path):
    path = tmp_path / "u.rec"
    payloads = good_payloads(3)
    payloads[1] = _recordio.pack_detection(1, b"\xff\xd8\xff\xe0 this is not a jpeg", [[0, 0.1, 0.1, 0.5, 0.5]], 32, 24)
    write_rec(path, payloads)
    ds = DetectionDataset(path, classes=CLASSES)  # labels are fine
    with pytest.raises(DataError, match=r"u\.rec: record 1 .*cannot be decoded"):
        ds.image(1)
    with pytest.raises(DataError, match=r"u\.rec: record 1 .*cannot be decoded"):
        for _ in ds.loader(2, 16, train=False):
            pass


def test_empty_rec_is_an_error(tmp_path):
    path = tmp_path / "e.rec"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="no records"):
        DetectionDataset(path, classes=CLASSES)


def test_records_split_by_the_magic_number_read_back_whole(tmp_path):
    magic = struct.pack("<I", _recordio.MAGIC)
    image = jpeg()
    payload = _recordio.pack_detection(0, image, [[1, 0.1, 0.2, 0.5, 0.6]], 32, 24)
    payload += b"\0" * (-len(payload) % 4) + magic + b"tail" + magic  # trailing bytes after the JPEG's end
    path = tmp_path / "s.rec"
    write_rec(path, [payload, payload])
    assert path.read_bytes().count(magic) == 6  # each record split in three parts
    ds = DetectionDataset(path, classes=CLASSES)
    np.testing.assert_allclose(ds.objects(1), [[1, 0.1, 0.2, 0.5, 0.6]], atol=1e-6)
    assert ds.image(1).shape == (24, 32, 3)
    assert DetectionDataset(path, idx_path=None, classes=CLASSES)._offsets == _recordio.scan_offsets(path)
