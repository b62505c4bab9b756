"""The writers of the folder rule's kill loop (``test_folder_rule.py`` forks a process per kill and runs one).

Run alone, ``python _writer_child.py WRITER FOLDER WORK`` is one such write in a fresh process, to kill by hand:
The child prepares what it writes (imports, builds or quantizes the detector,
...), prints ``ready`` and waits for a line on stdin; then it writes once into
``FOLDER`` and exits. ``WORK`` holds the inputs that the test made (``data/``,
the seed of the new result). Writers:

``save``      ``SSDDetector.save`` of a detector seeded 2
``quantize``  the INT8 detector of ``detkit quantize ... --out FOLDER`` (seed 2), saved
``extract``   ``detkit.data.extract`` of ``WORK/data/val.rec``, images 1 to 3
``synth``     ``detkit.data.synthetic_pikachu(FOLDER, seed=2, force=True)``
"""

from __future__ import annotations

import sys
from pathlib import Path

import detkit  # before mxnet
import mxnet as mx

SHAPE = 64


def detector(seed: int) -> detkit.SSDDetector:
    mx.random.seed(seed)
    built = detkit.SSDDetector(classes=["pikachu"], data_shape=SHAPE, ctx=mx.cpu(), hybridize=False)
    built._materialize()
    return built


def quantized(seed: int, work: Path) -> detkit.SSDDetector:
    data = detkit.data.DetectionDataset(work / "data" / "val.rec", classes=["pikachu"])
    return detector(seed).quantize(data, num_batches=1, batch_size=2)


def synth(folder: Path, seed: int) -> None:
    detkit.data.synthetic_pikachu(folder, num_train=6, num_val=3, image_size=32, seed=seed, force=True,
                                  progress=False, workers=1)


def extract(folder: Path, work: Path, start: int, num: int) -> None:
    detkit.data.extract(work / "data" / "val.rec", folder, start=start, num=num)


def main() -> None:
    writer, folder, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if writer == "save":
        prepared = detector(2)
        write = lambda: prepared.save(folder)  # noqa: E731
    elif writer == "quantize":
        prepared = quantized(2, work)
        write = lambda: prepared.save(folder)  # noqa: E731
    elif writer == "extract":
        write = lambda: extract(folder, work, 1, 3)  # noqa: E731
    elif writer == "synth":
        write = lambda: synth(folder, 2)  # noqa: E731
    else:
        raise SystemExit(f"unknown writer {writer!r}")
    print("ready", flush=True)
    sys.stdin.readline()
    write()


if __name__ == "__main__":
    main()
