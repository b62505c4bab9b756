"""DetectionMetric: VOC and COCO-style mAP pinned against hand computations and reference loops.

Notation in the comments: a ranked list of detections of one class is written as
T (true positive) / F (false positive); ``ctp`` is the cumulative TP count, ``N``
the number of (non-difficult) ground-truth objects, recall = ctp / N,
precision = ctp / rank.

- area AP (VOC2010+) = sum over the TPs of (1 / N) x (max precision at that rank or later)
- 11-point AP (VOC2007) = mean over recall levels 0, .1, ..., 1 of that max precision
  at the first rank whose recall reaches the level (0 if never reached)
- COCO AP at one IoU threshold = the same with 101 levels 0, .01, ..., 1
"""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest

import detkit
from detkit._engine import _metric as _evaluation
from detkit import DetectionMetric
from detkit.errors import InputError

COCO_T = np.linspace(0.5, 0.95, 10)
COCO_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


def batch(dets_per_image, labels_per_image, pad_k=0, pad_m=0):
    """Pad per-image lists of rows into arrays (B, K, 6) and (B, M, 5), class_id -1 for padding."""
    b = len(labels_per_image)
    k = max([len(d) for d in dets_per_image] + [0]) + pad_k
    m = max([len(g) for g in labels_per_image] + [0]) + pad_m
    dets = np.zeros((b, k, 6))
    dets[..., 0] = -1
    labels = np.zeros((b, m, 5))
    labels[..., 0] = -1
    for i, rows in enumerate(dets_per_image):
        if rows:
            dets[i, : len(rows)] = rows
    for i, rows in enumerate(labels_per_image):
        if rows:
            labels[i, : len(rows)] = rows
    return dets, labels


def run(dets, labels, difficult=None, crowd=None, **kwargs):
    num_classes = kwargs.pop("num_classes", 1)
    metric = DetectionMetric(num_classes, **kwargs)
    metric.update(dets, labels, difficult, crowd=crowd)
    return metric.compute()


def ap(result, name="0"):
    return result["per_class"][name]


# Boxes used below: far apart, so that a detection on one overlaps no other.
G0, G1, G2, G3 = [0.0, 0.0, 0.2, 0.2], [0.3, 0.0, 0.5, 0.2], [0.6, 0.0, 0.8, 0.2], [0.0, 0.5, 0.2, 0.7]
NOWHERE = [0.8, 0.8, 0.9, 0.9]  # IoU 0 with all of G0..G3


# ------------------------------------------------------------------ hand cases


def test_perfect_detections_give_one():
    # Every object found exactly, one detection each: P = 1 at every recall -> all APs 1.
    labels = [[[0, *G0], [1, *G1]], [[1, *G2]]]
    dets = [[[1, 0.9, *G1], [0, 0.8, *G0]], [[1, 0.7, *G2]]]
    result = run(*batch(dets, labels, pad_k=2, pad_m=1), num_classes=2, class_names=["a", "b"])
    for key in ("map_50", "map_50_voc07", "map_50_95"):
        assert result[key] == 1.0
    b = dict(result["per_class"]["b"])
    coco = b.pop("coco")
    assert b == {
        "ap_50": 1.0,
        "ap_50_voc07": 1.0,
        "ap_50_95": 1.0,
        "num_ground_truth": 2,
        "num_difficult": 0,
        "num_crowd": 0,
        "num_detections": 2,
    }
    assert result["map_per_iou"] == {round(float(t), 10): 1.0 for t in COCO_T}
    assert result["num_images"] == 2
    # Without image sizes the object-size numbers are unknown (nan); the others are 1.
    for summary in (coco, result["coco"]):
        assert list(summary) == COCO_KEYS
        for key in COCO_KEYS:
            assert math.isnan(summary[key]) if key.endswith(("_small", "_medium", "_large")) else summary[key] == 1.0
    assert all(result[key] == result["coco"][key] or math.isnan(result[key]) for key in COCO_KEYS if key != "map_50")


def test_no_detections_give_zero():
    # Objects but no detection (all rows -1, or K = 0): recall never > 0 -> AP 0.
    labels = [[[0, *G0], [1, *G1]]]
    for pad_k in (0, 3):
        result = run(*batch([[]], labels, pad_k=pad_k), num_classes=2)
        assert result["map_50"] == result["map_50_voc07"] == result["map_50_95"] == 0.0
        assert ap(result, "1")["ap_50"] == 0.0 and ap(result, "1")["num_detections"] == 0


def test_class_without_ground_truth_is_nan_and_excluded_from_mean():
    # Class 0 found perfectly (AP 1); class 1 has one object and only a false positive (AP 0);
    # class 2 has no object anywhere, only a detection -> nan, left out: mean = (1 + 0) / 2.
    labels = [[[0, *G0], [1, *G1]]]
    dets = [[[0, 0.9, *G0], [1, 0.8, *NOWHERE], [2, 0.95, *G2]]]
    result = run(*batch(dets, labels), num_classes=3)
    assert math.isnan(ap(result, "2")["ap_50"]) and math.isnan(ap(result, "2")["ap_50_voc07"])
    assert math.isnan(ap(result, "2")["ap_50_95"])
    assert ap(result, "2")["num_ground_truth"] == 0 and ap(result, "2")["num_detections"] == 1
    assert ap(result, "1")["ap_50"] == 0.0
    assert result["map_50"] == result["map_50_voc07"] == result["map_50_95"] == 0.5


def test_no_ground_truth_at_all_gives_nan_without_warning():
    dets = [[[0, 0.9, *G0]], []]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run(*batch(dets, [[], []]), num_classes=2)
        empty = DetectionMetric(2).compute()
    for res in (result, empty):
        assert math.isnan(res["map_50"]) and math.isnan(res["map_50_voc07"]) and math.isnan(res["map_50_95"])
        assert all(math.isnan(v) for v in res["map_per_iou"].values())
    assert empty["num_images"] == 0 and ap(empty)["num_detections"] == 0


def test_ties_in_score_keep_arrival_order():
    # One object; two detections with the same score 0.8: a miss and a hit.
    # Miss first (row 0):  F T -> precision 0, 1/2 at recall 0, 1 -> area = 1 x 1/2 = 0.5,
    #   11-point: every level reached first at rank 2 (level 0 at rank 1, envelope 1/2) -> 0.5,
    #   COCO likewise 0.5 at every threshold.
    # Hit first (row 0):   T F -> precision 1 at recall 1 -> 1.0 everywhere.
    miss, hit = [0, 0.8, *NOWHERE], [0, 0.8, *G0]
    labels = [[[0, *G0]]]
    result = run(*batch([[miss, hit]], labels))
    assert (ap(result)["ap_50"], ap(result)["ap_50_voc07"], ap(result)["ap_50_95"]) == (0.5, 0.5, 0.5)
    result = run(*batch([[hit, miss]], labels))
    assert (ap(result)["ap_50"], ap(result)["ap_50_voc07"], ap(result)["ap_50_95"]) == (1.0, 1.0, 1.0)


def test_ties_across_images_keep_image_order():
    # Image 0 holds the miss, image 1 the hit, same score: F T -> 0.5 (as above); swapped -> 1.0.
    miss, hit = [0, 0.8, *NOWHERE], [0, 0.8, *G0]
    assert ap(run(*batch([[miss], [hit]], [[], [[0, *G0]]])))["ap_50"] == 0.5
    assert ap(run(*batch([[hit], [miss]], [[[0, *G0]], []])))["ap_50"] == 1.0


def test_duplicate_detection_is_false_positive_and_11_point_differs_from_area():
    # Two objects G0, G1. Detections: G0 (0.9), G0 again (0.8), G1 (0.7) -> T F T, N = 2.
    # ctp 1 1 2, precision 1, 1/2, 2/3, recall .5 .5 1; envelope 1, 2/3, 2/3.
    # area = .5 x 1 + .5 x 2/3 = 5/6.
    # 11-point: levels 0...5 reached at rank 1 -> 1 (6 levels); .6...1 at rank 3 -> 2/3 (5 levels)
    #   = (6 + 10/3) / 11 = 28/33.
    # COCO: levels 0..50 -> 1 (51 levels), 51..100 -> 2/3 (50 levels) = (51 + 100/3) / 101 = 253/303.
    labels = [[[0, *G0], [0, *G1]]]
    dets = [[[0, 0.9, *G0], [0, 0.8, *G0], [0, 0.7, *G1]]]
    r = ap(run(*batch(dets, labels)))
    assert r["ap_50"] == pytest.approx(5 / 6, abs=1e-12)
    assert r["ap_50_voc07"] == pytest.approx(28 / 33, abs=1e-12)
    assert r["ap_50_95"] == pytest.approx(253 / 303, abs=1e-12)


def test_known_precision_recall_sequence():
    # N = 4 (G0..G3), ranked T F T F F T (G3 missed).
    # ctp 1 1 2 2 2 3; precision 1, 1/2, 2/3, 1/2, 2/5, 1/2; recall .25 .25 .5 .5 .5 .75
    # envelope 1, 2/3, 2/3, 1/2, 1/2, 1/2.
    # area = .25 x 1 + .25 x 2/3 + .25 x 1/2 = 13/24 = 0.5417
    # 11-point: levels 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> 1/2; .8, .9, 1 -> 0
    #   = (3 + 2 + 1) / 11 = 6/11 = 0.5455
    # COCO 101: r = 0..25 -> 1 (26), 26..50 -> 2/3 (25), 51..75 -> 1/2 (25), 76..100 -> 0
    #   = (26 + 50/3 + 25/2) / 101 = 331/606 = 0.5462
    labels = [[[0, *G0], [0, *G1], [0, *G2], [0, *G3]]]
    far = [[0.85, 0.85, 0.9, 0.9], [0.8, 0.3, 0.9, 0.4], [0.5, 0.5, 0.6, 0.6]]
    dets = [[[0, 0.9, *G0], [0, 0.8, *far[0]], [0, 0.7, *G1], [0, 0.6, *far[1]], [0, 0.5, *far[2]], [0, 0.4, *G2]]]
    r = ap(run(*batch(dets, labels)))
    assert r["ap_50"] == pytest.approx(13 / 24, abs=1e-12)
    assert r["ap_50_voc07"] == pytest.approx(6 / 11, abs=1e-12)
    assert r["ap_50_95"] == pytest.approx(331 / 606, abs=1e-12)


def test_recall_levels_are_compared_exactly():
    # N = 10, ranked T T T F F F T: recall reaches exactly 3/10 at rank 3 (precision 1), then
    # 4/10 at rank 7 (precision 4/7). 11-point: levels 0, .1, .2, .3 -> 1; .4 -> 4/7; rest 0
    #   = (4 + 4/7) / 11 = 32/77. (Comparing with the float level 0.1 * 3 = 0.30000000000000004,
    #   as the VOC devkit does, would miss level .3 and give 29/77.)
    # COCO: r = 0..30 -> 1 (31), 31..40 -> 4/7 (10), rest 0 = (31 + 40/7) / 101 = 257/707
    #   (pycocotools' level 30 is the float 0.3 itself, so it agrees).
    boxes = [[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(10)]
    labels = [[[0, *box] for box in boxes]]
    misses = [[0, 0.5, 0.1 * i, 0.5, 0.1 * i + 0.05, 0.55] for i in range(3)]
    dets = [[[0, 0.9, *boxes[0]], [0, 0.9, *boxes[1]], [0, 0.9, *boxes[2]], *misses, [0, 0.1, *boxes[3]]]]
    r = ap(run(*batch(dets, labels)))
    assert r["ap_50_voc07"] == pytest.approx(32 / 77, abs=1e-12)
    assert r["ap_50_95"] == pytest.approx(257 / 707, abs=1e-12)
    assert r["ap_50"] == pytest.approx(0.3 + 0.1 * 4 / 7, abs=1e-12)


def test_coco_recall_levels_are_pycocotools_floats():
    # N = 20, ranked 7 x T, 7 x F, T: recall 7/20 = 0.35 (precision 1) at rank 7, then 8/20 = 0.4 at
    # rank 15 (precision 8/15). pycocotools' level 35 is 35 x 0.01 = 0.35000000000000003 > 0.35, so it
    # is first reached at rank 15: levels r = 0..34 -> 1 (35 levels), 35..40 -> 8/15 (6), rest 0
    #   -> AP = (35 + 6 x 8/15) / 101 = 38.2/101 (exact levels would give (36 + 5 x 8/15) / 101).
    # VOC07 (exact): levels 0, .1, .2, .3 -> 1; .4 -> 8/15; rest 0 -> (4 + 8/15) / 11.
    boxes = [[0.05 * i, 0.0, 0.05 * i + 0.04, 0.04] for i in range(20)]
    labels = [[[0, *box] for box in boxes]]
    hits = [[0, 0.9, *boxes[i]] for i in range(7)]
    misses = [[0, 0.5, 0.05 * i, 0.5, 0.05 * i + 0.04, 0.54] for i in range(7)]
    dets = [[*hits, *misses, [0, 0.1, *boxes[7]]]]
    r = ap(run(*batch(dets, labels)))
    assert r["ap_50_95"] == pytest.approx(38.2 / 101, abs=1e-12)
    assert r["ap_50_voc07"] == pytest.approx((4 + 8 / 15) / 11, abs=1e-12)


def test_iou_threshold_boundaries():
    # Object [0, 0, .5, .5] (area 1/4). A detection [0, 0, .5, .25] has IoU (1/8) / (1/4) = 0.5 exactly
    # (binary fractions, no rounding). VOC needs IoU >= 0.5 (the devkit's `ovmax>=minoverlap`) -> a hit
    # -> AP 1. COCO needs IoU >= t -> a hit at t = 0.50 only -> AP_50_95 = 1/10.
    labels = [[[0, 0.0, 0.0, 0.5, 0.5]]]
    r = ap(run(*batch([[[0, 0.9, 0.0, 0.0, 0.5, 0.25]]], labels)))
    assert r["ap_50"] == 1.0 and r["ap_50_voc07"] == 1.0
    assert r["ap_50_95"] == pytest.approx(0.1, abs=1e-12)
    # The case, in pixels: ground truth [0, 0, 10, 10], detection [0, 0, 5, 10] -> map_50 1.0.
    result = run(*batch([[[0, 0.9, 0, 0, 5, 10]]], [[[0, 0, 0, 10, 10]]]))
    assert result["map_50"] == 1.0 and result["coco"]["map_50"] == 1.0
    # Clearly below: IoU 0.48 -> false positive everywhere.
    r = ap(run(*batch([[[0, 0.9, 0.0, 0.0, 0.5, 0.24]]], labels)))
    assert r["ap_50"] == r["ap_50_voc07"] == r["ap_50_95"] == 0.0


def test_coco_ap_of_a_box_with_iou_0_72():
    # Object [0, 0, 1, 1], detection [0, 0, 1, .72]: IoU .72 >= .50 .55 .60 .65 .70, < .75 ... .95
    # -> AP 1 at 5 of the 10 thresholds, 0 at the others -> AP_50_95 = 0.5; VOC AP 1.
    result = run(*batch([[[0, 0.99, 0.0, 0.0, 1.0, 0.72]]], [[[0, 0.0, 0.0, 1.0, 1.0]]]))
    assert ap(result)["ap_50_95"] == pytest.approx(0.5, abs=1e-12)
    assert ap(result)["ap_50"] == 1.0
    per_iou = result["map_per_iou"]
    assert [per_iou[round(float(t), 10)] for t in COCO_T] == [1.0] * 5 + [0.0] * 5
    assert per_iou[0.9] == 0.0  # keys are rounded: 0.9 finds 0.8999999999999999


def test_difficult_objects_are_neither_true_nor_false_positives():
    # G0 is difficult, G1 is not. Ranked: on G0 (0.9), a miss (0.85), on G0 again (0.82), on G1 (0.8).
    # Both detections on G0 are ignored (a difficult object is never used up: VOC never marks it)
    # -> F T with N = 1 -> precision 1/2 at recall 1 -> every AP 0.5. (Were the second one a
    # false positive: F F T -> 1/3.)
    # Without the flag: T F F T, N = 2 -> precision 1, 1/2, 1/3, 1/2 -> area .5 x 1 + .5 x 1/2 = 3/4.
    labels = [[[0, *G0], [0, *G1]]]
    dets = [[[0, 0.9, *G0], [0, 0.85, *NOWHERE], [0, 0.82, *G0], [0, 0.8, *G1]]]
    arrays = batch(dets, labels)
    r = ap(run(*arrays, difficult=np.array([[True, False]])))
    assert (r["ap_50"], r["ap_50_voc07"], r["ap_50_95"]) == (0.5, 0.5, 0.5)
    assert r["num_ground_truth"] == 1 and r["num_difficult"] == 1
    assert ap(run(*arrays))["ap_50"] == pytest.approx(3 / 4, abs=1e-12)
    # A class whose only objects are difficult has no ground truth: nan, excluded.
    result = run(*batch([[[0, 0.9, *G0], [1, 0.9, *G1]]], [[[0, *G0], [1, *G1]]]), np.array([[1, 0]]), num_classes=2)
    assert math.isnan(ap(result, "0")["ap_50"]) and result["map_50"] == 1.0


def test_difficult_overlap_voc_and_coco_rules():
    # Detection D = [0, 0, .5, .5]; difficult object X = D (IoU 1); regular object R = [0, 0, .5, .3125]
    # (IoU (.5 x .3125) / (.5 x .5) = .625 exactly).
    # VOC matches the highest-IoU object, X, which is difficult -> D ignored; R is never found -> AP 0.
    # COCO prefers a free regular object: R at t = .50 .55 .60 (IoU .625 >= t) -> AP 1 there;
    # at t >= .65 only X qualifies -> D ignored, R not found -> AP 0. AP_50_95 = 3/10.
    labels = [[[0, 0.0, 0.0, 0.5, 0.5], [0, 0.0, 0.0, 0.5, 0.3125]]]
    dets = [[[0, 0.9, 0.0, 0.0, 0.5, 0.5]]]
    r = ap(run(*batch(dets, labels), difficult=np.array([[True, False]])))
    assert r["ap_50"] == 0.0 and r["ap_50_voc07"] == 0.0
    assert r["ap_50_95"] == pytest.approx(0.3, abs=1e-12)


def test_voc_duplicate_rule_versus_coco_next_best_rule():
    # Objects A = [0, 0, .5, .5] and B = [0, 0, .5, .375]; detection 1 = A exactly (0.9, IoU 1 with A,
    # .75 with B), detection 2 = [0, 0, .5, .4375] (0.8): IoU with A .875, with B .375/.4375 = 6/7.
    # VOC: both detections pick A (highest IoU); the second is a duplicate -> T F, N = 2
    #   -> area .5 x 1 = .5; 11-point: levels 0...5 -> 1, rest 0 -> 6/11.
    # COCO: detection 2 takes the free B where IoU 6/7 = .857 >= t: t = .50 ... .85 (8 thresholds)
    #   -> T T -> AP 1; at .90, .95 it is a false positive -> T F -> r = 0..50 -> 1 -> 51/101.
    #   AP_50_95 = (8 + 2 x 51/101) / 10.
    labels = [[[0, 0.0, 0.0, 0.5, 0.5], [0, 0.0, 0.0, 0.5, 0.375]]]
    dets = [[[0, 0.9, 0.0, 0.0, 0.5, 0.5], [0, 0.8, 0.0, 0.0, 0.5, 0.4375]]]
    r = ap(run(*batch(dets, labels)))
    assert r["ap_50"] == pytest.approx(0.5, abs=1e-12)
    assert r["ap_50_voc07"] == pytest.approx(6 / 11, abs=1e-12)
    assert r["ap_50_95"] == pytest.approx((8 + 2 * 51 / 101) / 10, abs=1e-12)


def test_equal_iou_ties_between_objects():
    # Objects A = [0, 0, .5, .5], B = [.25, 0, .75, .5]. Detection 1 = [.125, 0, .625, .5] (0.9) has
    # IoU (.375 x .5) / (.25 + .25 - .1875) = .6 with both; detection 2 = A (0.8): IoU 1 with A, 1/3 with B.
    # VOC takes the first of equal maxima, A; detection 2 also picks A -> duplicate -> T F, N = 2 -> area .5.
    # COCO (pycocotools' loop keeps the last of equal IoUs) gives detection 1 B, so at t = .50 .55 .60
    # detection 2 takes A -> T T -> 1; at t >= .65 detection 1 misses -> F T -> precision 1/2 up to
    # recall .5 -> 51 x .5 / 101. AP_50_95 = (3 + 7 x 25.5/101) / 10.
    labels = [[[0, 0.0, 0.0, 0.5, 0.5], [0, 0.25, 0.0, 0.75, 0.5]]]
    dets = [[[0, 0.9, 0.125, 0.0, 0.625, 0.5], [0, 0.8, 0.0, 0.0, 0.5, 0.5]]]
    r = ap(run(*batch(dets, labels)))
    assert r["ap_50"] == pytest.approx(0.5, abs=1e-12)
    assert r["ap_50_95"] == pytest.approx((3 + 7 * 25.5 / 101) / 10, abs=1e-12)


def test_coco_max_detections_per_image_and_class():
    # Objects G0, G1, both found (0.9, 0.8). With coco_max_detections=1 only the 0.9 detection
    # counts for COCO: T, N = 2 -> r = 0..50 -> 1 -> 51/101. VOC keeps both -> 1.
    dets, labels = batch([[[0, 0.8, *G1], [0, 0.9, *G0]]], [[[0, *G0], [0, *G1]]])
    r = ap(run(dets, labels, coco_max_detections=1))
    assert r["ap_50_95"] == pytest.approx(51 / 101, abs=1e-12) and r["ap_50"] == 1.0
    assert ap(run(dets, labels, coco_max_detections=None))["ap_50_95"] == 1.0


def test_custom_iou_thresholds_including_one():
    # IoU .72 box and an exact box: at t = .5 both hit; at t = .75 only the exact one -> T F... ranked
    # exact (0.9) then .72 (0.8), N = 2: t = .75 -> T F -> 51/101; t = 1 -> T F -> 51/101.
    labels = [[[0, 0.0, 0.0, 1.0, 1.0], [1, *G0]]]
    dets = [[[0, 0.99, 0.0, 0.0, 1.0, 0.72], [1, 0.9, *G0]]]
    result = run(*batch(dets, labels), num_classes=2, iou_thresholds=[0.5, 0.75, 1.0])
    assert result["map_per_iou"] == {0.5: 1.0, 0.75: 0.5, 1.0: 0.5}
    assert result["map_50_95"] == pytest.approx(2 / 3, abs=1e-12)


def test_multi_batch_accumulation_equals_one_shot():
    rng = np.random.default_rng(0)
    dets, labels, difficult = random_dataset(rng, num_images=12, num_classes=3)
    one = DetectionMetric(3)
    one.update(dets, labels, difficult)
    split = DetectionMetric(3)
    for lo, hi in [(0, 1), (1, 4), (4, 5), (5, 12)]:
        split.update(dets[lo:hi], labels[lo:hi], difficult[lo:hi])
    assert split.compute() == one.compute()
    assert one.compute() == one.compute()  # compute() keeps the state
    split.reset()
    assert split.num_images == 0 and math.isnan(split.compute()["map_50"])
    split.update(dets, labels, difficult)
    assert split.compute() == one.compute()


def test_padding_rows_chunking_and_row_order_do_not_matter(monkeypatch):
    rng = np.random.default_rng(3)
    dets, labels, difficult = random_dataset(rng, num_images=10, num_classes=3)
    dets[..., 1] = np.where(dets[..., 0] == -1, 0, rng.permutation(dets[..., 1].size).reshape(dets.shape[:2]) + 1.0)
    expected = run(dets, labels, difficult, num_classes=3)
    # Interleave padding rows (as the post-processor's output, mostly -1) and shuffle the rows:
    # with distinct scores, the result is the same.
    padded = np.full((10, 200, 6), -1.0)
    for i in range(10):
        rows = rng.choice(200, dets.shape[1], replace=False)
        padded[i, rows] = dets[i, rng.permutation(dets.shape[1])]
    assert run(padded, labels, difficult, num_classes=3) == expected
    # Matching one image at a time gives the same as the whole batch at once.
    monkeypatch.setattr(_evaluation, "_CHUNK_ELEMENTS", 1)
    assert run(padded, labels, difficult, num_classes=3) == expected


def test_accepts_mxnet_ndarrays_and_does_not_modify_inputs():
    mx = pytest.importorskip("mxnet")
    dets, labels = batch([[[0, 0.9, *G0], [0, 0.8, *G1]]], [[[0, *G1], [0, *G0]]])
    before = dets.copy(), labels.copy()
    metric = DetectionMetric(1)
    metric.update(mx.nd.array(dets), mx.nd.array(labels))
    assert metric.compute()["map_50"] == 1.0
    metric.update(dets, labels)
    assert np.array_equal(dets, before[0]) and np.array_equal(labels, before[1])


# ------------------------------------------------------------------ bad inputs


def test_bad_object_flags_sizes_and_areas():
    dets, labels = batch([[[0, 0.9, *G0]]], [[[0, *G0], [0, *G1]]])
    metric = DetectionMetric(1)
    with pytest.raises(InputError, match=r"'crowd' argument .*\(B, M\) = \(1, 2\).*got shape \(2,\)"):
        metric.update(dets, labels, crowd=[True, False])
    with pytest.raises(InputError, match=r"'image_size' argument .*\(B, 2\) = \(1, 2\) of positive"):
        metric.update(dets, labels, image_size=[(0, 10)])
    with pytest.raises(InputError, match=r"'image_size' argument"):
        metric.update(dets, labels, image_size=[10, 10])
    with pytest.raises(InputError, match=r"'areas' argument .*areas >= 0 or nan"):
        metric.update(dets, labels, image_size=[(10, 10)], areas=[[-1.0, 4.0]])
    assert metric.num_images == 0  # nothing was recorded
    # a negative area in a padding row, as the loader writes, is fine; nan means the box's
    dets, labels = batch([[[0, 0.9, *G0]]], [[[0, *G0], [0, *G1]]], pad_m=1)
    metric.update(dets, labels, image_size=[(100, 100)], areas=[[np.nan, 2000.0, -1.0]])
    result = metric.compute()  # G0: 20 x 20 = 400 pixels, small; G1 said 2000: medium, not found
    assert result["map_small"] == 1.0 and result["map_medium"] == 0.0 and math.isnan(result["map_large"])


def test_crowd_regions_voc_and_coco_rules():
    # Crowd region C = [0, 0, .5, .5] and an object G1 far away. Detections: D1 = [0, 0, .25, .25]
    # inside C (intersection over D1's area 1, IoU with C only 1/4), D2 = [.25, .25, .75, .75]
    # a quarter inside C (IoA 1/4), D3 = G1 (0.7).
    # COCO: D1 ignored at every threshold (IoA 1 >= t), D2 a false positive, D3 a hit -> ranked F T:
    # precision 1/2 at recall 1 -> AP 0.5. VOC: D1 would be a false positive (no object of IoU
    # >= .5); it lies in the crowd -> ignored; D2 stays a false positive -> the same 0.5.
    labels = [[[0, 0.0, 0.0, 0.5, 0.5], [0, *G1]]]
    dets = [[[0, 0.9, 0.0, 0.0, 0.25, 0.25], [0, 0.8, 0.25, 0.25, 0.75, 0.75], [0, 0.7, *G1]]]
    r = ap(run(*batch(dets, labels), crowd=np.array([[True, False]])))
    assert r["ap_50"] == 0.5 and r["ap_50_95"] == 0.5
    assert r["num_ground_truth"] == 1 and r["num_crowd"] == 1 and r["num_difficult"] == 0
    # Treated as an ordinary object, C is missed (D1's IoU 1/4) -> F F T, N = 2 -> area 1/3 x 1/2.
    assert ap(run(*batch(dets, labels)))["ap_50"] == pytest.approx(1 / 6, abs=1e-12)


@pytest.mark.parametrize(
    ("dets_shape", "labels_shape", "pattern"),
    [
        ((2, 6), (1, 3, 5), r"'detections'.*\(B, K, 6\).*\(2, 6\).*detections\[None\]"),
        ((1, 4, 5), (1, 3, 5), r"'detections'.*\(B, K, 6\).*\(1, 4, 5\)"),
        ((1, 4, 6), (1, 3, 6), r"'labels'.*\(B, M, 5\).*\(1, 3, 6\)"),
        ((1, 4, 6), (3, 5), r"'labels'.*\(B, M, 5\).*\(3, 5\)"),
        ((2, 4, 6), (3, 3, 5), r"same batch size.*\(2, 4, 6\).*B = 2.*\(3, 3, 5\).*B = 3"),
    ],
)
def test_bad_shapes(dets_shape, labels_shape, pattern):
    dets = -np.ones(dets_shape)
    labels = -np.ones(labels_shape)
    with pytest.raises(InputError, match=pattern):
        DetectionMetric(2).update(dets, labels)


def test_bad_class_ids_and_values():
    dets, labels = batch([[[0, 0.9, *G0]], [[1, 0.9, *G0]]], [[[0, *G0]], [[0, *G1]]])
    metric = DetectionMetric(2)
    bad = dets.copy()
    bad[1, 0, 0] = 2
    with pytest.raises(InputError, match=r"'detections'.*\[0, 2\).*got 2\.0 at \[batch, row\] = \[1, 0\].*\(2, 1, 6\)"):
        metric.update(bad, labels)
    bad = labels.copy()
    bad[0, 0, 0] = 0.5
    with pytest.raises(InputError, match=r"'labels'.*integer in \[0, num_classes\).*0\.5"):
        metric.update(dets, bad)
    bad = labels.copy()
    bad[1, 0, 0] = -2
    with pytest.raises(InputError, match=r"'labels'.*-2\.0"):
        metric.update(dets, bad)
    bad = dets.copy()
    bad[0, 0, 1] = np.nan
    with pytest.raises(InputError, match=r"'detections'.*finite.*\[0, 0\]"):
        metric.update(bad, labels)
    with pytest.raises(InputError, match=r"'difficult'.*\(B, M\) = \(2, 1\).*got shape \(2,\)"):
        metric.update(dets, labels, difficult=np.zeros(2))
    with pytest.raises(InputError, match="'detections'.*numeric"):
        metric.update([["a"]], labels)
    # Nothing was recorded by the failed calls; padding rows may hold anything, even NaN.
    assert metric.num_images == 0
    padded = labels.copy()
    padded = np.concatenate([padded, np.full((2, 1, 5), np.nan)], axis=1)
    padded[:, 1, 0] = -1
    metric.update(dets, padded)
    assert metric.num_images == 2


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"num_classes": 0}, r"'num_classes'.*integer >= 1.*got 0"),
        ({"num_classes": 2.0}, r"'num_classes'.*got 2\.0"),
        ({"num_classes": True}, r"'num_classes'.*got True"),
        ({"num_classes": 2, "class_names": ["a"]}, r"'class_names'.*2 names; got 1"),
        ({"num_classes": 2, "class_names": "ab"}, r"'class_names'.*single string"),
        ({"num_classes": 2, "class_names": ["a", "a"]}, r"'class_names'.*distinct.*'a'"),
        ({"num_classes": 2, "class_names": ["a", 1]}, r"'class_names'.*strings"),
        ({"num_classes": 2, "iou_thresholds": []}, r"'iou_thresholds'.*\(0, 1\]"),
        ({"num_classes": 2, "iou_thresholds": [0.5, 1.5]}, r"'iou_thresholds'.*1\.5"),
        ({"num_classes": 2, "iou_thresholds": [0.0]}, r"'iou_thresholds'"),
        ({"num_classes": 2, "coco_max_detections": 0}, r"'coco_max_detections'.*got 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        DetectionMetric(**kwargs)


# ------------------------------------------------- reference implementations


def random_dataset(rng, num_images, num_classes, max_objects=5, max_dets=30):
    """Random objects, jittered and random detections, scores with many ties, some difficult flags."""
    m, k = max_objects, max_dets
    labels = np.full((num_images, m, 5), -1.0)
    dets = np.full((num_images, k, 6), -1.0)
    difficult = rng.random((num_images, m)) < 0.15
    for i in range(num_images):
        n = rng.integers(0, m + 1)
        xy = rng.random((n, 2)) * 0.7
        wh = 0.05 + rng.random((n, 2)) * 0.3
        labels[i, :n, 0] = rng.integers(0, num_classes, n)
        labels[i, :n, 1:3] = xy
        labels[i, :n, 3:5] = xy + wh
        rows = []
        for g in labels[i, :n]:
            for _ in range(rng.integers(0, 4)):  # 0..3 jittered copies: hits, duplicates, near misses
                box = g[1:] + rng.normal(0, 0.03, 4)
                cls = g[0] if rng.random() < 0.9 else rng.integers(0, num_classes)
                rows.append([cls, 0, *box])
        for _ in range(rng.integers(0, 8)):  # background false positives
            xy0 = rng.random(2) * 0.8
            rows.append([rng.integers(0, num_classes), 0, *xy0, *(xy0 + 0.05 + rng.random(2) * 0.2)])
        rows = np.array(rows[:k]).reshape(-1, 6)
        rows[:, 1] = np.round(rng.random(len(rows)), 1)  # one decimal: many ties
        order = rng.permutation(len(rows))
        dets[i, : len(rows)] = rows[order]
    return dets, labels, difficult


def _iou(a, b):
    """Continuous-coordinate IoU of boxes (4,) and (4,), pycocotools/VOC style without +1."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _exact_levels_ap(ctp, prec, npos, levels):
    """Mean over levels i/(levels-1) of max precision at recall >= level; recall compared exactly."""
    total = 0.0
    for i in range(levels):
        mask = ctp * (levels - 1) >= i * npos
        total += prec[mask].max() if mask.any() else 0.0
    return total / levels


def reference_voc(dets, labels, difficult, cls):
    """Port of py-faster-rcnn's ``voc_eval`` (the VOC devkit's ``VOCevaldet.m``) for one class.

    Deviations, all documented choices of detkit: IoU without +1, a stable sort of the scores,
    recall levels of the 11-point AP compared exactly.
    """
    recs, npos = {}, 0
    for i in range(len(labels)):
        sel = labels[i, :, 0] == cls
        recs[i] = {"bbox": labels[i, sel, 1:], "difficult": difficult[i, sel], "det": [False] * int(sel.sum())}
        npos += int((~difficult[i, sel]).sum())
    image_ids, conf, boxes = [], [], []
    for i in range(len(dets)):
        for row in dets[i]:
            if row[0] == cls:
                image_ids.append(i)
                conf.append(row[1])
                boxes.append(row[2:])
    if npos == 0:
        return math.nan, math.nan
    order = np.argsort(-np.array(conf), kind="stable")
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d, j in enumerate(order):
        rec = recs[image_ids[j]]
        ovmax, jmax = -np.inf, -1
        for g, gt in enumerate(rec["bbox"]):
            ov = _iou(boxes[j], gt)
            if ov > ovmax:
                ovmax, jmax = ov, g
        if ovmax >= 0.5:
            if not rec["difficult"][jmax]:
                if not rec["det"][jmax]:
                    tp[d] = 1
                    rec["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = ctp / npos
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    # voc_ap(use_07_metric=False)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    area = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return area, _exact_levels_ap(ctp, prec, npos, 11)


def reference_coco(dets, labels, difficult, cls, thresholds, max_dets):
    """Port of pycocotools ``COCOeval.evaluateImg`` + ``accumulate`` (bbox, area "all") for one class.

    Difficult objects enter as ignored ground truth that may be matched repeatedly (pycocotools'
    crowd rule) with the ordinary IoU. Recall levels are pycocotools' floats, as in detkit.
    """
    scores, matched, ignored, npig = [], [], [], 0
    for i in range(len(dets)):
        sel = labels[i, :, 0] == cls
        gt, gt_ig = labels[i, sel, 1:], difficult[i, sel].astype(int)
        gtind = np.argsort(gt_ig, kind="mergesort")
        gt, gt_ig = gt[gtind], gt_ig[gtind]
        dt = dets[i][dets[i, :, 0] == cls]
        dt = dt[np.argsort(-dt[:, 1], kind="mergesort")][:max_dets]
        npig += int((gt_ig == 0).sum())
        ious = np.array([[_iou(d[2:], g) for g in gt] for d in dt]).reshape(len(dt), len(gt))
        num_t, num_g, num_d = len(thresholds), len(gt), len(dt)
        gtm, dtm, dt_ig = np.zeros((num_t, num_g)), np.zeros((num_t, num_d)), np.zeros((num_t, num_d))
        for tind, t in enumerate(thresholds):
            for dind in range(num_d):
                iou, m = min([t, 1 - 1e-10]), -1
                for gind in range(num_g):
                    if gtm[tind, gind] > 0 and not gt_ig[gind]:
                        continue
                    if m > -1 and gt_ig[m] == 0 and gt_ig[gind] == 1:
                        break
                    if ious[dind, gind] < iou:
                        continue
                    iou, m = ious[dind, gind], gind
                if m == -1:
                    continue
                dt_ig[tind, dind] = gt_ig[m]
                dtm[tind, dind] = 1
                gtm[tind, m] = 1
        # an unmatched detection outside the area range "all" [0, 1e10] is ignored: an inverted box's
        # area w * h is negative (pycocotools' loadRes), so it is ignored rather than a false positive
        outside = (dt[:, 4] - dt[:, 2]) * (dt[:, 5] - dt[:, 3]) < 0  # (num_d,)
        dt_ig = np.logical_or(dt_ig, np.logical_and(dtm == 0, outside[None, :]))
        scores.append(dt[:, 1])
        matched.append(dtm)
        ignored.append(dt_ig)
    if npig == 0:
        return math.nan
    scores = np.concatenate(scores)
    inds = np.argsort(-scores, kind="mergesort")
    dtm = np.concatenate(matched, axis=1)[:, inds]
    dt_ig = np.concatenate(ignored, axis=1)[:, inds]
    tps = np.logical_and(dtm, np.logical_not(dt_ig))
    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
    aps = []
    for tp, fp in zip(np.cumsum(tps, axis=1), np.cumsum(fps, axis=1)):
        pr = tp / (fp + tp + np.spacing(1))
        for i in range(len(pr) - 1, 0, -1):
            if pr[i] > pr[i - 1]:
                pr[i - 1] = pr[i]
        rc = tp / npig
        q = np.zeros(101)
        for ri, pi in enumerate(np.searchsorted(rc, np.linspace(0.0, 1.00, 101, endpoint=True), side="left")):
            if pi < len(pr):
                q[ri] = pr[pi]
        aps.append(np.mean(q))
    return float(np.mean(aps))


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_implementations_on_random_data(seed):
    rng = np.random.default_rng(seed)
    num_classes = 3
    dets, labels, difficult = random_dataset(rng, num_images=15, num_classes=num_classes)
    max_dets = [100, 3][seed % 2]
    metric = DetectionMetric(num_classes, coco_max_detections=max_dets)
    metric.update(dets, labels, difficult)
    result = metric.compute()
    for c in range(num_classes):
        r = result["per_class"][str(c)]
        area, voc07 = reference_voc(dets, labels, difficult, c)
        coco = reference_coco(dets, labels, difficult, c, COCO_T, max_dets)
        assert r["ap_50"] == pytest.approx(area, abs=1e-12, nan_ok=True)
        assert r["ap_50_voc07"] == pytest.approx(voc07, abs=1e-12, nan_ok=True)
        assert r["ap_50_95"] == pytest.approx(coco, abs=1e-12, nan_ok=True)


# ------------------------------------------------------------------ doctests
# (The metric's speed is measured by benchmarks/bench.py, not asserted here: a timed unit test fails on a busy machine.)


def test_docstring_examples():
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(_evaluation, "detkit._engine._metric") + doctest.DocTestFinder().find(
            DetectionMetric, "DetectionMetric"):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
