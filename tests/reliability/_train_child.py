"""A tiny training that the kill tests start, kill and resume: ``python _train_child.py DATA CHECKPOINTS OUT [KILL]``.

Every run resumes from what ``CHECKPOINTS`` holds (none: from the start) and,
when it finishes, saves the detector to ``OUT``. ``KILL`` makes the process
SIGKILL itself at a point of a checkpoint write, ``WHERE:N`` for the N-th
(1-based) time it gets there:

``network``   network.params of a checkpoint written, the rest not
``optimizer`` optimizer.params written, optimizer.json not
``rename``    the checkpoint's generation committed (manifest written), its files not yet moved into place
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import detkit  # before mxnet
import mxnet as mx
from detkit._base import _folder
from detkit._engine import _optimizer_state

EPOCHS = 3
SETTINGS = dict(batch_size=8, seed=7, quiet=True, lr_schedule="cosine", warmup_epochs=0.5,
                optimizer_params={"learning_rate": 0.05, "momentum": 0.9})


def _kill_at(where: str, nth: int) -> None:
    count = [0]

    def hit() -> None:
        count[0] += 1
        if count[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    if where == "network":
        real_save = mx.gluon.Block.save_parameters

        def save_parameters(self, filename, *args, **kwargs):
            real_save(self, filename, *args, **kwargs)
            if ".detkit-stage-" in str(filename):  # a new generation's file, not yet committed
                hit()
        mx.gluon.Block.save_parameters = save_parameters
    elif where == "optimizer":
        real_nd_save = mx.nd.save

        def nd_save(filename, data):
            real_nd_save(filename, data)
            hit()
        mx.nd.save = nd_save
        _optimizer_state.mx.nd.save = nd_save
    elif where == "rename":
        real_roll = _folder._roll_forward

        def roll_forward(folder, manifest):
            if manifest.get("moving") and manifest["kind"] == "checkpoints":  # committed, nothing moved yet
                hit()
            return real_roll(folder, manifest)
        _folder._roll_forward = roll_forward
    else:
        raise SystemExit(f"unknown kill point {where!r}")


def main() -> None:
    data, checkpoints, out = (Path(a) for a in sys.argv[1:4])
    if len(sys.argv) > 4:
        where, nth = sys.argv[4].split(":")
        _kill_at(where, int(nth))
    train = detkit.data.DetectionDataset(data / "train.rec", classes=["pikachu"])
    mx.random.seed(11)
    detector = detkit.SSDDetector(classes=["pikachu"], data_shape=64, ctx=mx.cpu())
    detkit.fit(detector, train, epochs=EPOCHS, checkpoint_dir=checkpoints, resume=True, **SETTINGS)
    detector.save(out)


if __name__ == "__main__":
    main()
