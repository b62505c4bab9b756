"""The public names of detkit.data: complete, sorted, and shaped as the rest of detkit relies on."""

from __future__ import annotations

import inspect
import types

import detkit.data

EXPECTED = {
    "DetectionBatch",
    "DetectionDataset",
    "DetectionLoader",
    "PackSummary",
    "RGB_MEAN",
    "pack_coco",
    "pack_voc",
    "pikachu",
    "preprocess",
    "show",
    "synthetic_pikachu",
    "write_index",
}


def test_all_is_sorted_and_complete():
    assert detkit.data.__all__ == sorted(detkit.data.__all__)
    public = {
        name
        for name, value in vars(detkit.data).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public == set(detkit.data.__all__) == EXPECTED


def parameters(function) -> list[str]:
    """``name``, ``*name`` for keyword-only, with ``=default`` where there is one."""
    out = []
    for p in inspect.signature(function).parameters.values():
        if p.name == "self":
            continue
        text = ("*" if p.kind is p.KEYWORD_ONLY else "") + p.name
        if p.default is not p.empty:
            text += f"={p.default!r}"
        out.append(text)
    return out


def test_signatures_of_the_contract():
    data = detkit.data
    assert data.RGB_MEAN == (123.0, 117.0, 104.0)
    assert parameters(data.DetectionDataset) == ["rec_path", "idx_path=None", "*classes"]
    assert parameters(data.DetectionDataset.loader) == [
        "batch_size", "data_shape=256", "*train", "*shuffle=None", "*seed=None", "*num_objects=None",
        "*last_batch='pad'",
    ]
    assert data.DetectionBatch._fields == ("data", "label", "pad")
    assert parameters(data.preprocess) == ["image", "data_shape=256"]
    assert parameters(data.synthetic_pikachu)[:6] == [
        "root", "*num_train=1000", "*num_val=100", "*image_size=256", "*seed=0", "*progress=True",
    ]
    assert parameters(data.pikachu) == [
        "root", "*base_url='https://apache-mxnet.s3-accelerate.amazonaws.com/gluon/dataset/pikachu/'", "*progress=True",
    ]
    assert parameters(data.pack_voc) == [
        "image_dir", "annotation_dir", "out_prefix", "*classes=None", "*skip_invalid=False", "*progress=True",
    ]
    assert parameters(data.pack_coco) == [
        "json_path", "image_dir", "out_prefix", "*skip_invalid=False", "*progress=True",
    ]
    assert parameters(data.show)[:3] == ["rec_path", "out_png", "*num=9"]
