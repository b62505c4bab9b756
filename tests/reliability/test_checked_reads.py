"""Files read back are checked against a schema; YAML numbers; download deadlines; 16-bit images; small refusals."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from PIL import Image

from detkit._base import FetchFailed, check_output, fetch, load_yaml
from detkit._engine._checkpoints import Checkpoints, read_checkpoint
from detkit._engine._metric import DetectionMetric
from detkit._engine._optimizer_state import OPTIMIZER_FILE, load_optimizer_state, save_optimizer_state
from detkit._model import read_detector_config
from detkit.config import load_config
from detkit.data._transforms import decode_image
from detkit.errors import CheckpointError, ConfigError, DataError, InputError


def _trained(folder: Path) -> None:
    mx.random.seed(3)
    net = gluon.nn.Dense(4, in_units=6)
    net.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 5e-4},
                            update_on_kvstore=False)
    for step in range(3):
        with autograd.record():
            loss = (net(mx.nd.array(np.random.RandomState(step).randn(2, 6))) ** 2).sum()
        loss.backward()
        trainer.step(2)
    save_optimizer_state(trainer, folder)


def _fresh_trainer() -> gluon.Trainer:
    net = gluon.nn.Dense(4, in_units=6)
    net.initialize(mx.init.Xavier())
    return gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 5e-4},
                         update_on_kvstore=False)


def _edit(folder: Path, change) -> None:
    path = folder / OPTIMIZER_FILE
    description = json.loads(path.read_text())
    change(description)
    path.write_text(json.dumps(description))


@pytest.mark.parametrize("change, message", [
    (lambda d: d["scalars"].update(lr=1e6), "the checkpoint's settings give learning_rate=0.1"),
    (lambda d: d["scalars"].update(momentum=5.0), "out of the range fit accepts"),
    (lambda d: d["scalars"].update(wd=-1.0), "out of the range fit accepts"),
    (lambda d: d["scalars"].update(lr="abc"), "must be a number"),
    (lambda d: d["scalars"].update(lr=float("nan")), "must be a finite number"),
    (lambda d: d.update(num_update=10**9), "'num_update' must be a count from 0 to 60"),
    (lambda d: d["index_update_counts"]["0"].update({"0": 10**9}), "must be a count from 0"),
    (lambda d: d.pop("sha256"), "records no SHA-256"),
])
def test_a_tampered_optimizer_state_is_refused_never_applied(tmp_path, change, message) -> None:
    _trained(tmp_path)
    _edit(tmp_path, change)
    trainer = _fresh_trainer()
    with pytest.raises(CheckpointError, match=message):
        load_optimizer_state(trainer, tmp_path, max_updates=60)
    assert trainer.learning_rate == 0.1


def test_a_deeply_nested_optimizer_state_is_refused(tmp_path) -> None:
    _trained(tmp_path)
    text = (tmp_path / OPTIMIZER_FILE).read_text()
    (tmp_path / OPTIMIZER_FILE).write_text(text.replace('"states": [', '"states": [' + "[" * 5000 + "]" * 5000 + ", ", 1))
    with pytest.raises(CheckpointError, match="deeper than 32 levels"):
        load_optimizer_state(_fresh_trainer(), tmp_path)


def test_an_intact_optimizer_state_loads_and_keeps_the_checked_settings(tmp_path) -> None:
    _trained(tmp_path)
    trainer = _fresh_trainer()
    load_optimizer_state(trainer, tmp_path, max_updates=60)
    assert trainer._optimizer.num_update == 3
    assert trainer._optimizer.momentum == 0.9 and trainer.learning_rate == 0.1


def test_deep_nesting_in_state_pointer_and_detector_files_is_a_checkpoint_error(tmp_path) -> None:
    checkpoint = tmp_path / "epoch-0001"
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text('{"format": "detkit-checkpoint/2", "epoch": 0, "seed": 1, "history": '
                                           + "[" * 5000 + "]" * 5000 + ', "settings": {}}')
    with pytest.raises(CheckpointError, match="deeper than"):
        read_checkpoint(checkpoint)
    (tmp_path / "last.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(CheckpointError, match="not a checkpoint pointer"):
        Checkpoints(tmp_path).path("last")
    (tmp_path / "detector.yaml").write_text("a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(CheckpointError, match="deeper than"):
        read_detector_config(tmp_path / "detector.yaml")


@pytest.mark.parametrize("change, message", [
    ({"epoch": 10**9}, "'epoch' is missing or malformed"),
    ({"history": [{"loss": float("inf")}]}, "'history' is missing or malformed"),
    ({"history": []}, "'history' is missing or malformed"),  # one record per epoch trained
])
def test_a_checkpoint_state_out_of_range_is_refused(tmp_path, change, message) -> None:
    state = {"format": "detkit-checkpoint/2", "epoch": 0, "seed": 1, "history": [{"loss": 1.0}], "settings": {}}
    (tmp_path / "state.json").write_text(json.dumps({**state, **change}))
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path)


def test_yaml_numbers_are_read_as_users_write_them(tmp_path) -> None:
    assert load_yaml("lr: 1e-3\nwd: 5e-4\nbig: 2E5\nquoted: '1e-3'\nplain: 0.1\nint: 3") == {
        "lr": 0.001, "wd": 0.0005, "big": 200000.0, "quoted": "1e-3", "plain": 0.1, "int": 3}
    config = tmp_path / "config.yaml"
    config.write_text("train:\n  optimizer_params:\n    learning_rate: 1e-3\n    wd: 5e-4\n")
    loaded = load_config(config, ["train.warmup_epochs=0e0"])
    assert loaded.train.optimizer_params == {"learning_rate": 0.001, "wd": 0.0005}
    config.write_text("model: " + "[" * 3000 + "]" * 3000)
    with pytest.raises(ConfigError, match="deeper than"):
        load_config(config)


def _header_drip_server() -> tuple[socket.socket, threading.Event]:
    """A server on 127.0.0.1 that sends its status line and headers one byte every 0.2 s, forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        connection.recv(4096)
        headers = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 10_000
        for byte in headers:
            if stop.is_set():
                break
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, stop


def test_a_server_that_drips_its_headers_meets_the_deadline(tmp_path) -> None:
    server, stop = _header_drip_server()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/model.params"
    started = time.monotonic()
    try:
        with pytest.raises(FetchFailed, match=r"did not answer within 1.5 s \(connection and headers\)"):
            fetch(url, tmp_path / "part", label="model", progress=False, timeout=1.5)
    finally:
        stop.set()
        server.close()
    # A hang guard (the per-read timeout alone would drip on for half an hour), with room for a busy machine.
    assert time.monotonic() - started < 90


def test_a_sixteen_bit_png_in_a_record_is_scaled_not_clipped() -> None:
    values = np.full((8, 8), 30000, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    image = np.asarray(decode_image(buffer.getvalue(), "record 0"))
    assert image.shape == (8, 8, 3)
    assert int(image[0, 0, 0]) == round(30000 * 255 / 65535)  # not 255 (white)


def test_a_plot_with_a_class_without_detections_is_drawn(tmp_path) -> None:
    metric = DetectionMetric(2, ["cat", "dog"])
    labels = mx.nd.array([[[0, 0.1, 0.1, 0.5, 0.5], [1, 0.5, 0.5, 0.9, 0.9]]])
    detections = mx.nd.array([[[0, 0.9, 0.1, 0.1, 0.5, 0.5], [-1, 0, 0, 0, 0, 0]]])
    metric.update(detections, labels)
    metric.plot_precision_recall(tmp_path / "pr.png")
    assert Image.open(tmp_path / "pr.png").size[0] > 0


def test_outputs_over_inputs_are_refused_naming_both(tmp_path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    data = tmp_path / "val.rec"
    data.write_bytes(b"")
    for output in (data, model / "network.params", model):
        with pytest.raises(InputError, match=f"would overwrite the .* {tmp_path}"):
            check_output(output, {"model": model, "data set": data}, what="--plot")
    with pytest.raises(InputError, match="path is empty"):
        check_output("", {"model": model}, what="--plot")
    assert check_output(tmp_path / "pr.png", {"model": model, "data set": data}, what="--plot") == tmp_path / "pr.png"


def test_train_output_dir_over_the_config_is_refused(tmp_path, monkeypatch) -> None:
    from detkit.cli import main

    config = tmp_path / "config.yaml"
    text = "# my comments\ntrain:\n  output_dir: ''\n  epochs: 1\n"
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(config)]) == 2
    assert config.read_text() == text


def test_a_split_list_that_links_out_of_the_dataset_or_is_a_pipe_is_named(tmp_path) -> None:
    from detkit.data._voc import _read_split

    root = tmp_path / "voc"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("the first line of another file\n")
    (root / "ImageSets" / "Main" / "train.txt").symlink_to(secret)
    with pytest.raises(DataError, match="symbolic link to a file outside") as caught:
        _read_split(root, "train")
    assert "first line" not in str(caught.value)
    os.mkfifo(root / "ImageSets" / "Main" / "val.txt")
    with pytest.raises(DataError, match="is a named pipe"):
        _read_split(root, "val")
    # A linked folder leads out of the dataset as a linked file does.
    other = tmp_path / "voc2"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.txt").write_text("the first line of another file\n")
    (other / "ImageSets").mkdir(parents=True)
    (other / "ImageSets" / "Main").symlink_to(elsewhere)
    with pytest.raises(DataError, match="outside"):
        _read_split(other, "train")


def test_yaml_aliases_are_walked_once_not_once_per_path() -> None:
    # Nine levels of nine aliases each: 9**9 paths, nine containers. A walk per path would hang.
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    from detkit._base import load_yaml

    assert len(load_yaml("\n".join(lines))["l8"]) == 9
