"""INT8 detectors: quantize, detect, evaluate, save/load, export; what stays in fp32; what is refused."""

from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest

import detkit
from detkit import SSDDetector
from detkit.errors import CheckpointError, InputError

SIZE = 64

pytestmark = pytest.mark.skipif(not mx.runtime.Features().is_enabled("MKLDNN"),
                                reason="this MXNet has no MKL-DNN backend: INT8 needs it")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A detector trained for a few epochs on a tiny synthetic set, and its validation data."""
    root = tmp_path_factory.mktemp("pikachu")
    train, val = detkit.data.synthetic_pikachu(root, num_train=128, num_val=16, image_size=SIZE, seed=5,
                                               progress=False)
    mx.random.seed(3)
    detector = SSDDetector(classes=train.classes, data_shape=SIZE, ctx=mx.cpu(),
                           loss=("focal_smooth_l1", {"normalization": "positives"}))
    detkit.fit(detector, train, epochs=15, batch_size=16, seed=0, quiet=True, lr_schedule="cosine", warmup_epochs=1,
               optimizer_params={"learning_rate": 0.01, "momentum": 0.9, "wd": 5e-4})
    return detector, val


@pytest.fixture(scope="module")
def int8(trained):
    detector, val = trained
    return detector.quantize(val, num_batches=2, batch_size=8)


def test_quantize_returns_an_int8_copy_and_leaves_the_original(trained, int8) -> None:
    detector, val = trained
    assert detector.precision == "float32" and int8.precision == "int8"
    assert int8 is not detector and int8.classes == detector.classes and int8.data_shape == detector.data_shape
    batch = next(iter(val.loader(8, SIZE, train=False))).data
    anchors_f, classes_f, boxes_f = detector(batch)
    anchors_q, classes_q, boxes_q = int8(batch)
    # Anchors depend on shapes alone and stay exact; predictions are close to fp32's.
    np.testing.assert_array_equal(anchors_q.asnumpy(), anchors_f.asnumpy())
    for quantized, reference in ((classes_q, classes_f), (boxes_q, boxes_f)):
        error = np.abs(quantized.asnumpy() - reference.asnumpy()).mean() / np.abs(reference.asnumpy()).mean()
        assert error < 0.1, error
    assert not np.array_equal(classes_q.asnumpy(), classes_f.asnumpy())  # it really runs another network


def test_the_quantized_graph_runs_int8_convolutions_and_fp32_anchors(int8, tmp_path) -> None:
    symbol, _ = int8.export(tmp_path)
    nodes = json.loads(symbol.read_text())["nodes"]
    ops = [node["op"] for node in nodes]
    assert ops.count("_sg_mkldnn_conv") >= 12 and "_contrib_quantize_v2" in ops
    anchor_ops = [node for node in nodes if node["name"].startswith(int8.anchor_generator.prefix)]
    assert anchor_ops and not any("quantize" in node["op"] for node in anchor_ops)
    assert "_contrib_MultiBoxDetection" in ops  # post-processing is in the exported graph, in fp32


def test_int8_evaluates_and_predicts_like_fp32(trained, int8) -> None:
    detector, val = trained
    fp32, quantized = detkit.evaluate(detector, val), detkit.evaluate(int8, val)
    assert fp32["map_50"] > 0.3, fp32["map_50"]  # the fixture trained a detector worth comparing
    assert abs(quantized["map_50"] - fp32["map_50"]) < 0.1
    image = val.image(0)
    boxes = int8.predict(image, threshold=0.3)
    assert boxes and all(0 <= b.box[0] <= b.box[2] <= image.shape[1] for b in boxes)


def test_an_int8_detector_saves_and_loads_without_pickle(int8, tmp_path) -> None:
    int8.save(tmp_path / "model")
    assert yaml_precision(tmp_path / "model") == "int8"
    assert (tmp_path / "model" / "network-int8-symbol.json").is_file()
    loaded = SSDDetector.load(tmp_path / "model", ctx=mx.cpu())
    assert loaded.precision == "int8"
    x = mx.nd.random.uniform(-100, 100, (2, 3, SIZE, SIZE))
    np.testing.assert_allclose(loaded.detect(x).asnumpy(), int8.detect(x).asnumpy(), rtol=1e-5, atol=1e-5)
    # Both INT8 files are checksummed like the weights; a missing one is named.
    assert set(yaml_sha256(tmp_path / "model")) >= {"network-int8-symbol.json", "network-int8-0000.params"}
    (tmp_path / "model" / "network-int8-symbol.json").unlink()
    with pytest.raises(CheckpointError, match="network-int8-symbol.json"):
        SSDDetector.load(tmp_path / "model", ctx=mx.cpu())


def test_saving_float32_over_an_int8_model_removes_the_int8_files(trained, int8, tmp_path) -> None:
    detector, _ = trained
    int8.save(tmp_path)
    detector.save(tmp_path)
    assert not (tmp_path / "network-int8-symbol.json").exists()
    assert SSDDetector.load(tmp_path, ctx=mx.cpu()).precision == "float32"


def test_int8_detectors_cannot_be_trained_or_quantized_again(trained, int8) -> None:
    detector, val = trained
    with pytest.raises(InputError, match="INT8 detector, made for inference"):
        detkit.fit(int8, val, epochs=1, batch_size=8, quiet=True)
    with pytest.raises(InputError, match="already INT8"):
        int8.quantize(val)


def test_quantize_checks_its_arguments(trained) -> None:
    detector, val = trained
    with pytest.raises(InputError, match="'calibration' argument must be one of naive, entropy"):
        detector.quantize(val, calibration="percentile")
    with pytest.raises(InputError, match="'num_batches' argument must be a positive int"):
        detector.quantize(val, num_batches=0)
    with pytest.raises(InputError, match="'calibration_data' argument must be a detection dataset"):
        detector.quantize(42)
    with pytest.raises(InputError, match="gave no batch"):
        detector.quantize([])


def test_quantize_takes_preprocessed_batches(trained) -> None:
    detector, val = trained
    batches = [batch.data for batch, _ in zip(val.loader(8, SIZE, train=False), range(2))]
    assert detector.quantize(batches).precision == "int8"


def yaml_precision(directory) -> str:
    import yaml

    return yaml.safe_load((directory / "detector.yaml").read_text())["precision"]


def test_the_quantize_command_saves_an_int8_detector_that_evaluates(trained, tmp_path, capsys) -> None:
    from detkit.cli import main

    detector, val = trained
    detector.save(tmp_path / "model")
    code = main(["quantize", str(tmp_path / "model"), str(val.rec_path), "--out", str(tmp_path / "int8"),
                 "--batches", "1", "--batch-size", "8"])
    assert code == 0 and "INT8 detector" in capsys.readouterr().out
    assert SSDDetector.load(tmp_path / "int8").precision == "int8"
    assert main(["evaluate", str(tmp_path / "int8"), str(val.rec_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == len(val)
    assert main(["quantize", str(tmp_path / "int8"), str(val.rec_path), "--out", str(tmp_path / "again")]) == 2
    assert "already INT8" in capsys.readouterr().err


def yaml_sha256(directory) -> dict:
    import yaml

    return yaml.safe_load((directory / "detector.yaml").read_text())["sha256"]


def test_quantizing_keeps_mxnets_per_layer_log_off_the_terminal(tmp_path, capfd) -> None:
    # An untrained detector quantizes as well: what matters here is MXNet's log, about 90 lines otherwise.
    _, val = detkit.data.synthetic_pikachu(tmp_path, num_train=8, num_val=8, image_size=64, progress=False)
    detector = SSDDetector(classes=val.classes, data_shape=64, ctx=mx.cpu())
    capfd.readouterr()
    detector.quantize(val, num_batches=1, batch_size=8)
    err = capfd.readouterr().err
    assert "quantize_graph_pass" not in err and "is quantized" not in err, err[:500]


def test_the_native_log_filter_drops_only_the_lines_it_names(capfd) -> None:
    import os
    import re

    from detkit._base import native_stderr_filtered

    with native_stderr_filtered(re.compile(r"noise\.cc:\d+:")):
        os.write(2, b"[12:00:00] noise.cc:302: layer is quantized.\n[12:00:00] other.cc:7: a real warning\n")
    assert capfd.readouterr().err == "[12:00:00] other.cc:7: a real warning\n"


def _open_fds() -> list[str]:
    import os

    return sorted(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
def test_the_native_log_filter_forwards_live_restores_fd_2_and_leaks_no_descriptor(tmp_path) -> None:
    import os
    import re
    import time

    from detkit._base import native_stderr_filtered

    real = open(tmp_path / "stderr", "w+b")  # the real standard error of this test
    original = os.dup(2)
    try:
        os.dup2(real.fileno(), 2)
        before = _open_fds()
        with pytest.raises(RuntimeError, match="quantization failed"):
            with native_stderr_filtered(re.compile(r"noise\.cc:\d+:")):
                os.write(2, b"[12:00:00] noise.cc:302: layer is quantized.\n[12:00:00] other.cc:7: the last words\n")
                deadline = time.monotonic() + 30  # a hang guard: the line passes within milliseconds
                while b"the last words" not in (tmp_path / "stderr").read_bytes() and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert (tmp_path / "stderr").read_bytes() == b"[12:00:00] other.cc:7: the last words\n"  # live
                raise RuntimeError("quantization failed")
        assert os.fstat(2).st_ino == os.fstat(real.fileno()).st_ino  # fd 2 restored
        assert _open_fds() == before  # the duplicate, the pipe's ends: all closed
        os.write(2, b"after\n")
    finally:
        os.dup2(original, 2)
        os.close(original)
        real.close()
    assert (tmp_path / "stderr").read_bytes() == b"[12:00:00] other.cc:7: the last words\nafter\n"


def test_the_native_log_filter_keeps_the_last_line_of_a_process_that_dies_in_the_block() -> None:
    import subprocess
    import sys

    script = (
        "import os, re, time\n"
        "from detkit._base import native_stderr_filtered\n"
        "with native_stderr_filtered(re.compile(r'noise')):\n"
        "    os.write(2, b'noise.cc:1: dropped\\nCheck failed: the reason of the crash\\n')\n"
        "    time.sleep(1)\n"
        "    os._exit(3)  # as a fatal error of MXNet's C++ code ends the process: no finally runs\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert done.returncode == 3
    assert done.stderr.decode().splitlines()[-1:] == ["Check failed: the reason of the crash"], done.stderr[-2000:]
    assert b"dropped" not in done.stderr


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
@pytest.mark.parametrize("failing", ["pipe", "thread"])
def test_the_native_log_filter_that_cannot_start_runs_the_block_unfiltered_and_leaks_nothing(monkeypatch,
                                                                                              failing) -> None:
    import os
    import re
    import threading

    from detkit._base import _native_log, native_stderr_filtered

    def fail(*args, **kwargs):
        raise OSError(24, "Too many open files") if failing == "pipe" else RuntimeError("can't start new thread")

    if failing == "pipe":
        monkeypatch.setattr(_native_log.os, "pipe", fail)
    else:
        monkeypatch.setattr(threading.Thread, "start", fail)
    before, stderr = _open_fds(), os.fstat(2).st_ino
    ran = []
    with native_stderr_filtered(re.compile("noise")):
        ran.append(os.fstat(2).st_ino)
    assert ran == [stderr] and _open_fds() == before
