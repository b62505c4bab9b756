"""Evaluation from files, against the reference tools: pycocotools on the original COCO JSON, a
line-by-line port of the VOC devkit's ``VOCevaldet.m`` on the original XML.

Generated sets (small, fast): COCO with float boxes in quarter pixels on images of odd sizes
(so that normalising moves the IoUs), crowd regions, annotation areas unlike the boxes' (and
areas exactly at 32² and 96²), detection pairs at exactly IoU 0.5, 0.75 and 0.8, inverted
detection boxes, many score ties across images whose ids are not in file order; VOC with
difficult objects and exact-threshold pairs in the devkit's +1 arithmetic.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detkit
from detkit.cli import main
from detkit.errors import DataError, InputError

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

COCO_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
CATEGORY_IDS = [3, 7, 11]


def make_coco(root: Path, seed: int, num_images: int = 10):
    """A COCO set on disk (images, JSON) and a results JSON for it; returns their paths."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    image_ids = [int(i) for i in rng.permutation(np.arange(1, 400))[:num_images]]  # not in file order
    images, annotations, results = [], [], []
    for image_id in image_ids:
        width, height = int(rng.integers(60, 90)) * 2 + 1, int(rng.integers(60, 90)) * 2 + 1  # odd sizes
        name = f"{image_id:012d}.jpg"
        Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 255, 3))).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for _ in range(int(rng.integers(0, 7)) if image_id % 5 else 0):
            cat = CATEGORY_IDS[rng.integers(0, 3)]
            kind = rng.random()
            if kind < 0.15:  # exactly at a size border
                bw, bh = [(32.0, 32.0), (96.0, 96.0), (16.0, 64.0)][rng.integers(0, 3)]
                bw, bh = min(bw, width - 1), min(bh, height - 1)
            else:
                bw, bh = rng.integers(8, 4 * width // 2) / 4, rng.integers(8, 4 * height // 2) / 4
            x, y = rng.integers(0, int(4 * (width - bw)) + 1) / 4, rng.integers(0, int(4 * (height - bh)) + 1) / 4
            area = bw * bh if kind < 0.15 or rng.random() < 0.3 else bw * bh * rng.uniform(0.3, 1.0)  # a mask's
            crowd = int(rng.random() < 0.12)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, bw, bh], "area": area, "iscrowd": crowd})
            for pair in range(int(rng.integers(0, 4))):  # exact-threshold pairs: IoU 0.5, 0.75, 0.8
                box = [[x, y, bw * 0.5, bh], [x, y, bw, bh * 0.75], [x, y, bw * 0.8, bh]][rng.integers(0, 3)]
                results.append({"image_id": image_id, "category_id": cat, "bbox": box})
            if rng.random() < 0.5:  # a jittered hit, not exact
                box = [x + rng.normal(0, 1.5), y + rng.normal(0, 1.5), bw * rng.uniform(0.8, 1.2), bh]
                results.append({"image_id": image_id, "category_id": cat, "bbox": [round(v, 2) for v in box]})
        for _ in range(int(rng.integers(0, 5))):  # false positives of every size, some inverted
            bw, bh = rng.uniform(3, width / 2), rng.uniform(3, height / 2)
            box = [rng.uniform(0, width - bw), rng.uniform(0, height - bh), bw, bh]
            if rng.random() < 0.2:
                box[2] = -box[2]
            results.append({"image_id": image_id, "category_id": CATEGORY_IDS[rng.integers(0, 3)], "bbox": box})
    for entry in results:
        entry["score"] = float(np.round(rng.random(), 1))  # one decimal: ties across images
    results = [results[i] for i in rng.permutation(len(results))]
    categories = [{"id": c, "name": name} for c, name in zip(CATEGORY_IDS, ["cat", "dog", "emu"])]
    gt_path, results_path = root / "instances.json", root / "results.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    results_path.write_text(json.dumps(results))
    assert any(a["iscrowd"] for a in annotations) and any(a["area"] != a["bbox"][2] * a["bbox"][3] for a in annotations)
    return gt_path, results_path


def coco_eval(gt_path, results_path, **params):
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(gt_path))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(results_path)), "bbox")
        for key, value in params.items():
            setattr(evaluation.params, key, value)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def finite_mean(values):
    values = values[values > -1]
    return float(values.mean()) if values.size else math.nan


def minus_one_mean(values):
    """pycocotools' summary of an array: the mean of the entries > -1, else -1 (detkit's missing=-1)."""
    mean = finite_mean(values)
    return -1.0 if math.isnan(mean) else mean


def assert_equals_pycocotools(result, evaluation):
    stats = [math.nan if v == -1 else float(v) for v in evaluation.stats]
    np.testing.assert_allclose([result["coco"][key] for key in COCO_KEYS], stats, rtol=0, atol=1e-12)
    assert not math.isnan(stats[0]) and stats[0] > 0.05  # not vacuous
    precision, recall = evaluation.eval["precision"], evaluation.eval["recall"]  # (T, R, K, A, M), (T, K, A, M)
    for k, name in enumerate(["cat", "dog", "emu"]):
        per_class = result["per_class"][name]
        assert per_class["coco"]["map"] == pytest.approx(finite_mean(precision[:, :, k, 0, 2]), abs=1e-12, nan_ok=True)
        assert per_class["coco"]["map_50"] == pytest.approx(finite_mean(precision[0, :, k, 0, 2]), abs=1e-12,
                                                            nan_ok=True)
        for a, size in enumerate(["all", "small", "medium", "large"]):
            key = "mar_100" if size == "all" else f"mar_{size}"
            assert per_class["coco"][key] == pytest.approx(finite_mean(recall[:, k, a, 2]), abs=1e-12, nan_ok=True)
            if a:
                assert per_class["coco"][f"map_{size}"] == pytest.approx(
                    finite_mean(precision[:, :, k, a, 2]), abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("seed", range(3))
def test_pack_then_evaluate_equals_pycocotools_on_the_original_json(tmp_path, seed):
    gt_path, results_path = make_coco(tmp_path, seed)
    dataset = detkit.data.pack_coco(gt_path, tmp_path / "images", tmp_path / "packed" / "val", progress=False)
    assert (tmp_path / "packed" / "val.eval.json").is_file()
    evaluation = coco_eval(gt_path, results_path)
    from_rec = detkit.evaluate_detections(results_path, dataset.rec_path)
    assert_equals_pycocotools(from_rec, evaluation)
    from_json = detkit.evaluate_detections(results_path, gt_path)
    assert json.dumps(from_json, default=str) == json.dumps(from_rec, default=str)  # the very same numbers
    # the command line, --json, says the same
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["evaluate", "--detections", str(results_path), str(dataset.rec_path), "--json"]) == 0
    printed = json.loads(out.getvalue())
    assert [printed["coco"][key] for key in COCO_KEYS] == [
        None if math.isnan(from_rec["coco"][key]) else from_rec["coco"][key] for key in COCO_KEYS]


def test_the_sidecar_keeps_exact_threshold_pairs_that_normalising_breaks(tmp_path):
    # The scenario's point: through the .rec's float32 normalised boxes alone the numbers drift.
    gt_path, results_path = make_coco(tmp_path, 0)
    dataset = detkit.data.pack_coco(gt_path, tmp_path / "images", tmp_path / "packed" / "val", progress=False)
    exact = detkit.evaluate_detections(results_path, dataset.rec_path)
    (tmp_path / "packed" / "val.eval.json").rename(tmp_path / "aside.json")
    # without a sidecar, images are record positions and categories 1, 2, 3
    position = {image["id"]: i for i, image in enumerate(json.loads(gt_path.read_text())["images"])}
    results = json.loads(results_path.read_text())
    for entry in results:
        entry["image_id"], entry["category_id"] = position[entry["image_id"]], CATEGORY_IDS.index(entry["category_id"]) + 1
    (tmp_path / "by_position.json").write_text(json.dumps(results))
    approximate = detkit.evaluate_detections(tmp_path / "by_position.json", dataset.rec_path)
    assert [exact["coco"][k] for k in COCO_KEYS] != [approximate["coco"][k] for k in COCO_KEYS]
    assert abs(exact["coco"]["map"] - approximate["coco"]["map"]) < 0.1  # the same detections, give or take


def test_a_stale_or_foreign_sidecar_is_refused_with_the_fix(tmp_path, capsys):
    gt_path, results_path = make_coco(tmp_path, 1)
    dataset = detkit.data.pack_coco(gt_path, tmp_path / "images", tmp_path / "packed" / "val", progress=False)
    with open(dataset.rec_path, "ab") as rec:
        rec.write(b"\0\0\0\0")  # the .rec changed after packing
    with pytest.raises(DataError, match=r"val.eval.json is stale: .*re-pack the data with `detkit data pack`"):
        detkit.evaluate_detections(results_path, dataset.rec_path)
    assert main(["evaluate", "--detections", str(results_path), str(dataset.rec_path)]) == 2
    assert "stale" in capsys.readouterr().err
    (tmp_path / "packed" / "val.eval.json").write_text("{\"format\": \"something else\"}")
    with pytest.raises(DataError, match="not a detkit evaluation sidecar"):
        detkit.evaluate_detections(results_path, dataset.rec_path)
    # Nested far too deep for Python's JSON reader: named, not a RecursionError.
    (tmp_path / "packed" / "val.eval.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"val.eval.json: cannot be read as the evaluation sidecar.*nests"):
        detkit.evaluate_detections(results_path, dataset.rec_path)


def test_training_refuses_a_stale_sidecar_before_its_first_step(tmp_path, monkeypatch):
    # Validation reads the sidecar once, before the first epoch: a stale one costs no training.
    from detkit._engine import _fit

    gt_path, _ = make_coco(tmp_path, 1)
    dataset = detkit.data.pack_coco(gt_path, tmp_path / "images", tmp_path / "packed" / "val", progress=False)
    with open(dataset.rec_path, "ab") as rec:
        rec.write(b"\0\0\0\0")  # the .rec changed after packing
    steps = []

    def train_epoch(*args, **kwargs):
        steps.append(args)
        raise AssertionError("an epoch trained before the sidecar was checked")

    monkeypatch.setattr(_fit, "train_epoch", train_epoch)
    detector = detkit.SSDDetector(dataset.classes, data_shape=64)
    with pytest.raises(DataError, match=r"val.eval.json is stale: .*re-pack the data with `detkit data pack`"):
        detkit.fit(detector, dataset, dataset, epochs=1, batch_size=2, checkpoint_dir=tmp_path / "run", quiet=True)
    assert steps == [] and not list((tmp_path / "run").glob("epoch-*"))


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"results.json: it is not JSON .*COCO results file is a JSON list"),
    ('{"images": [], "annotations": [], "categories": []}', r"a COCO annotation file, not a results file"),
    ('[{"image_id": 999999, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]',
     r"results.json: detection 0: image_id 999999 is not an image of .*instances.json"),
    ('[{"image_id": IMAGE, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 0.5}]',
     r"detection 0: category_id 4 is not a category of .* \(they are \[3, 7, 11\]\)"),
    ('[{"image_id": IMAGE, "category_id": 3, "bbox": [0, 0, 1], "score": 0.5}]', r"'bbox' must be \[x, y, width"),
    ('[{"image_id": IMAGE, "category_id": 3, "bbox": [0, 0, 1, 1], "score": NaN}]', r"'score' must be a finite"),
])
def test_a_bad_detections_file_is_one_sentence_naming_it(tmp_path, content, message):
    gt_path, results_path = make_coco(tmp_path, 2)
    image_id = json.loads(gt_path.read_text())["images"][0]["id"]
    results_path.write_text(content.replace("IMAGE", str(image_id)))
    with pytest.raises(DataError, match=message):
        detkit.evaluate_detections(results_path, gt_path)


def test_an_oversized_or_over_nested_detections_file_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    from detkit._engine import _detections

    gt_path, results_path = make_coco(tmp_path, 2)
    results_path.write_text("[" * 100 + "]" * 100)
    with pytest.raises(DataError, match=r"results.json: it nests lists or objects deeper than 8 levels; a COCO "
                                        r"results file is a JSON list"):
        detkit.evaluate_detections(results_path, gt_path)
    image_id = json.loads(gt_path.read_text())["images"][0]["id"]
    results_path.write_text(json.dumps([{"image_id": image_id, "category_id": 3, "bbox": [0, 0, 1, 1],
                                         "score": 0.5}] * 4))
    monkeypatch.setattr(_detections, "_MAX_RESULTS_BYTES", 100)  # the bound, small enough for a small file
    with pytest.raises(DataError, match=r"results.json: it is larger than 100 bytes, more than a COCO results file "
                                        r"ever is; a COCO results file is"):
        detkit.evaluate_detections(results_path, gt_path)


# ------------------------------------------------------------------ VOC


def make_voc(root: Path, seed: int, num_images: int = 8):
    """VOC XML files with difficult objects, JPEG images, and comp4 results files (image-id order)."""
    rng = np.random.default_rng(seed)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "results").mkdir()
    classes = ["bird", "car"]
    lines = {name: [] for name in classes}
    for i in range(num_images):
        stem = f"{(i * 37) % 101:06d}"
        width, height = int(rng.integers(50, 90)), int(rng.integers(50, 90))
        Image.new("RGB", (width, height), (90, 120, 30)).save(root / "JPEGImages" / f"{stem}.jpg")
        objects = []
        for _ in range(int(rng.integers(0, 5))):
            name = classes[rng.integers(0, 2)]
            w, h = 2 * int(rng.integers(3, width // 4)), 2 * int(rng.integers(3, height // 4))  # even: halves exact
            x0, y0 = int(rng.integers(1, width - w + 1)), int(rng.integers(1, height - h + 1))
            x1, y1 = x0 + w - 1, y0 + h - 1  # 1-based inclusive: w pixels wide
            difficult = int(rng.random() < 0.2)
            objects.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
                           f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
            for _ in range(int(rng.integers(0, 3))):  # IoU exactly 0.5 in the devkit's arithmetic, or a jitter
                if rng.random() < 0.5:
                    box = [x0, y0, x0 + w // 2 - 1, y1]
                else:
                    box = [round(v + rng.normal(0, 1), 2) for v in (x0, y0, x1, y1)]
                lines[name].append((stem, box))
        for _ in range(int(rng.integers(0, 3))):
            x0, y0 = rng.uniform(1, width / 2), rng.uniform(1, height / 2)
            lines[classes[rng.integers(0, 2)]].append((stem, [x0, y0, x0 + rng.uniform(2, 20), y0 + rng.uniform(2, 20)]))
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")
    detections = {}
    for name in classes:
        rows = sorted(lines[name], key=lambda entry: entry[0])  # image-id order: ties as detkit ranks them
        rows = [(stem, float(np.round(rng.random(), 1)), box) for stem, box in rows]
        detections[name] = rows
        (root / "results" / f"comp4_det_test_{name}.txt").write_text(
            "".join(f"{stem} {score} {' '.join(repr(float(v)) for v in box)}\n" for stem, score, box in rows))
    return classes, detections


def voc_devkit_ap(root: Path, name: str, rows):
    """``VOCevaldet.m`` line by line (with ``VOCap.m``): AP of class ``name`` at IoU 0.5."""
    import xml.etree.ElementTree as ElementTree

    gt = {}
    npos = 0
    for path in sorted((root / "Annotations").glob("*.xml")):
        boxes, diff = [], []
        for obj in ElementTree.parse(path).getroot().findall("object"):
            if obj.findtext("name") == name:
                bb = obj.find("bndbox")
                boxes.append([float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")])
                diff.append(obj.findtext("difficult") == "1")
        gt[path.stem] = {"BB": np.array(boxes).reshape(-1, 4), "diff": np.array(diff, bool),
                         "det": np.zeros(len(boxes), bool)}
        npos += int((~np.array(diff, bool)).sum())
    confidence = np.array([score for _, score, _ in rows])
    si = np.argsort(-confidence, kind="stable")  # MATLAB's sort is stable
    tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
    for d, index in enumerate(si):
        stem, _, bb = rows[index]
        record = gt[stem]
        ovmax, jmax = -math.inf, -1
        for j, bbgt in enumerate(record["BB"]):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                      - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= 0.5:
            if not record["diff"][jmax]:
                if not record["det"][jmax]:
                    tp[d] = 1
                    record["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / npos
    prec = tp / (fp + tp)
    mrec, mpre = np.concatenate([[0], rec, [1]]), np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i])), npos


@pytest.mark.parametrize("seed", range(3))
def test_voc_pack_then_evaluate_equals_the_devkit_on_the_original_xml(tmp_path, seed):
    classes, detections = make_voc(tmp_path, seed)
    dataset = detkit.data.pack_voc(tmp_path / "JPEGImages", tmp_path / "Annotations", tmp_path / "packed" / "val",
                                   classes=classes, progress=False)
    from_rec = detkit.evaluate_detections(tmp_path / "results", dataset.rec_path)
    from_xml = detkit.evaluate_detections(tmp_path / "results", tmp_path / "Annotations", classes=classes)
    assert json.dumps(from_rec, default=str) == json.dumps(from_xml, default=str)
    aps = []
    for name in classes:
        ap, npos = voc_devkit_ap(tmp_path, name, detections[name])
        assert from_rec["per_class"][name]["num_ground_truth"] == npos
        assert from_rec["per_class"][name]["ap_50"] == pytest.approx(ap, abs=1e-12)
        aps.append(ap)
    assert from_rec["map_50"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert sum(from_rec["per_class"][name]["num_difficult"] for name in classes) > 0
    # one class's file alone scores that class
    one = detkit.evaluate_detections(tmp_path / "results" / "comp4_det_test_car.txt", dataset.rec_path)
    assert one["per_class"]["car"]["ap_50"] == from_rec["per_class"]["car"]["ap_50"]


def test_a_bad_voc_results_line_names_the_file_and_line(tmp_path):
    classes, _ = make_voc(tmp_path, 0)
    (tmp_path / "results" / "comp4_det_test_car.txt").write_text("000000 0.5 1 2 3\n")
    with pytest.raises(DataError, match=r"comp4_det_test_car.txt: line 1: expected '<image id> <score>"):
        detkit.evaluate_detections(tmp_path / "results", tmp_path / "Annotations", classes=classes)


# ------------------------------------------------------------------ COCOeval's parameters


@pytest.mark.parametrize("use_cats", [0, 1])
def test_cocoeval_parameters_equal_pycocotools_arrays(tmp_path, use_cats):
    gt_path, results_path = make_coco(tmp_path, 3, num_images=12)
    thresholds = [0.3, 0.5, 0.75, 0.8]
    max_dets = [1, 5, 20]
    ranges = {"all": (0.0, 1e10), "tiny": (0.0, 400.0), "mid": (400.0, 2500.0), "big": (2500.0, 1e10)}
    recall_levels = np.linspace(0, 1, 21)
    evaluation = coco_eval(gt_path, results_path, iouThrs=np.array(thresholds), maxDets=max_dets,
                           areaRng=[list(r) for r in ranges.values()], areaRngLbl=list(ranges),
                           recThrs=recall_levels, useCats=use_cats)
    result = detkit.evaluate_detections(results_path, gt_path, iou_thresholds=thresholds, max_detections=max_dets,
                                        area_ranges=ranges, recall_thresholds=recall_levels,
                                        class_agnostic=not use_cats, missing=-1, detailed=True)
    detailed = result["detailed"]
    for key in ("precision", "recall", "scores"):
        assert detailed[key].shape == evaluation.eval[key].shape
        np.testing.assert_allclose(detailed[key], evaluation.eval[key], rtol=0, atol=1e-12, err_msg=key)
    assert (evaluation.eval["precision"] > 0).any()
    # the summary, from the same arrays: AP at the last maxDets, AR at each
    precision, recall = evaluation.eval["precision"], evaluation.eval["recall"]
    assert result["coco"]["map"] == pytest.approx(minus_one_mean(precision[..., 0, 2]), abs=1e-12)
    assert result["coco"]["map_50"] == pytest.approx(minus_one_mean(precision[1, ..., 0, 2]), abs=1e-12)
    assert result["coco"]["map_75"] == pytest.approx(minus_one_mean(precision[2, ..., 0, 2]), abs=1e-12)
    for a, name in enumerate(ranges):
        if a:
            assert result["coco"][f"map_{name}"] == pytest.approx(minus_one_mean(precision[..., a, 2]), abs=1e-12)
            assert result["coco"][f"mar_{name}"] == pytest.approx(minus_one_mean(recall[..., a, 2]), abs=1e-12)
    for m, limit in enumerate(max_dets):
        assert result["coco"][f"mar_{limit}"] == pytest.approx(minus_one_mean(recall[..., 0, m]), abs=1e-12)
    if not use_cats:
        assert list(result["per_class"]) == ["all classes"]


def test_missing_minus_one_replaces_every_nan():
    metric = detkit.DetectionMetric(2, missing=-1)
    metric.update(np.array([[[0, 0.9, 0, 0, 1, 1]]]), np.array([[[0, 0, 0, 1, 1]]]))
    result = metric.compute()
    assert result["per_class"]["1"]["ap_50"] == -1 and result["map_small"] == -1  # no ground truth; no sizes
    assert result["map_50"] == 1.0
    with pytest.raises(InputError, match="'missing' argument .* nan .* or -1"):
        detkit.DetectionMetric(2, missing=0)


# ------------------------------------------------------------------ a model's detections file


def test_predict_coco_json_scored_by_pycocotools_equals_evaluate(tmp_path):
    gt_path, _ = make_coco(tmp_path, 4, num_images=6)
    dataset = detkit.data.pack_coco(gt_path, tmp_path / "images", tmp_path / "packed" / "val", progress=False)
    detkit.SSDDetector(classes=dataset.classes, data_shape=64).save(tmp_path / "model")
    detector = detkit.SSDDetector.load(tmp_path / "model")
    saved = tmp_path / "evaluate.json"
    scores = detkit.evaluate(detector, dataset, batch_size=len(dataset), save_detections=saved)
    files = [str(tmp_path / "images" / image["file_name"]) for image in json.loads(gt_path.read_text())["images"]]
    predicted = tmp_path / "predict.json"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["predict", str(tmp_path / "model"), *files, "--format", "coco-json",
                     "--annotations", str(gt_path), "--save-detections", str(predicted)]) == 0
    entries = json.loads(predicted.read_text())
    assert entries and {e["image_id"] for e in entries} <= {image["id"] for image in json.loads(gt_path.read_text())["images"]}
    evaluation = coco_eval(gt_path, predicted)
    stats = [math.nan if v == -1 else float(v) for v in evaluation.stats]
    assert stats[0] > 0 and stats[8] > 0  # an untrained detector, but not nothing
    np.testing.assert_allclose([scores["coco"][key] for key in COCO_KEYS], stats, rtol=0, atol=1e-12)
    from_file = detkit.evaluate_detections(predicted, dataset.rec_path)
    np.testing.assert_allclose([from_file["coco"][key] for key in COCO_KEYS], stats, rtol=0, atol=1e-12)
    assert from_file["map_50"] == pytest.approx(scores["map_50"], abs=1e-12, nan_ok=True)
    # evaluate --save-detections wrote the same detections
    np.testing.assert_allclose([coco_eval(gt_path, saved).stats], [evaluation.stats], rtol=0, atol=1e-12)


def test_per_image_results_equal_pycocotools_eval_imgs(tmp_path):
    from detkit._engine._detections import metric_for, read_detections, score_detections
    from detkit.data._truth import load_truth

    gt_path, results_path = make_coco(tmp_path, 5)
    truth = load_truth(gt_path)
    metric = score_detections(truth, read_detections(results_path, truth), metric_for(truth, {}))
    per_image = metric.compute(per_image=True)["per_image"]
    evaluation = coco_eval(gt_path, results_path)
    ids_of: dict = {}  # pycocotools' id of each image's detections, in file order (loadRes: index + 1)
    for index, entry in enumerate(json.loads(results_path.read_text())):
        ids_of.setdefault(entry["image_id"], []).append(index + 1)
    area_index = {tuple(r): a for a, r in enumerate(evaluation.params.areaRng)}
    counted: dict = {}
    for e in evaluation.evalImgs:
        if e is not None:
            for d, dt_id in enumerate(e["dtIds"]):
                counted[dt_id, area_index[tuple(e["aRng"])]] = (e["dtMatches"][:, d] > 0, e["dtIgnore"][:, d])
    compared = 0
    assert [image["image_id"] for image in per_image] == [image.image_id for image in truth.images]
    for image in per_image:
        for j, row in enumerate(image["row"]):
            dt_id = ids_of[image["image_id"]][row]
            for a in range(4):
                matched, ignored = counted[dt_id, a]
                np.testing.assert_array_equal(image["tp"][j, a], matched & ~ignored)
                np.testing.assert_array_equal(image["ignored"][j, a], ignored)
                compared += 1
    assert compared == 4 * len(json.loads(results_path.read_text()))


def test_evaluate_command_takes_cocoeval_parameters(tmp_path, capsys):
    gt_path, results_path = make_coco(tmp_path, 6)
    args = ["evaluate", "--detections", str(results_path), str(gt_path), "--iou-thresholds", "0.5,0.75",
            "--max-detections", "1,5,20", "--area-range", "all=0:1e10", "--area-range", "tiny=0:400",
            "--class-agnostic", "--missing", "-1"]
    assert main([*args, "--json", "--detailed"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = detkit.evaluate_detections(results_path, gt_path, iou_thresholds=[0.5, 0.75],
                                          max_detections=[1, 5, 20], area_ranges={"all": (0, 1e10), "tiny": (0, 400)},
                                          class_agnostic=True, missing=-1, detailed=True)
    assert printed["coco"] == expected["coco"]
    assert list(printed["coco"]) == ["map", "map_50", "map_75", "map_tiny", "mar_1", "mar_5", "mar_20", "mar_tiny"]
    assert np.array_equal(np.array(printed["detailed"]["precision"]), expected["detailed"]["precision"])
    assert main([*args, "--plot", str(tmp_path / "pr.png")]) == 0
    assert (tmp_path / "pr.png").stat().st_size > 0
    text = capsys.readouterr().out
    assert "AR   @[ IoU=0.50:0.75 | area=  tiny | maxDets= 20 ]" in text and "all classes" in text
    # mistakes: one sentence each
    assert main([*args, "--detailed"]) == 2
    assert "--detailed adds arrays to the JSON output; give --json" in capsys.readouterr().err
    assert main(["evaluate", "--detections", str(results_path), str(gt_path), str(gt_path)]) == 2
    assert "With --detections, give only DATA" in capsys.readouterr().err
    assert main(["evaluate", "--detections", str(results_path), str(gt_path), "--area-range", "tiny"]) == 2
    assert "--area-range must be NAME=LOW:HIGH" in capsys.readouterr().err
    assert main(["evaluate", "--detections", str(results_path), str(gt_path), "--max-detections", "5,1"]) == 2
    assert "--max-detections option of DetectionMetric must be a non-empty sequence of increasing" in \
        capsys.readouterr().err


def test_detections_are_never_written_over_an_input(tmp_path, capsys):
    gt_path, _ = make_coco(tmp_path, 0)
    dataset = detkit.data.pack_coco(gt_path, tmp_path / "images", tmp_path / "packed" / "val", progress=False)
    detector = detkit.SSDDetector(classes=dataset.classes, data_shape=64)
    sidecar = tmp_path / "packed" / "val.eval.json"
    before = sidecar.read_bytes()
    with pytest.raises(InputError, match=r"is an input of this command"):
        detkit.evaluate(detector, dataset, save_detections=sidecar)
    with pytest.raises(InputError, match=r"must end in .json"):
        detkit.evaluate(detector, dataset, save_detections=tmp_path / "dets.txt")
    detector.save(tmp_path / "model")
    image = str(tmp_path / "images" / json.loads(gt_path.read_text())["images"][0]["file_name"])
    assert main(["predict", str(tmp_path / "model"), image, "--format", "coco-json", "--annotations", str(gt_path),
                 "--save-detections", str(gt_path)]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert sidecar.read_bytes() == before and json.loads(gt_path.read_text())["categories"]
    assert main(["predict", str(tmp_path / "model"), image, "--format", "coco-json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {entry["image_id"] for entry in printed} == {int(Path(image).stem)}  # the numeric stem
    assert {entry["category_id"] for entry in printed} <= {1, 2, 3}


def test_the_eval_config_section_gives_evaluate_its_options():
    from detkit.config import load_config
    from detkit.errors import ConfigError

    config = load_config(None, ["eval.max_detections=[1, 5, 20]", "eval.class_agnostic=true", "eval.missing=-1",
                                "eval.area_ranges={all: [0, 1e10], tiny: [0, 400]}"])
    options = config.eval.metric_options()
    assert options["max_detections"] == [1, 5, 20] and options["class_agnostic"] and options["missing"] == -1
    metric = detkit.DetectionMetric(1, **options)
    assert metric.area_ranges == {"all": (0.0, 1e10), "tiny": (0.0, 400.0)}
    assert math.isnan(load_config(None).eval.metric_options()["missing"])
    with pytest.raises(ConfigError, match=r"eval.max_detections: must be a non-empty sequence of increasing"):
        load_config(None, ["eval.max_detections=[5, 1]"])
    with pytest.raises(ConfigError, match=r"eval.missing: must be one of None, -1; got 0"):
        load_config(None, ["eval.missing=0"])


def test_coco_results_refuse_a_diverged_detectors_nan_rows_in_one_sentence():
    from detkit._engine._detections import coco_results

    good = np.array([[0, 0.9, 1.0, 2.0, 11.0, 12.0]])
    assert coco_results([7], [3], [good], "xyxy") == [
        {"image_id": 7, "category_id": 3, "bbox": [1.0, 2.0, 10.0, 10.0], "score": 0.9}]
    for bad in (np.array([[0, 0.9, np.nan, 2.0, 11.0, 12.0]]), np.array([[0, np.inf, 1.0, 2.0, 11.0, 12.0]])):
        with pytest.raises(InputError, match=r"image 7 hold NaN or infinite values.*lower learning rate"):
            coco_results([7], [3], [bad], "xyxy")
