"""DetectionMetric against pycocotools itself, number by number, on seeded random scenarios.

pycocotools is the oracle where it is installed (the ``test`` extra installs it). The
scenarios have several classes, empty images, images without detections, duplicates,
score ties, objects at the size-range borders (areas 32² and 96² exactly), COCO-style
annotation areas that differ from the box areas, crowd regions and difficult objects.

How the scenarios reach pycocotools:

- boxes are whole pixels, so that both sides compute the same floats (no rounding
  differences at IoU or area borders); ``image_size`` is (1, 1) since the boxes are in
  pixels (a second run with boxes normalised by power-of-two image sizes must agree);
- a crowd region is ``iscrowd=1``;
- a difficult object is ignored ground truth that any number of detections may match,
  with the ordinary IoU: ``iscrowd=1`` for pycocotools' matching loop, while its IoU is
  computed as for ``iscrowd=0`` (a ``computeIoU`` override; pycocotools has no other way
  to mark ground truth ignored, since ``_prepare`` overwrites ``ignore`` with ``iscrowd``);
- each ground-truth object carries its ``area`` (the annotation's, or the box's).
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from detkit import DetectionMetric

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

COCO_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


class _DifficultAwareEval(COCOeval):
    """COCOeval whose IoU treats only true crowd regions as crowd (difficult ones: ordinary IoU)."""

    def computeIoU(self, imgId, catId):  # noqa: N802, N803 (pycocotools' names)
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return []
        inds = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in inds][: self.params.maxDets[-1]]
        return mask_utils.iou([d["bbox"] for d in dt], [g["bbox"] for g in gt], [g["crowd_region"] for g in gt])


def scenario(seed, num_images=16, num_classes=3, sizes=None):
    """Random images in whole pixels: labels (B, M, 5), detections (B, K, 6), flags, areas (nan: the box's)."""
    rng = np.random.default_rng(seed)
    m, k = 8, 40
    labels = np.full((num_images, m, 5), -1.0)
    dets = np.full((num_images, k, 6), -1.0)
    difficult = np.zeros((num_images, m), bool)
    crowd = np.zeros((num_images, m), bool)
    areas = np.full((num_images, m), np.nan)
    image_size = np.zeros((num_images, 2))
    for i in range(num_images):
        width, height = (sizes[i] if sizes is not None else rng.integers(64, 320, 2))
        image_size[i] = width, height
        n = 0 if i % 5 == 4 else rng.integers(1, m + 1)  # every fifth image has no objects
        for j in range(n):
            if rng.random() < 0.15:  # exactly at a size border: 32 x 32 or 96 x 96 (or 48 x 192)
                w, h = [(32, 32), (96, 96), (48, 192), (16, 64)][rng.integers(0, 4)]
                w, h = min(w, width), min(h, height)
            else:
                w = rng.integers(2, width // 2 + 2)
                h = rng.integers(2, height // 2 + 2)
            x0, y0 = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            labels[i, j] = [rng.integers(0, num_classes), x0, y0, x0 + w, y0 + h]
            kind = rng.random()
            crowd[i, j] = kind < 0.12
            difficult[i, j] = 0.12 <= kind < 0.24
            if rng.random() < 0.5:  # a COCO-style annotation area (a mask's), else the box's
                areas[i, j] = float(w * h) * rng.uniform(0.3, 1.0)
        rows = []
        for g in labels[i, :n]:
            box_w, box_h = g[3] - g[1], g[4] - g[2]
            for _ in range(rng.integers(0, 4)):  # hits, duplicates, near misses
                jitter = rng.integers(-3, 4, 4) * np.maximum(1, np.array([box_w, box_h, box_w, box_h]) // 10)
                box = np.clip(g[1:] + jitter, 0, [width, height, width, height])
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue
                cls = g[0] if rng.random() < 0.9 else rng.integers(0, num_classes)
                rows.append([cls, 0, *box])
            if rng.random() < 0.5:  # a small box inside the object (on a crowd region: ignored)
                x0 = g[1] + rng.integers(0, max(1, box_w // 2))
                y0 = g[2] + rng.integers(0, max(1, box_h // 2))
                rows.append([g[0], 0, x0, y0, min(g[3], x0 + max(1, box_w // 3)), min(g[4], y0 + max(1, box_h // 3))])
        for _ in range(rng.integers(0, 6)):  # background false positives of every size
            w, h = rng.integers(2, width // 2 + 2), rng.integers(2, height // 2 + 2)
            x0, y0 = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            rows.append([rng.integers(0, num_classes), 0, x0, y0, x0 + w, y0 + h])
        if i % 7 == 6:
            rows = []  # an image without detections
        rows = np.array(rows[:k], dtype=np.float64).reshape(-1, 6)
        rows[:, 1] = np.round(rng.random(len(rows)), 1)  # one decimal: many ties
        dets[i, : len(rows)] = rows[rng.permutation(len(rows))]
    return dets, labels, difficult, crowd, areas, image_size


def pycocotools_eval(dets, labels, difficult, crowd, areas, num_classes, max_dets):
    """Run pycocotools on the scenario; return its COCOeval (evaluated, accumulated, summarized)."""
    images, annotations, results = [], [], []
    for i in range(len(labels)):
        images.append({"id": i + 1, "width": 1000, "height": 1000})
        for j, (cls, x0, y0, x1, y1) in enumerate(labels[i]):
            if cls < 0:
                continue
            area = (x1 - x0) * (y1 - y0) if math.isnan(areas[i, j]) else areas[i, j]
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area,
                "iscrowd": int(crowd[i, j] or difficult[i, j]), "crowd_region": int(crowd[i, j]),
            })
        for cls, score, x0, y0, x1, y1 in dets[i]:
            if cls >= 0:
                results.append({"image_id": i + 1, "category_id": int(cls) + 1, "score": score,
                                "bbox": [x0, y0, x1 - x0, y1 - y0]})
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations,
                                "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
        ground_truth.createIndex()
        evaluation = _DifficultAwareEval(ground_truth, ground_truth.loadRes(results), "bbox")
        # detkit's mar_1 and mar_10 use at most 1 and 10 of its coco_max_detections
        evaluation.params.maxDets = [1, min(10, max_dets), max_dets]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def as_nan(value):
    return math.nan if value == -1 else float(value)


def finite_mean(values):
    values = values[values > -1]
    return float(values.mean()) if values.size else math.nan


def summary_from_arrays(evaluation):
    """pycocotools' ``summarize`` by the index of maxDets (its own hard-codes 100 for the first number)."""
    precision, recall = evaluation.eval["precision"], evaluation.eval["recall"]  # (T, R, K, A, M), (T, K, A, M)
    thresholds = evaluation.params.iouThrs
    t50, t75 = np.flatnonzero(thresholds == 0.5), np.flatnonzero(thresholds == 0.75)
    return [
        finite_mean(precision[..., 0, 2]), finite_mean(precision[t50][..., 0, 2]),
        finite_mean(precision[t75][..., 0, 2]), *(finite_mean(precision[..., a, 2]) for a in (1, 2, 3)),
        *(finite_mean(recall[..., 0, m]) for m in (0, 1, 2)), *(finite_mean(recall[..., a, 2]) for a in (1, 2, 3)),
    ]


@pytest.mark.parametrize("seed", range(8))
def test_coco_summary_equals_pycocotools(seed):
    num_classes = 3
    max_dets = [100, 5][seed % 2]
    dets, labels, difficult, crowd, areas, _ = scenario(seed, num_classes=num_classes)
    assert crowd.any() and difficult.any() and (labels[..., 0] == -1).all(axis=1).any()
    metric = DetectionMetric(num_classes, coco_max_detections=max_dets)
    half = len(labels) // 2  # in two batches: the result must not depend on it
    for part in (slice(0, half), slice(half, None)):
        metric.update(dets[part], labels[part], difficult[part], crowd=crowd[part],
                      image_size=np.ones((len(labels[part]), 2)), areas=areas[part])
    result = metric.compute()
    evaluation = pycocotools_eval(dets, labels, difficult, crowd, areas, num_classes, max_dets)

    expected = summary_from_arrays(evaluation)
    if max_dets == 100:
        np.testing.assert_allclose(expected, [as_nan(value) for value in evaluation.stats], rtol=0, atol=1e-15)
    assert list(result["coco"]) == COCO_KEYS
    np.testing.assert_allclose([result["coco"][key] for key in COCO_KEYS], expected, rtol=0, atol=1e-12)
    assert not any(math.isnan(value) for value in expected[:3])  # the scenario is not vacuous
    # Per class: AP and AR@100 over all sizes, from pycocotools' accumulated arrays.
    precision = evaluation.eval["precision"]  # (T, R, K, A, M)
    recall = evaluation.eval["recall"]  # (T, K, A, M)
    for c in range(num_classes):
        per_class = result["per_class"][str(c)]
        assert per_class["coco"]["map"] == pytest.approx(finite_mean(precision[:, :, c, 0, 2]), abs=1e-12, nan_ok=True)
        assert per_class["ap_50_95"] == pytest.approx(finite_mean(precision[:, :, c, 0, 2]), abs=1e-12, nan_ok=True)
        for a, size in enumerate(["all", "small", "medium", "large"]):
            key = "mar_100" if size == "all" else f"mar_{size}"
            assert per_class["coco"][key] == pytest.approx(finite_mean(recall[:, c, a, 2]), abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("seed", range(3))
def test_normalised_boxes_with_image_sizes_give_the_same_numbers(seed):
    # Boxes normalised by power-of-two image sizes (exact in binary) and image_size given:
    # the areas in pixels, hence every number, are those of the pixel boxes.
    num_images = 10
    sizes = np.random.default_rng(100 + seed).choice([64, 128, 256, 512], size=(num_images, 2))
    dets, labels, difficult, crowd, areas, image_size = scenario(seed, num_images=num_images, sizes=sizes)
    pixel = DetectionMetric(3)
    pixel.update(dets, labels, difficult, crowd=crowd, image_size=np.ones((num_images, 2)), areas=areas)
    scale = np.concatenate([image_size, image_size], axis=1)[:, None, :]  # (B, 1, 4)
    normalised_dets, normalised_labels = dets.copy(), labels.copy()
    normalised_dets[..., 2:] = np.where(dets[..., :1] >= 0, dets[..., 2:] / scale, -1)
    normalised_labels[..., 1:] = np.where(labels[..., :1] >= 0, labels[..., 1:] / scale, -1)
    normalised = DetectionMetric(3)
    normalised.update(normalised_dets, normalised_labels, difficult, crowd=crowd, image_size=image_size, areas=areas)
    a, b = pixel.compute(), normalised.compute()
    np.testing.assert_array_equal([a["coco"][key] for key in COCO_KEYS], [b["coco"][key] for key in COCO_KEYS])
    assert a["map_50"] == b["map_50"] and a["map_50_voc07"] == b["map_50_voc07"]
    evaluation = pycocotools_eval(dets, labels, difficult, crowd, areas, 3, 100)
    np.testing.assert_allclose([b["coco"][key] for key in COCO_KEYS], [as_nan(v) for v in evaluation.stats],
                               rtol=0, atol=1e-12)
