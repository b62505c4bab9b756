"""Throughput of one process and of two-worker jobs (one and two servers) on MXNet's parameter server, and the bytes
exchanged a step.

    python benchmarks/distributed.py                  # 96 images of 128 px, batch 8 a worker, 3 epochs
    python benchmarks/distributed.py --quick --out /tmp/distributed.json   # a few seconds

Five runs on the same synthetic data and the same initial detector, each in
its own subprocess, one after the other (``--rounds`` times, alternately; the
best of each is kept):

- ``one_process_batch_b``: one process, batch ``b``, on every core;
- ``one_process_batch_2b``: one process, batch ``2b`` (the job's global batch), on every core;
- ``one_process_batch_2b_one_share``: the same on a worker's share of the cores (``OMP_NUM_THREADS``
  = cores / 2), to tell the cost of the job from that of fewer threads;
- ``two_workers_one_server``: ``detkit launch -n 2 -s 1``, batch ``b`` a worker (``kvstore="dist_sync"``),
  each worker on its share of the cores (what the launcher gives it);
- ``two_workers_two_servers``: the same with ``-s 2``.

Speed is the whole run's training images/s over the epochs after the first
(``History["images_per_second"]``, the job's figure for the workers); the wall
time of each run, start-up included, and the machine's load average before and
after are recorded too (on a shared machine, threads that wait for each other
suffer most from other processes). The bytes
a step exchanges follow from the parameters: each worker pushes its gradient
of every trainable parameter (float32) and pulls the sum back, ``2 x 4 x P``
bytes a step (P trainable values); a server receives and sends ``W x 4`` bytes a
step for each value it holds. Which server holds what is MXNet 1.9's rule, computed
here for each parameter: an array of at least ``MXNET_KVSTORE_BIGARRAY_BOUND``
values (16384 under ``detkit launch``; MXNet's default 10**6 is reported too) is
split evenly over the servers, a smaller one goes whole to server
``(key x 9973) mod S`` (the trainer's key: the parameter's index). The
bytes are computed, not measured (a shared machine's loopback carries others'
traffic too). The BatchNorm averaging
and the epoch's figures add ``2 x 4`` bytes per running statistic once an
epoch. The script prints what that means for ``N`` machines on a 1 and a
10 Gbit/s network (the bound a step cannot beat: the worker's bytes over the
link's speed; the servers' links must carry ``W / S`` times as much).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(args: argparse.Namespace) -> None:
    import detkit
    from detkit import SSDDetector
    from detkit._engine import _distributed
    from detkit.data import DetectionDataset

    data = Path(args.data)
    train = DetectionDataset(data / "train.rec", classes=["pikachu"])
    detector = SSDDetector.load(args.initial)
    history = detkit.fit(detector, train, epochs=args.epochs, batch_size=args.batch_size, seed=1, quiet=True,
                         kvstore="dist_sync" if args.distributed else None)
    if args.distributed and _distributed._store.rank != 0:
        return
    Path(args.result).write_text(json.dumps(history.records))


def _server_values(sizes: list[int], servers: int, bound: int) -> list[int]:
    """How many values each server holds, by MXNet 1.9's rule (``EncodeDefaultKey`` in kvstore_dist.h).

    ``sizes``: the trainer's parameters in key order, 0 for those the workers do not exchange.
    """
    held = [0] * servers
    for key, size in enumerate(sizes):
        if not size:
            continue
        if size >= bound:  # split evenly over every server
            for server in range(servers):
                held[server] += round(size / servers * (server + 1)) - round(size / servers * server)
        else:
            held[(key * 9973) % servers] += size
    return held


def _run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stdout[-2000:]}\n{process.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8, help="b: images a step of each worker")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2,
                        help="run everything this many times, alternately, and keep each run's best (default 2)")
    parser.add_argument("--quick", action="store_true", help="32 images of 64 px, 2 epochs, 1 round")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distributed.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--initial", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.quick:
        args.images, args.image_size, args.epochs, args.rounds = 32, 64, 2, 1

    import detkit
    import mxnet as mx
    from detkit import SSDDetector

    with tempfile.TemporaryDirectory(prefix="detkit-distributed-") as folder:
        work = Path(folder)
        detkit.data.synthetic_pikachu(work / "data", num_train=args.images, num_val=2, image_size=args.image_size,
                                      progress=False)
        mx.random.seed(1)
        detector = SSDDetector(["pikachu"], data_shape=args.image_size)
        detector._materialize()
        detector.save(work / "initial")
        weights = detector.network.collect_params()
        # The trainer's key of a parameter is its index among all of them (the running statistics included).
        sizes = [int(p.data().size) if p.grad_req != "null" else 0 for p in weights.values()]
        trainable = sum(sizes)
        statistics = sum(int(p.data().size) for p in weights.values() if p.grad_req == "null")
        me = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(work / "data"), "--initial",
              str(work / "initial"), "--epochs", str(args.epochs)]
        cores = len(os.sched_getaffinity(0))
        everything = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        runs = {
            "one_process_batch_b": (me + ["--batch-size", str(args.batch_size)], everything),
            "one_process_batch_2b": (me + ["--batch-size", str(2 * args.batch_size)], everything),
            "one_process_batch_2b_one_share": (me + ["--batch-size", str(2 * args.batch_size)],
                                               {**everything, "OMP_NUM_THREADS": str(max(1, cores // 2))}),
        }
        for servers, name in ((1, "two_workers_one_server"), (2, "two_workers_two_servers")):
            runs[name] = ([sys.executable, "-m", "detkit.cli", "launch", "-n", "2", "-s", str(servers), "--",
                           *me, "--batch-size", str(args.batch_size), "--distributed"], everything)
        speeds: dict[str, float] = {}
        walls: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        for _ in range(args.rounds):
            for name, (command, env) in runs.items():
                result = work / f"{name}.json"
                wall = _run(command + ["--result", str(result)], env)
                records = json.loads(result.read_text())[1:]  # the first epoch builds and warms up
                images = sum(r["images_per_second"] * r["seconds"] for r in records)
                speed = images / sum(r["seconds"] for r in records)
                if speed > speeds.get(name, 0.0):
                    speeds[name], walls[name] = speed, wall
        load_after = os.getloadavg()[0]
    step_bytes = 2 * 4 * trainable
    from detkit._cli._launch import BIGARRAY_BOUND  # what detkit launch sets

    server_values = {servers: _server_values(sizes, servers, BIGARRAY_BOUND) for servers in (1, 2)}
    mxnet_default = {servers: _server_values(sizes, servers, 10**6) for servers in (1, 2)}
    report = {
        "settings": {"images": args.images, "image_size": args.image_size, "batch_size_per_worker": args.batch_size,
                     "epochs": args.epochs, "rounds": args.rounds, "quick": args.quick, "cores": cores,
                     "load_average_before": load_before, "load_average_after": load_after},
        "images_per_second": speeds,
        "wall_seconds": walls,
        "two_workers_one_server_over_one_process_batch_2b":
            speeds["two_workers_one_server"] / speeds["one_process_batch_2b"],
        "two_workers_two_servers_over_one_process_batch_2b":
            speeds["two_workers_two_servers"] / speeds["one_process_batch_2b"],
        "two_servers_over_one_server": speeds["two_workers_two_servers"] / speeds["two_workers_one_server"],
        "trainable_parameters": trainable,
        "running_statistics": statistics,
        "bytes_per_step_per_worker": step_bytes,
        # Received and sent by each server a step in a two-worker job (2 x 4 bytes a value from each worker).
        "bytes_per_step_per_server": {f"{servers}_server{'s' if servers > 1 else ''}":
                                      [2 * 2 * 4 * values for values in server_values[servers]]
                                      for servers in (1, 2)},
        "bigarray_bound": BIGARRAY_BOUND,
        # The same with MXNet's default bound (10**6), which detkit launch replaces: one server carries nearly all.
        "bytes_per_step_per_server_mxnet_default_bound": {
            f"{servers}_server{'s' if servers > 1 else ''}": [2 * 2 * 4 * values for values in mxnet_default[servers]]
            for servers in (1, 2)},
        "bytes_per_epoch_end_per_worker": 2 * 4 * statistics,
    }
    print(f"{args.images} images of {args.image_size} px, batch {args.batch_size} a worker, {cores} cores, "
          f"load average {load_before:.1f} before and {load_after:.1f} after:")
    for name, speed in speeds.items():
        print(f"  {name:<32} {speed:8.1f} img/s   ({walls[name]:.1f} s wall, start-up included)")
    print(f"  two workers, one server / one process at the global batch: "
          f"{report['two_workers_one_server_over_one_process_batch_2b']:.2f}x; two servers: "
          f"{report['two_workers_two_servers_over_one_process_batch_2b']:.2f}x")
    print(f"exchanged: {trainable} trainable values -> {step_bytes / 1e6:.2f} MB a step a worker "
          f"(push + pull, float32); {2 * 4 * statistics / 1e3:.1f} kB a worker at each epoch's end")
    for gbit in (1, 10):
        seconds = step_bytes / (gbit * 1e9 / 8)
        print(f"  at {gbit:>2} Gbit/s: >= {seconds * 1e3:.2f} ms a step for the exchange; N workers and S servers: "
              f"each server carries N/S x {step_bytes / 1e6:.2f} MB a step")
    for servers in (1, 2):
        shares = ", ".join(f"{2 * 2 * 4 * v / 1e6:.2f}" for v in server_values[servers])
        print(f"  {servers} server(s), two workers: each server carries {shares} MB a step (in + out)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
