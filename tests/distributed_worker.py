"""A worker of the distributed tests (run under ``detkit launch``): trains a saved detector with
``kvstore="dist_sync"`` and writes its weights (BatchNorm statistics included) and history as
``rank-R.npz`` and ``rank-R.json`` into OUT.

With ``--single``, the reference instead: one process on two devices at twice the batch, written
as ``rank-single.*``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import detkit  # noqa: F401  (before mxnet)
import mxnet as mx
import numpy as np
from detkit import Callback, SSDDetector
from detkit._engine import _distributed
from detkit.data import DetectionDataset
from detkit.errors import InputError


class _Die(Callback):
    """The worker of rank ``rank`` dies, without a word, after epoch ``epoch`` (1-based)."""

    def __init__(self, rank: int, epoch: int) -> None:
        self.rank, self.epoch = rank, epoch

    def on_epoch_end(self, epoch, record, detector):
        if _distributed._store.rank == self.rank and epoch + 1 == self.epoch:
            os._exit(9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("initial")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--checkpoints")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--die", nargs=2, type=int, metavar=("RANK", "EPOCH"))
    parser.add_argument("--single", action="store_true")
    parser.add_argument("--object", action="store_true", help="pass the kvstore as a KVStore object")
    args = parser.parse_args()
    data = Path(args.data)
    train = DetectionDataset(data / "train.rec", classes=["pikachu"])
    val = DetectionDataset(data / "val.rec", classes=["pikachu"])
    detector = SSDDetector.load(args.initial)
    if args.single:
        history = detkit.fit(detector, train, val, epochs=args.epochs, batch_size=2 * args.batch_size,
                             devices=[mx.cpu(0), mx.cpu(1)], seed=5, quiet=True)
        rank = "single"
    else:
        kvstore = mx.kv.create("dist_sync") if args.object else "dist_sync"
        history = detkit.fit(detector, train, val, epochs=args.epochs, batch_size=args.batch_size,
                             kvstore=kvstore, seed=5, quiet=True, checkpoint_dir=args.checkpoints,
                             resume=args.resume, callbacks=[_Die(*args.die)] if args.die else [])
        rank = _distributed._store.rank
        try:  # a second distributed fit in this process: a clear error, not a hang
            detkit.fit(detector, train, epochs=1, batch_size=args.batch_size, kvstore=kvstore, quiet=True)
        except InputError as error:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / f"rank-{rank}.second-fit").write_text(str(error))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Named by their place in the network (collect_params' names carry a per-process counter).
    np.savez(out / f"rank-{rank}.npz", **{name: p.data().asnumpy() for name, p in
                                         detector.network._collect_params_with_prefix().items()})
    (out / f"rank-{rank}.json").write_text(json.dumps(history.records))


if __name__ == "__main__":
    main()
