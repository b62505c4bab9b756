"""Property-based fuzzing (Hypothesis) of what detkit parses: RecordIO, labels, VOC and COCO packing, configs.

The property is the same everywhere: any input ends in a result or a
DetkitError, never another exception, a hang or a crash of the process.
"""

from __future__ import annotations

import io
import json
import struct
import xml.sax.saxutils
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from detkit.config import load_config
from detkit.data import DetectionDataset, pack_coco, pack_voc
from detkit.data import _recordio
from detkit.errors import DetkitError

JPEG = io.BytesIO()
Image.new("RGB", (16, 12), (200, 10, 10)).save(JPEG, format="JPEG")
JPEG_BYTES = JPEG.getvalue()

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e30]))


def _valid_record(key: int, objects: np.ndarray) -> bytes:
    return _recordio.encode_record(_recordio.pack_detection(key, JPEG_BYTES, objects, 16, 12))


@given(data=st.binary(max_size=2048))
def test_parse_detection_accepts_or_names_the_record(data) -> None:
    try:
        record = _recordio.parse_detection(data, "record 0", num_classes=3)
    except DetkitError:
        return
    assert record.objects.ndim == 2 and np.isfinite(record.objects).all()
    assert (record.objects[:, 3] > record.objects[:, 1]).all() and (record.objects[:, 4] > record.objects[:, 2]).all()


@given(label=st.lists(floats, max_size=40), flag=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_a_label_of_any_numbers_parses_or_is_a_data_error(label, flag) -> None:
    values = np.array(label, np.float32)
    header = struct.pack("<IfQQ", len(values) if flag is None else flag, 0.0, 0, 0)
    try:
        record = _recordio.parse_detection(header + values.tobytes() + JPEG_BYTES, "record 0", num_classes=2)
    except DetkitError:
        return
    assert np.isfinite(record.objects).all() and ((record.objects[:, 0] >= 0) & (record.objects[:, 0] < 2)).all()


@st.composite
def damaged_recordio(draw):
    """A valid two-record file, then bytes flipped, cut, or appended; and an index that may lie."""
    objects = np.array([[0, 0.1, 0.1, 0.6, 0.7]], np.float32)
    first, second = _valid_record(0, objects), _valid_record(1, objects[:0])
    data = bytearray(first + second)
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    data += draw(st.binary(max_size=64))
    index = draw(st.one_of(
        st.none(),
        st.just(f"0\t0\n1\t{len(first)}\n"),
        st.lists(st.tuples(st.integers(-2, 5), st.integers(-5, 4 * len(data))), max_size=4).map(
            lambda rows: "".join(f"{k}\t{o}\n" for k, o in rows)),
        st.text(max_size=40),
    ))
    return bytes(data), index


@given(case=damaged_recordio())
def test_the_recordio_reader_reads_or_names_the_damage(tmp_path_factory, case) -> None:
    data, index = case
    folder = tmp_path_factory.mktemp("rec")
    (folder / "train.rec").write_bytes(data)
    if index is not None:
        (folder / "train.idx").write_text(index, encoding="utf-8")
    try:
        dataset = DetectionDataset(folder / "train.rec", classes=["a", "b"])
        for i in range(len(dataset)):
            dataset.objects(i)
            dataset.image(i)
        batches = dataset.loader(2, 32, train=True, seed=0)
        for batch in batches:
            assert np.isfinite(batch.data.asnumpy()).all()
    except DetkitError:
        pass


text_values = st.one_of(st.text(max_size=12), st.sampled_from(["nan", "inf", "-1", "1e308", "0", "12", "", " 5 "]))


@st.composite
def voc_annotation(draw):
    filename = draw(st.one_of(st.just("a.jpg"), st.just("missing.jpg"), st.just("../a.jpg"), st.just("/etc/passwd"),
                              st.text(max_size=10)))
    size = draw(st.one_of(st.none(), st.tuples(text_values, text_values)))
    objects = draw(st.lists(st.tuples(st.one_of(st.just("cat"), st.text(max_size=5)),
                                      st.tuples(text_values, text_values, text_values, text_values)), max_size=3))
    escape = xml.sax.saxutils.escape
    parts = [f"<filename>{escape(filename)}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{escape(size[0])}</width><height>{escape(size[1])}</height></size>")
    for name, box in objects:
        coords = "".join(f"<{t}>{escape(v)}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(f"<object><name>{escape(name)}</name><bndbox>{coords}</bndbox></object>")
    xml_text = "<annotation>" + "".join(parts) + "</annotation>"
    if draw(st.booleans()):  # or damaged XML
        cut = draw(st.integers(0, len(xml_text)))
        xml_text = xml_text[:cut] + draw(st.text(max_size=8))
    return xml_text


@given(annotation=voc_annotation(), skip_invalid=st.booleans())
def test_pack_voc_packs_or_names_the_problem(tmp_path_factory, annotation, skip_invalid) -> None:
    folder = tmp_path_factory.mktemp("voc")
    (folder / "images").mkdir()
    (folder / "images" / "a.jpg").write_bytes(JPEG_BYTES)
    (folder / "ann").mkdir()
    (folder / "ann" / "a.xml").write_text(annotation, encoding="utf-8")
    try:
        dataset = pack_voc(folder / "images", folder / "ann", folder / "out" / "x", skip_invalid=skip_invalid,
                           progress=False)
    except DetkitError:
        assert not list((folder / "out").glob("x.*")) if (folder / "out").exists() else True
        return
    assert len(dataset) == 1


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children,
                                                                                max_size=3)),
    max_leaves=10,
)


@st.composite
def coco_document(draw):
    image = {"id": draw(st.one_of(st.just(1), json_values)), "file_name": draw(st.sampled_from(
        ["a.jpg", "../a.jpg", "/a.jpg", "missing.jpg"])), "width": draw(st.one_of(st.just(16), json_values)),
        "height": draw(st.one_of(st.just(12), json_values))}
    category = {"id": draw(st.one_of(st.just(7), json_values)), "name": draw(st.one_of(st.just("cat"), json_values))}
    annotation = {"id": 1, "image_id": draw(st.one_of(st.just(1), json_values)),
                  "category_id": draw(st.one_of(st.just(7), json_values)),
                  "bbox": draw(st.one_of(st.just([1, 1, 5, 5]), st.lists(floats, max_size=5), json_values)),
                  "iscrowd": draw(st.one_of(st.just(0), json_values))}
    document = {"images": [image] * draw(st.integers(1, 2)), "annotations": [annotation],
                "categories": [category] * draw(st.integers(1, 2))}
    for key in draw(st.lists(st.sampled_from(["images", "annotations", "categories"]), max_size=1)):
        document[key] = draw(json_values)
    return draw(st.one_of(st.just(document), json_values)) if draw(st.integers(0, 9)) == 0 else document


@given(document=coco_document(), skip_invalid=st.booleans())
def test_pack_coco_packs_or_names_the_problem(tmp_path_factory, document, skip_invalid) -> None:
    folder = tmp_path_factory.mktemp("coco")
    (folder / "images").mkdir()
    (folder / "images" / "a.jpg").write_bytes(JPEG_BYTES)
    (folder / "a.jpg").write_bytes(JPEG_BYTES)  # outside the image folder: must never be packed
    path = folder / "instances.json"
    path.write_text(json.dumps(document, allow_nan=True), encoding="utf-8")
    try:
        dataset = pack_coco(path, folder / "images", folder / "out" / "x", skip_invalid=skip_invalid,
                            progress=False)
    except DetkitError:
        return
    assert 1 <= len(dataset) <= 2


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children,
                                                                                max_size=3)),
    max_leaves=8,
)
SECTIONS = {
    "model": ["classes", "data_shape", "scale_filters", "backbone", "loss", "post_processor"],
    "data": ["source", "root", "num_train", "image_size", "train", "classes"],
    "train": ["epochs", "batch_size", "optimizer", "optimizer_params", "lr_schedule", "warmup_epochs", "devices",
              "seed", "threshold", "resume"],
}


@st.composite
def config_text(draw):
    if draw(st.integers(0, 5)) == 0:
        return draw(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
    document = {}
    for section, keys in SECTIONS.items():
        if draw(st.booleans()):
            document[section] = {key: draw(yaml_values) for key in draw(st.lists(st.sampled_from(keys), max_size=3))}
    if draw(st.booleans()):
        document[draw(st.sampled_from(["preset", "unknown", "train"]))] = draw(yaml_values)
    return yaml.safe_dump(document)


@given(text=config_text(), overrides=st.lists(st.text(max_size=20), max_size=2))
def test_the_config_loader_validates_or_names_the_key(tmp_path_factory, text, overrides) -> None:
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        config = load_config(path, overrides)
    except DetkitError:
        return
    train = config.train
    assert train.epochs >= 1 and train.batch_size >= 1 and 0 <= train.threshold <= 1
    assert all(not isinstance(v, float) or np.isfinite(v) for v in train.optimizer_params.values())


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", b"model: [\n", b"!!python/object/apply:os.system ['true']"])
def test_the_config_loader_refuses_bytes_it_cannot_read(tmp_path, raw) -> None:
    (tmp_path / "c.yaml").write_bytes(raw)
    with pytest.raises(DetkitError):
        load_config(Path(tmp_path / "c.yaml"))
