"""DetectionDataset.loader and preprocess: the seed's pipeline, shapes, padding, determinism."""

from __future__ import annotations

import io
import threading

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from detkit.data import RGB_MEAN, DetectionBatch, DetectionDataset, preprocess
from detkit.data import _recordio
from detkit.data._transforms import CROP_MIN_OBJECT_COVERED, random_crop
from detkit.errors import InputError

RED, BLUE, GREY = (220, 20, 20), (20, 20, 220), (128, 128, 128)


def scene(i: int, width=80, height=60):
    """A grey image with a red object (class 0) and, on odd images, a blue one (class 1)."""
    rng = np.random.default_rng(i)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = GREY
    objects = []
    for class_id, color in enumerate((RED, BLUE)[: 1 + i % 2]):
        w, h = rng.integers(12, 30), rng.integers(12, 25)
        x = rng.integers(0, width - w) if class_id == 0 else rng.integers(0, width - w)
        y = rng.integers(0, height // 2 - h // 2) if class_id == 0 else rng.integers(height // 2, height - h)
        pixels[y : y + h, x : x + w] = color
        objects.append([class_id, x / width, y / height, (x + w) / width, (y + h) / height])
    return pixels, np.array(objects, np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("loader") / "s.rec"
    with open(path, "wb") as file:
        writer = _recordio.RecordWriter(file)
        for i in range(7):
            pixels, objects = scene(i)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")  # lossless, so pixels can be compared exactly
            writer.write(i, _recordio.pack_detection(i, buffer.getvalue(), objects, 80, 60))
    with open(path.with_suffix(".idx"), "w") as file:
        writer.write_index(file)
    return DetectionDataset(path, classes=["red", "blue"])


def test_dataset_attributes(dataset):
    assert len(dataset) == 7
    assert dataset.max_objects == 2
    assert dataset.classes == ["red", "blue"]
    assert dataset.idx_path == dataset.rec_path.with_suffix(".idx")
    np.testing.assert_array_equal(dataset.image(3), scene(3)[0])
    np.testing.assert_allclose(dataset.objects(3), scene(3)[1])
    with pytest.raises(InputError):
        dataset.objects(7)


def test_validation_batches_shapes_padding_and_labels(dataset):
    loader = dataset.loader(3, 32, train=False)
    assert len(loader) == 3
    batches = list(loader)
    assert [b.pad for b in batches] == [0, 0, 2]
    for b, batch in enumerate(batches):
        assert isinstance(batch, DetectionBatch)
        assert isinstance(batch.data, mx.nd.NDArray) and batch.data.dtype == np.float32
        assert batch.data.shape == (3, 3, 32, 32)
        assert batch.label.shape == (3, 3, 5)  # M = max(max_objects, 3), as the seed pads
        label = batch.label.asnumpy()
        for j in range(3):
            index = (3 * b + j) % 7  # the padding repeats the epoch's first images
            objects = scene(index)[1]
            np.testing.assert_allclose(label[j, : len(objects)], objects, atol=1e-6)
            assert np.all(label[j, len(objects) :] == -1)


def test_validation_data_is_exactly_preprocess(dataset):
    batch = next(iter(dataset.loader(7, (40, 56), train=False)))
    for i in range(7):
        expected = preprocess(scene(i)[0], (40, 56))
        assert expected.shape == (1, 3, 40, 56)
        np.testing.assert_array_equal(batch.data[i : i + 1].asnumpy(), expected.asnumpy())


def test_preprocess_resizes_and_subtracts_the_seed_mean():
    image = np.zeros((10, 20, 3), np.uint8)
    image[:] = (123, 117, 104)
    out = preprocess(image, 8).asnumpy()
    assert out.shape == (1, 3, 8, 8)
    np.testing.assert_array_equal(out, 0)
    assert RGB_MEAN == (123.0, 117.0, 104.0)
    image[:] = (0, 255, 50)
    out = preprocess(mx.nd.array(image, dtype="uint8"), (4, 6)).asnumpy()
    np.testing.assert_array_equal(out[0, :, 0, 0], [-123, 138, -54])
    grey = preprocess(np.full((5, 5), 200, np.uint8), 5).asnumpy()
    np.testing.assert_array_equal(grey[0, :, 0, 0], [77, 83, 96])


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((8, 8, 3), np.float32), r"floats in \[0, 1\]"),
        (np.full((8, 8, 3), 300.0), r"values in \[0, 255\]"),
        (np.zeros((8, 8, 2), np.uint8), r"shape \(H, W, 3\)"),
        ([[1, 2]], "numpy array or an NDArray"),
    ],
)
def test_preprocess_rejects_bad_images(image, match):
    with pytest.raises(InputError, match=match):
        preprocess(image, 8)


def test_num_objects_and_last_batch(dataset):
    batches = list(dataset.loader(3, 16, train=False, num_objects=6, last_batch="discard"))
    assert len(batches) == 2 and all(b.pad == 0 for b in batches)
    assert batches[0].label.shape == (3, 6, 5)
    with pytest.raises(InputError, match="'num_objects' argument must be at least 2"):
        dataset.loader(3, 16, train=False, num_objects=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"data_shape": (3, 32, 32)}, "data_shape"),
        ({"data_shape": 0}, "data_shape"),
        ({"last_batch": "keep"}, "last_batch"),
        ({"seed": -1}, "seed"),
    ],
)
def test_loader_rejects_bad_arguments(dataset, kwargs, match):
    arguments = {"batch_size": 2, "data_shape": 16, "train": False, **kwargs}
    with pytest.raises(InputError, match=match):
        dataset.loader(**arguments)


def _epoch(loader):
    return [(b.data.asnumpy(), b.label.asnumpy()) for b in loader]


def test_seed_makes_training_reproducible_and_epochs_differ(dataset):
    first = _epoch(dataset.loader(4, 24, train=True, seed=3))
    again = dataset.loader(4, 24, train=True, seed=3)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, _epoch(again)))
    second_epoch = _epoch(again)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, second_epoch))
    other_seed = _epoch(dataset.loader(4, 24, train=True, seed=4))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other_seed))


def test_shuffle_without_augmentation_keeps_images_whole(dataset):
    loader = dataset.loader(7, 16, train=False, shuffle=True, seed=0)
    labels = next(iter(loader)).label.asnumpy()
    stored = np.array([scene(i)[1][0] for i in range(7)])
    got = labels[:, 0]
    order = [int(np.argmin(np.abs(stored - row).sum(axis=1))) for row in got]
    assert sorted(order) == list(range(7)) and order != list(range(7))  # a permutation, not file order
    np.testing.assert_allclose(got, stored[order], atol=1e-6)


def test_training_crops_keep_boxes_on_their_objects(dataset):
    """After the random crop and resize, each label box still frames its coloured object."""
    size = 48
    mean = np.array(RGB_MEAN, np.float32)[:, None, None]
    cropped = 0
    loader = dataset.loader(7, size, train=True, seed=0)
    for _ in range(4):
        for batch in loader:
            images = (batch.data.asnumpy() + mean).round().clip(0, 255)
            for image, label in zip(images, batch.label.asnumpy()):
                rows = label[label[:, 0] >= 0]
                assert len(rows) >= 1
                for class_id, x0, y0, x1, y1 in rows:
                    color = np.array((RED, BLUE)[int(class_id)], np.float32)
                    # the box interior (2 px margin for the resize blur) is the object's colour
                    top, bottom = int(y0 * size) + 2, int(np.ceil(y1 * size)) - 2
                    left, right = int(x0 * size) + 2, int(np.ceil(x1 * size)) - 2
                    inner = image[:, top:bottom, left:right]
                    if inner.size:
                        assert np.abs(inner.reshape(3, -1).mean(axis=1) - color).max() < 12
                    if x1 - x0 > 0.4 or y1 - y0 > 0.45:  # larger than any object of the files
                        cropped += 1
    assert cropped > 0  # crops do enlarge objects


def test_random_crop_follows_the_seed_constraints():
    rng = np.random.default_rng(0)
    objects = np.array([[0, 0.1, 0.1, 0.3, 0.4], [1, 0.5, 0.5, 0.7, 0.9], [0, 0.6, 0.05, 0.95, 0.3]], np.float32)
    found = 0
    for _ in range(200):
        result = random_crop(rng, objects, 300, 400)
        if result is None:
            continue
        found += 1
        (x, y, w, h), kept = result
        assert 0 <= x and x + w <= 400 and 0 <= y and y + h <= 300
        assert 0.05 * 300 * 400 <= w * h <= 300 * 400
        assert 0.74 <= w / h <= 1.34
        crop = np.array([x / 400, y / 300, (x + w) / 400, (y + h) / 300])
        for obj in objects:
            ix = max(0, min(obj[3], crop[2]) - max(obj[1], crop[0]))
            iy = max(0, min(obj[4], crop[3]) - max(obj[2], crop[1]))
            coverage = ix * iy / ((obj[3] - obj[1]) * (obj[4] - obj[2]))
            assert coverage == 0 or coverage > CROP_MIN_OBJECT_COVERED
        assert len(kept) >= 1 and np.all((kept[:, 1:] >= 0) & (kept[:, 1:] <= 1))
    assert found > 100
    assert random_crop(rng, np.zeros((0, 5), np.float32), 300, 400) is None


def test_stopping_early_leaves_no_thread_behind(dataset):
    before = threading.active_count()
    for _ in range(5):
        iterator = iter(dataset.loader(1, 16, train=True, seed=0))
        next(iterator)
        iterator.close()
    for thread in threading.enumerate():
        if thread.name.startswith("detkit-"):
            thread.join(timeout=5)
    assert threading.active_count() <= before


def test_shares_for_several_machines_are_disjoint_equal_and_cover_the_epoch(tmp_path) -> None:
    import detkit

    train, _ = detkit.data.synthetic_pikachu(tmp_path, num_train=10, num_val=2, image_size=64, seed=1, progress=False)

    def images(loader):
        # One fingerprint per image: its label rows identify it in this tiny set.
        return [tuple(row.ravel()) for batch in loader for row in batch.label.asnumpy()[: len(batch.label) - batch.pad]]

    whole = images(train.loader(2, 64, train=False, shuffle=True, seed=4))
    shares = [images(train.loader(2, 64, train=False, shuffle=True, seed=4, num_parts=3, part_index=p))
              for p in range(3)]
    # Equal shares: the 10th image of the shuffled epoch is left out, so that no machine runs an extra batch.
    assert [len(s) for s in shares] == [3, 3, 3]
    assert len(set(sum(shares, []))) == 9
    assert sorted(sum(shares, [])) == sorted(whole[:9])
    assert [len(train.loader(2, 64, train=True, num_parts=3, part_index=p)) for p in range(3)] == [2, 2, 2]
    assert [len(train.loader(2, 64, train=True, num_parts=3, part_index=p, last_batch="discard"))
            for p in range(3)] == [1, 1, 1]
    with pytest.raises(InputError, match="'part_index'"):
        train.loader(2, 64, train=True, num_parts=2, part_index=2)
    with pytest.raises(InputError, match="'num_parts'"):
        train.loader(2, 64, train=True, num_parts=11)
