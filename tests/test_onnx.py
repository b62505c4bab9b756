"""ONNX export: the whole detector in one graph, run by ONNX Runtime, equals ``detect`` and ``evaluate``."""

from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest

import detkit
from detkit import OnnxDetector, SSDDetector
from detkit.errors import CheckpointError, ExportError, InputError, StorageError
from detkit.testing import compare_detections

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SIZE = 64
#: Tolerances of the issue: boxes within 1e-4 of the image size, scores within 1e-5, the same count.
BOX_TOLERANCE, SCORE_TOLERANCE = 1e-4, 1e-5


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    """A small generated validation set: 12 images of 64 x 64 pixels."""
    root = tmp_path_factory.mktemp("pikachu")
    _, val = detkit.data.synthetic_pikachu(root, num_train=4, num_val=12, image_size=SIZE, seed=11, progress=False)
    return val


def _detections(rows: np.ndarray) -> list[np.ndarray]:
    """Each image's detections (class id >= 0), in the order given."""
    return [image[image[:, 0] >= 0] for image in rows]


def assert_same_detections(onnx_rows: np.ndarray, mxnet_rows: np.ndarray) -> int:
    """Every image: the same detections, scores within 1e-5, boxes within 1e-4; returns their count."""
    found = compare_detections(onnx_rows, mxnet_rows, score_tolerance=SCORE_TOLERANCE)
    assert found["mismatched_images"] == [], found
    assert found["max_box_error"] <= BOX_TOLERANCE and found["max_score_error"] <= SCORE_TOLERANCE, found
    return int(found["num_detections"])


def test_compare_detections_pairs_detections_in_any_order_and_finds_differences() -> None:
    a = np.array([[[0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9], [-1] * 6]], dtype=np.float32)
    assert compare_detections(a, a[:, [2, 1, 0]])["mismatched_images"] == []
    moved = a.copy()
    moved[0, 1, 2] += 0.01
    assert abs(compare_detections(moved, a)["max_box_error"] - 0.01) < 1e-6
    other_class = a.copy()
    other_class[0, 1, 0] = 0
    assert compare_detections(other_class, a)["mismatched_images"] == [0]
    assert compare_detections(a[:, :1], a)["mismatched_images"] == [0]


def _detector(backbone, force_suppress=True, **kwargs):
    mx.random.seed(7)
    np.random.seed(7)
    post = {"name": "multibox_detection", "clip": True, "force_suppress": force_suppress, "nms_topk": 100}
    return SSDDetector(classes=["pikachu"], backbone=backbone, data_shape=SIZE, ctx=mx.cpu(),
                       post_processor=post, **kwargs)


BODIES = [
    pytest.param("toy", id="toy"),
    pytest.param(("resnet18_v1", {"stages": [2, 3]}), id="resnet18_v1"),
    pytest.param(("mobilenet0_25", {"stages": [2, 3]}), id="mobilenet0_25"),
]


@pytest.mark.parametrize("backbone", BODIES)
def test_onnx_runtime_equals_detect_and_evaluate(backbone, val, tmp_path) -> None:
    detector = _detector(backbone)
    graph, manifest = detector.export(tmp_path / "onnx", format="onnx")
    assert graph.name == "detector.onnx" and manifest.name == "detector.json"
    onnx_detector = OnnxDetector.load(tmp_path / "onnx")
    total = 0
    for batch in val.loader(8, SIZE, train=False):
        total += assert_same_detections(onnx_detector.detect(batch.data), detector.detect(batch.data).asnumpy())
    assert total > 0  # an untrained detector still reports boxes above the score threshold
    ours, theirs = detkit.evaluate(onnx_detector, val), detkit.evaluate(detector, val)
    assert theirs["map_50"] > 0  # something to compare: some random boxes hit the objects
    for key in ("map_50", "map_50_voc07", "map_50_95", "mar_100"):
        assert abs(ours[key] - theirs[key]) <= 1e-6, key


def test_per_class_nms_and_unclipped_boxes_follow_the_post_processor(val, tmp_path) -> None:
    mx.random.seed(3)
    detector = SSDDetector(classes=["a", "b", "c"], data_shape=SIZE, ctx=mx.cpu(),
                           post_processor={"name": "multibox_detection", "force_suppress": False, "clip": False,
                                           "nms_threshold": 0.3, "score_threshold": 0.2, "nms_topk": -1})
    detector.export(tmp_path, format="onnx")
    onnx_detector = OnnxDetector.load(tmp_path)
    images = mx.nd.random.normal(scale=60, shape=(3, 3, SIZE, SIZE))
    rows = onnx_detector.detect(images)
    assert rows.shape[1] == detector(images)[0].shape[1]  # nms_topk=-1: every anchor can be kept
    assert assert_same_detections(rows, detector.detect(images).asnumpy()) > 0
    boxes = np.concatenate([d[:, 2:] for d in _detections(rows)])
    assert (boxes < 0).any() or (boxes > 1).any()  # not clipped, as the post-processor says


def test_dynamic_batch_and_the_manifest(tmp_path) -> None:
    detector = _detector("toy")
    detector.export(tmp_path, format="onnx")
    manifest = json.loads((tmp_path / "detector.json").read_text())
    assert manifest["classes"] == ["pikachu"] and manifest["data_shape"] == [SIZE, SIZE]
    assert manifest["input_shape"] == ["batch", 3, SIZE, SIZE] and manifest["opset"] >= 13
    assert set(manifest["exporter"]) == {"detkit", "mxnet", "onnx"} and manifest["rgb_mean"] == list(detkit.data.RGB_MEAN)
    onnx_detector = OnnxDetector.load(tmp_path)
    for batch in (1, 5):
        images = mx.nd.random.normal(scale=50, shape=(batch, 3, SIZE, SIZE))
        rows = onnx_detector.detect(images)
        assert rows.shape == (batch, 100, 6)
        assert_same_detections(rows, detector.detect(images).asnumpy())
        kept = rows[:, :, 0] >= 0
        # the detections first, highest score first, then rows of -1
        for image, mask in zip(rows, kept):
            assert not mask[mask.argmin():].any() or mask.all()
            assert (np.diff(image[mask, 1]) <= 0).all() and (image[~mask] == -1).all()


def test_predict_from_files_matches_mxnet(val, tmp_path) -> None:
    detector = _detector("toy")
    detector.export(tmp_path / "onnx", format="onnx")
    images = detkit.data.extract(val.rec_path, tmp_path / "images", num=2)
    ours = OnnxDetector.load(tmp_path / "onnx").predict(images, threshold=0.3)
    theirs = detector.predict(images, threshold=0.3)
    assert [len(d) for d in ours] == [len(d) for d in theirs] and sum(len(d) for d in ours) > 0
    for mine, reference in zip(ours, theirs):
        for a, b in zip(mine, reference):
            assert a.class_name == b.class_name and abs(a.score - b.score) <= SCORE_TOLERANCE
            np.testing.assert_allclose(a.box, b.box, atol=BOX_TOLERANCE * SIZE)


def test_a_post_processor_that_cannot_export_is_named_with_its_distribution(tmp_path) -> None:
    from detkit.components import MultiBoxDetectionPostProcessor

    class Opaque(MultiBoxDetectionPostProcessor):
        export_onnx = detkit.interfaces.PostProcessor.export_onnx

    assert not Opaque().exports_onnx and MultiBoxDetectionPostProcessor().exports_onnx

    class Plugin:
        @detkit.hookimpl
        def register_post_processors(self, register):
            register("opaque", Opaque)

    detkit.register_plugin(Plugin(), name="opaque-plugin")
    try:
        detector = SSDDetector(classes=["a"], data_shape=SIZE, ctx=mx.cpu(), post_processor="opaque")
        with pytest.raises(ExportError, match=r"post processor 'opaque' \(.*opaque-plugin.*\) cannot be exported"):
            detector.export(tmp_path / "out", format="onnx")
    finally:
        detkit.unregister_plugin("opaque-plugin")
    assert not (tmp_path / "out" / "detector.onnx").exists()


def test_refusals(tmp_path) -> None:
    detector = _detector("toy")
    with pytest.raises(InputError, match="'format'"):
        detector.export(tmp_path, format="tflite")
    with pytest.raises(CheckpointError, match="holds no ONNX detector"):
        OnnxDetector.load(tmp_path)
    detector.save(tmp_path / "model")
    with pytest.raises(CheckpointError, match="detkit export"):
        OnnxDetector.load(tmp_path / "model")
    detector.export(tmp_path / "onnx", format="onnx")
    onnx_detector = OnnxDetector.load(tmp_path / "onnx")
    with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
        onnx_detector.detect(np.zeros((1, 3, 32, 32), dtype=np.float32))
    graph = tmp_path / "onnx" / "detector.onnx"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="damaged"):
        OnnxDetector.load(tmp_path / "onnx")


def test_the_commands_export_predict_evaluate_and_quantize(val, tmp_path, capsys) -> None:
    from detkit.cli import main

    detector = _detector("toy")
    detector.save(tmp_path / "model")
    images = detkit.data.extract(val.rec_path, tmp_path / "images", num=2)
    assert main(["export", str(tmp_path / "model"), "--format", "onnx"]) == 0
    exported = tmp_path / "model-onnx"
    assert (exported / "detector.onnx").is_file() and f"predict --runtime onnxruntime {exported}" in capsys.readouterr().out
    assert main(["predict", "--runtime", "onnxruntime", str(exported), *map(str, images), "--out",
                 str(tmp_path / "pictures"), "--threshold", "0.3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    theirs = detector.predict(images, threshold=0.3)
    assert [len(r["detections"]) for r in report] == [len(d) for d in theirs]
    assert all((tmp_path / "pictures" / f"{p.stem}-detections.png").is_file() for p in images)
    assert main(["evaluate", "--runtime", "onnxruntime", str(exported), str(val.rec_path), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert abs(ours["map_50"] - detkit.evaluate(detector, val)["map_50"]) <= 1e-6
    # INT8 by ONNX Runtime, calibrated on the images; its own folder, its own tolerance.
    assert main(["quantize", "--runtime", "onnxruntime", str(exported), str(val.rec_path), "--out",
                 str(tmp_path / "int8"), "--batches", "1", "--batch-size", "4"]) == 0
    int8 = OnnxDetector.load(tmp_path / "int8")
    assert int8.precision == "int8" and json.loads((tmp_path / "int8" / "detector.json").read_text())["quantization"]
    graph = __import__("onnx").load(str(tmp_path / "int8" / "detector.onnx"))
    ops = [node.op_type for node in graph.graph.node]
    assert "QuantizeLinear" in ops and "NonMaxSuppression" in ops  # INT8 body, float32 post-processing
    batch = next(iter(val.loader(8, SIZE, train=False))).data
    fp32_rows, int8_rows = OnnxDetector.load(exported).detect(batch), int8.detect(batch)
    best_fp32, best_int8 = fp32_rows[:, 0, 1], int8_rows[:, 0, 1]
    assert np.abs(best_int8 - best_fp32).max() < 0.05 and not np.array_equal(fp32_rows, int8_rows)
    # Refusals: an output that is the input; an MXNet model folder given to the ONNX runtime.
    assert main(["export", str(tmp_path / "model"), "--out", str(tmp_path / "model")]) == 2
    assert main(["predict", "--runtime", "onnxruntime", str(tmp_path / "model"), str(images[0])]) == 2
    assert "detkit export" in capsys.readouterr().err


def test_export_leaves_the_detectors_own_graphs_alone(tmp_path) -> None:
    detector = _detector("toy")
    images = mx.nd.random.normal(scale=50, shape=(2, 3, SIZE, SIZE))
    before = detector.detect(images).asnumpy()
    detector(images)
    graph = detector.network._cached_graph  # what MXNet's own exporters and AMP read
    detector.export(tmp_path, format="onnx")
    assert detector.network._cached_graph is graph and detector.hybridized
    np.testing.assert_array_equal(detector.detect(images).asnumpy(), before)


def test_an_export_is_one_generation_of_its_folder_and_never_touches_a_users_file(tmp_path) -> None:
    detector = _detector("toy")
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    detector.export(out, format="onnx")
    detector.export(out, format="onnx")  # over the earlier export: replaced as a whole
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["detector.json", "detector.onnx", "notes.txt"]
    OnnxDetector.load(out)
    # A file of the user's under the export's name is refused, not replaced.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "detector.onnx").write_bytes(b"not detkit's")
    with pytest.raises(StorageError, match="detector.onnx"):
        detector.export(theirs, format="onnx")
    assert (theirs / "detector.onnx").read_bytes() == b"not detkit's"


def _as_it_is(folder) -> tuple:
    """A folder's files and their bytes, and its own modification time (a folder made and removed in it moves it)."""
    files = {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}
    return files, folder.stat().st_mtime_ns


def test_a_refused_export_leaves_the_folder_exactly_as_it_was(tmp_path) -> None:
    detector = _detector("toy")
    model = tmp_path / "model"
    detector.save(model)  # a folder of another kind of result: a saved detector
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "detector.json").write_text("mine")
    for folder, message in ((model, "holds detkit's detector files"), (theirs, "detector.json was not made by detkit")):
        before = _as_it_is(folder)
        with pytest.raises(StorageError, match=message):
            detector.export(folder, format="onnx")
        assert _as_it_is(folder) == before  # no scratch folder made in it, not even for a moment
