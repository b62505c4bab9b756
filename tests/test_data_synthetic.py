"""The synthetic pikachu: determinism, re-use, and boxes that really enclose the drawn character."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest
from PIL import Image

from detkit.data import DetectionDataset, synthetic_pikachu
from detkit.data._render import compose, render_sample, render_scene
from detkit.errors import DataError, InputError

SMALL = {"num_train": 6, "num_val": 3, "image_size": 64, "progress": False}
FILES = ["train.rec", "train.idx", "val.rec", "val.idx", "classes.txt", "preview.png", "synthetic.json"]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "a"
    return root, synthetic_pikachu(root, seed=7, **SMALL)


def test_layout_and_datasets(small_set):
    root, (train, val) = small_set
    # The set, and the folder rule's manifest (which lists it) and lock.
    assert sorted(p.name for p in root.iterdir()) == sorted(FILES + [".detkit-manifest.json", ".detkit.lock"])
    assert sorted(json.loads((root / ".detkit-manifest.json").read_text())["files"]) == sorted(FILES)
    assert isinstance(train, DetectionDataset) and (len(train), len(val)) == (6, 3)
    assert train.classes == val.classes == ["pikachu"]
    assert (root / "classes.txt").read_text() == "pikachu\n"
    assert train.max_objects == 1 and all(len(train.objects(i)) == 1 for i in range(6))
    assert train.image(0).shape == (64, 64, 3)
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["arguments"] == {"num_train": 6, "num_val": 3, "image_size": 64, "seed": 7}
    with Image.open(root / "preview.png") as preview:
        assert preview.format == "PNG" and preview.size[0] > 64 * 2


def test_same_arguments_give_byte_identical_files(small_set, tmp_path):
    root, _ = small_set
    synthetic_pikachu(tmp_path / "b", seed=7, workers=2, **SMALL)  # in parallel, still identical
    for name in FILES:
        assert (tmp_path / "b" / name).read_bytes() == (root / name).read_bytes(), name
    synthetic_pikachu(tmp_path / "c", seed=8, **SMALL)
    assert (tmp_path / "c" / "train.rec").read_bytes() != (root / "train.rec").read_bytes()


def test_existing_set_is_reused_and_a_changed_one_regenerated(tmp_path):
    root = tmp_path / "r"
    synthetic_pikachu(root, seed=1, **SMALL)
    stamp = {name: (root / name).stat().st_mtime_ns for name in FILES}
    original = (root / "train.rec").read_bytes()
    synthetic_pikachu(root, seed=1, **SMALL)
    assert {name: (root / name).stat().st_mtime_ns for name in FILES} == stamp
    (root / "train.rec").write_bytes(original[:-10])  # damaged: no longer matches the manifest
    train, _ = synthetic_pikachu(root, seed=1, **SMALL)
    assert (root / "train.rec").read_bytes() == original and len(train) == 6
    synthetic_pikachu(root, seed=1, **{**SMALL, "num_val": 2})  # other arguments: regenerated
    assert len(DetectionDataset(root / "val.rec", classes=["pikachu"])) == 2
    assert not [p for p in root.iterdir() if p.name.endswith(".part")]


def test_refuses_to_overwrite_a_dataset_it_did_not_make(tmp_path):
    (tmp_path / "train.rec").write_bytes(b"real data")
    with pytest.raises(DataError, match="did not make"):
        synthetic_pikachu(tmp_path, **SMALL)
    assert (tmp_path / "train.rec").read_bytes() == b"real data"


@pytest.mark.parametrize("kwargs", [{"num_train": 0}, {"image_size": 8}, {"seed": -1}, {"workers": 0}])
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(InputError):
        synthetic_pikachu(tmp_path, **{**SMALL, **kwargs})


def test_stored_boxes_are_the_rendered_ones(small_set):
    root, (train, val) = small_set
    for split, dataset in ((0, train), (1, val)):
        for i in range(len(dataset)):
            image, objects = render_sample(np.random.default_rng([7, split, i]), 64)
            np.testing.assert_allclose(dataset.objects(i), objects, atol=1e-6)
            # the JPEG in the record is that image, up to compression
            assert np.abs(dataset.image(i).astype(int) - image.astype(int)).mean() < 12


@pytest.mark.parametrize("index", range(12))
def test_box_tightly_encloses_the_drawn_character(index):
    """Every pixel the character changed lies in its box, and the box touches it on all four sides."""
    size = 128
    background, sprites = render_scene(np.random.default_rng([0, 0, index]), size)
    image, objects = compose(background, sprites)
    changed = np.any(image != np.asarray(background), axis=2)
    (x0, y0, x1, y1), = np.round(objects[:, 1:] * size).astype(int)
    assert objects[0, 0] == 0
    outside = changed.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any()
    # tight: the character's pixels (alpha > 0) reach every edge of the box
    sprite = sprites[0]
    alpha = np.zeros((size, size), bool)
    a = np.asarray(sprite.image)[:, :, 3] > 0
    alpha[sprite.y : sprite.y + a.shape[0], sprite.x : sprite.x + a.shape[1]] = a
    assert alpha[y0:y1, x0].any() and alpha[y0:y1, x1 - 1].any()
    assert alpha[y0, x0:x1].any() and alpha[y1 - 1, x0:x1].any()
    # it is the character: yellow fur, red cheeks and black (eyes, ear tips) inside the box
    hsv = np.array([colorsys.rgb_to_hsv(*(p / 255)) for p in image[y0:y1, x0:x1][alpha[y0:y1, x0:x1]]])
    yellow = (hsv[:, 0] > 35 / 360) & (hsv[:, 0] < 62 / 360) & (hsv[:, 1] > 0.5) & (hsv[:, 2] > 0.6)
    red = ((hsv[:, 0] < 0.04) | (hsv[:, 0] > 0.95)) & (hsv[:, 1] > 0.5) & (hsv[:, 2] > 0.5)
    black = hsv[:, 2] < 0.2
    assert yellow.mean() > 0.35 and red.sum() >= 2 and black.sum() >= 2
    # size: 15 % to 50 % of the image side (the longer side of the box)
    assert 0.14 * size <= max(x1 - x0, y1 - y0) <= 0.51 * size


def test_default_sizes_are_the_seeds():
    import inspect

    parameters = inspect.signature(synthetic_pikachu).parameters
    assert parameters["num_train"].default == 1000 and parameters["num_val"].default == 100
    assert parameters["image_size"].default == 256 and parameters["seed"].default == 0


def test_no_temporary_files_left_after_failure(tmp_path, monkeypatch):
    from detkit.data import _synthetic

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(_synthetic, "_sample_record", broken)
    with pytest.raises(RuntimeError, match="boom"):
        synthetic_pikachu(tmp_path / "x", **SMALL)
    assert not (tmp_path / "x").exists()  # the folder it made is gone again: no trace of a failed run


def test_the_seeds_own_reader_reads_the_files(small_set):
    """MXNet's ImageDetIter, with the seed's arguments, reads the same labels and images."""
    import mxnet as mx

    root, (train, _) = small_set
    it = mx.image.ImageDetIter(
        batch_size=6,
        data_shape=(3, 64, 64),
        path_imgrec=str(root / "train.rec"),
        path_imgidx=str(root / "train.idx"),
        shuffle=False,
    )
    batch = it.next()
    labels = batch.label[0].asnumpy()
    for i in range(6):
        np.testing.assert_allclose(labels[i, :1], train.objects(i), atol=1e-6)
        image = batch.data[0][i].asnumpy().transpose(1, 2, 0)
        assert np.abs(image - train.image(i)).mean() < 3  # two JPEG decoders
