"""A worker of the distributed tests (run under ``detkit launch``): trains a saved detector with
``kvstore="dist_sync"`` and writes its weights (BatchNorm statistics included) and history as
``rank-R.npz`` and ``rank-R.json`` into OUT.

With ``--single``, the reference instead: one process on two devices at twice the batch, written
as ``rank-single.*``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import detkit  # noqa: F401  (before mxnet)
import mxnet as mx
import numpy as np
from detkit import Callback, SSDDetector
from detkit._engine import _distributed
from detkit.data import DetectionDataset
from detkit.errors import InputError, TrainingError


class _Die(Callback):
    """The worker of rank ``rank`` dies, without a word, after epoch ``epoch`` (1-based)."""

    def __init__(self, rank: int, epoch: int) -> None:
        self.rank, self.epoch = rank, epoch

    def on_epoch_end(self, epoch, record, detector):
        if _distributed._store.rank == self.rank and epoch + 1 == self.epoch:
            os._exit(9)


def _fail(how: str, marker: Path) -> None:
    """Fail as ``how`` says, after writing the time into ``marker``."""
    marker.write_text(repr(time.time()))
    if how == "raise":
        raise TrainingError("a planned failure")
    if how == "exit":
        sys.exit(7)
    if how == "signal":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    if how == "hang":
        time.sleep(120)
    os._exit(9)


class _FailAfterEpoch(Callback):
    def __init__(self, rank: int, how: str, marker: Path) -> None:
        self.rank, self.how, self.marker = rank, how, marker

    def on_epoch_end(self, epoch, record, detector):
        if _distributed._store.rank == self.rank:
            _fail(self.how, self.marker)


def _plan_failure(rank: int, phase: str, how: str, marker: Path) -> list:
    """Arrange for the worker of ``rank`` to fail as ``how`` at ``phase``; the callbacks that need."""
    from detkit._engine import _callbacks, _checkpoints

    def failing(original):
        def replacement(*args, **kwargs):
            if _distributed._store.rank == rank:
                _fail(how, marker)
            return original(*args, **kwargs)
        return replacement

    if phase == "start":  # once it joined the job
        if _distributed.worker_rank("dist_sync") == rank:
            _fail(how, marker)
    elif phase == "validation":
        _callbacks.evaluate_with = failing(_callbacks.evaluate_with)
    elif phase == "checkpoint":
        _checkpoints.Checkpoints.write = failing(_checkpoints.Checkpoints.write)
    elif phase == "epoch":
        return [_FailAfterEpoch(rank, how, marker)]
    return []


class _Statistics(Callback):
    """Keeps every device's copy of the BatchNorm running statistics at the end of each epoch."""

    def __init__(self) -> None:
        self.copies: dict[str, np.ndarray] = {}

    def on_epoch_end(self, epoch, record, detector):
        for name, parameter in detector.network._collect_params_with_prefix().items():
            if parameter.grad_req == "null":
                for device, value in enumerate(parameter.list_data()):
                    self.copies[f"{name}@{device}"] = value.asnumpy()


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
    parser.add_argument("--fail", nargs=3, metavar=("RANK", "PHASE", "HOW"),
                        help="the worker of RANK fails at PHASE (start, epoch, validation, checkpoint, teardown) "
                             "as HOW (raise, exit, signal, kill, hang), writing the time into OUT/failed")
    parser.add_argument("--single", action="store_true")
    parser.add_argument("--object", action="store_true", help="pass the kvstore as a KVStore object")
    parser.add_argument("--devices", type=int, default=1, help="CPU devices of each worker (--single: in all)")
    parser.add_argument("--no-val", action="store_true", help="no validation data")
    parser.add_argument("--ema-epochs", type=float, default=0.0, help="fit's ema_epochs")
    parser.add_argument("--no-second-fit", action="store_true", help="skip the second fit's check")
    parser.add_argument("--imperative", action="store_true", help="train the detector without hybridizing it")
    args = parser.parse_args()
    data = Path(args.data)
    train = DetectionDataset(data / "train.rec", classes=["pikachu"])
    val = None if args.no_val else DetectionDataset(data / "val.rec", classes=["pikachu"])
    detector = SSDDetector.load(args.initial)
    if args.imperative:
        detector.hybridized = False
    devices = [mx.cpu(i) for i in range(args.devices)]
    statistics = _Statistics()
    if args.single:
        history = detkit.fit(detector, train, val, epochs=args.epochs, batch_size=args.devices * args.batch_size,
                             devices=devices, seed=5, quiet=True, callbacks=[statistics],
                             ema_epochs=args.ema_epochs)
        rank = "single"
    else:
        kvstore = mx.kv.create("dist_sync") if args.object else "dist_sync"
        failure = []
        if args.fail:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            failure = _plan_failure(int(args.fail[0]), args.fail[1], args.fail[2], Path(args.out) / "failed")
        history = detkit.fit(detector, train, val, epochs=args.epochs, batch_size=args.devices * args.batch_size,
                             kvstore=kvstore, seed=5, quiet=True, checkpoint_dir=args.checkpoints, devices=devices,
                             resume=args.resume, ema_epochs=args.ema_epochs,
                             callbacks=[statistics, *failure] + ([_Die(*args.die)] if args.die else []))
        rank = _distributed._store.rank
        try:  # a second distributed fit in this process: a clear error, not a hang
            if not args.no_second_fit:
                detkit.fit(detector, train, epochs=1, batch_size=args.batch_size, kvstore=kvstore, quiet=True)
        except InputError as error:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / f"rank-{rank}.second-fit").write_text(str(error))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Named by their place in the network (collect_params' names carry a per-process counter).
    np.savez(out / f"rank-{rank}.npz", **{name: p.data().asnumpy() for name, p in
                                         detector.network._collect_params_with_prefix().items()})
    np.savez(out / f"rank-{rank}.devices.npz", **statistics.copies)
    (out / f"rank-{rank}.json").write_text(json.dumps(history.records))
    if args.fail and args.fail[1] == "teardown" and rank == int(args.fail[0]):
        _fail(args.fail[2], out / "failed")


if __name__ == "__main__":
    main()
