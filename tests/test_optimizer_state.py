"""Optimizer state in checkpoints without pickle: saved, read back exactly, refused when damaged or old."""

from __future__ import annotations

import json
import pickle

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import detkit
from detkit import SSDDetector
from detkit._engine._optimizer_state import (
    OPTIMIZER_ARRAYS,
    OPTIMIZER_FILE,
    load_optimizer_state,
    save_optimizer_state,
    trainer_internals,
)
from detkit.errors import CheckpointError

SIZE = 64
TWO_DEVICES = [mx.cpu(0), mx.cpu(1)]


def _net(contexts: list[mx.Context]) -> gluon.nn.Dense:
    mx.random.seed(3)
    net = gluon.nn.Dense(4, in_units=6)
    net.initialize(mx.init.Xavier(), ctx=contexts)
    return net


def _trainer(net: gluon.nn.Dense, optimizer: str, params: dict, contexts: list[mx.Context]) -> gluon.Trainer:
    store = "device" if len(contexts) > 1 else None
    params = dict(params)
    if params.get("lr_scheduler") == "factor":  # a new schedule for every trainer, as a new process builds it
        params["lr_scheduler"] = mx.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=params["learning_rate"])
    return gluon.Trainer(net.collect_params(), optimizer, params, kvstore=store, update_on_kvstore=False)


def _steps(net: gluon.nn.Dense, trainer: gluon.Trainer, contexts: list[mx.Context], steps: range) -> None:
    for step in steps:
        data = mx.nd.array(np.random.RandomState(step).randn(len(contexts) * 2, 6))
        for ctx, part in zip(contexts, gluon.utils.split_data(data, len(contexts))):
            with autograd.record():
                loss = (net(part.as_in_context(ctx)) ** 2).sum()
            loss.backward()
        trainer.step(data.shape[0])


def _weights(net: gluon.nn.Dense) -> list[np.ndarray]:
    return [p.data(ctx).asnumpy() for p in net.collect_params().values() for ctx in p.list_ctx()]


@pytest.mark.parametrize("contexts", [[mx.cpu()], TWO_DEVICES], ids=["one-device", "two-devices"])
@pytest.mark.parametrize("optimizer, params", [
    ("sgd", {"learning_rate": 0.1}),  # no state: None for every index
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-3}),  # one array per index
    ("adam", {"learning_rate": 0.01}),  # a tuple of two arrays; bias correction counts updates
    ("nag", {"learning_rate": 0.05, "momentum": 0.9, "lr_scheduler": "factor"}),  # a schedule by num_update
], ids=["sgd", "momentum", "adam", "nag-schedule"])
def test_a_saved_and_loaded_state_continues_bit_identically(tmp_path, contexts, optimizer, params) -> None:
    straight = _net(contexts)
    trainer = _trainer(straight, optimizer, params, contexts)
    _steps(straight, trainer, contexts, range(3))
    save_optimizer_state(trainer, tmp_path)
    _steps(straight, trainer, contexts, range(3, 6))

    resumed = _net(contexts)
    replay = _net(contexts)
    replay_trainer = _trainer(replay, optimizer, params, contexts)
    _steps(replay, replay_trainer, contexts, range(3))
    for mine, theirs in zip(resumed.collect_params().values(), replay.collect_params().values()):
        mine.set_data(theirs.data(contexts[0]))
    fresh = _trainer(resumed, optimizer, params, contexts)
    load_optimizer_state(fresh, tmp_path)
    assert fresh.optimizer.num_update == 3
    _steps(resumed, fresh, contexts, range(3, 6))
    for got, expected in zip(_weights(resumed), _weights(straight)):
        np.testing.assert_array_equal(got, expected)


def test_the_files_hold_arrays_and_json_only(tmp_path) -> None:
    net = _net(TWO_DEVICES)
    trainer = _trainer(net, "adam", {"learning_rate": 0.01}, TWO_DEVICES)
    _steps(net, trainer, TWO_DEVICES, range(2))
    save_optimizer_state(trainer, tmp_path)
    description = json.loads((tmp_path / OPTIMIZER_FILE).read_text())
    assert description["optimizer"] == "adam" and description["num_update"] == 2
    assert len(description["states"]) == 2 and description["states"][0]["0"] == ["array", "array"]
    arrays = mx.nd.load(str(tmp_path / OPTIMIZER_ARRAYS))
    assert sorted(arrays) == ["0:0:0", "0:0:1", "0:1:0", "0:1:1", "1:0:0", "1:0:1", "1:1:0", "1:1:1"]
    # MXNet's NDArray list format (magic 0x112), not a pickle.
    assert (tmp_path / OPTIMIZER_ARRAYS).read_bytes()[:8] == (0x112).to_bytes(8, "little")


def test_trainer_internals_finds_one_updater_per_device_and_refuses_a_kvstore_state() -> None:
    net = _net(TWO_DEVICES)
    optimizer, updaters, contexts = trainer_internals(_trainer(net, "sgd", {"learning_rate": 0.1}, TWO_DEVICES))
    assert isinstance(optimizer, mx.optimizer.SGD) and len(updaters) == 2 and contexts == TWO_DEVICES
    assert all(u.optimizer is optimizer for u in updaters)
    on_store = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kvstore="device",
                             update_on_kvstore=True)
    with pytest.raises(CheckpointError, match="update_on_kvstore"):
        trainer_internals(on_store)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / OPTIMIZER_FILE).unlink(), "is missing"),
    (lambda d: (d / OPTIMIZER_ARRAYS).unlink(), "is missing"),
    (lambda d: (d / OPTIMIZER_FILE).write_text("{"), "cannot be read"),
    (lambda d: (d / OPTIMIZER_FILE).write_bytes(b"\xff\xfe"), "cannot be read"),
    (lambda d: (d / OPTIMIZER_ARRAYS).write_bytes(b"\x12" * 40), "damaged: its SHA-256 differs"),
    (lambda d: (d / OPTIMIZER_ARRAYS).write_bytes((d / OPTIMIZER_ARRAYS).read_bytes()[:-7]), "damaged: its SHA-256"),
    (lambda d: _edit(d, sha256=None), "not a valid optimizer state: 'sha256'"),
    # The checksum is mandatory: deleting it does not turn the check off.
    (lambda d: _without_checksum(d), "records no SHA-256"),
    (lambda d: (_without_checksum(d), (d / OPTIMIZER_ARRAYS).write_bytes(b"\x12" * 40)), "records no SHA-256"),
    (lambda d: _edit(d, num_update="3"), "not a valid optimizer state"),
    (lambda d: _edit(d, optimizer="adam"), "not a valid optimizer state.*'adam'"),
    (lambda d: _edit(d, states=[{"0": "pickle"}]), "damaged"),
    (lambda d: _edit(d, scalars={"__class__": 1}), "not a valid optimizer state"),
    (lambda d: _edit(d, scalars={"lr": [1]}), "not a valid optimizer state"),
    (lambda d: _edit(d, format="pickle"), "not a valid optimizer state"),
])
def test_a_damaged_state_is_a_checkpoint_error(tmp_path, damage, message) -> None:
    net = _net([mx.cpu()])
    trainer = _trainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9}, [mx.cpu()])
    _steps(net, trainer, [mx.cpu()], range(1))
    save_optimizer_state(trainer, tmp_path)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        load_optimizer_state(_trainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9}, [mx.cpu()]), tmp_path)


def _without_checksum(folder) -> None:
    path = folder / OPTIMIZER_FILE
    description = json.loads(path.read_text())
    del description["sha256"]
    path.write_text(json.dumps(description))


def _edit(folder, **changes) -> None:
    path = folder / OPTIMIZER_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pikachu")
    return detkit.data.synthetic_pikachu(root, num_train=16, num_val=8, image_size=SIZE, seed=3, progress=False)


def _detector() -> SSDDetector:
    mx.random.seed(11)
    return SSDDetector(classes=["pikachu"], data_shape=SIZE, ctx=mx.cpu())


def _detector_weights(detector: SSDDetector, trained: bool) -> list[np.ndarray]:
    return [p.data().asnumpy() for p in detector.network.collect_params().values()
            if (p.grad_req != "null") == trained]


def test_fit_resumed_on_two_devices_with_adam_equals_an_uninterrupted_run_bit_for_bit(tiny, tmp_path) -> None:
    train, _ = tiny
    settings = dict(batch_size=8, seed=5, quiet=True, devices=TWO_DEVICES, optimizer="adam",
                    optimizer_params={"learning_rate": 0.01})
    straight = _detector()
    detkit.fit(straight, train, epochs=2, checkpoint_dir=tmp_path / "a", **settings)
    detkit.fit(_detector(), train, epochs=1, checkpoint_dir=tmp_path / "b", **settings)
    resumed = _detector()
    detkit.fit(resumed, train, epochs=2, checkpoint_dir=tmp_path / "b", resume=True, **settings)
    for got, expected in zip(_detector_weights(resumed, True), _detector_weights(straight, True)):
        np.testing.assert_array_equal(got, expected)
    # Batch-norm running statistics are kept per device and saved as their mean: a resumed run starts
    # every device from the mean, which gives the same mean at the end up to float rounding.
    for got, expected in zip(_detector_weights(resumed, False), _detector_weights(straight, False)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_fit_resumed_on_one_device_equals_an_uninterrupted_run_bit_for_bit(tiny, tmp_path) -> None:
    train, _ = tiny
    settings = dict(batch_size=8, seed=5, quiet=True, lr_schedule="cosine", warmup_epochs=0.5,
                    optimizer_params={"learning_rate": 0.05, "momentum": 0.9})
    straight = _detector()
    detkit.fit(straight, train, epochs=3, checkpoint_dir=tmp_path / "a", **settings)
    detkit.fit(_detector(), train, epochs=3, checkpoint_dir=tmp_path / "b", callbacks=[_StopAfterFirst()],
               **settings)
    resumed = _detector()
    detkit.fit(resumed, train, epochs=3, checkpoint_dir=tmp_path / "b", resume=True, **settings)
    for trained in (True, False):
        for got, expected in zip(_detector_weights(resumed, trained), _detector_weights(straight, trained)):
            np.testing.assert_array_equal(got, expected)


class _StopAfterFirst(detkit.Callback):
    def on_epoch_end(self, epoch, record, detector):
        return True


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_with_pickled_trainer_states_is_refused_without_unpickling(tiny, tmp_path) -> None:
    train, _ = tiny
    detkit.fit(_detector(), train, epochs=1, batch_size=8, seed=0, quiet=True, checkpoint_dir=tmp_path)
    folder = tmp_path / "epoch-0001"
    marker = tmp_path / "ran"
    # A checkpoint as the earlier format wrote it: trainer.states (a pickle), format 1.
    (folder / OPTIMIZER_FILE).unlink()
    (folder / OPTIMIZER_ARRAYS).unlink(missing_ok=True)
    (folder / "trainer.states").write_bytes(pickle.dumps(_Payload(marker)))
    state = json.loads((folder / "state.json").read_text())
    for version in ("detkit-checkpoint/1", "detkit-checkpoint/2"):
        (folder / "state.json").write_text(json.dumps({**state, "format": version}))
        with pytest.raises(CheckpointError, match="pickled the optimizer state.*no longer loads pickles"):
            detkit.fit(_detector(), train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=tmp_path, resume=True)
        assert not marker.exists()
