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
