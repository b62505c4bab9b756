"""Integrity: damaged weights are refused by checksum, repeated records and ids are errors, 16-bit images are
scaled, and hostile image inputs (pipes, bombs, object arrays) end in a clear error, never a hang."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
import yaml
from PIL import Image

import detkit
from detkit import SSDDetector
from detkit.data import DetectionDataset, pack_coco
from detkit.errors import CheckpointError, DataError, InputError
from detkit._model import load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_data_pack import make_coco  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    train, _ = detkit.data.synthetic_pikachu(root / "data", num_train=8, num_val=4, image_size=32, seed=3,
                                             progress=False)
    detkit.fit(_detector(), train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=root / "checkpoints",
               optimizer_params={"learning_rate": 0.01, "momentum": 0.9})
    _detector().save(root / "model")
    return train, root


def _detector() -> SSDDetector:
    mx.random.seed(1)
    return SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())


def _flip(path: Path, position: float = 0.7) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * position)] ^= 0x01  # one bit of one weight: still a readable file
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_saved_weights_is_refused(saved, tmp_path) -> None:
    _, root = saved
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    assert "network.params" in yaml.safe_load((model / "detector.yaml").read_text())["sha256"]
    _flip(model / "network.params")
    with pytest.raises(CheckpointError, match="network.params are damaged.*SHA-256"):
        SSDDetector.load(model, ctx=mx.cpu())


def test_a_model_with_a_manifest_but_without_checksums_is_refused(saved, tmp_path) -> None:
    _, root = saved
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    config = yaml.safe_load((model / "detector.yaml").read_text())
    del config["sha256"]  # detkit saves with a manifest always record them: deleting them disables nothing
    (model / "detector.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match="has no 'sha256' of its weights"):
        SSDDetector.load(model, ctx=mx.cpu())


def test_a_model_saved_without_checksums_still_loads(saved, tmp_path) -> None:
    _, root = saved
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    (model / ".detkit-manifest.json").unlink()  # as a detkit from before checksums (and manifests) left it
    config = yaml.safe_load((model / "detector.yaml").read_text())
    del config["sha256"]
    (model / "detector.yaml").write_text(yaml.safe_dump(config))
    assert SSDDetector.load(model, ctx=mx.cpu()).classes == ["pikachu"]


@pytest.mark.parametrize("name", ["network.params", "optimizer.params"])
def test_a_flipped_bit_in_a_checkpoint_is_refused_on_resume(saved, tmp_path, name) -> None:
    train, root = saved
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(root / "checkpoints", checkpoints)
    _flip(checkpoints / "epoch-0001" / name)
    with pytest.raises(CheckpointError, match=f"{name}.*damaged.*SHA-256"):
        detkit.fit(_detector(), train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=checkpoints, resume=True,
                   optimizer_params={"learning_rate": 0.01, "momentum": 0.9})


@pytest.mark.parametrize("repeat, what", [(lambda lines: lines + [lines[0]], "offset"),
                                          (lambda lines: lines + ["0\t" + lines[1].split("\t")[1]], "offset"),
                                          (lambda lines: lines[:1] + [lines[0].split("\t")[0] + "\t" + lines[1].split("\t")[1]] + lines[2:], "key")])
def test_an_index_that_lists_a_record_twice_is_refused(saved, tmp_path, repeat, what) -> None:
    _, root = saved
    shutil.copy(root / "data" / "train.rec", tmp_path / "train.rec")
    lines = (root / "data" / "train.idx").read_text().splitlines()
    (tmp_path / "train.idx").write_text("\n".join(repeat(lines)) + "\n")
    with pytest.raises(DataError, match=f"train.idx: line \\d+ repeats the {what}"):
        DetectionDataset(tmp_path / "train.rec", classes=["pikachu"])


COCO_BREAKAGES = [
    (lambda d: d["images"].append(dict(d["images"][0], file_name=d["images"][1]["file_name"])), "repeats the id"),
    (lambda d: d["categories"].append({"id": d["categories"][0]["id"], "name": "other"}), "more than one category"),
    (lambda d: d["images"][0].update(id=[1, 2]), "'id' \\(an integer or a string\\)"),
    (lambda d: d["images"][0].update(id={"a": 1}), "'id' \\(an integer or a string\\)"),
    (lambda d: d["categories"][0].update(id=[7]), "invalid 'categories'"),
    (lambda d: d["annotations"][0].update(image_id=[100]), "no image with image_id"),
    (lambda d: d["annotations"][0].update(category_id={"x": 1}), "unknown category_id"),
    (lambda d: d["images"][0].update(id=True), "'id' \\(an integer or a string\\)"),
]


@pytest.mark.parametrize("breakage, message", COCO_BREAKAGES)
def test_repeated_or_unhashable_coco_ids_are_data_errors(tmp_path, breakage, message) -> None:
    _, path, images, data = make_coco(tmp_path)
    breakage(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        pack_coco(path, images, tmp_path / "out" / "coco", progress=False)


def _gradient16(path: Path) -> np.ndarray:
    values = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    return values


def test_a_16_bit_png_is_scaled_to_8_bit_not_clipped(tmp_path) -> None:
    values = _gradient16(tmp_path / "deep.png")
    image = load_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    np.testing.assert_array_equal(image[:, :, 0], np.round(values / 257.0).astype(np.uint8))
    assert 120 <= image[32, 0, 0] <= 135  # mid-grey, where clipping gave white


def test_pack_scales_a_16_bit_png_too(tmp_path) -> None:
    items, path, images, data = make_coco(tmp_path)
    values = _gradient16(images / "deep.png")
    data["images"] = [{"id": 1, "file_name": "deep.png", "width": 64, "height": 64}]
    data["annotations"] = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 20, 20]}]
    path.write_text(json.dumps(data))
    stored = pack_coco(path, images, tmp_path / "out" / "coco", progress=False).image(0)[:, :, 0].astype(float)
    expected = values / 257.0
    assert np.abs(stored - expected).mean() < 2.0  # JPEG-stored: close, not clipped at 255


def _no_hang(seconds: int = 20):
    def alarm(signum, frame):
        raise TimeoutError("blocked")
    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_predict_on_a_named_pipe_or_a_folder_is_an_error_not_a_hang(saved, tmp_path) -> None:
    _, root = saved
    detector = SSDDetector.load(root / "model", ctx=mx.cpu())
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    _no_hang()
    try:
        for path in (pipe, tmp_path):
            with pytest.raises(DataError, match="not a regular file"):
                detector.predict(str(path))
    finally:
        signal.alarm(0)


def test_a_decompression_bomb_is_a_data_error(saved, tmp_path, monkeypatch) -> None:
    _, root = saved
    Image.new("RGB", (400, 400)).save(tmp_path / "bomb.png")
    detector = SSDDetector.load(root / "model", ctx=mx.cpu())
    for limit in (100 * 100, 300 * 300):  # past twice the limit: Pillow's error; past the limit: its warning
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(DataError, match="too large to decode safely"):
            detector.predict(str(tmp_path / "bomb.png"))


@pytest.mark.parametrize("array", [
    np.array([[["a", "b", "c"]]], dtype=object), np.full((8, 8, 3), None, dtype=object),
    np.zeros((8, 8, 3), dtype=np.complex64), np.zeros((8, 8, 3), dtype="U1"), np.zeros((8, 8, 3), dtype=bool),
])
def test_an_array_that_holds_no_numbers_is_an_input_error(array) -> None:
    with pytest.raises(InputError, match="must hold numbers"):
        load_image(array)
