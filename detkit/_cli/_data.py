"""``detkit data ...``: synth, download, pack, show, extract, index."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..data._download import PIKACHU_URL, pikachu, write_index
from ..data._extract import extract
from ..data._pack import pack_coco, pack_voc
from ..data._show import show
from ..data._truth import sidecar_path
from ..data._shapes import SHAPES, shapes_made_with, synthetic_shapes
from ..data._synthetic import made_with, synthetic_pikachu


def add_commands(subparsers: Any) -> None:
    """Add the ``data`` command group to the ``detkit`` parser's subparsers."""
    data = subparsers.add_parser(
        "data",
        help="make, download, pack and look at detection datasets (RecordIO)",
        description="Make, download, pack and look at detection datasets stored as MXNet RecordIO.",
    )
    data.set_defaults(group_parser=data)
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND")

    synth = commands.add_parser(
        "synth",
        help="render a synthetic dataset (pikachu, or multi-class shapes)",
        description="Render a synthetic dataset (train.rec/.idx, val.rec/.idx, classes.txt, preview.png): "
        "the pikachu set (one class), or with --kind shapes the harder multi-class set (--classes, --objects). "
        "The same arguments give byte-identical files; an existing set made with them is kept "
        "(and said so), unless --force.",
    )
    synth.add_argument("root", nargs="?", default=None, help="output folder (default: data/pikachu, "
                       "or data/shapes with --kind shapes)")
    synth.add_argument("--kind", choices=["pikachu", "shapes"], default="pikachu",
                       help="which set (default: %(default)s)")
    synth.add_argument("--classes", type=int, default=None, metavar="N",
                       help=f"shapes: kinds of objects, 1 to {len(SHAPES)} (default: {len(SHAPES)})")
    synth.add_argument("--objects", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                       help="shapes: the least and most objects in an image (default: 2 8)")
    synth.add_argument("--num-train", type=int, default=1000, help="training images (default: %(default)s)")
    synth.add_argument("--num-val", type=int, default=100, help="validation images (default: %(default)s)")
    synth.add_argument("--image-size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    synth.add_argument("--workers", type=int, default=1, help="rendering processes (default: %(default)s)")
    synth.add_argument("--force", action="store_true", help="render again even if ROOT holds a set made with "
                       "the same arguments")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_synth, parser=synth)

    download = commands.add_parser(
        "download",
        help="download a published dataset",
        description="Download a published dataset, checking SHA-1 sums.",
    )
    download.set_defaults(group_parser=download)
    names = download.add_subparsers(dest="dataset", metavar="DATASET")
    pikachu = names.add_parser(
        "pikachu",
        help="the seed's pikachu dataset (train.rec, train.idx, val.rec)",
        description="Download the seed's pikachu dataset, verified by SHA-1. "
        "Without network, use `detkit data synth` instead.",
    )
    pikachu.add_argument("root", nargs="?", default="data/pikachu", help="output folder (default: %(default)s)")
    pikachu.add_argument("--base-url", default=None, help="where the files are (default: the seed's server)")
    pikachu.add_argument("--quiet", action="store_true", help="no progress bar")
    pikachu.set_defaults(handler=_download_pikachu)

    pack = commands.add_parser(
        "pack",
        help="pack images with VOC or COCO annotations into RecordIO",
        description="Pack images with Pascal VOC XML or COCO JSON annotations into OUT.rec, OUT.idx and "
        "OUT.classes.txt. Nothing is written unless packing succeeds.",
    )
    pack.add_argument("--format", required=True, choices=["voc", "coco"], help="annotation format")
    pack.add_argument("--images", required=True, metavar="DIR", help="folder of the images")
    pack.add_argument(
        "--annotations", required=True, metavar="PATH", help="folder of VOC *.xml files, or the COCO .json file"
    )
    pack.add_argument("--out", required=True, metavar="PREFIX", help="output path without suffix, e.g. data/mine/train")
    pack.add_argument("--classes", default=None, help="VOC only: comma-separated class names in id order")
    pack.add_argument(
        "--skip-invalid", action="store_true", help="skip invalid items and list them, instead of failing"
    )
    pack.add_argument("--quiet", action="store_true", help="no progress bar")
    pack.set_defaults(handler=_pack, parser=pack, flags={
        "image_dir": "--images", "annotation_dir": "--annotations", "json_path": "--annotations",
        "out_prefix": "--out"})

    show = commands.add_parser(
        "show",
        help="draw images of a .rec file with their boxes into a PNG grid",
        description="Draw the first images of a detection .rec file with their boxes into a PNG grid.",
    )
    show.add_argument("rec", metavar="FILE.rec")
    show.add_argument("-o", "--out", default=None, help="output PNG (default: FILE.preview.png)")
    show.add_argument("-n", "--num", type=int, default=9, help="images to show (default: %(default)s)")
    show.add_argument("--start", type=int, default=0, help="first image (default: %(default)s)")
    show.add_argument("--augment", action="store_true", help="show the training crops instead")
    show.add_argument("--seed", type=int, default=0, help="seed of the crops with --augment (default: %(default)s)")
    show.set_defaults(handler=_show)

    extract = commands.add_parser(
        "extract",
        help="write images of a .rec file as image files, their boxes in a JSON sidecar",
        description="Write images of a detection .rec file into OUT as STEM-NNNNN.jpg/.png (as stored), "
        "with their boxes in pixels and class names in OUT/STEM.boxes.json. Nothing is written outside OUT.",
    )
    extract.add_argument("rec", metavar="FILE.rec")
    extract.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    extract.add_argument("-n", "--num", type=int, default=None, help="images to write (default: all)")
    extract.add_argument("--start", type=int, default=0, help="first image (default: %(default)s)")
    extract.set_defaults(handler=_extract, flags={"out_dir": "--out", "rec_path": "FILE.rec"})

    index = commands.add_parser(
        "index",
        help="write the .idx of a .rec file",
        description="Rebuild FILE.idx by walking FILE.rec (for a missing or damaged index).",
    )
    index.add_argument("rec", metavar="FILE.rec")
    index.add_argument("-o", "--out", default=None, help="output index (default: FILE.idx)")
    index.set_defaults(handler=_index)


def _synth(args: argparse.Namespace) -> int:
    root = args.root if args.root is not None else f"data/{args.kind}"
    sizes = {"num_train": args.num_train, "num_val": args.num_val, "image_size": args.image_size, "seed": args.seed}
    if args.kind == "shapes":
        sizes["classes"] = len(SHAPES) if args.classes is None else args.classes
        sizes["objects"] = (2, 8) if args.objects is None else tuple(args.objects)
        kept = not args.force and shapes_made_with(root, **sizes)
        make: Any = synthetic_shapes
    else:
        if args.classes is not None or args.objects is not None:
            args.parser.error("--classes and --objects are for --kind shapes")
        kept = not args.force and made_with(root, **sizes)
        make = synthetic_pikachu
    train, val = make(root, **sizes, progress=not args.quiet, workers=args.workers, force=args.force)
    if kept:
        print(f"{root}: kept the set made earlier with the same arguments (--force renders it again)")
    print(f"{train.rec_path}: {len(train)} images; {val.rec_path}: {len(val)} images")
    if args.kind == "shapes":
        print(f"classes ({len(train.classes)}): {', '.join(train.classes)}")
    print(f"preview: {Path(root) / 'preview.png'}")
    return 0


def _download_pikachu(args: argparse.Namespace) -> int:
    train, val = pikachu(args.root, base_url=args.base_url or PIKACHU_URL, progress=not args.quiet)
    print(f"{train.rec_path}: {len(train)} images; {val.rec_path}: {len(val)} images")
    return 0


def _pack(args: argparse.Namespace) -> int:
    if args.format == "voc":
        classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
        dataset = pack_voc(
            args.images,
            args.annotations,
            args.out,
            classes=classes,
            skip_invalid=args.skip_invalid,
            progress=not args.quiet,
        )
    else:
        if args.classes:
            args.parser.error("--classes is for --format voc; COCO files list their categories")
        dataset = pack_coco(
            args.annotations, args.images, args.out, skip_invalid=args.skip_invalid, progress=not args.quiet
        )
    print(f"{dataset.rec_path}: {dataset.pack_summary}")
    print(f"classes ({len(dataset.classes)}): {', '.join(dataset.classes)}")
    print(f"exact ground truth for evaluation: {sidecar_path(dataset.rec_path)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    rec = Path(args.rec)
    out = Path(args.out) if args.out else rec.with_name(rec.stem + ".preview.png")
    show(rec, out, num=args.num, start=args.start, augment=args.augment, seed=args.seed)
    print(out)
    return 0


def _extract(args: argparse.Namespace) -> int:
    paths = extract(args.rec, args.out, num=args.num, start=args.start)
    for path in paths:
        print(path)
    print(f"boxes: {Path(args.out) / (Path(args.rec).stem + '.boxes.json')}")
    return 0


def _index(args: argparse.Namespace) -> int:
    print(write_index(args.rec, args.out))
    return 0
