"""The multi-class shapes set: determinism, counts, visible-extent boxes, small objects, re-use, CLI, config."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest

from detkit.cli import main
from detkit.config import preset
from detkit.data import DetectionDataset, synthetic_pikachu, synthetic_shapes
from detkit.data._render import _MIN_ALPHA
from detkit.data._shapes import _COLORS, MIN_VISIBLE, SHAPES, render_shapes, shape_sprite
from detkit.errors import DataError, InputError

SMALL = {"num_train": 12, "num_val": 4, "image_size": 96, "progress": False}
FILES = ["train.rec", "train.idx", "val.rec", "val.idx", "classes.txt", "preview.png", "synthetic.json"]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes") / "a"
    return root, synthetic_shapes(root, classes=5, objects=(3, 6), seed=4, **SMALL)


def test_layout_classes_and_object_counts(small_set):
    root, (train, val) = small_set
    # The set, and the folder rule's manifest (which lists it) and lock.
    assert sorted(p.name for p in root.iterdir()) == sorted(FILES + [".detkit-manifest.json", ".detkit.lock"])
    assert sorted(json.loads((root / ".detkit-manifest.json").read_text())["files"]) == sorted(FILES)
    assert train.classes == val.classes == ["circle", "square", "triangle", "star", "cross"]
    assert (root / "classes.txt").read_text().split() == train.classes
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["generator"] == "detkit.data.synthetic_shapes"
    assert manifest["arguments"]["classes"] == 5 and manifest["arguments"]["objects"] == [3, 6]
    seen = set()
    for dataset in (train, val):
        for i in range(len(dataset)):
            objects = dataset.objects(i)
            assert 3 <= len(objects) <= 6
            assert np.all(objects[:, 0] >= 0) and np.all(objects[:, 0] < 5)
            assert np.all(objects[:, 1:] >= 0) and np.all(objects[:, 1:] <= 1)
            assert np.all(objects[:, 3] > objects[:, 1]) and np.all(objects[:, 4] > objects[:, 2])
            seen.update(objects[:, 0].astype(int).tolist())
    assert seen == set(range(5))


def test_same_arguments_give_byte_identical_files(small_set, tmp_path):
    root, _ = small_set
    synthetic_shapes(tmp_path / "b", classes=5, objects=(3, 6), seed=4, workers=2, **SMALL)
    for name in FILES:
        assert (tmp_path / "b" / name).read_bytes() == (root / name).read_bytes(), name
    synthetic_shapes(tmp_path / "c", classes=5, objects=(3, 6), seed=5, **SMALL)
    assert (tmp_path / "c" / "train.rec").read_bytes() != (root / "train.rec").read_bytes()


def _hue_distance(rgb: np.ndarray, hue_degrees: float) -> np.ndarray:
    hues = np.array([colorsys.rgb_to_hsv(*(p / 255.0))[0] * 360 for p in rgb.reshape(-1, 3)])
    distance = np.abs(hues - hue_degrees) % 360
    return np.minimum(distance, 360 - distance)


def test_boxes_are_the_visible_extent_and_enclose_the_objects_colour():
    size = 128
    checked = 0
    for index in range(30):
        image, labels, visible, _ = render_shapes(np.random.default_rng(index), size, 7, (2, 6))
        assert 2 <= len(labels) <= 6 and len(visible) == len(labels)
        for row, mask in zip(labels, visible):
            x0, y0, x1, y1 = np.round(row[1:] * size).astype(int)
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            # The box is tight around the visible pixels: each edge row and column holds some.
            assert not mask[:y0].any() and not mask[y1:].any() and not mask[:, :x0].any() and not mask[:, x1:].any()
            assert mask[y0].any() and mask[y1 - 1].any() and mask[:, x0].any() and mask[:, x1 - 1].any()
        # Objects no later one overlaps: their colour is in their box, and not in a frame around it.
        for k, (row, mask) in enumerate(zip(labels, visible)):
            name = SHAPES[int(row[0])]
            x0, y0, x1, y1 = np.round(row[1:] * size).astype(int)
            if any(other[max(0, y0 - 4):y1 + 4, max(0, x0 - 4):x1 + 4].any() for other in visible[k + 1:]):
                continue
            # The inside of the object (its pixels whose four neighbours are its too), not its blended edge.
            inner = mask.copy()
            inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
            inner[[0, -1]] = False
            inner[:, [0, -1]] = False
            if inner.sum() < 20:
                continue
            hue = _COLORS[name][0]
            inside = image[inner]
            assert np.median(_hue_distance(inside, hue)) < 12, name
            checked += 1
    assert checked >= 20


def test_occluded_objects_keep_at_least_half_of_their_pixels():
    occluded = 0
    for index in range(40):
        rng = np.random.default_rng(1000 + index)
        _, labels, visible, areas = render_shapes(rng, 64, 8, (8, 12))
        shown = np.array([mask.sum() for mask in visible]) / np.array(areas)
        assert np.all(shown >= MIN_VISIBLE) and shown[-1] == 1  # the last one drawn is whole
        occluded += int(np.sum(shown < 1))
    assert occluded >= 20  # objects do overlap
    # An object's full area is what its sprite has; the rendering's own check keeps MIN_VISIBLE of it.
    sprite = shape_sprite(np.random.default_rng(0), "ring", 40)
    alpha = np.asarray(sprite)[:, :, 3]
    assert max(sprite.size) == 40 and (alpha >= _MIN_ALPHA).sum() > 0
    centre = alpha[sprite.size[1] // 2 - 2: sprite.size[1] // 2 + 2, sprite.size[0] // 2 - 2: sprite.size[0] // 2 + 2]
    assert not centre.any()  # a ring has a hole


def test_small_objects_are_present():
    size = 256
    sides = []
    for index in range(40):
        _, labels, _, _ = render_shapes(np.random.default_rng(index), size, 8, (2, 8))
        sides.extend(np.maximum(labels[:, 3] - labels[:, 1], labels[:, 4] - labels[:, 2]).tolist())
    sides = np.array(sides)
    assert sides.min() <= 0.05 and np.mean(sides < 0.08) > 0.2 and sides.max() >= 0.2


def test_reuse_force_and_a_folder_of_another_kind(tmp_path):
    root = tmp_path / "r"
    arguments = {"classes": 3, "objects": (1, 3), "seed": 1, **SMALL}
    synthetic_shapes(root, **arguments)
    stamp = {name: (root / name).stat().st_mtime_ns for name in FILES}
    original = (root / "train.rec").read_bytes()
    synthetic_shapes(root, **arguments)
    assert {name: (root / name).stat().st_mtime_ns for name in FILES} == stamp
    synthetic_shapes(root, **arguments, force=True)
    assert (root / "train.rec").stat().st_mtime_ns != stamp["train.rec"]
    assert (root / "train.rec").read_bytes() == original
    train, _ = synthetic_shapes(root, **{**arguments, "classes": 4})  # other arguments: rendered again
    assert train.classes == ["circle", "square", "triangle", "star"]
    # A pikachu folder is not overwritten by shapes, nor the other way round.
    synthetic_pikachu(tmp_path / "p", num_train=2, num_val=1, image_size=32, progress=False)
    with pytest.raises(DataError, match="synthetic_pikachu made"):
        synthetic_shapes(tmp_path / "p", **arguments)
    with pytest.raises(DataError, match="synthetic_shapes made"):
        synthetic_pikachu(root, num_train=2, num_val=1, image_size=32, progress=False)
    assert len(DetectionDataset(tmp_path / "p" / "train.rec", classes=["pikachu"])) == 2


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"classes": 0}, "'classes' argument must be a positive int"),
        ({"classes": 9}, "from 1 to 8"),
        ({"objects": (3, 2)}, "min <= max"),
        ({"objects": (1, 31)}, "<= 30"),
        ({"objects": 4}, "a pair (min, max)"),
        ({"objects": (0, 2)}, "'objects' argument must be a positive int"),
        ({"image_size": 16}, "'image_size' argument must be an int >= 32"),
    ],
)
def test_invalid_arguments(tmp_path, arguments, fragment):
    with pytest.raises(InputError) as caught:
        synthetic_shapes(tmp_path / "x", **{**SMALL, **arguments})
    assert fragment in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_cli(tmp_path, capsys):
    root = tmp_path / "s"
    argv = ["data", "synth", str(root), "--kind", "shapes", "--classes", "4", "--objects", "2", "5",
            "--num-train", "4", "--num-val", "2", "--image-size", "64", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "classes (4): circle, square, triangle, star" in out and "kept" not in out
    train = DetectionDataset(root / "train.rec", classes=["circle", "square", "triangle", "star"])
    assert len(train) == 4 and all(2 <= len(train.objects(i)) <= 5 for i in range(4))
    assert main(argv) == 0 and "kept the set made earlier" in capsys.readouterr().out
    assert main(argv[:8] + ["9", "3"] + argv[10:]) == 2
    assert "The --objects option must be a pair" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", str(tmp_path / "p"), "--classes", "3"])
    assert "--classes and --objects are for --kind shapes" in capsys.readouterr().err


def test_configuration_source(tmp_path):
    from detkit._run import _datasets

    config = preset("fast", [f"data.root={tmp_path / 'shapes'}", "data.source=shapes", "data.num_classes=3",
                             "data.objects=[2, 4]", "data.num_train=4", "data.num_val=2", "data.image_size=64",
                             "train.quiet=true"])
    train, val = _datasets(config)
    assert train.classes == ["circle", "square", "triangle"] and (len(train), len(val)) == (4, 2)
    assert all(2 <= len(train.objects(i)) <= 4 for i in range(4))
    manifest = json.loads((tmp_path / "shapes" / "synthetic.json").read_text())
    assert manifest["arguments"]["objects"] == [2, 4] and manifest["arguments"]["classes"] == 3
