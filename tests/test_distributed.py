"""Training on several processes with MXNet's parameter server: loopback jobs on 127.0.0.1.

The jobs (a scheduler, one server, two workers) train the same saved detector on
31 images of 64 px at batch 4 per worker: 15 images a worker, 3 steps an epoch.
Each takes a few seconds; they are marked ``distributed``
(``pytest -m "not distributed"`` leaves them out).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import detkit
from detkit import SSDDetector
from detkit._cli._launch import child_environment, format_environment, plan_job, read_hosts
from detkit._base._roles import PEER_EXIT_STATUS, PEER_GRACE_SECONDS
from detkit._engine._distributed import WATCHDOG_EXIT_STATUS
from detkit.config import load_config
from detkit.data import DetectionDataset
from detkit.errors import ConfigError, InputError

WORKER = Path(__file__).with_name("distributed_worker.py")
JOB_SECONDS = 120  # far above a job's few seconds: only a hang reaches it
distributed = pytest.mark.distributed


def _launch(*arguments: str, env: dict[str, str] | None = None, timeout: float = JOB_SECONDS,
            **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detkit.cli", "launch", *arguments], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The data, the initial detector and the uninterrupted two-worker run of two epochs (which averages
    its weights: ``ema_epochs``)."""
    root = tmp_path_factory.mktemp("distributed")
    detkit.data.synthetic_pikachu(root / "data", num_train=31, num_val=4, image_size=64, progress=False)
    mx.random.seed(3)
    detector = SSDDetector(["pikachu"], data_shape=64)
    detector._materialize()
    detector.save(root / "initial")
    run = _launch("-n", "2", "-s", "1", "--timeout", "30", "--", sys.executable, str(WORKER), str(root / "data"),
                  str(root / "initial"), str(root / "whole"), "--checkpoints", str(root / "whole" / "checkpoints"),
                  "--ema-epochs", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    return root


def _weights(folder: Path, rank: int) -> dict[str, np.ndarray]:
    with np.load(folder / f"rank-{rank}.npz") as saved:
        return dict(saved)


def _datasets(root: Path) -> tuple[DetectionDataset, DetectionDataset]:
    return (DetectionDataset(root / "data" / "train.rec", classes=["pikachu"]),
            DetectionDataset(root / "data" / "val.rec", classes=["pikachu"]))


@distributed
def test_two_workers_end_with_identical_weights_statistics_and_history(job) -> None:
    first, second = _weights(job / "whole", 0), _weights(job / "whole", 1)
    assert first.keys() == second.keys()
    statistics = [name for name in first if name.endswith(("running_mean", "running_var"))]
    assert statistics  # the BatchNorm statistics are compared too
    for name in first:
        assert np.array_equal(first[name], second[name]), name
    initial = SSDDetector.load(job / "initial").network._collect_params_with_prefix()
    assert not np.array_equal(first[statistics[0]], initial[statistics[0]].data().asnumpy())
    histories = [json.loads((job / "whole" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert histories[0] == histories[1]
    assert [r["epoch"] for r in histories[0]] == [1, 2]
    # The whole job's figures: 2 workers x 3 steps x 4 images in each epoch's seconds.
    for record in histories[0]:
        assert record["images_per_second"] == pytest.approx(24 / record["seconds"])
        assert "map_50" in record
    # One writer: complete checkpoints, nothing half-written, the history of the job.
    checkpoints = job / "whole" / "checkpoints"
    # rank 0's lock and the folder's manifest stay (the folder rule)
    names = sorted(p.name for p in checkpoints.iterdir() if p.name not in (".detkit.lock", ".detkit-manifest.json"))
    assert names in (["best.json", "epoch-0001", "epoch-0002", "last.json"], ["best.json", "epoch-0002", "last.json"])
    state = json.loads((checkpoints / "epoch-0002" / "state.json").read_text())
    assert state["history"] == histories[0] and state["settings"]["workers"] == 2
    # The weights' average is the checkpoint's detector, the trained weights lie beside it.
    assert state["average"]["steps"] == 6 and (checkpoints / "epoch-0002" / "training.params").is_file()
    for rank in (0, 1):
        assert "one fit per process" in (job / "whole" / f"rank-{rank}.second-fit").read_text()


@distributed
def test_two_workers_update_as_one_process_at_the_global_batch(job) -> None:
    # One process on two devices at batch 8 (4 a device) sees the same images, the same crops and the
    # same BatchNorm batches as two workers at batch 4, with the same learning rate. With the same
    # number of threads per process (1, as detkit launch gives each worker here) the trainable
    # weights after 6 steps agree within 1e-6 of their size (measured: bit-identical); other thread
    # counts change the float rounding of the convolutions, which training amplifies to ~1e-3.
    # (On one device at batch 8, BatchNorm would normalise over 8 images instead of 4.)
    reference = subprocess.run([sys.executable, str(WORKER), str(job / "data"), str(job / "initial"),
                                str(job / "whole"), "--single", "--devices", "2", "--ema-epochs", "1"],
                               capture_output=True, text=True,
                               timeout=JOB_SECONDS, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert reference.returncode == 0, reference.stderr[-3000:]
    workers, single = _weights(job / "whole", 0), _weights(job / "whole", "single")
    initial = SSDDetector.load(job / "initial").network._collect_params_with_prefix()
    trainable = [name for name, p in initial.items() if p.grad_req != "null"]
    assert trainable
    for name in trainable:
        assert not np.array_equal(workers[name], initial[name].data().asnumpy())
        np.testing.assert_allclose(single[name], workers[name], rtol=0, atol=1e-6 * np.abs(workers[name]).max(),
                                   err_msg=name)
    records = [json.loads((job / "whole" / f"rank-{r}.json").read_text()) for r in (0, "single")]
    # (Not the validation mAP: one process keeps its first device's BatchNorm statistics, a job their mean.)
    for key in ("loss", "class_accuracy", "box_mae", "learning_rate"):
        assert [r[key] for r in records[1]] == pytest.approx([r[key] for r in records[0]], rel=1e-5, abs=1e-6), key


@distributed
def test_resume_equals_the_uninterrupted_run(job) -> None:
    common = [sys.executable, str(WORKER), str(job / "data"), str(job / "initial"), str(job / "resumed"),
              "--checkpoints", str(job / "resumed" / "checkpoints"), "--ema-epochs", "1"]
    first = _launch("-n", "2", "--timeout", "30", "--", *common, "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    # Resumed with the kvstore given as an object: sharded all the same.
    second = _launch("-n", "2", "--timeout", "30", "--", *common, "--epochs", "2", "--resume", "--object")
    assert second.returncode == 0, second.stderr[-3000:]
    whole, resumed = _weights(job / "whole", 0), _weights(job / "resumed", 1)
    for name in whole:
        assert np.array_equal(whole[name], resumed[name]), name
    histories = [json.loads((job / folder / "rank-0.json").read_text()) for folder in ("whole", "resumed")]
    for a, b in zip(*histories):
        assert {k: v for k, v in a.items() if k not in ("seconds", "images_per_second")} == \
            {k: v for k, v in b.items() if k not in ("seconds", "images_per_second")}


@distributed
def test_a_dead_worker_ends_the_job_and_the_last_checkpoint_stays(job) -> None:
    folder = job / "dead"
    started = time.monotonic()
    run = _launch("-n", "2", "--timeout", "20", "--", sys.executable, str(WORKER), str(job / "data"),
                  str(job / "initial"), str(folder), "--checkpoints", str(folder / "checkpoints"), "--epochs", "3",
                  "--die", "1", "1")
    assert run.returncode == 9, run.stderr[-3000:]
    assert time.monotonic() - started < 60
    # Named by its rank (ps-lite numbers the workers in the order they join, not the launcher's).
    errors = [line for line in run.stderr.splitlines() if line.startswith("detkit: error:")]
    assert len(errors) == 1 and re.match(r"detkit: error: the worker 1 of 2 \(pid \d+\) exited with status 9; "
                                         r"the job was stopped", errors[0]), run.stderr[-3000:]
    assert json.loads((folder / "checkpoints" / "last.json").read_text())["checkpoint"] == "epoch-0001"
    SSDDetector.load(folder / "checkpoints" / "epoch-0001")
    assert not list((folder / "checkpoints").glob("*partial*"))


def _start_unwatched(processes: list, logs: list[Path]) -> list[subprocess.Popen]:
    """Start a job's processes as a cluster manager would, each in its own session, stderr to a file.

    A file, not a pipe: an unread pipe fills up (ps-lite logs every failed
    reconnection once a peer is gone) and then blocks the child in a write.
    """
    children = []
    for process, log in zip(processes, logs):
        with log.open("w") as stream:
            children.append(subprocess.Popen(process.command, env=child_environment(process, 1), stderr=stream,
                                             start_new_session=True))
    return children


@distributed
def test_the_watchdog_stops_a_worker_whose_peer_died_without_a_launcher(job, tmp_path) -> None:
    # Started as a cluster manager would, from the printed environments: nobody watches the processes.
    folder = tmp_path / "run"
    worker = [sys.executable, str(WORKER), str(job / "data"), str(job / "initial"), str(folder), "--epochs", "3",
              "--die", "1", "1"]
    from detkit._cli._launch import free_port

    processes = plan_job(worker, workers=2, servers=1, scheduler="127.0.0.1", port=free_port(), timeout=10,
                         python=sys.executable)
    logs = [tmp_path / f"stderr-{index}.txt" for index in range(len(processes))]
    children = _start_unwatched(processes, logs)
    try:
        started = time.monotonic()
        statuses = {}
        while time.monotonic() - started < JOB_SECONDS and len(statuses) < 2:
            for index in (-2, -1):
                if index not in statuses and children[index].poll() is not None:
                    statuses[index] = (children[index].returncode, time.monotonic())
            time.sleep(0.1)
        assert sorted(code for code, _ in statuses.values()) == [WATCHDOG_EXIT_STATUS, 9]
        died = min(t for _, t in statuses.values())
        assert max(t for _, t in statuses.values()) - died < 10 + 15
        survivor = next(i for i, (code, _) in statuses.items() if code == WATCHDOG_EXIT_STATUS)
        message = logs[survivor].read_text()
        assert "made no progress for 10 s" in message and "checkpoints on disk are intact" in message
        assert re.search(r"detkit: error: worker 0 of 2: the distributed job made no progress", message)
        # The scheduler and the server end too, at most two grace periods after the worker died.
        for child in children[:2]:
            assert child.wait(max(1.0, died + 2 * PEER_GRACE_SECONDS + 10 - time.monotonic())) == PEER_EXIT_STATUS
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@distributed
def test_ssh_mode_runs_each_process_through_ssh(tmp_path) -> None:
    # A fake ssh on PATH: it records its arguments and runs the remote command here.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "ssh.log"
    (bin_dir / "ssh").write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\neval \"last=\\${{$#}}\"\nexec sh -c \"$last\"\n"
    )
    (bin_dir / "ssh").chmod(0o755)
    hosts = tmp_path / "hosts"
    hosts.write_text("# two machines\n127.0.0.1\n\nuser@127.0.0.1  # the second\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PORT": "1"}
    # One write a line (the workers share the launcher's stdout).
    code = ("import os, mxnet as mx; kv = mx.kv.create('dist_sync'); "
            "os.write(1, f'rank {kv.rank} of {kv.num_workers}\\n'.encode())")
    run = _launch("-n", "2", "--hosts", str(hosts), "--port", str(_port()), "--timeout", "20", "--",
                  sys.executable, "-c", code, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(line.strip() for line in run.stdout.splitlines() if line.startswith("rank")) == \
        ["rank 0 of 2", "rank 1 of 2"]
    calls = log.read_text().splitlines()
    assert len(calls) == 4  # scheduler, server, two workers
    assert all(call.startswith("-tt -o BatchMode=yes") for call in calls)
    assert sum(" user@127.0.0.1 " in call for call in calls) == 1  # worker 1 on the second host
    assert all(f"cd {tmp_path} && env DMLC_ROLE=" in call and call.endswith("; exit $?") for call in calls)
    assert all(" PORT=" not in call for call in calls)


def _port() -> int:
    from detkit._cli._launch import free_port

    return free_port()


def test_print_env_gives_each_role_its_variables_and_command(capsys) -> None:
    from detkit.cli import main

    assert main(["launch", "-n", "3", "-s", "2", "--print-env", "--scheduler", "10.0.0.1", "--port", "9000",
                 "--timeout", "45", "--threads", "4", "--", "detkit", "train", "my config.yaml"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(lines) == 3
    common = ("DMLC_PS_ROOT_URI=10.0.0.1 DMLC_PS_ROOT_PORT=9000 DMLC_NUM_SERVER=2 DMLC_NUM_WORKER=3 "
              "DETKIT_DISTRIBUTED_TIMEOUT=45 MXNET_KVSTORE_BIGARRAY_BOUND=16384")
    # Threads per process: one for the scheduler and the servers, --threads for each worker.
    assert lines[0] == f"DMLC_ROLE=scheduler {common} OMP_NUM_THREADS=1 {sys.executable} -c 'import detkit'"
    assert lines[1] == f"DMLC_ROLE=server {common} OMP_NUM_THREADS=1 {sys.executable} -c 'import detkit'"
    assert lines[2] == f"DMLC_ROLE=worker {common} OMP_NUM_THREADS=4 detkit train 'my config.yaml'"


def test_children_get_no_inherited_port_or_dmlc_variables() -> None:
    job = plan_job(["true"], workers=2, servers=1, scheduler="127.0.0.1", port=1234, timeout=60,
                   python=sys.executable)
    env = child_environment(job[-1], 2, {"PORT": "9", "DMLC_ROLE": "server", "DMLC_INTERFACE": "eth9", "HOME": "/h"})
    assert "PORT" not in env and "DMLC_INTERFACE" not in env and env["HOME"] == "/h"
    assert env["DMLC_ROLE"] == "worker" and env["DMLC_PS_ROOT_PORT"] == "1234" and env["DMLC_NODE_HOST"] == "127.0.0.1"
    assert [p.name for p in job] == ["scheduler", "server 0", "worker 0", "worker 1"]


@pytest.mark.parametrize("kwargs, match", [
    ({"command": []}, "command"),
    ({"workers": 0}, "at least one worker"),
    ({"port": 70000}, "'port'"),
    ({"timeout": 0}, "'timeout'"),
])
def test_plan_job_rejects_bad_arguments(kwargs, match) -> None:
    arguments = {"command": ["true"], "workers": 2, "servers": 1, "scheduler": "127.0.0.1", "port": 1, "timeout": 1.0,
                 "python": "python", **kwargs}
    with pytest.raises(InputError, match=match):
        plan_job(**arguments)


def test_hosts_files(tmp_path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("a\n# comment\n\nuser@b # trailing\n")
    assert read_hosts(str(hosts)) == ["a", "user@b"]
    hosts.write_text("a b\n")
    with pytest.raises(InputError, match="line 1"):
        read_hosts(str(hosts))
    hosts.write_text("# nothing\n")
    with pytest.raises(InputError, match="names no host"):
        read_hosts(str(hosts))
    with pytest.raises(InputError, match="cannot be read"):
        read_hosts(str(tmp_path / "missing"))


def test_print_env_needs_the_scheduler_address(capsys) -> None:
    from detkit.cli import main

    assert main(["launch", "--print-env", "--", "detkit", "train"]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert "DMLC_ROLE=worker" in format_environment(plan_job(["x"], workers=1, servers=1, scheduler="h", port=1,
                                                             timeout=1, python="p"))


@pytest.mark.parametrize("arguments, message", [
    (["--timeout", "inf"], "The --timeout option must be a finite number > 0"),
    (["--timeout", "0"], "The --timeout option must be a finite number > 0"),
    (["--threads", "-2"], "The --threads option must be a positive int"),
    (["--scheduler", "no-such-host.invalid"], "is not an address of this machine"),
])
def test_bad_launch_options_are_one_line_errors(arguments, message, capsys) -> None:
    from detkit.cli import main

    assert main(["launch", *arguments, "--", "detkit", "train"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error


def test_signals_stop_every_process_of_the_job(tmp_path) -> None:
    # Workers that never join the job: the scheduler and the server wait for them until the launcher stops all.
    pids = tmp_path / "pids"
    code = f"import os, time; open({str(pids)!r} + str(os.getpid()), 'w').close(); time.sleep(60)"
    launcher = subprocess.Popen([sys.executable, "-m", "detkit.cli", "launch", "-n", "2", "--", sys.executable, "-c",
                                 code], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + JOB_SECONDS
        while len(list(tmp_path.glob("pids*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(30) == 130
        assert "SIGINT received: stopping the job" in launcher.stderr.read()
        for marker in tmp_path.glob("pids*"):
            pid = int(marker.name[len("pids"):])
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()
        launcher.stderr.close()


def test_a_kvstore_needs_a_job_and_must_be_synchronous(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    train, _ = detkit.data.synthetic_pikachu(tmp_path, num_train=4, num_val=1, image_size=64, progress=False)
    detector = SSDDetector(["pikachu"], data_shape=64)
    with pytest.raises(InputError, match="detkit launch"):
        detkit.fit(detector, train, epochs=1, batch_size=2, kvstore="dist_sync", quiet=True)
    with pytest.raises(InputError, match="synchronous"):
        detkit.fit(detector, train, epochs=1, batch_size=2, kvstore="dist_async", quiet=True)
    monkeypatch.setenv("DMLC_ROLE", "worker")
    monkeypatch.setenv("DETKIT_DISTRIBUTED_TIMEOUT", "soon")
    with pytest.raises(InputError, match="DETKIT_DISTRIBUTED_TIMEOUT"):
        detkit.fit(detector, train, epochs=1, batch_size=2, kvstore="dist_sync", quiet=True)


def test_train_kvstore_in_the_configuration() -> None:
    assert load_config(None, ["train.kvstore=dist_sync"]).train.kvstore == "dist_sync"
    assert load_config(None, []).train.kvstore is None
    with pytest.raises(ConfigError, match="train.kvstore"):
        load_config(None, ["train.kvstore=dist_async"])


def _guide_blocks() -> tuple[str, list[str]]:
    """The guide's configuration file and its local-mode commands, as written."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "distributed.rst").read_text(encoding="utf-8")
    config = re.search(r":caption: distributed\.yaml\n\n((?:   .*\n|\n)+)", guide)
    assert config, "the guide's distributed.yaml block is missing"
    yaml_text = "\n".join(line[3:] for line in config.group(1).splitlines())
    console = re.search(r"\.\. code-block:: console\n\n((?:   .*\n)+)", guide)
    assert console, "the guide's first console block is missing"
    commands = [line.strip()[2:] for line in console.group(1).splitlines() if line.strip().startswith("$ ")]
    return yaml_text, commands


@distributed
def test_the_guide_commands_run_as_written(tmp_path) -> None:
    import shlex

    yaml_text, commands = _guide_blocks()
    assert [c.split(" -- ")[0] for c in commands] == ["detkit launch -n 2 -s 2"] * 2
    (tmp_path / "distributed.yaml").write_text(yaml_text)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        run = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=JOB_SECONDS)
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.count("trained ") == 1  # rank 0 reports
    output = tmp_path / "runs" / "distributed"
    history = json.loads((output / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert SSDDetector.load(output / "model").classes == ["pikachu"]
    assert json.loads((output / "checkpoints" / "last.json").read_text())["checkpoint"] == "epoch-0003"
    assert (output / "metrics.json").is_file() and len(list((output / "detections").iterdir())) == 1


@distributed
def test_the_watchdog_stops_the_workers_when_the_server_dies(job, tmp_path, monkeypatch) -> None:
    from detkit._cli._launch import free_port

    # The server dies just after a checkpoint: the workers may still be waiting for worker 0's work
    # alone (validation, the checkpoint), which the lead timeout bounds; here as short as the job's.
    monkeypatch.setenv("DETKIT_DISTRIBUTED_LEAD_TIMEOUT", "5")

    folder = tmp_path / "run"
    worker = [sys.executable, str(WORKER), str(job / "data"), str(job / "initial"), str(folder), "--epochs", "50",
              "--checkpoints", str(folder / "checkpoints")]
    processes = plan_job(worker, workers=2, servers=1, scheduler="127.0.0.1", port=free_port(), timeout=5,
                         python=sys.executable)
    logs = [tmp_path / f"stderr-{index}.txt" for index in range(len(processes))]
    children = _start_unwatched(processes, logs)
    try:
        deadline = time.monotonic() + JOB_SECONDS
        while not (folder / "checkpoints" / "last.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (folder / "checkpoints" / "last.json").is_file()
        os.killpg(children[1].pid, signal.SIGKILL)  # the server, in the middle of training
        killed = time.monotonic()
        for child, log in zip(children[2:], logs[2:]):
            assert child.wait(JOB_SECONDS) == WATCHDOG_EXIT_STATUS
            assert "made no progress for 5 s" in log.read_text()
        # A hang guard, not a speed figure: the 5 s watchdog ends the workers long before JOB_SECONDS, with room
        # for a machine busy with other work.
        assert time.monotonic() - killed < 5 + 55
        assert children[0].wait(PEER_GRACE_SECONDS + 15) == PEER_EXIT_STATUS  # the scheduler ends too
        last = json.loads((folder / "checkpoints" / "last.json").read_text())["checkpoint"]
        SSDDetector.load(folder / "checkpoints" / last)
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def test_a_wait_for_worker_0_alone_is_bounded_by_the_lead_timeout() -> None:
    # A worker blocked while worker 0 validates or checkpoints (here: a sleep) stops after the lead
    # timeout, not never: a server that dies in that window must not leave the job hanging.
    code = ("import time\nfrom detkit._engine._distributed import Watchdog\n"
            "watchdog = Watchdog(60, 'training')\n"
            "with watchdog.armed(1.0, 'waiting for worker 0'):\n    time.sleep(60)\n")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=JOB_SECONDS)
    assert run.returncode == WATCHDOG_EXIT_STATUS
    assert "made no progress for 1 s while waiting for worker 0" in run.stderr
    assert "Set DETKIT_DISTRIBUTED_LEAD_TIMEOUT to wait longer" in run.stderr
    assert time.monotonic() - started < 30


# -- Every layout equals one process ------------------------------------------------------------------------------

MATRIX_IMAGES = 12  # divisible by every global batch below: 2 images a device and worker


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """12 images of 64 px and an initial detector, and the one-process references, made once per device count."""
    root = tmp_path_factory.mktemp("matrix")
    detkit.data.synthetic_pikachu(root / "data", num_train=MATRIX_IMAGES, num_val=2, image_size=64, progress=False)
    mx.random.seed(4)
    detector = SSDDetector(["pikachu"], data_shape=64)
    detector._materialize()
    detector.save(root / "initial")
    references: dict[int, dict[str, np.ndarray]] = {}

    def reference(devices: int) -> dict[str, np.ndarray]:
        if devices not in references:
            folder = root / f"single-{devices}"
            run = subprocess.run([sys.executable, str(WORKER), str(root / "data"), str(root / "initial"), str(folder),
                                  "--single", "--devices", str(devices), "--batch-size", "2", "--no-val"],
                                 capture_output=True, text=True, timeout=JOB_SECONDS,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert run.returncode == 0, run.stderr[-3000:]
            references[devices] = _weights(folder, "single")
        return references[devices]

    return root, reference


@distributed
@pytest.mark.parametrize("workers, servers, devices", [
    (1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 2, 1), (3, 1, 1), (3, 2, 1),
    (1, 1, 2), (2, 2, 2),  # several devices a worker: the BatchNorm statistics of every device count
])
def test_every_layout_trains_as_one_process_at_the_global_batch(small, workers, servers, devices) -> None:
    # W workers x D devices at 2 images a device equal one process on W x D devices at batch 2 W D: the same
    # images, crops and BatchNorm batches; weights and BatchNorm running statistics after 2 epochs agree,
    # with one thread a process. Two gradients add up exactly in either order (measured: bit-identical
    # weights, statistics within 2e-7 of their size); three or four are added in another order than one
    # process adds them (the servers add them as they arrive), a float rounding that 4 steps amplify to
    # ~1e-4 of a weight's size. (A wrong share of the data, or wrong statistics, is off by several %.)
    root, reference = small
    folder = root / f"job-{workers}x{servers}x{devices}"
    run = _launch("-n", str(workers), "-s", str(servers), "--threads", "1", "--timeout", "30", "--",
                  sys.executable, str(WORKER), str(root / "data"), str(root / "initial"), str(folder),
                  "--devices", str(devices), "--batch-size", "2", "--no-val", "--no-second-fit")
    assert run.returncode == 0, run.stderr[-3000:]
    single = reference(workers * devices)
    initial = SSDDetector.load(root / "initial").network._collect_params_with_prefix()
    tolerance, floor = (1e-5, 1e-2) if workers * devices <= 2 else (1e-3, 1e-2)
    trainable = [name for name, p in initial.items() if p.grad_req != "null"]
    changed = [name for name in trainable if not np.array_equal(single[name], initial[name].data().asnumpy())]
    assert len(changed) > 0.8 * len(trainable)  # it trained (a few heads see no object at 64 px)
    for rank in range(workers):
        job = _weights(folder, rank)
        assert job.keys() == single.keys()
        for name, value in job.items():
            # (Parameters of tiny values -- a bias before a BatchNorm, a young beta -- move by gradients
            # of the size of that rounding: their tolerance has a floor.)
            np.testing.assert_allclose(value, single[name], rtol=0,
                                       atol=tolerance * max(np.abs(single[name]).max(), floor),
                                       err_msg=f"{name} of rank {rank}")


# -- Every way a process ends ends the job ------------------------------------------------------------------------

STOP_BOUND = 5.0 + 5.0  # the launcher's SIGTERM grace (5 s), and slack for a loaded machine


def _job_processes(port: int) -> list[int]:
    """The pids of the processes still alive whose environment names the scheduler's ``port``."""
    marker = f"DMLC_PS_ROOT_PORT={port}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if status != "Z":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


@distributed
@pytest.mark.parametrize("rank, phase, how, status", [
    (1, "start", "exit", 1),         # sys.exit(7) once it joined: it leaves at once, with status 1
    (1, "epoch", "raise", 2),        # an exception (a detkit error) in the middle of training
    (0, "validation", "signal", 143),  # SIGTERM while rank 0 validates alone
    (0, "checkpoint", "kill", 9),    # dead while rank 0 writes a checkpoint
    (1, "teardown", "kill", 9),      # dead after training, while the others leave the job
])
def test_any_end_of_a_process_ends_the_job_at_once(small, tmp_path, rank, phase, how, status) -> None:
    root, _ = small
    folder = tmp_path / "run"
    port = _port()
    run = _launch("-n", "2", "-s", "2", "--threads", "1", "--port", str(port), "--timeout", "30", "--",
                  sys.executable, str(WORKER), str(root / "data"), str(root / "initial"), str(folder),
                  "--batch-size", "2", "--no-second-fit", "--checkpoints", str(folder / "checkpoints"),
                  "--fail", str(rank), phase, how)
    ended = time.time()
    assert run.returncode == status, run.stderr[-3000:]
    assert ended - float((folder / "failed").read_text()) < STOP_BOUND
    errors = [line for line in run.stderr.splitlines() if line.startswith("detkit: error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    assert errors[0].startswith(f"detkit: error: the worker {rank} of 2 (pid "), errors[0]
    assert "the job was stopped" in errors[0]
    assert _job_processes(port) == []


@distributed
def test_only_rank_0_validates(small, tmp_path) -> None:
    # Rank 1 would die if it evaluated: it takes rank 0's figures instead.
    root, _ = small
    folder = tmp_path / "run"
    run = _launch("-n", "2", "--threads", "1", "--timeout", "30", "--", sys.executable, str(WORKER),
                  str(root / "data"), str(root / "initial"), str(folder), "--batch-size", "2", "--epochs", "1",
                  "--no-second-fit", "--fail", "1", "validation", "kill")
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (folder / "failed").exists()
    histories = [json.loads((folder / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert histories[0] == histories[1] and "map_50" in histories[0][0]


@distributed
def test_a_failed_worker_without_a_launcher_ends_every_process(small, tmp_path) -> None:
    # As a cluster manager starts them (--print-env lines): worker 1 raises; it leaves at once (no teardown),
    # worker 0's watchdog ends it, and the scheduler and the servers end themselves.
    root, _ = small
    folder = tmp_path / "run"
    worker = [sys.executable, str(WORKER), str(root / "data"), str(root / "initial"), str(folder), "--batch-size",
              "2", "--no-second-fit", "--fail", "1", "epoch", "raise"]
    processes = plan_job(worker, workers=2, servers=2, scheduler="127.0.0.1", port=_port(), timeout=5,
                         python=sys.executable, threads=1)
    logs = [tmp_path / f"stderr-{index}.txt" for index in range(len(processes))]
    children = _start_unwatched(processes, logs)
    try:
        codes = [child.wait(JOB_SECONDS) for child in children]
        ended = time.time()
        failed = float((folder / "failed").read_text())
        assert ended - failed < 5 + 2 * PEER_GRACE_SECONDS + 10  # the bound the guide states
        assert sorted(codes[3:]) == [2, WATCHDOG_EXIT_STATUS]
        assert codes[:3] == [PEER_EXIT_STATUS] * 3
        assert "detkit: error: the scheduler of the distributed job" in logs[0].read_text()
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@distributed
def test_the_teardown_is_bounded_when_the_scheduler_is_gone(small, tmp_path) -> None:
    # Training is over; rank 1 hangs before leaving the job, then the scheduler dies. Rank 0's leaving the job
    # (MXNet's teardown, which waits for every worker and the scheduler) ends within the job's timeout, and
    # rank 1 and the server end through their monitors, instead of never.
    root, _ = small
    folder = tmp_path / "run"
    worker = [sys.executable, str(WORKER), str(root / "data"), str(root / "initial"), str(folder), "--batch-size",
              "2", "--epochs", "1", "--no-val", "--no-second-fit", "--fail", "1", "teardown", "hang"]
    processes = plan_job(worker, workers=2, servers=1, scheduler="127.0.0.1", port=_port(), timeout=5,
                         python=sys.executable, threads=1)
    logs = [tmp_path / f"stderr-{index}.txt" for index in range(len(processes))]
    children = _start_unwatched(processes, logs)
    try:
        deadline = time.monotonic() + JOB_SECONDS
        while not (folder / "failed").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(children[0].pid, signal.SIGKILL)
        killed = time.monotonic()
        codes = [child.wait(JOB_SECONDS) for child in children[1:]]
        assert time.monotonic() - killed < PEER_GRACE_SECONDS + 50  # a hang guard, with room for a busy machine
        assert codes[0] == PEER_EXIT_STATUS  # the server
        assert sorted(codes[1:]) == [WATCHDOG_EXIT_STATUS, PEER_EXIT_STATUS]  # rank 0 (teardown), rank 1 (hung)
        rank_0 = next(log for log, code in zip(logs[2:], codes[1:]) if code == WATCHDOG_EXIT_STATUS).read_text()
        assert "detkit: error: worker 0 of 2: the distributed job did not end within 5 s" in rank_0
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@distributed
def test_a_worker_count_that_disagrees_with_the_job_is_one_error(small) -> None:
    root, _ = small
    started = time.monotonic()
    run = _launch("-n", "2", "--threads", "1", "--timeout", "30", "--", "env", "DMLC_NUM_WORKER=3", sys.executable,
                  str(WORKER), str(root / "data"), str(root / "initial"), str(root / "disagree"), "--no-val",
                  timeout=2 * JOB_SECONDS)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "2 worker(s) joined, but this worker" in run.stderr and "told 3 (DMLC_NUM_WORKER)" in run.stderr
    assert time.monotonic() - started < 180  # a hang guard, with room for a busy machine
    assert not (root / "disagree" / "rank-0.npz").exists()


@distributed
def test_the_launcher_takes_no_role_it_inherited(tmp_path) -> None:
    # An environment left over from a server: the launcher must not serve (hang), but start the job.
    env = {**os.environ, "DMLC_ROLE": "server", "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": "1",
           "DMLC_NUM_SERVER": "1", "DMLC_NUM_WORKER": "1"}
    code = "import os, mxnet as mx; kv = mx.kv.create('dist_sync'); os.write(1, f'rank {kv.rank}\\n'.encode())"
    run = _launch("-n", "1", "--timeout", "20", "--", sys.executable, "-c", code, env=env, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0" in run.stdout


@distributed
def test_ssh_mode_exits_128_plus_the_signal(tmp_path) -> None:
    # A fake ssh that behaves as OpenSSH's: 255 when the remote process was killed by a signal.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(
        f"#!{sys.executable}\nimport subprocess, sys\ncode = subprocess.run(['sh', '-c', sys.argv[-1]]).returncode\n"
        "sys.exit(255 if code < 0 else code)\n"
    )
    (bin_dir / "ssh").chmod(0o755)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    code = ("import os, signal, mxnet as mx; kv = mx.kv.create('dist_sync'); "
            "kv.rank == 1 and os.kill(os.getpid(), signal.SIGTERM)")
    run = _launch("-n", "2", "--hosts", str(hosts), "--port", str(_port()), "--timeout", "20", "--",
                  sys.executable, "-c", code, env=env, cwd=tmp_path)
    assert run.returncode == 128 + signal.SIGTERM, run.stderr[-3000:]
    assert "exited with status 143" in run.stderr


def test_rank_0_waits_for_the_others_with_the_job_timeout() -> None:
    # Rank 0, its own work done, waits for the others only: the job's timeout, not the lead timeout, and a
    # message that says so. (A store whose exchange never returns: a dead worker.)
    code = ("import time\nfrom detkit._engine._distributed import Coordinator\n"
            "class Store:\n    rank, num_workers = 0, 2\n    def init(self, key, value): pass\n"
            "    def push(self, key, value): time.sleep(60)\n"
            "Coordinator(Store(), 1.0).allreduce([1], wait_for_lead=True)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=JOB_SECONDS,
                         env={**os.environ, "DETKIT_DISTRIBUTED_LEAD_TIMEOUT": "600"})
    assert run.returncode == WATCHDOG_EXIT_STATUS
    assert "made no progress for 1 s while training (worker 0 of 2)" in run.stderr
    assert "worker 0's work alone" not in run.stderr


def test_the_peer_monitor_waits_a_grace_period_once_a_peer_left() -> None:
    from detkit._base._roles import PeerMonitor

    monitor = PeerMonitor("server", grace=10)
    assert not any(monitor.check(count, now) for count, now in [(1, 0), (3, 1), (3, 2)])
    assert not monitor.check(2, 3) and not monitor.check(2, 12)  # a peer left at 3 s: 10 s of grace
    assert not monitor.check(3, 12.5) and not monitor.check(2, 14)  # it came back (a reconnection): afresh
    assert monitor.check(2, 24.5)


def test_only_detkit_launch_sheds_inherited_roles() -> None:
    from detkit._base._roles import is_launcher

    assert is_launcher(["/usr/bin/detkit", "launch", "-n", "2"]) and is_launcher(["-m", "launch"])
    assert not is_launcher(["/usr/bin/detkit", "train"]) and not is_launcher(["train.py", "launch"])
    assert not is_launcher(["-c"])


class _Lead:
    """A coordinator of a two-worker job without MXNet: rank 0's broadcast values come from ``lead``."""

    def __init__(self, rank: int, lead: list[float]) -> None:
        self.rank, self.lead, self.sent = rank, lead, []

    def broadcast(self, values, *, wait_for_lead: bool = False) -> np.ndarray:
        assert wait_for_lead  # the others wait for rank 0's work alone: the lead timeout
        self.sent.append([float(v) for v in values])
        return np.asarray(values if self.rank == 0 else self.lead, dtype=np.float64)


def test_validation_and_checkpoints_follow_one_rank_0_protocol(monkeypatch) -> None:
    from types import SimpleNamespace

    from detkit._engine import _callbacks
    from detkit._engine._callbacks import Validation
    from detkit._engine._distributed import lead_alone
    from detkit.errors import DataError, TrainingError

    def evaluate_with(*args, **kwargs):
        raise DataError("rank 0's own failure")

    monkeypatch.setattr(_callbacks, "evaluate_with", evaluate_with)

    # Rank 1 never evaluates (its data would fail): it takes rank 0's figures.
    record: dict = {}
    Validation(None, 2, _Lead(1, [0.5, 0.25, 0.125, 0.0]), epochs=1).on_epoch_end(0, record, None)
    assert record == {"map_50": 0.5, "map_50_voc07": 0.25, "map_50_95": 0.125, "validated": True}
    # Rank 0 failed: rank 1 stops with the protocol's message, rank 0 with its own error (after telling the others).
    with pytest.raises(TrainingError, match=r"Rank 0 could not validate epoch 3 \(its own message says why\)"):
        Validation(None, 2, _Lead(1, [math.nan] * 3 + [1.0]), epochs=3).on_epoch_end(2, {}, None)
    lead = _Lead(0, [])
    with pytest.raises(DataError, match="rank 0's own failure"):
        Validation(None, 2, lead, epochs=1).on_epoch_end(0, {}, SimpleNamespace(classes=["pikachu"]))
    assert len(lead.sent) == 1 and lead.sent[0][-1] == 1.0
    # A plain "done" (a checkpoint, data prepared first): no numbers, the flag alone.
    assert lead_alone(_Lead(0, []), lambda: [], failed="-") == []
    with pytest.raises(TrainingError, match="^rank 0 failed$"):
        lead_alone(_Lead(1, [1.0]), lambda: pytest.fail("rank 1 must not work"), failed="rank 0 failed")
