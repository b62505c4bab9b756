"""Difficult objects and crowd regions from packing to evaluation and training (issue 14).

VOC ``<difficult>`` and COCO ``iscrowd`` survive ``detkit data pack``; ``data show`` marks
them; ``evaluate`` ignores detections on them; training does not teach "background" on them.
"""

from __future__ import annotations

import json
import math

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

import detkit
from detkit import SSDDetector
from detkit.cli import main
from detkit.data import DetectionDataset

SIZE = 64
# Per image, in pixels of a 96 x 80 image: (category id, [x, y, w, h], iscrowd)
ANNOTATIONS = [
    [(1, [4, 6, 30, 26], 0), (1, [50, 30, 40, 44], 1)],
    [(1, [10, 10, 36, 30], 0), (2, [56, 8, 32, 32], 0)],
    [(2, [20, 40, 48, 36], 0)],
]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A small COCO set with a crowd region, packed by the command line."""
    root = tmp_path_factory.mktemp("coco")
    (root / "images").mkdir()
    images, annotations = [], []
    for i, objects in enumerate(ANNOTATIONS):
        pixels = np.full((80, 96, 3), 120, np.uint8)
        for category, (x, y, w, h), _ in objects:
            pixels[y : y + h, x : x + w] = (220, 40, 40) if category == 1 else (40, 40, 220)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 96, "height": 80})
        for category, box, crowd in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category,
                                "bbox": box, "iscrowd": crowd, "area": box[2] * box[3] * 0.75})
    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                      "categories": categories}))
    assert main(["data", "pack", "--format", "coco", "--annotations", str(root / "instances.json"),
                 "--images", str(root / "images"), "--out", str(root / "val"), "--quiet"]) == 0
    return root


def test_pack_keeps_crowd_regions_and_show_marks_them(packed):
    dataset = DetectionDataset(packed / "val.rec", classes=["red", "blue"])
    assert dataset.flags(0).tolist() == [0, 2]
    np.testing.assert_allclose(dataset.areas(0), [30 * 26 * 0.75, 40 * 44 * 0.75], rtol=1e-6)
    # data show: the crowd region is outlined dashed (gaps along its edge), the object solid
    detkit.data.show(packed / "val.rec", packed / "grid.png", num=1, tile_size=96)
    with Image.open(packed / "grid.png") as image:
        pixels = np.asarray(image.convert("RGB"))[4:84, 4:100]  # the one tile: the image at its own size
    red = np.all(pixels == (255, 40, 40), axis=2)  # the palette colour of class 0
    solid_top = red[6, 6:30]  # the ordinary object's top edge
    dashed_left = red[34:70, 46:54].any(axis=1)  # the crowd region's left edge (x = 50), below its label
    assert solid_top.all()
    assert 0.2 < dashed_left.mean() < 0.8


def test_extract_writes_the_flags_into_its_sidecar(packed, tmp_path):
    detkit.data.extract(packed / "val.rec", tmp_path / "out", classes=["red", "blue"])
    sidecar = json.loads((tmp_path / "out" / "val.boxes.json").read_text())
    first = sidecar["images"][0]["objects"]
    assert [o.get("crowd", False) for o in first] == [False, True]
    assert not any("difficult" in o for image in sidecar["images"] for o in image["objects"])
    assert first[1]["box"] == [50.0, 30.0, 90.0, 74.0]  # the crowd region, in pixels of the original image


def _perfect(dataset: DetectionDataset, extra):
    """A detect() that answers each image of ``dataset`` with its objects, plus ``extra`` rows of image 0."""
    truth = {}
    for index, batch in enumerate(dataset.loader(1, SIZE, train=False)):
        truth[batch.data.asnumpy().tobytes()] = index

    def detect(images):
        rows = np.full((images.shape[0], 6, 6), -1.0, np.float32)
        for i, image in enumerate(images.asnumpy()):
            index = truth[image[None].tobytes()]
            objects = dataset.objects(index)[dataset.flags(index) == 0]
            found = [[cls, 0.9, *box] for cls, *box in objects.tolist()]
            if index == 0:
                found += extra
            rows[i, : len(found)] = found
        return mx.nd.array(rows)

    return detect


def test_evaluate_ignores_detections_on_crowd_regions(packed, monkeypatch):
    dataset = DetectionDataset(packed / "val.rec", classes=["red", "blue"])
    detector = SSDDetector(classes=["red", "blue"], data_shape=SIZE, ctx=mx.cpu())
    # Two detections inside the crowd region (50..90 x 30..74 of 96 x 80), at higher scores than the truth.
    inside = [[0, 0.95, 52 / 96, 32 / 80, 70 / 96, 50 / 80], [0, 0.97, 60 / 96, 40 / 80, 88 / 96, 72 / 80]]
    monkeypatch.setattr(detector, "detect", _perfect(dataset, inside))
    scores = detkit.evaluate(detector, dataset, batch_size=2)
    assert scores["map_50"] == 1.0 and scores["map_50_95"] == 1.0 and scores["coco"]["map_50"] == 1.0
    assert scores["per_class"]["red"]["num_crowd"] == 1 and scores["per_class"]["red"]["num_ground_truth"] == 2
    # every object is medium by its annotation area (32² <= 0.75 w h <= 96²) except the 30 x 26 one: small
    assert scores["map_small"] == 1.0 and scores["map_medium"] == 1.0 and math.isnan(scores["map_large"])
    # The same detections scored without the flags: the crowd region is an object, found by the 0.97
    # detection (IoU 0.74); the 0.95 one is a false positive ranked above two true positives.
    metric = detkit.DetectionMetric(2, ["red", "blue"])
    for batch in dataset.loader(3, SIZE, train=False):
        metric.update(detector.detect(batch.data).asnumpy(), batch.label.asnumpy())
    assert metric.compute()["map_50"] < 1.0


def test_evaluate_command_prints_the_summary_table_json_and_plot(packed, capsys):
    SSDDetector(classes=["red", "blue"], data_shape=SIZE, ctx=mx.cpu()).save(packed / "model")
    capsys.readouterr()
    assert main(["evaluate", str(packed / "model"), str(packed / "val.rec"), "--plot", str(packed / "pr.png")]) == 0
    out = capsys.readouterr().out
    assert "AP   @[ IoU=0.50:0.95 | area= small | maxDets=100 ]" in out
    assert "AR   @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]" in out
    assert "AP@0.5" in out and "crowd" in out and f"precision-recall curves: {packed / 'pr.png'}" in out
    with Image.open(packed / "pr.png") as image:
        assert image.size[0] > 300
    assert main(["evaluate", str(packed / "model"), str(packed / "val.rec"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)  # strict JSON: nan is null
    keys = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
            "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
    assert list(scores["coco"]) == keys
    assert scores["map_large"] is None and scores["coco"]["map_large"] is None
    assert {"map_50", "map_50_voc07", "map_50_95", "map_per_iou", "per_class", "num_images"} <= set(scores)
    assert scores["per_class"]["red"]["num_crowd"] == 1


def test_training_ignores_background_anchors_on_difficult_and_crowd_objects():
    from detkit._engine._step import TrainingGraph

    detector = SSDDetector(classes=["a", "b"], data_shape=SIZE, ctx=mx.cpu())
    detector._materialize()
    graph = TrainingGraph(detector, ignore_flagged=True)
    images = mx.nd.random.uniform(-50, 50, (2, 3, SIZE, SIZE))
    labels = mx.nd.array([
        [[0, 0.05, 0.05, 0.3, 0.3], [1, 0.05, 0.55, 0.45, 0.95], [0, 0.4, 0.3, 1.0, 1.0]],  # ordinary, difficult, crowd
        [[1, 0.5, 0.5, 0.9, 0.9], [-1, -1, -1, -1, -1], [-1, -1, -1, -1, -1]],
    ])
    flags = mx.nd.array([[0, 1, 2], [0, -1, -1]])
    anchors, class_preds, _ = detector.network(images)
    # The assigner sees the ordinary objects only.
    ordinary = labels.copy()
    ordinary[0, 1:] = -1
    _, _, expected_targets = detector.target_assigner(anchors, ordinary, class_preds)
    targets = graph._ignore_near_flagged(mx.nd, anchors, labels, flags, expected_targets).asnumpy()
    expected = expected_targets.asnumpy()

    # numpy: IoU with the difficult object, intersection over the anchor's area with the crowd region
    a = anchors.asnumpy()[0]  # (N, 4)

    def overlaps(box):
        w = np.clip(np.minimum(a[:, 2], box[2]) - np.maximum(a[:, 0], box[0]), 0, None)
        h = np.clip(np.minimum(a[:, 3], box[3]) - np.maximum(a[:, 1], box[1]), 0, None)
        inter = w * h
        area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter), inter / area

    iou_difficult, _ = overlaps([0.05, 0.55, 0.45, 0.95])
    _, ioa_crowd = overlaps([0.4, 0.3, 1.0, 1.0])
    near = (iou_difficult >= 0.5) | (ioa_crowd >= 0.5)
    background = expected[0] == 0
    assert (near & background).sum() > 10
    np.testing.assert_array_equal(targets[0], np.where(near & background, -1, expected[0]))
    np.testing.assert_array_equal(targets[1], expected[1])  # no flagged objects: unchanged
    assert (targets[0][expected[0] > 0] == expected[0][expected[0] > 0]).all()  # positives stay

    # The whole step, hybridized: the ignored anchors leave the counted ones (stats[-3]).
    graph.hybridize()
    _, stats = graph(images, labels, flags)
    assert stats.asnumpy()[-3] == (targets >= 0).sum()
    plain = TrainingGraph(detector)
    plain.hybridize()
    _, stats = plain(images, ordinary)
    assert stats.asnumpy()[-3] == (expected >= 0).sum() > (targets >= 0).sum()


def test_fit_takes_the_flags_of_data_with_crowd_regions(packed, monkeypatch):
    from detkit._engine import _fit

    graphs = []

    class Recorded(_fit.TrainingGraph):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            graphs.append(self)

    monkeypatch.setattr(_fit, "TrainingGraph", Recorded)
    dataset = DetectionDataset(packed / "val.rec", classes=["red", "blue"])
    detector = SSDDetector(classes=["red", "blue"], data_shape=SIZE, ctx=mx.cpu())
    history = detkit.fit(detector, dataset, epochs=1, batch_size=3, seed=0, quiet=True)
    assert graphs[-1].ignore_flagged and math.isfinite(history.last["loss"])


def test_packed_coco_evaluates_as_pycocotools_on_the_original_json(tmp_path, monkeypatch):
    # The criterion: pack a COCO file (crowd regions, mask areas, images of several sizes),
    # evaluate detections through detkit.evaluate, and compare with pycocotools run on the original
    # JSON and the same detections in pixels. Boxes pass through float32 normalisation, hence 1e-6.
    pytest.importorskip("pycocotools")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(5)
    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for i in range(14):
        width, height = int(rng.integers(100, 400)), int(rng.integers(100, 300))
        Image.new("RGB", (width, height), (20 * i, 90, 90)).save(tmp_path / "images" / f"{i}.jpg")  # each its own
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": width, "height": height})
        for _ in range(0 if i == 3 else int(rng.integers(1, 7))):
            w, h = float(rng.uniform(4, width * 0.6)), float(rng.uniform(4, height * 0.6))
            x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 4)),
                                "bbox": [x, y, w, h], "area": round(w * h * float(rng.uniform(0.4, 0.9)), 2),
                                "iscrowd": int(rng.random() < 0.12)})
    categories = [{"id": c, "name": name} for c, name in ((1, "a"), (2, "b"), (3, "c"))]
    json_path = tmp_path / "instances.json"
    json_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    dataset = detkit.data.pack_coco(json_path, tmp_path / "images", tmp_path / "packed", progress=False)

    # Detections: jittered copies of the annotations (on crowd regions too), and false positives.
    results, per_image = [], {}
    for i, image in enumerate(images):
        width, height = image["width"], image["height"]
        rows = []
        for ann in annotations:
            if ann["image_id"] != image["id"]:
                continue
            x, y, w, h = ann["bbox"]
            for _ in range(int(rng.integers(0, 3))):
                dx, dy = rng.normal(0, 0.08 * w), rng.normal(0, 0.08 * h)
                x0, y0 = np.clip([x + dx, y + dy], 0, [width - 2, height - 2])
                x1 = float(np.clip(x0 + w * rng.uniform(0.7, 1.2), x0 + 1, width))
                y1 = float(np.clip(y0 + h * rng.uniform(0.7, 1.2), y0 + 1, height))
                rows.append([ann["category_id"] - 1, float(rng.random()), x0 / width, y0 / height, x1 / width, y1 / height])
        for _ in range(int(rng.integers(0, 4))):
            x0, y0 = rng.uniform(0, 0.7, 2)
            rows.append([int(rng.integers(0, 3)), float(rng.random()), x0, y0, x0 + 0.2, y0 + 0.25])
        rows = np.array(rows, np.float32).reshape(-1, 6)  # what a post-processor returns
        per_image[i] = rows
        for cls, score, x0, y0, x1, y1 in rows.astype(np.float64):
            results.append({"image_id": i + 1, "category_id": int(cls) + 1, "score": score,
                            "bbox": [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]})

    truth = {}
    for index, batch in enumerate(dataset.loader(1, SIZE, train=False)):
        truth[batch.data.asnumpy().tobytes()] = index

    def detect(batch_images):
        out = np.full((batch_images.shape[0], 40, 6), -1.0, np.float32)
        for j, image in enumerate(batch_images.asnumpy()):
            rows = per_image[truth[image[None].tobytes()]]
            out[j, : len(rows)] = rows
        return mx.nd.array(out)

    detector = SSDDetector(classes=["a", "b", "c"], data_shape=SIZE, ctx=mx.cpu())
    monkeypatch.setattr(detector, "detect", detect)
    scores = detkit.evaluate(detector, dataset, batch_size=4)

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(json_path))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    keys = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
            "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
    expected = [math.nan if value == -1 else value for value in evaluation.stats]
    assert sum(a["iscrowd"] for a in annotations) >= 2 and not any(math.isnan(v) for v in expected)
    np.testing.assert_allclose([scores["coco"][key] for key in keys], expected, rtol=0, atol=1e-6)


def test_packed_voc_with_difficult_objects_evaluates_as_the_devkit(tmp_path, monkeypatch):
    # Pack VOC annotations with difficult objects; evaluate detections through detkit.evaluate and
    # compare with the port of the devkit's VOCevaldet.m (tests/test_evaluation_metrics.py) run on
    # the original pixel boxes: [xmin - 1, ymin - 1, xmax, ymax] of the 1-based inclusive indices.
    from test_evaluation_metrics import reference_voc

    rng = np.random.default_rng(7)
    (tmp_path / "images").mkdir()
    (tmp_path / "ann").mkdir()
    names = ["cat", "dog"]
    num_images, most = 10, 6
    labels = np.full((num_images, most, 5), -1.0)
    difficult = np.zeros((num_images, most), bool)
    sizes = []
    for i in range(num_images):
        width, height = int(rng.integers(120, 300)), int(rng.integers(100, 260))
        sizes.append((width, height))
        Image.new("RGB", (width, height), (20 * i, 60, 60)).save(tmp_path / "images" / f"{i}.jpg")
        objects = ""
        for j in range(int(rng.integers(1, most + 1))):
            w, h = int(rng.integers(8, width // 2)), int(rng.integers(8, height // 2))
            x, y = int(rng.integers(1, width - w)), int(rng.integers(1, height - h))
            cls = int(rng.integers(0, 2))
            difficult[i, j] = rng.random() < 0.2
            labels[i, j] = [cls, x - 1, y - 1, x + w - 1, y + h - 1]
            objects += (f"<object><name>{names[cls]}</name><difficult>{int(difficult[i, j])}</difficult><bndbox>"
                        f"<xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + w - 1}</xmax><ymax>{y + h - 1}</ymax>"
                        "</bndbox></object>")
        (tmp_path / "ann" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"</size>{objects}</annotation>")
    dataset = detkit.data.pack_voc(tmp_path / "images", tmp_path / "ann", tmp_path / "voc", classes=names,
                                   progress=False)
    assert dataset.pack_summary.difficult == difficult.sum() > 0

    dets = np.full((num_images, 24, 6), -1.0)
    for i, (width, height) in enumerate(sizes):
        rows = []
        for cls, x0, y0, x1, y1 in labels[i][labels[i, :, 0] >= 0]:
            for _ in range(int(rng.integers(0, 3))):  # hits, duplicates, misses, on difficult objects too
                extent = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
                box = np.clip([x0, y0, x1, y1] + rng.normal(0, 0.1, 4) * extent, 0, [width, height, width, height])
                if box[2] > box[0] + 1 and box[3] > box[1] + 1:
                    rows.append([cls, np.round(rng.random(), 2), *(box / [width, height, width, height])])
        rows = np.array(rows, np.float32).reshape(-1, 6)
        dets[i, : len(rows)] = rows
    truth = {}
    for index, batch in enumerate(dataset.loader(1, SIZE, train=False)):
        truth[batch.data.asnumpy().tobytes()] = index

    def detect(batch_images):
        return mx.nd.array(np.stack([dets[truth[image[None].tobytes()]] for image in batch_images.asnumpy()]))

    detector = SSDDetector(classes=names, data_shape=SIZE, ctx=mx.cpu())
    monkeypatch.setattr(detector, "detect", detect)
    scores = detkit.evaluate(detector, dataset, batch_size=3)
    pixel_dets = dets.copy()
    scale = np.array([[w, h, w, h] for w, h in sizes], np.float64)[:, None, :]
    pixel_dets[..., 2:] = dets[..., 2:].astype(np.float32).astype(np.float64) * scale
    for c, name in enumerate(names):
        area, voc07 = reference_voc(pixel_dets, labels, difficult, c)
        assert scores["per_class"][name]["ap_50"] == pytest.approx(area, abs=1e-6)
        assert scores["per_class"][name]["ap_50_voc07"] == pytest.approx(voc07, abs=1e-6)
        assert scores["per_class"][name]["num_difficult"] == int((difficult & (labels[..., 0] == c)).sum())
