"""``detkit import gluoncv``: a GluonCV model-zoo SSD (or a network of yours) saved as a detkit detector."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._model import GLUONCV_MODELS, import_gluoncv
from .._pretrained import GLUONCV_SSD_SHA1
from ..errors import InputError

# What SSDDetector.save writes into its folder.
SAVED_FILES = ("detector.yaml", "network.params", "target_assigner.params", "loss.params", "post_processor.params")

__all__ = ["add_commands"]


def add_commands(subparsers: Any) -> None:
    """Add ``import gluoncv`` to the ``detkit`` command's subparsers."""
    group = subparsers.add_parser(
        "import", help="make a detector of another library's trained network",
        description="Make a detkit detector of another library's trained network.")
    kinds = group.add_subparsers(dest="source_library", metavar="LIBRARY", required=True)
    gluoncv = kinds.add_parser(
        "gluoncv", help="a GluonCV SSD: a model-zoo name (downloaded) or a .params file",
        description=(
            "Save a GluonCV SSD as a detkit detector that detects as GluonCV's net(x) does: a model-zoo name "
            f"with published weights ({', '.join(sorted(GLUONCV_SSD_SHA1))}), downloaded into --root and checked "
            "against GluonCV's SHA-1 sum, or a .params file (GluonCV's, or your net.save_parameters) with the "
            f"GluonCV model it was built from (--name; architectures: {', '.join(GLUONCV_MODELS)}, each _voc, "
            "_coco or _custom). Needs gluon-detkit-zoo (and gluon-detkit-resnet for ResNets)."))
    gluoncv.add_argument("source", metavar="NAME_OR_PARAMS", help="a GluonCV model-zoo name or a .params file")
    gluoncv.add_argument("--out", required=True, help="the directory to save the detector to (SSDDetector.save)")
    gluoncv.add_argument("--name", help="for a file: the GluonCV model it was built from, e.g. "
                                        "ssd_512_mobilenet1.0_voc (default: from the file name)")
    gluoncv.add_argument("--classes", help="the network's classes in its order, comma-separated (default: VOC's "
                                           "or COCO's; needed for _custom networks)")
    gluoncv.add_argument("--data-shape", type=int, help="input size (default: GluonCV's, 300 or 512)")
    gluoncv.add_argument("--root", help="the model store folder (default: $MXNET_HOME/models)")
    gluoncv.set_defaults(handler=_gluoncv, flags={"source": "NAME_OR_PARAMS", "data_shape": "--data-shape"})


def _gluoncv(args: argparse.Namespace) -> int:
    classes = [c.strip() for c in args.classes.split(",")] if args.classes is not None else None
    source, out = Path(args.source).expanduser(), Path(args.out).expanduser()
    if source.is_file() and source.resolve() in {(out / name).resolve() for name in SAVED_FILES}:
        raise InputError(f"The --out folder {out} would overwrite the file being imported, {source}; "
                         "choose another --out.")
    detector = import_gluoncv(args.source, name=args.name, classes=classes, data_shape=args.data_shape,
                              root=args.root)
    out = detector.save(args.out)
    print(f"GluonCV's {args.name or args.source} ({len(detector.classes)} classes, {detector.data_shape[0]} x "
          f"{detector.data_shape[1]}) saved to {out}")
    return 0
