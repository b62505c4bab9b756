"""No file that detkit reads can run code: a pickle payload in each one is refused, and never runs.

The payload, if unpickled, creates a marker file. Every file that detkit reads
back (checkpoints, saved models, configurations, datasets, annotations,
images) gets it in turn; the reader must fail with a :class:`DetkitError` and
the marker must not exist. YAML files also get a ``!!python`` tag.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Callable

import mxnet as mx
import pytest

import detkit
from detkit import SSDDetector
from detkit._engine._checkpoints import Checkpoints
from detkit.config import load_config
from detkit.data import DetectionDataset, pack_coco, pack_voc
from detkit.data._classes import read_classes
from detkit.errors import DetkitError

SIZE = 32


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A dataset, a checkpoint folder, a saved detector, a config, VOC and COCO annotations."""
    root = tmp_path_factory.mktemp("world")
    train, _ = detkit.data.synthetic_pikachu(root / "data", num_train=8, num_val=4, image_size=SIZE, seed=1,
                                             progress=False)
    mx.random.seed(1)
    detector = SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu(),
                           loss=("focal_smooth_l1", {}))
    detkit.fit(detector, train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=root / "checkpoints",
               optimizer_params={"learning_rate": 0.01, "momentum": 0.9})
    detector.save(root / "model")
    (root / "config.yaml").write_text("model:\n  classes: [pikachu]\n", encoding="utf-8")
    images = root / "images"
    images.mkdir()
    image = train.image(0)
    from PIL import Image

    Image.fromarray(image).save(images / "a.png")
    annotations = root / "voc"
    annotations.mkdir()
    (annotations / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>32</width><height>32</height></size>"
        "<object><name>pikachu</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax>"
        "</bndbox></object></annotation>", encoding="utf-8")
    (root / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 19, 19]}],
        "categories": [{"id": 1, "name": "pikachu"}],
    }), encoding="utf-8")
    return {"root": root}


def _resume(root: Path) -> None:
    mx.random.seed(1)
    detector = SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu(), loss=("focal_smooth_l1", {}))
    train = DetectionDataset(root / "data" / "train.rec", classes=["pikachu"])
    detkit.fit(detector, train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=root / "checkpoints",
               resume=True, optimizer_params={"learning_rate": 0.01, "momentum": 0.9})


def _load_model(root: Path) -> None:
    SSDDetector.load(root / "model", ctx=mx.cpu())


def _pack_voc(root: Path) -> None:
    pack_voc(root / "images", root / "voc", root / "out" / "voc", progress=False)


def _pack_coco(root: Path) -> None:
    pack_coco(root / "coco.json", root / "images", root / "out" / "coco", progress=False)


# (file relative to the world's root, the reader that must refuse it)
READERS: list[tuple[str, Callable[[Path], object]]] = [
    ("checkpoints/last.json", _resume),
    ("checkpoints/best.json", lambda root: Checkpoints(root / "checkpoints").path("best")),
    ("checkpoints/epoch-0001/state.json", _resume),
    ("checkpoints/epoch-0001/optimizer.json", _resume),
    ("checkpoints/epoch-0001/optimizer.params", _resume),
    ("checkpoints/epoch-0001/network.params", _resume),
    ("checkpoints/epoch-0001/detector.yaml", _resume),
    ("checkpoints/epoch-0001/trainer.states", _resume),  # the pickle of the earlier format
    ("model/detector.yaml", _load_model),
    ("model/network.params", _load_model),
    ("model/loss.params", _load_model),
    ("config.yaml", lambda root: load_config(root / "config.yaml")),
    ("data/train.rec", lambda root: DetectionDataset(root / "data" / "train.rec", classes=["pikachu"]).image(0)),
    ("data/train.idx", lambda root: DetectionDataset(root / "data" / "train.rec", classes=["pikachu"])),
    ("data/classes.txt", lambda root: read_classes(root / "data" / "classes.txt")),
    ("data/synthetic.json", lambda root: detkit.data.synthetic_pikachu(
        root / "data", num_train=8, num_val=4, image_size=SIZE, seed=1, progress=False)),
    ("data/val.rec", lambda root: detkit.data.synthetic_pikachu(
        root / "data", num_train=8, num_val=4, image_size=SIZE, seed=1, progress=False)),
    ("voc/a.xml", _pack_voc),
    ("coco.json", _pack_coco),
    ("images/a.png", _pack_coco),
    ("images/a.png", lambda root: SSDDetector.load(root / "model", ctx=mx.cpu()).predict(str(root / "images/a.png"))),
]


@pytest.mark.parametrize("relative, read", READERS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(READERS)])
def test_a_pickle_payload_in_a_file_detkit_reads_is_refused_without_running(world, tmp_path, relative,
                                                                              read) -> None:
    root = tmp_path / "world"
    shutil.copytree(world["root"], root)
    marker = tmp_path / "payload-ran"
    (root / relative).write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    try:
        read(root)
    except DetkitError:
        pass
    else:
        # A reader may also ignore a file it has no use for (synthetic.json is rewritten, a
        # trainer.states beside a new-format checkpoint is never opened); it must not run it.
        assert relative in {"data/synthetic.json", "data/val.rec", "checkpoints/epoch-0001/trainer.states"}, relative
    assert not marker.exists()


@pytest.mark.parametrize("relative, read", [r for r in READERS if r[0].endswith((".yaml", ".json"))])
def test_a_yaml_python_tag_is_refused_without_running(world, tmp_path, relative, read) -> None:
    root = tmp_path / "world"
    shutil.copytree(world["root"], root)
    marker = tmp_path / "payload-ran"
    (root / relative).write_text(f"!!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8")
    try:
        read(root)
    except DetkitError:
        pass
    else:
        assert relative == "data/synthetic.json", relative
    assert not marker.exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("relative, read", READERS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(READERS)])
def test_a_named_pipe_in_place_of_a_file_detkit_reads_is_refused_without_blocking(world, tmp_path, relative,
                                                                                 read) -> None:
    import os
    import signal

    root = tmp_path / "world"
    shutil.copytree(world["root"], root)
    (root / relative).unlink(missing_ok=True)
    os.mkfifo(root / relative)

    class Blocked(BaseException):  # not an OSError, which a reader might catch
        pass

    def blocked(signum, frame):
        raise Blocked(f"reading {relative} blocked on a named pipe")
    signal.signal(signal.SIGALRM, blocked)
    signal.alarm(10)
    try:
        read(root)
    except DetkitError:
        pass
    finally:
        signal.alarm(0)
