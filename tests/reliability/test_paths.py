"""Every path from a file stays inside its folder: checkpoint pointers and the images that annotations name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_data_pack import make_coco, make_voc, voc_xml  # noqa: E402

from detkit._engine._checkpoints import Checkpoints  # noqa: E402
from detkit.data import pack_coco, pack_voc  # noqa: E402
from detkit.errors import CheckpointError, DataError  # noqa: E402

# Pointer contents that must be refused: anything but the plain name of a checkpoint folder of the directory.
BAD_POINTERS = [
    "../elsewhere/epoch-0001",
    "/tmp/epoch-0001",
    "epoch-0001/../../elsewhere",
    "epoch-0001/",
    "./epoch-0001",
    "..",
    ".",
    "",
    "elsewhere",
    "epoch-0001\\..\\..\\x",  # harmless on POSIX (one odd name), but no checkpoint folder
    None,
    7,
    ["epoch-0001"],
]


@pytest.mark.parametrize("which", ["last", "best"])
@pytest.mark.parametrize("name", BAD_POINTERS, ids=[repr(n) for n in BAD_POINTERS])
def test_a_checkpoint_pointer_that_leaves_its_folder_is_refused(tmp_path, which, name) -> None:
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    # A complete-looking checkpoint outside, which a followed pointer would reach.
    elsewhere = tmp_path / "elsewhere" / "epoch-0001"
    elsewhere.mkdir(parents=True)
    (elsewhere / "state.json").write_text("{}")
    (directory / f"{which}.json").write_text(json.dumps({"checkpoint": name, "epoch": 0}))
    with pytest.raises(CheckpointError, match=f"{which}.json"):
        Checkpoints(directory).path(which)


@pytest.mark.parametrize("content", ["{", "[]", '{"epoch": 0}', "\udcff", '"epoch-0001"'])
def test_a_malformed_pointer_is_a_checkpoint_error(tmp_path, content) -> None:
    (tmp_path / "last.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(CheckpointError, match="last.json"):
        Checkpoints(tmp_path).path("last")


def test_a_pointer_to_a_plain_checkpoint_name_is_followed(tmp_path) -> None:
    (tmp_path / "epoch-0003").mkdir()
    (tmp_path / "epoch-0003" / "state.json").write_text("{}")
    (tmp_path / "last.json").write_text(json.dumps({"checkpoint": "epoch-0003", "epoch": 2}))
    assert Checkpoints(tmp_path).path("last") == tmp_path / "epoch-0003"


# Image names an annotation may give that leave the image folder; "{outside}" is a real file there.
ESCAPES = ["../outside.png", "{outside}", "sub/../../outside.png", "../missing.png", "/nonexistent/missing.png",
           "./../outside.png"]


def _message_without_name(error: Exception, name: str, source: str) -> str:
    return str(error).replace(source, "SOURCE").replace(repr(name), "NAME")


@pytest.mark.parametrize("name", ESCAPES)
def test_pack_voc_refuses_an_image_outside_the_image_folder_with_one_message(tmp_path, name) -> None:
    items, images, annotations = make_voc(tmp_path)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (80, 60)).save(outside)
    name = name.format(outside=outside)
    file_name, width, height, boxes = items[0]
    (annotations / "img0.xml").write_text(voc_xml(name, width, height, boxes))
    with pytest.raises(DataError) as caught:
        pack_voc(images, annotations, tmp_path / "out" / "voc", progress=False)
    message = _message_without_name(caught.value, name, str(annotations / "img0.xml"))
    assert message == (
        f"SOURCE: the image path NAME is not inside the image folder {images}; image paths must be relative "
        "to it, without '..'."
    )
    assert not list(tmp_path.glob("out/*"))
    # With skip_invalid, the image is left out and listed, never read.
    dataset = pack_voc(images, annotations, tmp_path / "out" / "voc", skip_invalid=True, progress=False)
    assert len(dataset) == len(items) - 1
    assert "not inside the image folder" in dataset.pack_summary.skipped[0][1]


@pytest.mark.parametrize("name", ESCAPES)
def test_pack_coco_refuses_an_image_outside_the_image_folder_with_one_message(tmp_path, name) -> None:
    items, path, images, data = make_coco(tmp_path)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (80, 60)).save(outside)
    name = name.format(outside=outside)
    data["images"][0]["file_name"] = name
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as caught:
        pack_coco(path, images, tmp_path / "out" / "coco", progress=False)
    source = f"{path}: image {name!r}"
    message = _message_without_name(caught.value, name, source)
    assert message == (
        f"SOURCE: the image path NAME is not inside the image folder {images}; image paths must be relative "
        "to it, without '..'."
    )
    assert not list(tmp_path.glob("out/*"))


def test_an_image_in_a_subfolder_of_the_image_folder_is_packed(tmp_path) -> None:
    items, path, images, data = make_coco(tmp_path)
    (images / "sub").mkdir()
    (images / items[0][0]).rename(images / "sub" / items[0][0])
    data["images"][0]["file_name"] = f"sub/{items[0][0]}"
    path.write_text(json.dumps(data))
    assert len(pack_coco(path, images, tmp_path / "out" / "coco", progress=False)) == len(items)
