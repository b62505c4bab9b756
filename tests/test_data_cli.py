"""``detkit data ...`` end to end: synth, show, pack, download, index."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from PIL import Image

from detkit.cli import main
from detkit.data import DetectionDataset


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "pikachu"
    status = main(["data", "synth", str(root), "--num-train", "5", "--num-val", "2", "--image-size", "48", "--quiet"])
    assert status == 0
    return root


def test_synth(synth_root, capsys):
    assert len(DetectionDataset(synth_root / "train.rec", classes=["pikachu"])) == 5
    assert (synth_root / "preview.png").is_file()
    # again: the set is re-used, and the command says so
    argv = ["data", "synth", str(synth_root), "--num-train", "5", "--num-val", "2", "--image-size", "48", "--quiet"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train.rec: 5 images" in out and "kept the set made earlier with the same arguments" in out


def test_synth_force_renders_again(tmp_path, capsys):
    root = tmp_path / "pikachu"
    argv = ["data", "synth", str(root), "--num-train", "3", "--num-val", "1", "--image-size", "32", "--quiet"]
    assert main(argv) == 0
    first = (root / "train.rec").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv + ["--force"]) == 0
    out = capsys.readouterr().out
    assert "kept the set" not in out and (root / "train.rec").stat().st_mtime_ns != first
    assert len(DetectionDataset(root / "train.rec", classes=["pikachu"])) == 3


def test_extract_writes_images_and_boxes_in_pixels(synth_root, tmp_path, capsys):
    out = tmp_path / "images"
    assert main(["data", "extract", str(synth_root / "val.rec"), "--out", str(out), "-n", "5"]) == 0
    printed = capsys.readouterr().out.splitlines()
    files = sorted(p.name for p in out.iterdir())
    # 2 images in the file, their sidecar, and the folder rule's manifest (listing them) and lock
    assert files == [".detkit-manifest.json", ".detkit.lock", "val-00000.jpg", "val-00001.jpg", "val.boxes.json"]
    assert printed[:2] == [str(out / "val-00000.jpg"), str(out / "val-00001.jpg")]
    sidecar = json.loads((out / "val.boxes.json").read_text())
    dataset = DetectionDataset(synth_root / "val.rec", classes=["pikachu"])
    assert sidecar["classes"] == ["pikachu"]
    for entry in sidecar["images"]:
        with Image.open(out / entry["file"]) as image:
            assert image.size == (entry["width"], entry["height"]) == (48, 48)
            assert np.array_equal(np.asarray(image.convert("RGB")), dataset.image(entry["index"]))
        expected = dataset.objects(entry["index"])[:, 1:] * 48
        assert [o["class"] for o in entry["objects"]] == ["pikachu"] * len(expected)
        assert np.allclose([o["box"] for o in entry["objects"]], expected, atol=0.01)
    assert main(["data", "extract", str(synth_root / "val.rec"), "--out", str(out), "-n", "0"]) == 2
    assert capsys.readouterr().err == "detkit: error: The --num option must be a positive int; got 0 instead.\n"


def test_extract_stays_inside_its_folder(synth_root, tmp_path):
    from detkit.data import extract

    # A .rec named like a path component still writes plain names into the folder.
    odd = tmp_path / "..rec"
    odd.write_bytes((synth_root / "val.rec").read_bytes())
    (tmp_path / "classes.txt").write_text("pikachu\n")
    out = tmp_path / "deep" / "out"
    paths = extract(odd, out, num=1)
    assert all(p.parent == out for p in paths) and sorted(p.name for p in out.iterdir()) == [
        ".-00000.jpg", "..boxes.json", ".detkit-manifest.json", ".detkit.lock"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]


def test_errors_name_the_flags_the_user_typed(tmp_path, capsys):
    assert main(["data", "pack", "--format", "voc", "--images", str(tmp_path / "VOC" / "JPEGImages"),
                 "--annotations", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("detkit: error: The --images option must be an existing folder") and "image_dir" not in err
    assert main(["data", "show", str(tmp_path / "x.rec"), "--start", "-1"]) == 2
    assert "The --start option must be" in capsys.readouterr().err


def test_show(synth_root, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["data", "show", str(synth_root / "train.rec"), "-o", str(out), "-n", "4"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as image:
        assert image.size == (2 * 256 + 3 * 4,) * 2
        pixels = np.asarray(image.convert("RGB"))
    assert np.any(np.all(pixels == (255, 40, 40), axis=2))  # boxes are drawn
    assert main(["data", "show", str(synth_root / "val.rec"), "--augment"]) == 0
    assert (synth_root / "val.preview.png").is_file()


def test_show_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.rec"
    bad.write_bytes(b"\0" * 64)
    assert main(["data", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("detkit: error: ") and "bad.rec: record 0" in err and err.count("\n") == 1
    assert not (tmp_path / "bad.preview.png").exists()


def test_index(synth_root, tmp_path, capsys):
    out = tmp_path / "t.idx"
    assert main(["data", "index", str(synth_root / "train.rec"), "-o", str(out)]) == 0
    assert out.read_text() == (synth_root / "train.idx").read_text()


def _voc(tmp_path, xmax=20):
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(tmp_path / "img" / "a.jpg")
    (tmp_path / "ann" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>40</width><height>30</height></size>"
        "<object><name>leaf</name><bndbox><xmin>5</xmin><ymin>5</ymin>"
        f"<xmax>{xmax}</xmax><ymax>25</ymax></bndbox></object>"
        "<object><name>bug</name><bndbox><xmin>21</xmin><ymin>2</ymin><xmax>39</xmax><ymax>12</ymax></bndbox></object>"
        "</annotation>"
    )


def test_pack_voc_and_coco(tmp_path, capsys):
    _voc(tmp_path)
    argv = ["data", "pack", "--format", "voc", "--images", str(tmp_path / "img")]
    argv += ["--annotations", str(tmp_path / "ann")]
    assert main(argv + ["--out", str(tmp_path / "v"), "--quiet", "--classes", "leaf,bug"]) == 0
    assert "packed 1 images with 2 objects" in capsys.readouterr().out
    assert (tmp_path / "v.classes.txt").read_text() == "leaf\nbug\n"
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 16, 21], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "leaf"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    argv = ["data", "pack", "--format", "coco", "--images", str(tmp_path / "img")]
    argv += ["--annotations", str(tmp_path / "c.json")]
    assert main(argv + ["--out", str(tmp_path / "c"), "--quiet"]) == 0
    objects = DetectionDataset(tmp_path / "c.rec", classes=["leaf"]).objects(0)
    np.testing.assert_allclose(objects, [[0, 0.1, 4 / 30, 0.5, 25 / 30]], atol=1e-6)


def test_pack_invalid_fails_or_skips(tmp_path, capsys):
    _voc(tmp_path, xmax=99)
    argv = ["data", "pack", "--format", "voc", "--images", str(tmp_path / "img")]
    argv += ["--annotations", str(tmp_path / "ann")]
    assert main(argv + ["--out", str(tmp_path / "v"), "--quiet"]) == 2
    assert "a.xml: object 0 ('leaf'): box" in capsys.readouterr().err
    assert not (tmp_path / "v.rec").exists()
    assert main(argv + ["--out", str(tmp_path / "v"), "--quiet", "--skip-invalid"]) == 2  # nothing valid left
    assert "no valid images" in capsys.readouterr().err


def test_download_offline_suggests_synth(tmp_path, capsys, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    assert main(["data", "download", "pikachu", str(tmp_path), "--base-url", url, "--quiet"]) == 2
    assert "detkit data synth" in capsys.readouterr().err


def test_group_without_command_prints_help(capsys):
    main(["data"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("synth", "download", "pack", "show", "index"))
