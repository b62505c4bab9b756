"""The reader's training augmentations: SSD's (``augment="ssd"``), the seed's crop, none."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from detkit.config import load_config
from detkit.data import RGB_MEAN, DetectionDataset, ssd_augment
from detkit.data import _recordio
from detkit.data._transforms import photometric_distort, random_crop, resize_normalize
from detkit.errors import ConfigError, InputError

GREY, GREEN = (128, 128, 128), (30, 200, 60)


def solid_scene(width: int, height: int, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A plain grey image with one solid green rectangle ``box`` (x0, y0, x1, y1 in pixels), 7-wide label."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = GREY
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = GREEN
    objects = np.array([[0, x0 / width, y0 / height, x1 / width, y1 / height, 1, (x1 - x0) * (y1 - y0)]],
                       np.float32)
    return pixels, objects


@st.composite
def scenes(draw):
    width, height = draw(st.integers(8, 120)), draw(st.integers(8, 120))
    count = draw(st.integers(0, 6))
    rows = []
    for _ in range(count):
        x0, x1 = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2)))
        y0, y1 = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2)))
        rows.append([draw(st.integers(0, 3)), x0, y0, x1, y1, draw(st.integers(0, 2)), draw(st.floats(0, 1e4))])
    objects = np.array(rows, np.float32).reshape(-1, 7)
    return width, height, objects, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None)
@given(case=scenes())
def test_every_output_box_lies_inside_the_image_with_positive_area(case):
    width, height, objects, seed = case
    image = Image.fromarray(np.full((height, width, 3), 90, np.uint8))
    out_image, out = ssd_augment(np.random.default_rng(seed), image, objects)
    assert out.dtype == np.float32 and out.shape[1] == 7 and len(out) <= len(objects)
    assert out_image.width >= 1 and out_image.height >= 1
    boxes = out[:, 1:5]
    assert ((boxes >= 0) & (boxes <= 1)).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    # the extra columns (class, flag, area) travel with their object unchanged
    for row in out:
        assert any(row[0] == o[0] and row[5] == o[5] and row[6] == o[6] for o in objects)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), x=st.integers(0, 100), y=st.integers(0, 70), w=st.integers(12, 60),
       h=st.integers(12, 50))
def test_the_pixels_of_a_drawn_object_move_with_its_box(seed, x, y, w, h):
    box = (min(x, 160 - w), min(y, 120 - h))
    box = (box[0], box[1], box[0] + w, box[1] + h)
    pixels, objects = solid_scene(160, 120, box)
    out_image, out = ssd_augment(np.random.default_rng(seed), Image.fromarray(pixels), objects)
    if len(out) == 0:  # the crop left the object's centre out
        return
    result = np.asarray(out_image).astype(np.int32)
    ow, oh = out_image.size
    x0, y0, x1, y1 = out[0, 1:5] * [ow, oh, ow, oh]
    inner = result[int(np.ceil(y0)):int(np.floor(y1)), int(np.ceil(x0)):int(np.floor(x1))]
    if inner.size == 0:
        return
    # the box holds the rectangle: its pixels are alike (one colour, distorted) and unlike the background
    colour = np.median(inner.reshape(-1, 3), axis=0)
    assert (np.abs(inner - colour).max(axis=2) <= 2).mean() > 0.95
    outside = np.ones((oh, ow), bool)
    outside[max(0, int(np.floor(y0)) - 1):int(np.ceil(y1)) + 1, max(0, int(np.floor(x0)) - 1):int(np.ceil(x1)) + 1] = False
    if outside.any():
        assert (np.abs(result[outside] - colour).max(axis=1) > 2).mean() > 0.95


def test_photometric_distortion_changes_colours_within_range():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    changed = [photometric_distort(np.random.default_rng(seed), image) for seed in range(20)]
    assert all(c.shape == image.shape and c.dtype == np.uint8 for c in changed)
    assert sum(not np.array_equal(c, image) for c in changed) >= 15  # 1 - 0.5 ** 4 of them on average
    np.testing.assert_array_equal(photometric_distort(np.random.default_rng(3), image), changed[3])


def test_expand_fills_the_canvas_with_the_mean():
    pixels, objects = solid_scene(40, 30, (10, 10, 30, 20))
    sizes = set()
    for seed in range(40):
        out_image, out = ssd_augment(np.random.default_rng(seed), Image.fromarray(pixels), objects)
        sizes.add(out_image.size)
        if out_image.width > 40 * 1.5:  # zoomed out: the mean shows around the image
            mean = np.round(RGB_MEAN).astype(np.uint8)
            assert (np.asarray(out_image) == mean).all(axis=2).any()
    assert any(w > 40 for w, _ in sizes) and any(w < 40 for w, _ in sizes)  # zoomed out and cropped in


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("augment") / "s.rec"
    with open(path, "wb") as file:
        writer = _recordio.RecordWriter(file)
        for i in range(6):
            pixels, objects = solid_scene(80, 60, (5 + 5 * i, 10, 35 + 5 * i, 40))
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            writer.write(i, _recordio.pack_detection(i, buffer.getvalue(), objects[:, :5], 80, 60))
    with open(path.with_suffix(".idx"), "w") as file:
        writer.write_index(file)
    return DetectionDataset(path, classes=["green"])


def epoch(loader):
    return [(b.data.asnumpy(), b.label.asnumpy(), b.flags.asnumpy()) for b in loader]


def test_the_ssd_loader_is_deterministic_for_a_seed(dataset):
    first = epoch(dataset.loader(4, 32, train=True, seed=5, augment="ssd"))
    again = epoch(dataset.loader(4, 32, train=True, seed=5, augment="ssd"))
    other = epoch(dataset.loader(4, 32, train=True, seed=6, augment="ssd"))
    for (d1, l1, f1), (d2, l2, f2) in zip(first, again):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(l1, l2)
        np.testing.assert_array_equal(f1, f2)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    # it is not the seed's crop
    seed = epoch(dataset.loader(4, 32, train=True, seed=5, augment="seed"))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, seed))


def test_the_dataset_carries_the_augmentation_to_its_loaders(dataset):
    ssd = DetectionDataset(dataset.rec_path, classes=["green"], augment="ssd")
    assert ssd.augment == "ssd" and dataset.augment == "seed"
    assert ssd.loader(4, 32, train=True).augment == "ssd"
    assert ssd.loader(4, 32, train=True, augment="none").augment == "none"
    np.testing.assert_array_equal(epoch(ssd.loader(4, 32, train=True, seed=2))[0][0],
                                  epoch(dataset.loader(4, 32, train=True, seed=2, augment="ssd"))[0][0])


def test_the_seed_pipeline_is_unchanged_bit_for_bit(dataset):
    """augment="seed" (the default) is the seed's crop keyed as before: rebuilt here from its parts."""
    size = 32
    batches = epoch(dataset.loader(6, size, train=True, shuffle=False, seed=9, augment="seed"))
    default = epoch(dataset.loader(6, size, train=True, shuffle=False, seed=9))
    np.testing.assert_array_equal(batches[0][0], default[0][0])
    for i in range(len(dataset)):
        rng = np.random.default_rng([9, 0, i])  # the loader's per-image key: seed, epoch, position
        objects = np.concatenate([dataset.objects(i), dataset.flags(i)[:, None], dataset.areas(i)[:, None]], axis=1)
        image = dataset.image(i)
        crop = random_crop(rng, objects.astype(np.float32), *image.shape[:2])
        box, kept = crop if crop is not None else (None, objects)
        expected = resize_normalize(Image.fromarray(image), (size, size), crop=box)
        np.testing.assert_array_equal(batches[0][0][i], expected)
        np.testing.assert_array_equal(batches[0][1][i, : len(kept)], kept[:, :5].astype(np.float32))


def test_no_augmentation_reads_the_images_whole(dataset):
    data, label, _ = epoch(dataset.loader(6, 32, train=True, shuffle=False, seed=1, augment="none"))[0]
    plain, plain_label, _ = epoch(dataset.loader(6, 32, train=False))[0]
    np.testing.assert_array_equal(data, plain)
    np.testing.assert_array_equal(label, plain_label)


@pytest.mark.parametrize("value", ["SSD", "crop", None, 1])
def test_an_unknown_augmentation_is_refused_with_the_choices(dataset, value):
    if value is not None:
        with pytest.raises(InputError, match=r"'augment' argument must be one of 'seed', 'ssd', 'none'"):
            DetectionDataset(dataset.rec_path, classes=["green"], augment=value)
    with pytest.raises(InputError, match=r"'augment' argument must be one of 'seed', 'ssd', 'none'"):
        dataset.loader(4, 32, train=True, augment=value if value is not None else "rotate")


def test_the_configuration_names_the_augmentation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  augment: ssd\n")
    assert load_config(path).data.augment == "ssd"
    path.write_text("data:\n  augment: mosaic\n")
    with pytest.raises(ConfigError, match=r"data\.augment.*seed, ssd, none"):
        load_config(path)


def test_a_configuration_trains_with_its_augmentation(tmp_path, monkeypatch):
    from detkit.config import preset, run_config
    from detkit.data import DetectionLoader

    seen = []
    iterate = DetectionLoader.__iter__

    def spy(self):
        seen.append((self.train, self.augment))
        return iterate(self)

    monkeypatch.setattr(DetectionLoader, "__iter__", spy)
    config = preset("seed", [
        f"data.root={tmp_path / 'data'}", "data.num_train=8", "data.num_val=2", "data.image_size=64",
        "data.augment=ssd", "model.data_shape=64", "train.epochs=1", "train.batch_size=8",
        f"train.output_dir={tmp_path / 'run'}", "train.quiet=true", "train.num_pictures=0",
    ])
    run_config(config)
    assert (True, "ssd") in seen and all(augment == "ssd" for train, augment in seen if train)
