"""A Pascal VOC folder as a data source: one command trains on it, through a cache packed once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detkit
from detkit.cli import main
from detkit.config import preset
from detkit.data import pascal_voc
from detkit.data._voc import VOC_CLASSES, default_cache, prepare_voc
from detkit.errors import ConfigError, DataError, InputError

COLORS = {"cat": (230, 30, 30), "dog": (30, 30, 230), "bird": (30, 200, 30), "zebra": (20, 20, 20)}


def make_voc(root: Path, names=("cat", "dog", "bird"), count=8, *, image_sets=True, test=False) -> Path:
    """A tiny VOC year folder: ``count`` 48 x 40 JPEGs with one coloured rectangle each, their XML,
    and ImageSets/Main train/val (and trainval/test when ``test``)."""
    for folder in ("JPEGImages", "Annotations"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"{2007 if i % 2 else 2008}_{i:06d}" for i in range(count)]
    for i, ident in enumerate(ids):
        name = names[i % len(names)]
        pixels = np.full((40, 48, 3), 120, np.uint8)
        x, y = 4 + 3 * i % 20, 6 + 2 * i % 12
        pixels[y : y + 18, x : x + 20] = COLORS[name]
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{ident}.jpg", quality=95)
        (root / "Annotations" / f"{ident}.xml").write_text(
            f"<annotation><filename>{ident}.jpg</filename>"
            "<size><width>48</width><height>40</height><depth>3</depth></size>"
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
            f"<xmax>{x + 20}</xmax><ymax>{y + 18}</ymax></bndbox></object></annotation>"
        )
    if image_sets:
        main_folder = root / "ImageSets" / "Main"
        main_folder.mkdir(parents=True, exist_ok=True)
        half = count // 2
        lists = {"train": ids[:half], "val": ids[half : half + 2]}
        if test:
            lists.update(trainval=ids[: half + 2], test=ids[half + 2 :])
        for split, members in lists.items():
            (main_folder / f"{split}.txt").write_text("".join(f"{ident}\n" for ident in members))
    return root


def test_one_command_trains_on_a_voc_folder(tmp_path, capsys, monkeypatch):
    root = make_voc(tmp_path / "VOCdevkit" / "VOC2007", test=True)
    monkeypatch.chdir(tmp_path)  # the default cache is data/cache/... in the working directory
    out = tmp_path / "run"
    code = main(["train", "--preset", "fast", "--set", "data.source=voc", "--set", f"data.root={root}",
                 "--set", "model.data_shape=64", "--set", "train.epochs=2", "--set", "train.batch_size=4",
                 "--set", f"train.output_dir={out}", "--set", "train.num_pictures=1"])
    assert code == 0
    printed = capsys.readouterr().out
    cache = default_cache(root)
    assert cache.parent == Path("data/cache") and cache.name.startswith("VOC2007-")
    assert f"Pascal VOC {root}: training on 'trainval' (6 images), validating on 'test' (2 images)" in printed
    assert "; the classes are the 20 Pascal VOC classes;" in printed and "(packed now)" in printed
    assert "validation mAP@0.5" in printed
    for name in ("model/detector.yaml", "config.yaml", "metrics.json", "history.json", "detections/val-000.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["num_images"] == 2
    assert detkit.SSDDetector.load(out / "model").classes == list(VOC_CLASSES)
    assert sorted(path.name for path in cache.iterdir()) == sorted(
        f"{split}{suffix}" for split in ("train", "val") for suffix in (".rec", ".idx", ".classes.txt", ".eval.json")
    ) + ["voc.json"]
    assert not any(path.name.startswith(".") for path in cache.parent.iterdir())  # nothing staged is left
    assert sorted(path.name for path in root.iterdir()) == ["Annotations", "ImageSets", "JPEGImages"]


def test_the_cache_is_reused_and_packed_again_when_its_inputs_change(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    cache = tmp_path / "cache"
    first = prepare_voc(root, cache, progress=False)
    assert first.packed and (first.train_split, first.val_split) == ("train", "val")
    assert (len(first.train), len(first.val)) == (4, 2)
    stamp = (cache / "train.rec").stat().st_mtime_ns

    again = prepare_voc(root, cache, progress=False)
    assert not again.packed and "reused, made from the same files" in again.summary()
    assert (cache / "train.rec").stat().st_mtime_ns == stamp and len(again.train) == 4

    split = root / "ImageSets" / "Main" / "train.txt"  # one image less in the split list: packed again
    split.write_text("".join(split.read_text().splitlines(keepends=True)[:3]))
    changed = prepare_voc(root, cache, progress=False)
    assert changed.packed and len(changed.train) == 3

    changed = prepare_voc(root, cache, classes=["bird", "cat", "dog", "fox"], progress=False)  # other classes
    assert changed.packed and changed.train.classes == ["bird", "cat", "dog", "fox"]
    assert not prepare_voc(root, cache, classes=["bird", "cat", "dog", "fox"], progress=False).packed

    xml = root / "Annotations" / "2008_000000.xml"  # an annotation edited
    xml.write_text(xml.read_text().replace("<xmin>5</xmin>", "<xmin>6</xmin>"))
    os.utime(xml, ns=(xml.stat().st_atime_ns, xml.stat().st_mtime_ns + 10**9))
    assert prepare_voc(root, cache, classes=["bird", "cat", "dog", "fox"], progress=False).packed

    assert prepare_voc(root, cache, val_split=None, progress=False).packed  # other splits
    (cache / "val.rec").write_bytes(b"")  # a damaged cache is not trusted
    assert prepare_voc(root, cache, progress=False).packed


def test_an_interrupted_packing_leaves_the_earlier_cache(tmp_path, monkeypatch):
    from detkit.data import _voc

    root = make_voc(tmp_path / "VOC")
    cache = tmp_path / "cache"
    prepare_voc(root, cache, progress=False)
    before = {path.name: path.read_bytes() for path in cache.iterdir()}
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000000\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_voc, "pack_voc_parsed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_voc(root, cache, progress=False)
    assert {path.name: path.read_bytes() for path in cache.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["VOC", "cache"]  # no staged folder left
    monkeypatch.undo()
    assert prepare_voc(root, cache, progress=False).packed  # the old cache was made from the old list


def test_default_classes(tmp_path):
    voc, _ = pascal_voc(make_voc(tmp_path / "a", names=("dog", "cat")), tmp_path / "ca", progress=False)
    assert voc.classes == list(VOC_CLASSES) and len(VOC_CLASSES) == 20
    assert voc.objects(0)[0, 0] == VOC_CLASSES.index("dog")
    data = prepare_voc(make_voc(tmp_path / "b", names=("dog", "zebra")), tmp_path / "cb", progress=False)
    assert data.train.classes == ["dog", "zebra"] and data.classes_from == "annotations"
    assert "2 classes found in the annotations: dog, zebra (not only Pascal VOC's" in data.summary()
    one = prepare_voc(make_voc(tmp_path / "e", names=("zebra",)), tmp_path / "ce", progress=False)
    assert "; 1 class found in the annotations: zebra (" in one.summary()
    data = prepare_voc(tmp_path / "a", tmp_path / "cc", classes=["dog", "cat"], progress=False)
    assert data.train.classes == ["dog", "cat"] and "the classes as given: dog, cat" in data.summary()
    with pytest.raises(DataError, match=r"unknown class 'dog'"):
        prepare_voc(tmp_path / "a", tmp_path / "cd", classes=["cat"], progress=False)


def test_a_folder_without_image_sets_trains_on_every_annotation(tmp_path):
    root = make_voc(tmp_path / "plain", count=5, image_sets=False)
    data = prepare_voc(root, tmp_path / "cache", progress=False)
    assert len(data.train) == 5 and data.val is None and data.train_split is None
    assert "training on every annotation in Annotations/ (no ImageSets/Main), no validation" in data.summary()
    with pytest.raises(InputError, match=r"'val_split' argument names the list ImageSets/Main/val.txt, but .* "
                                         r"has no ImageSets/Main folder"):
        prepare_voc(root, tmp_path / "cache", val_split="val", progress=False)


@pytest.mark.parametrize("line", ["../VOC2012/2008_000000", "/etc/passwd", "..", "sub/2008_000000",
                                  "C:2008_000000", "a\\b"])
def test_an_id_that_leaves_the_folder_is_refused(tmp_path, line):
    root = make_voc(tmp_path / "VOC")
    split = root / "ImageSets" / "Main" / "train.txt"
    split.write_text(f"2008_000000\n{line}\n")
    with pytest.raises(DataError) as caught:
        prepare_voc(root, tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert message.startswith(f"{split}, line 2: the id {line!r} is not a file name inside {root}")
    assert message.endswith("correct the line.") and "\n" not in message
    assert not (tmp_path / "cache").exists()


def test_missing_pieces_are_named(tmp_path):
    root = make_voc(tmp_path / "VOC")
    cache = tmp_path / "cache"
    with pytest.raises(InputError, match=r"^The 'root' argument must be a Pascal VOC folder .* which is not a folder"):
        prepare_voc(tmp_path / "nowhere", cache)
    with pytest.raises(InputError, match=r"'train_split' argument names the list .*trainval.txt, which does not "
                                         r"exist; the lists there are: train, val\.$"):
        prepare_voc(root, cache, train_split="trainval")
    with pytest.raises(InputError, match=r"'val_split' argument must be 'auto', null"):
        prepare_voc(root, cache, val_split="../val")
    (root / "Annotations" / "2008_000002.xml").unlink()
    with pytest.raises(DataError, match=r"train.txt, line 3: the image '2008_000002' has no annotation .*"
                                        r"2008_000002.xml; add the file, remove the line, or choose another split"):
        prepare_voc(root, cache)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n2007_000001\n\n2007_000001\n")
    with pytest.raises(DataError, match=r"train.txt, line 4: the id '2007_000001' repeats line 2"):
        prepare_voc(root, cache)
    (root / "JPEGImages" / "2007_000001.jpg").unlink()
    (root / "ImageSets" / "Main" / "train.txt").write_text("2007_000001\n")
    with pytest.raises(DataError, match=r"2007_000001.xml: image .*2007_000001.jpg does not exist"):
        prepare_voc(root, cache)
    assert not cache.exists()


def test_errors_from_the_command_line_are_one_sentence(tmp_path, capsys):
    root = make_voc(tmp_path / "VOC")
    base = ["train", "--set", "data.source=voc", "--set", f"train.output_dir={tmp_path / 'run'}",
            "--set", f"data.cache={tmp_path / 'cache'}", "--set", "train.quiet=true"]
    assert main(base + ["--set", f"data.root={tmp_path / 'missing'}"]) == 2
    assert "data.root: the folder" in capsys.readouterr().err
    assert main(base + ["--set", f"data.root={root}", "--set", "data.train_split=test"]) == 2
    error = capsys.readouterr().err
    assert "data.train_split: The value names the list" in error and "Traceback" not in error
    (root / "ImageSets" / "Main" / "val.txt").write_text("../../secret\n")
    assert main(base + ["--set", f"data.root={root}"]) == 2
    error = capsys.readouterr().err
    assert "val.txt, line 1: the id '../../secret' is not a file name inside" in error and "Traceback" not in error
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_configuration_keys_are_checked(tmp_path):
    root = make_voc(tmp_path / "VOC")
    with pytest.raises(ConfigError, match=r"data.val_split: The value must be 'auto', null"):
        preset("fast", ["data.source=voc", f"data.root={root}", "data.val_split=a/b"])
    config = preset("fast", ["data.source=voc", f"data.root={root}", "data.val_split=null",
                             f"data.cache={tmp_path / 'c'}", "train.quiet=true"])
    from detkit._run import _datasets

    train, val = _datasets(config)
    assert val is None and len(train) == 4


def test_workers_of_a_distributed_job_pack_once(tmp_path, monkeypatch):
    """The data is prepared inside lead_first: rank 0 packs, and a worker that follows it reuses the cache."""
    from detkit import _run

    root = make_voc(tmp_path / "VOC")
    made = []

    def recorded(*args, **kwargs):
        data = prepare_voc(*args, **kwargs)
        made.append(data.packed)
        return data

    def two_workers(kvstore, work):  # what lead_first does in a job: rank 0's work, then the others'
        work()
        return work()

    monkeypatch.setattr(_run, "prepare_voc", recorded)
    monkeypatch.setattr(_run, "lead_first", two_workers)
    config = preset("fast", ["data.source=voc", f"data.root={root}", f"data.cache={tmp_path / 'c'}",
                             "model.data_shape=64", "train.epochs=2", "train.batch_size=4", "train.quiet=true",
                             f"train.output_dir={tmp_path / 'run'}", "train.num_pictures=0"])
    _run.run_config(config)
    assert made == [True, False]


@pytest.mark.distributed
def test_one_command_under_detkit_launch(tmp_path):
    import subprocess
    import sys

    root = make_voc(tmp_path / "VOC", count=12)
    command = [sys.executable, "-m", "detkit.cli", "train", "--preset", "fast", "--set", "data.source=voc",
               "--set", f"data.root={root}", "--set", "model.data_shape=64", "--set", "train.epochs=2",
               "--set", "train.batch_size=2", "--set", "train.num_pictures=0"]
    run = subprocess.run([sys.executable, "-m", "detkit.cli", "launch", "-n", "2", "-s", "1", "--timeout", "30",
                          "--", *command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count(f"Pascal VOC {root}:") == 1 and "(packed now)" in run.stdout  # rank 0 packs and reports
    (cache,) = (tmp_path / "data" / "cache").iterdir()  # one cache, nothing staged left beside it
    assert not prepare_voc(root, cache, progress=False).packed
    # The output folder is named after the data (the VOC folder), never another set's.
    assert detkit.SSDDetector.load(tmp_path / "runs" / "VOC" / "model").classes == list(VOC_CLASSES)


def test_the_example_configuration(tmp_path):
    from detkit.config import load_config

    example = Path(__file__).parent.parent / "examples" / "voc.yaml"
    with pytest.raises(ConfigError, match=r"data.root: the folder VOCdevkit/VOC2007 does not exist; set data.root"):
        load_config(example)
    config = load_config(example, [f"data.root={make_voc(tmp_path / 'VOC')}"])
    assert (config.data.source, config.data.augment, config.train.epochs) == ("voc", "seed", 10)


def test_a_cache_folder_that_holds_other_files_is_never_replaced(tmp_path):
    root = make_voc(tmp_path / "VOC")
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"'cache' argument must be a new or empty folder, or an earlier cache "
                                         r"\(with voc.json\); .*mine' holds other files"):
        prepare_voc(root, precious, progress=False)
    for around in (root, tmp_path):  # the dataset itself, or a folder that holds it
        with pytest.raises(InputError, match=r"'cache' argument must be a folder outside the VOC folder"):
            prepare_voc(root, around, progress=False)
    (precious / "notes.txt").unlink()  # an empty folder is fine
    assert prepare_voc(root, precious, progress=False).packed
    manifest = json.loads((precious / "voc.json").read_text())
    manifest["splits"] = ["../elsewhere", "val"]  # a manifest is not trusted with paths: packed again
    (precious / "voc.json").write_text(json.dumps(manifest))
    assert prepare_voc(root, precious, progress=False).packed
    assert (root / "Annotations").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["VOC", "mine"]


def test_a_folder_with_a_foreign_voc_json_is_never_replaced(tmp_path):
    """Only a folder holding a cache's manifest and nothing but the cache's own files is an earlier cache."""
    root = make_voc(tmp_path / "VOC")
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "voc.json").write_text('{"my": "label map"}')
    (project / "thesis.tex").write_text("two years of work")
    (project / "src" / "train.py").write_text("print(1)")

    def contents(folder):
        return {path.relative_to(folder).as_posix(): path.read_bytes() if path.is_file() else None
                for path in folder.rglob("*")}

    before = contents(project)
    with pytest.raises(InputError) as caught:
        prepare_voc(root, project, progress=False)
    message = str(caught.value)
    assert message.startswith("The 'cache' argument must be a new or empty folder, or an earlier cache (with "
                              f"voc.json); {str(project)!r} holds other files (a voc.json that is not a cache's "
                              "manifest; src/, thesis.tex), which packing would replace")
    assert "\n" not in message and contents(project) == before

    cache = tmp_path / "cache"  # a real cache, with a file of someone else's added: refused as well
    prepare_voc(root, cache, progress=False)
    (cache / "notes.txt").write_text("mine")
    before = contents(cache)
    with pytest.raises(InputError, match=r"/cache' holds other files \(notes.txt\), which packing would replace"):
        prepare_voc(root, cache, val_split=None, progress=False)
    assert contents(cache) == before
    (cache / "notes.txt").unlink()
    (cache / "val.rec").unlink()  # the cache's own files only, some missing: an earlier cache, packed again
    assert prepare_voc(root, cache, val_split=None, progress=False).packed
    assert sorted(path.name for path in cache.iterdir()) == ["train.classes.txt", "train.eval.json", "train.idx",
                                                              "train.rec", "voc.json"]
    manifest = json.loads((cache / "voc.json").read_text())
    manifest["request"]["format"] = "1"  # a field of the wrong type: not a manifest this module wrote
    (cache / "voc.json").write_text(json.dumps(manifest))
    before = contents(cache)
    with pytest.raises(InputError, match=r"holds other files \(a voc.json that is not a cache's manifest; "
                                         r"train.classes.txt, train.eval.json, train.idx, train.rec\)"):
        prepare_voc(root, cache, progress=False)
    assert contents(cache) == before


def test_a_deeply_nested_manifest_is_refused_not_a_traceback(tmp_path):
    from detkit.data._voc import _reusable

    root = make_voc(tmp_path / "VOC")
    cache = tmp_path / "cache"
    prepare_voc(root, cache, progress=False)
    nested = "[" * 200_000 + "]" * 200_000
    (cache / "voc.json").write_text(nested)
    with pytest.raises(RecursionError):
        json.loads(nested)  # what the manifest's reader meets
    assert _reusable(cache, {}, [], root) is None  # a damaged manifest: not reused, packed again
    with pytest.raises(InputError, match=r"holds other files \(a voc.json that is not a cache's manifest; "
                                         r"train.classes.txt, train.eval.json, train.idx, train.rec, val.classes.txt "
                                         r"and 3 more\)"):
        prepare_voc(root, cache, progress=False)
    assert (cache / "voc.json").read_text() == nested  # left as it was


def test_names_longer_than_the_file_system_allows(tmp_path):
    root = make_voc(tmp_path / "VOC")
    split = root / "ImageSets" / "Main" / "train.txt"
    split.write_text("2008_000000\n" + "a" * 300 + "\n")
    with pytest.raises(DataError) as caught:
        prepare_voc(root, tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert message.startswith(f"{split}, line 2: the id 'aaaa")
    assert message.endswith("(300 characters) cannot name an annotation file (File name too long); correct the line.")
    with pytest.raises(InputError, match=r"'train_split' argument names the list .*, which does not exist"):
        prepare_voc(root, tmp_path / "cache", train_split="t" * 300, progress=False)
    split.write_text("2008_000000\n2008_000002\n")

    xml = root / "Annotations" / "2008_000002.xml"  # a <filename> too long: the image of the annotation's name
    xml.write_text(xml.read_text().replace("<filename>2008_000002.jpg", "<filename>" + "b" * 300 + ".jpg"))
    assert len(prepare_voc(root, tmp_path / "cache", progress=False).train) == 2
    (root / "JPEGImages" / "2008_000002.jpg").unlink()  # and without one: the XML file named
    with pytest.raises(DataError) as caught:
        prepare_voc(root, tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert message.startswith(f"{xml}: the <filename> 'bbbb") and "(304 characters) cannot name a file in" in message
    assert message.endswith("(File name too long) and there is no image named 2008_000002.* there; correct "
                            "<filename>")
    with pytest.raises(DataError, match=r"2008_000002.xml: the <filename> 'bbb.*correct <filename>"):
        detkit.data.pack_voc(root / "JPEGImages", root / "Annotations", tmp_path / "packed" / "all",
                             classes=["bird", "cat", "dog"], progress=False)


def test_a_cache_that_is_a_symlink_is_written_where_it_points(tmp_path):
    root = make_voc(tmp_path / "VOC")
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    data = prepare_voc(root, link, progress=False)
    assert data.packed and data.cache == link and link.is_symlink()
    assert (real / "voc.json").is_file()
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000000\n")
    assert prepare_voc(root, link, progress=False).packed  # packed again: the link stays, nothing is left over
    assert link.is_symlink() and link.resolve() == real.resolve() and len((real / "val.rec").read_bytes()) > 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["VOC", "link", "real"]
    assert not prepare_voc(root, link, progress=False).packed


def test_atomic_directory_replaces_a_symlink_without_leaving_it(tmp_path):
    from detkit._base import atomic_directory

    real = tmp_path / "real"
    real.mkdir()
    (real / "kept").write_text("the link's target is not touched")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with atomic_directory(link) as staged:
        (staged / "new").write_text("new")
    assert not link.is_symlink() and sorted(path.name for path in link.iterdir()) == ["new"]
    assert (real / "kept").is_file() and sorted(path.name for path in tmp_path.iterdir()) == ["link", "real"]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing", target_is_directory=True)
    with atomic_directory(dangling) as staged:
        (staged / "new").write_text("new")
    assert dangling.is_dir() and not dangling.is_symlink()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dangling", "link", "real"]


def test_a_cache_inside_the_dataset_is_refused(tmp_path, monkeypatch, capsys):
    root = make_voc(tmp_path / "VOC")
    inside = root / "JPEGImages" / "cache"
    with pytest.raises(InputError) as caught:
        prepare_voc(root, inside, progress=False)
    assert str(caught.value) == (f"The 'cache' argument must be a folder outside the VOC folder {root}, which is "
                                 f"only read; got {str(inside)!r}, which is inside it, instead: choose a folder "
                                 "elsewhere.")
    link = tmp_path / "link"  # the same through a symlink
    link.symlink_to(root / "JPEGImages", target_is_directory=True)
    with pytest.raises(InputError, match=r"got '.*link/cache' \(which resolves to .*JPEGImages/cache\), which is "
                                         r"inside it"):
        prepare_voc(root, link / "cache", progress=False)

    monkeypatch.chdir(root)  # the default cache, data/cache/..., would then be inside the dataset
    with pytest.raises(InputError) as caught:
        prepare_voc(".", progress=False)
    message = str(caught.value)
    assert message.startswith(f"The default cache {default_cache('.')} in the working directory {root} lies "
                              f"inside the VOC folder {root}, which is only read; run from another folder, or set "
                              "data.cache")
    assert "\n" not in message
    base = ["train", "--set", "data.source=voc", "--set", "data.root=.", "--set", "train.quiet=true",
            "--set", f"train.output_dir={tmp_path / 'run'}"]
    assert main(base) == 2
    error = capsys.readouterr().err
    assert "The default cache data/cache/VOC-" in error and "set data.cache" in error and "Traceback" not in error
    assert sorted(path.name for path in root.iterdir()) == ["Annotations", "ImageSets", "JPEGImages"]
    assert not (tmp_path / "run").exists()
