"""Packing VOC and COCO annotations: round trip through the reader, validation, atomic output."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detkit.data import RGB_MEAN, DetectionDataset, PackSummary, pack_coco, pack_voc
from detkit.errors import DataError

COLORS = {"cat": (230, 30, 30), "dog": (30, 30, 230), "bird": (30, 200, 30)}
CLASSES = ["bird", "cat", "dog"]  # sorted, as pack_voc finds them


def make_images(folder: Path):
    """Five images of varied sizes and formats with 1-3 coloured rectangles each.

    Returns ``[(file name, width, height, [(class, x, y, w, h) in pixels])]``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i, (width, height) in enumerate([(80, 60), (64, 96), (120, 90), (50, 50), (90, 70)]):
        pixels = np.full((height, width, 3), 140, np.uint8)
        boxes = []
        for k in range(1 + i % 3):
            name = ["cat", "dog", "bird"][(i + k) % 3]
            w, h = int(rng.integers(width // 5, width // 3)), int(rng.integers(height // 5, height // 3))
            x = k * (width // 3) + int(rng.integers(0, width // 3 - w + 1))
            y = int(rng.integers(0, height - h))
            pixels[y : y + h, x : x + w] = COLORS[name]
            boxes.append((name, x, y, w, h))
        file_name = f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(pixels).save(folder / file_name, quality=98)
        items.append((file_name, width, height, boxes))
    return items


def voc_xml(file_name, width, height, boxes, *, size=True) -> str:
    objects = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
        f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
        for name, x, y, w, h in boxes
    )
    size_xml = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><folder>x</folder><filename>{file_name}</filename>{size_xml}{objects}</annotation>"


def make_voc(tmp_path: Path):
    items = make_images(tmp_path / "images")
    annotations = tmp_path / "ann"
    annotations.mkdir()
    for i, (file_name, width, height, boxes) in enumerate(items):
        (annotations / f"img{i}.xml").write_text(voc_xml(file_name, width, height, boxes, size=i != 3))
    return items, tmp_path / "images", annotations


def make_coco(tmp_path: Path):
    items = make_images(tmp_path / "images")
    categories = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 11, "name": "bird"}]
    ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for i, (file_name, width, height, boxes) in enumerate(items):
        images.append({"id": 100 + i, "file_name": file_name, "width": width, "height": height})
        for name, x, y, w, h in boxes:
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": 100 + i,
                    "category_id": ids[name],
                    "bbox": [x, y, w, h],
                    "iscrowd": 0,
                }
            )
    annotations.append({"id": 999, "image_id": 100, "category_id": 7, "bbox": [0, 0, 10, 10], "iscrowd": 1})
    data = {"images": images, "annotations": annotations, "categories": categories}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return items, path, tmp_path / "images", data


def check_round_trip(dataset: DetectionDataset, items, classes):
    """Every box and class survives, to within 1 pixel after resize, and frames its coloured rectangle."""
    size = 64
    batch = next(iter(dataset.loader(len(items), size, train=False)))
    images = batch.data.asnumpy() + np.array(RGB_MEAN, np.float32)[:, None, None]
    labels = batch.label.asnumpy()
    flags = batch.flags.asnumpy()
    for image, label, flag, (file_name, width, height, boxes) in zip(images, labels, flags, items):
        rows = label[flag == 0]  # the ordinary objects, which come first
        assert len(rows) == len(boxes), file_name
        for row, (name, x, y, w, h) in zip(rows, boxes):
            assert classes[int(row[0])] == name
            expected = np.array([x / width, y / height, (x + w) / width, (y + h) / height]) * size
            assert np.abs(row[1:] * size - expected).max() <= 1.0, (file_name, row, expected)
            x0, y0, x1, y1 = np.round(row[1:] * size).astype(int)
            inner = image[:, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].reshape(3, -1)
            assert np.abs(inner.mean(axis=1) - COLORS[name]).max() < 25, file_name
        assert np.all(label[len(boxes) :][flag[len(boxes) :] == -1] == -1)


def test_voc_round_trip(tmp_path):
    items, images, annotations = make_voc(tmp_path)
    dataset = pack_voc(images, annotations, tmp_path / "out" / "train", progress=False)
    assert dataset.classes == CLASSES
    assert dataset.rec_path == tmp_path / "out" / "train.rec"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.classes.txt", "train.eval.json", "train.idx", "train.rec"]
    assert (tmp_path / "out" / "train.classes.txt").read_text().split() == CLASSES
    assert dataset.pack_summary == PackSummary(images=5, objects=9, skipped=())
    assert dataset.max_objects == 3
    check_round_trip(dataset, items, CLASSES)
    # a JPEG is stored as it is
    record = (images / "img0.jpg").read_bytes()
    assert record in dataset.rec_path.read_bytes()


def test_voc_explicit_classes_set_the_ids(tmp_path):
    items, images, annotations = make_voc(tmp_path)
    classes = ["dog", "cat", "bird", "fish"]
    dataset = pack_voc(images, annotations, tmp_path / "v", classes=classes, progress=False)
    assert dataset.classes == classes
    check_round_trip(dataset, items, classes)


def test_coco_round_trip(tmp_path):
    items, json_path, images, _ = make_coco(tmp_path)
    dataset = pack_coco(json_path, images, tmp_path / "coco", progress=False)
    assert dataset.classes == ["dog", "cat", "bird"]  # categories by id: 3, 7, 11
    assert dataset.pack_summary.images == 5 and dataset.pack_summary.objects == 10
    assert dataset.pack_summary.crowd == 1 and dataset.pack_summary.ignored_crowd == 0
    assert "(1 crowd region)" in str(dataset.pack_summary)
    check_round_trip(dataset, items, dataset.classes)
    # The crowd region is packed after the ordinary objects of its image, marked 2, with its box's area
    # (the annotation has no "area"); the others keep theirs: w * h of the box, in pixels.
    first = items[0][3]
    np.testing.assert_array_equal(dataset.flags(0), [0] * len(first) + [2])
    np.testing.assert_allclose(dataset.objects(0)[-1], [1, 0, 0, 10 / 80, 10 / 60], atol=1e-6)
    np.testing.assert_array_equal(dataset.areas(0), [w * h for *_, w, h in first] + [100])


def test_coco_keeps_annotation_areas_and_crowd_regions(tmp_path):
    items, json_path, images, data = make_coco(tmp_path)
    for k, annotation in enumerate(data["annotations"]):
        annotation["area"] = 12.5 + k  # as a mask's area: not the box's
    json_path.write_text(json.dumps(data))
    dataset = pack_coco(json_path, images, tmp_path / "coco", progress=False)
    areas = np.concatenate([dataset.areas(i) for i in range(len(dataset))])
    flags = np.concatenate([dataset.flags(i) for i in range(len(dataset))])
    # image 100 holds annotations 0.. in order, then the crowd region (id 999, the last annotation)
    expected = [a["area"] for a in data["annotations"] if not a["iscrowd"]]
    np.testing.assert_allclose(np.sort(areas[flags == 0]), np.sort(expected), rtol=1e-6)
    assert areas[flags == 2].tolist() == [data["annotations"][-1]["area"]]
    # the loader hands them over: flags, areas, the images' sizes
    batch = next(iter(dataset.loader(5, 32, train=False)))
    assert batch.flags.shape == batch.areas.shape == batch.label.shape[:2]
    np.testing.assert_array_equal(batch.image_size.asnumpy(), [[w, h] for _, w, h, _ in items])
    assert batch.flags.asnumpy()[0].tolist()[: len(items[0][3]) + 1] == [0] * len(items[0][3]) + [2]


def test_voc_difficult_objects_are_kept_and_marked(tmp_path):
    items, images, annotations = make_voc(tmp_path)
    xml = annotations / "img2.xml"
    text = xml.read_text()
    first = text.index("<difficult>0</difficult>")
    xml.write_text(text[:first] + "<difficult>1</difficult>" + text[first + len("<difficult>0</difficult>"):])
    dataset = pack_voc(images, annotations, tmp_path / "voc", progress=False)
    assert dataset.pack_summary.difficult == 1 and dataset.pack_summary.objects == 9
    assert "(1 difficult)" in str(dataset.pack_summary)
    assert dataset.flags(2).tolist() == [1] + [0] * (len(items[2][3]) - 1)
    # VOC areas are the boxes' in pixels: 1-based inclusive [xmin, xmax] covers xmax - xmin + 1 pixels
    assert dataset.areas(2).tolist() == [w * h for *_, w, h in items[2][3]]
    # in a batch the difficult object comes after the ordinary ones
    batch = next(iter(dataset.loader(5, 32, train=False)))
    n = len(items[2][3])
    assert batch.flags.asnumpy()[2, :n].tolist() == [0] * (n - 1) + [1]
    np.testing.assert_allclose(batch.label.asnumpy()[2, n - 1], dataset.objects(2)[0], atol=1e-6)
    # a malformed mark is an error naming the file and the object
    xml.write_text(text[:first] + "<difficult>yes</difficult>" + text[first + len("<difficult>0</difficult>"):])
    with pytest.raises(DataError, match=r"img2\.xml: object 0 .*<difficult> must be 0 or 1; got 'yes'"):
        pack_voc(images, annotations, tmp_path / "bad", progress=False)


def test_coco_image_without_annotations_has_no_objects(tmp_path):
    items, json_path, images, data = make_coco(tmp_path)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 101]
    json_path.write_text(json.dumps(data))
    dataset = pack_coco(json_path, images, tmp_path / "coco", progress=False)
    assert len(dataset) == 5 and len(dataset.objects(1)) == 0
    label = next(iter(dataset.loader(5, 32, train=False))).label.asnumpy()
    assert np.all(label[1] == -1)


# ---------------------------------------------------------------- invalid annotations


def _no_output(folder: Path, prefix="bad"):
    return not [p for p in folder.iterdir() if p.name.startswith(prefix) or p.name.startswith(f".{prefix}")]


def _empty_second(text: str) -> str:
    """Make object 1's box empty: xmax = xmin."""
    start = text.index("<object>", text.index("<object>") + 1)
    xmin = text[text.index("<xmin>", start) + 6 : text.index("</xmin>", start)]
    end = text.index("</xmax>", start)
    return text[: text.index("<xmax>", start) + 6] + xmin + text[end:]


VOC_BREAKAGES = {
    "outside": (
        lambda a, i: a / "img2.xml",
        lambda t: t.replace("<xmax>", "<xmax>1", 1),
        r"img2\.xml: object 0 \('\w+'\): box .* outside the 120x90 image",
    ),
    "empty": (lambda a, i: a / "img1.xml", _empty_second, r"img1\.xml: object 1 \('\w+'\): empty box"),
    "unknown": (
        lambda a, i: a / "img4.xml",
        lambda t: t.replace("<name>dog</name>", "<name>wolf</name>"),
        r"img4\.xml: object \d \('wolf'\): unknown class 'wolf'",
    ),
    "bad_xml": (lambda a, i: a / "img0.xml", lambda t: t[:-5], r"img0\.xml: not valid XML"),
    "size": (
        lambda a, i: a / "img0.xml",
        lambda t: t.replace("<width>80</width>", "<width>81</width>"),
        r"img0\.xml: the annotation gives the image size 81x60 but .*img0\.jpg is 80x60",
    ),
}


@pytest.mark.parametrize("breakage", sorted(VOC_BREAKAGES))
def test_voc_invalid_annotation_names_file_and_object(tmp_path, breakage):
    items, images, annotations = make_voc(tmp_path)
    file_of, edit, message = VOC_BREAKAGES[breakage]
    path = file_of(annotations, items)
    path.write_text(edit(path.read_text()))
    classes = CLASSES if breakage == "unknown" else None
    with pytest.raises(DataError, match=message):
        pack_voc(images, annotations, tmp_path / "bad", classes=classes, progress=False)
    assert _no_output(tmp_path)
    dataset = pack_voc(images, annotations, tmp_path / "bad", classes=classes, skip_invalid=True, progress=False)
    summary = dataset.pack_summary
    assert summary.images == 4 and len(summary.skipped) == 1
    assert summary.skipped[0][0].endswith(path.name) and "skipped 1 invalid items" in str(summary)
    assert len(dataset) == 4


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing", r"img3\.xml: image .*img3\.jpg does not exist"),
        ("undecodable", r"img3\.xml: image .*img3\.png cannot be decoded"),
    ],
)
def test_voc_missing_or_undecodable_image(tmp_path, breakage, message):
    items, images, annotations = make_voc(tmp_path)
    (images / "img3.png").unlink() if breakage == "missing" else (images / "img3.png").write_bytes(b"\x89PNG broken")
    if breakage == "missing":  # <filename> points at a file that is not there and no img3.* exists
        (annotations / "img3.xml").write_text((annotations / "img3.xml").read_text().replace("img3.png", "img3.jpg"))
    with pytest.raises(DataError, match=message):
        pack_voc(images, annotations, tmp_path / "bad", progress=False)
    assert _no_output(tmp_path)
    summary = pack_voc(images, annotations, tmp_path / "bad", skip_invalid=True, progress=False).pack_summary
    assert summary.images == 4 and summary.objects == 8 and "img3" in summary.skipped[0][0]


def test_voc_without_size_checks_boxes_against_the_image(tmp_path):
    items, images, annotations = make_voc(tmp_path)  # img3.xml has no <size>
    text = (annotations / "img3.xml").read_text()
    (annotations / "img3.xml").write_text(text.replace("<xmax>", "<xmax>9", 1))
    with pytest.raises(DataError, match=r"img3\.xml: object 0 \('\w+'\): box lies outside the 50x50 image"):
        pack_voc(images, annotations, tmp_path / "bad", progress=False)


def _coco_breakages():
    def outside(data):
        data["annotations"][2]["bbox"][0] = 500
        return r"annotation 2 \(id 2\) of image 'img1\.png': box .* outside the 64x96 image"

    def empty(data):
        data["annotations"][3]["bbox"][3] = 0
        return r"annotation 3 \(id 3\) of image 'img2\.jpg': empty box"

    def unknown(data):
        data["annotations"][4]["category_id"] = 42
        return r"annotation 4 \(id 4\) of image 'img2\.jpg': unknown category_id 42"

    def no_image(data):
        data["annotations"][0]["image_id"] = 5
        return r"annotation 0: no image with image_id 5"

    return {f.__name__: f for f in (outside, empty, unknown, no_image)}


def test_a_coco_file_nested_too_deep_is_named(tmp_path):
    _, json_path, images, _ = make_coco(tmp_path)
    json_path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DataError, match=r"instances\.json: not valid JSON.*nests"):
        pack_coco(json_path, images, tmp_path / "deep", progress=False)
    assert _no_output(tmp_path)


@pytest.mark.parametrize("breakage", sorted(_coco_breakages()))
def test_coco_invalid_annotation_names_file_and_index(tmp_path, breakage):
    items, json_path, images, data = make_coco(tmp_path)
    message = _coco_breakages()[breakage](data)
    json_path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"instances\.json: " + message):
        pack_coco(json_path, images, tmp_path / "bad", progress=False)
    assert _no_output(tmp_path)
    dataset = pack_coco(json_path, images, tmp_path / "bad", skip_invalid=True, progress=False)
    assert len(dataset.pack_summary.skipped) == 1
    assert dataset.pack_summary.images == (5 if breakage == "no_image" else 4)


@pytest.mark.parametrize("breakage", ["missing", "undecodable"])
def test_coco_missing_or_undecodable_image(tmp_path, breakage):
    items, json_path, images, _ = make_coco(tmp_path)
    if breakage == "missing":
        (images / "img4.jpg").unlink()
        message = r"image 'img4\.jpg': image .*img4\.jpg does not exist"
    else:
        (images / "img4.jpg").write_bytes((images / "img4.jpg").read_bytes()[:40])
        message = r"image 'img4\.jpg': image .*img4\.jpg cannot be decoded"
    with pytest.raises(DataError, match=message):
        pack_coco(json_path, images, tmp_path / "bad", progress=False)
    assert _no_output(tmp_path)
    assert pack_coco(json_path, images, tmp_path / "bad", skip_invalid=True, progress=False).pack_summary.images == 4


def test_nothing_valid_is_an_error(tmp_path):
    items, images, annotations = make_voc(tmp_path)
    for path in images.iterdir():
        path.write_bytes(b"junk")
    with pytest.raises(DataError, match="no valid images"):
        pack_voc(images, annotations, tmp_path / "bad", skip_invalid=True, progress=False)
    assert _no_output(tmp_path)


def test_failed_pack_keeps_a_previous_output(tmp_path):
    items, images, annotations = make_voc(tmp_path)
    good = pack_voc(images, annotations, tmp_path / "bad", progress=False)
    before = good.rec_path.read_bytes()
    (images / "img0.jpg").unlink()
    with pytest.raises(DataError):
        pack_voc(images, annotations, tmp_path / "bad", progress=False)
    assert good.rec_path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_pack_warns_when_class_names_differ_only_in_case(tmp_path, capsys) -> None:
    from detkit.cli import main

    _, images, annotations = make_voc(tmp_path)
    xml = annotations / "img0.xml"
    xml.write_text(xml.read_text().replace("<name>cat</name>", "<name>Cat</name>", 1))
    assert main(["data", "pack", "--format", "voc", "--images", str(images), "--annotations", str(annotations),
                 "--out", str(tmp_path / "out" / "train")]) == 0
    err = capsys.readouterr().err
    assert "detkit: warning:" in err and "'Cat' and 'cat', which differ only in case" in err
    # Chosen classes: nothing to warn about.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pack_voc(images, annotations, tmp_path / "chosen" / "train", classes=["Cat", "bird", "cat", "dog"],
                 progress=False)


def test_the_index_given_for_the_records_asks_for_the_rec_file(tmp_path, capsys) -> None:
    from detkit.cli import main

    (tmp_path / "val.rec").write_bytes(b"")
    (tmp_path / "val.idx").write_text("0\t0\n")
    with pytest.raises(DataError, match=r"val.idx is the index of a RecordIO file, not the images: pass the .rec "
                                        r"file \(.*val.rec\)"):
        DetectionDataset(tmp_path / "val.idx", classes=["a"])
    saved = tmp_path / "model"
    import detkit

    detkit.SSDDetector(classes=["a"], data_shape=64).save(saved)
    assert main(["evaluate", str(saved), str(tmp_path / "val.idx")]) == 2
    assert "pass the .rec file" in capsys.readouterr().err
