"""``detkit launch``: a job on MXNet's parameter server (ps-lite): a scheduler, servers and workers.

Every process of the job learns its role and where the scheduler listens from
the ``DMLC_*`` environment variables (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER``). The scheduler
and the servers are MXNet itself (importing it with that role serves and
exits); the workers run the command given after ``--``.

Three modes:

- local (the default): every process on this machine, over 127.0.0.1, for
  tests and for several GPUs in one host;
- ``--hosts FILE``: over ssh, the scheduler on the first host, servers and
  workers dealt round-robin over the hosts;
- ``--print-env``: print each role's environment and command, for a cluster
  manager (Slurm, Kubernetes) to start.

The launcher starts each process in its own process group, forwards SIGINT,
SIGTERM and SIGHUP to them all, stops the whole job as soon as one process
fails, and exits with the job's status: 0 when every worker succeeded, else
the first failure's (128 + N for a signal N), with one ``detkit: error:`` line
that names the process (a worker by its rank) and how it ended.

The launcher never takes a role itself: ``detkit._base._roles`` removes the
``DMLC_*`` variables it inherited before MXNet is imported. The scheduler and
the servers run ``python -c 'import detkit'``, which serves like ``import
mxnet`` and also ends them when the job ended without them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .._base import check_int, check_number
from .._base._roles import PEER_EXIT_STATUS
from .._engine import DEFAULT_TIMEOUT, RANK_FILE_VARIABLE, TIMEOUT_VARIABLE, WATCHDOG_EXIT_STATUS
from ..errors import InputError

DEFAULT_PORT = 9091
#: MXNet's MXNET_KVSTORE_BIGARRAY_BOUND for the job (values): a larger array is split evenly over the servers.
#: MXNet's default (10**6) sends every smaller array whole to server ``(key * 9973) % servers``, and the
#: trainer's keys put nearly every weight of a detector on one server (99.8 % of the default detector's on
#: server 0 of 2, 92 % on server 0 of 3): added servers carried nothing. With 16384, 53 % / 47 %.
BIGARRAY_BOUND = 16384
_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when stopping the job
_POLL_SECONDS = 0.1
# With DMLC_ROLE scheduler or server, importing detkit (which imports MXNet) serves and exits; detkit adds a
# monitor that ends the process when the job ended without it (see detkit._base._roles).
_SERVE = "import detkit"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    launch = subparsers.add_parser(
        "launch", help="run a command as a distributed job on MXNet's parameter server",
        description="Start a scheduler, servers and workers of MXNet's parameter server (ps-lite); each "
                    "worker runs COMMAND, e.g. `detkit launch -n 2 -- detkit train config.yaml --set "
                    "train.kvstore=dist_sync`. Exits with the job's status; stops every process when one "
                    "fails or on Ctrl-C.",
    )
    launch.add_argument("-n", "--workers", type=int, default=2, help="worker processes (default 2)")
    launch.add_argument("-s", "--servers", type=int, default=1, help="server processes (default 1)")
    mode = launch.add_mutually_exclusive_group()
    mode.add_argument("--hosts", metavar="FILE",
                      help="start the processes over ssh on the hosts of FILE (one per line, `#` comments); "
                           "the scheduler runs on the first")
    mode.add_argument("--print-env", action="store_true",
                      help="print each role's environment and command for a cluster manager, and start nothing")
    launch.add_argument("--scheduler", metavar="HOST", default=None,
                        help="the address every process reaches the scheduler at (default: 127.0.0.1 locally, "
                             "the first host with --hosts; required with --print-env)")
    launch.add_argument("--port", type=int, default=None,
                        help=f"the scheduler's port (default: a free one locally, else {DEFAULT_PORT})")
    launch.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds a worker waits for a stalled job before it stops (default {DEFAULT_TIMEOUT:g}; "
                             f"sets {TIMEOUT_VARIABLE})")
    launch.add_argument("--threads", type=int, default=None,
                        help="OpenMP threads of each worker (OMP_NUM_THREADS; default: this machine's cores divided "
                             "by the workers); the scheduler and the servers get one")
    launch.add_argument("--python", default=None,
                        help="the Python, with detkit installed, that runs the scheduler and the servers "
                             "(default: this one; the same path on every host)")
    launch.add_argument("worker_command", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="the workers' command, after --")
    launch.set_defaults(handler=_launch)


@dataclass
class Process:
    """One process of the job: its role, its index within the role, and where it runs."""

    role: str  # scheduler, server or worker
    index: int
    host: str | None  # None: on this machine
    env: dict[str, str]  # the DMLC_* variables (and the timeout) it needs
    command: list[str]

    @property
    def name(self) -> str:
        return self.role if self.role == "scheduler" else f"{self.role} {self.index}"


def plan_job(command: Sequence[str], *, workers: int, servers: int, scheduler: str, port: int, timeout: float,
             python: str, hosts: Sequence[str] | None = None, local: bool = True,
             threads: int | None = None) -> list[Process]:
    """The scheduler, the servers and the workers of a job, with their environments and commands.

    ``hosts``: over ssh on these; else on this machine when ``local``, else where a cluster manager puts them.
    ``threads``: each worker's ``OMP_NUM_THREADS`` (the scheduler and the servers get 1), in every mode.
    """
    if not command:
        raise InputError("The 'command' of detkit launch is missing: give the workers' command after --, "
                         "e.g. detkit launch -n 2 -- detkit train config.yaml.")
    if workers < 1 or servers < 1:
        raise InputError(f"The job needs at least one worker and one server; got {workers} worker(s) and "
                         f"{servers} server(s) instead.")
    if not 0 < port < 65536:
        raise InputError(f"The 'port' argument must be a TCP port (1-65535); got {port} instead.")
    if not timeout > 0:
        raise InputError(f"The 'timeout' argument must be a positive number of seconds; got {timeout} instead.")
    common = {
        "DMLC_PS_ROOT_URI": scheduler, "DMLC_PS_ROOT_PORT": str(port),
        "DMLC_NUM_SERVER": str(servers), "DMLC_NUM_WORKER": str(workers), TIMEOUT_VARIABLE: f"{timeout:g}",
        # Every process of the job the same (the workers split the arrays, the servers hold the parts).
        "MXNET_KVSTORE_BIGARRAY_BOUND": str(BIGARRAY_BOUND),
    }
    serve = [python, "-c", _SERVE]

    def process(role: str, index: int, command: list[str]) -> Process:
        env = {"DMLC_ROLE": role, **common}
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads if role == "worker" else 1)
        if hosts is None:
            if local:
                env["DMLC_NODE_HOST"] = scheduler  # every process listens on the scheduler's (loopback) address
            return Process(role, index, None, env, command)
        host = hosts[index % len(hosts)]
        if role != "scheduler":
            env["DMLC_NODE_HOST"] = host.rsplit("@", 1)[-1]  # the others reach it as the hosts file names it
        return Process(role, index, host, env, command)

    job = [process("scheduler", 0, serve)]
    job += [process("server", i, serve) for i in range(servers)]
    job += [process("worker", i, list(command)) for i in range(workers)]
    return job


def child_environment(process: Process, threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without any inherited ``DMLC_*`` or ``PORT`` (ps-lite would bind to it), plus the role's.

    On this machine a worker computes on ``threads`` cores (``OMP_NUM_THREADS``)
    and the scheduler and servers on one: processes that each take every core
    slow each other down several times.
    """
    base = dict(os.environ if base is None else base)
    clean = {k: v for k, v in base.items() if not k.startswith("DMLC_") and k != "PORT"}
    if process.host is None:
        clean["OMP_NUM_THREADS"] = str(threads if process.role == "worker" else 1)
    return {**clean, **process.env}


def local_threads(workers: int) -> int:
    """Each local worker's share of this machine's cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def ssh_command(process: Process, directory: str, timeout: float) -> list[str]:
    """The ssh command line that runs ``process`` on its host, in ``directory``, with its environment."""
    if process.host is None:
        raise InputError(f"The {process.role} has no host to run on; give a hosts file (--hosts).")
    variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in process.env.items())
    # Not exec: the shell exits with 128 + N when a signal N ends the process, which ssh passes on (a remote
    # process killed by a signal would otherwise make ssh exit with 255).
    remote = f"cd {shlex.quote(directory)} && env {variables} {shlex.join(process.command)}; exit $?"
    alive = max(1, int(timeout // 4))
    # -tt: the remote process gets a terminal, so that it ends (SIGHUP) when this ssh client ends.
    return ["ssh", "-tt", "-o", "BatchMode=yes", "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=4",
            process.host, remote]


def read_hosts(path: str) -> list[str]:
    """The hosts of a hosts file: one per line (``host`` or ``user@host``), blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"The hosts file {path} cannot be read: {error}") from error
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1 or line.startswith("-"):
            raise InputError(f"{path}, line {number}: a host must be one word such as node1 or user@node1; "
                             f"got {line!r} instead.")
        hosts.append(line)
    if not hosts:
        raise InputError(f"The hosts file {path} names no host; write one host per line.")
    return hosts


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the system's choice for port 0)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return int(probe.getsockname()[1])
    except OSError as error:  # an unknown name, or an address of another machine
        raise InputError(
            f"The scheduler address {host!r} is not an address of this machine ({error.strerror or error}); "
            "in local mode leave --scheduler out, or give an address of this machine."
        ) from None


def format_environment(job: Sequence[Process]) -> str:
    """Each role's environment and command as shell lines, for a cluster manager to start."""
    counts = {role: sum(p.role == role for p in job) for role in ("scheduler", "server", "worker")}
    lines = [f"# detkit launch: {counts['scheduler']} scheduler, {counts['server']} server(s), "
             f"{counts['worker']} worker(s). Start each line as many times as it says, on any host; the "
             "scheduler on the host DMLC_PS_ROOT_URI names."]
    for role in ("scheduler", "server", "worker"):
        process = next(p for p in job if p.role == role)
        lines.append(f"# {role}: {counts[role]} process{'es' if counts[role] != 1 else ''}")
        variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in process.env.items())
        lines.append(f"{variables} {shlex.join(process.command)}")
    return "\n".join(lines)


def _launch(args: argparse.Namespace) -> int:
    check_number("timeout", args.timeout, minimum=0, exclusive_minimum=True)  # finite: not inf, not nan
    if args.threads is not None:
        check_int("threads", args.threads, minimum=1)
    command = list(args.worker_command)
    if command[:1] == ["--"]:
        command = command[1:]
    hosts = read_hosts(args.hosts) if args.hosts else None
    if args.print_env and not args.scheduler:
        raise InputError("--print-env needs --scheduler HOST: the address every process reaches the scheduler at.")
    scheduler = args.scheduler or (hosts[0].rsplit("@", 1)[-1] if hosts else "127.0.0.1")
    port = args.port if args.port is not None else (free_port(scheduler) if not (hosts or args.print_env)
                                                    else DEFAULT_PORT)
    threads = args.threads or local_threads(args.workers)
    job = plan_job(command, workers=args.workers, servers=args.servers, scheduler=scheduler, port=port,
                   timeout=args.timeout, python=args.python or sys.executable, hosts=hosts, local=not args.print_env,
                   threads=threads)
    if args.print_env:
        print(format_environment(job))
        return 0
    return run_job(job, timeout=args.timeout, threads=threads)


def run_job(job: Sequence[Process], *, timeout: float, threads: int) -> int:
    """Start ``job``, watch it, stop all of it when one process fails or a signal comes; return its status."""
    received: list[int] = []

    def forward(number: int, frame: object) -> None:
        received.append(number)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, forward) for number in handled}
    running: list[tuple[Process, subprocess.Popen]] = []
    ranks = tempfile.mkdtemp(prefix="detkit-launch-")  # where local workers write their rank once they joined
    try:
        for process in job:
            argv = process.command if process.host is None else ssh_command(process, os.getcwd(), timeout)
            env = child_environment(process, threads)
            if process.role == "worker" and process.host is None:
                env[RANK_FILE_VARIABLE] = os.path.join(ranks, f"worker-{process.index}")
            try:
                # Its own process group: a terminal's Ctrl-C reaches the launcher alone, which stops them all.
                child = subprocess.Popen(argv, env=env, start_new_session=True,
                                         stdin=subprocess.DEVNULL if process.host else None)
            except OSError as error:
                _stop([c for _, c in running])
                raise InputError(f"The {process.name} cannot be started ({shlex.join(argv[:1])}): {error}") from error
            running.append((process, child))
        return _watch(running, received, timeout, ranks)
    finally:
        _stop([c for _, c in running])
        for number, handler in previous.items():
            signal.signal(number, handler)
        shutil.rmtree(ranks, ignore_errors=True)


def describe(process: Process, child: subprocess.Popen, ranks: str | None = None) -> str:
    """The process for a message: a worker by its rank in the job (which it wrote once it joined)."""
    if process.role == "worker":
        rank = _read_rank(os.path.join(ranks, f"worker-{process.index}")) if ranks else None
        if rank is not None:
            return f"worker {rank[0]} of {rank[1]} (pid {child.pid})"
        return f"worker process {process.index} (pid {child.pid}; it had not joined the job: rank unknown)"
    return f"{process.name} (pid {child.pid})"


def _read_rank(path: str) -> tuple[int, int] | None:
    try:
        with open(path, encoding="ascii") as stream:
            rank, size = stream.read().split()
        return int(rank), int(size)
    except (OSError, ValueError):
        return None


def _watch(running: list[tuple[Process, subprocess.Popen]], received: list[int], timeout: float,
           ranks: str | None = None) -> int:
    workers = [(p, c) for p, c in running if p.role == "worker"]
    finished_at: float | None = None  # when the last worker succeeded, or the scheduler ended well
    while True:
        if received:
            number = received[0]
            _say(f"{signal.Signals(number).name} received: stopping the job")
            for _, child in running:
                _signal_group(child, number)
            _stop([c for _, c in running])
            return 128 + number
        for process, child in running:
            status = child.poll()
            if status is None or status == 0:
                # A scheduler or server ends well only once every worker has left the job.
                if status == 0 and process.role != "worker" and finished_at is None:
                    finished_at = time.monotonic()
                continue
            code = 128 - status if status < 0 else status
            how = f"was killed by {_signal_name(-status)}" if status < 0 else f"exited with status {status}"
            name = describe(process, child, ranks)
            _stop([c for _, c in running])
            _error(f"the {name} {how}{_meaning(process, status)}; the job was stopped (every other process ended).")
            return code
        if finished_at is None and all(c.poll() == 0 for _, c in workers):
            finished_at = time.monotonic()
        if finished_at is not None:
            if all(c.poll() == 0 for _, c in running):
                return 0
            if time.monotonic() - finished_at > timeout:
                late = [describe(p, c, ranks) for p, c in running if c.poll() is None]
                if all(c.poll() == 0 for _, c in workers):
                    _say(f"every worker succeeded; the {', '.join(late)} did not end within {timeout:g} s: stopped")
                    return 0
                _stop([c for _, c in running])
                _error(f"the {', '.join(late)} did not end within {timeout:g} s of the job's end: the job was "
                       "stopped.")
                return 1
        time.sleep(_POLL_SECONDS)


def _signal_group(child: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(child.pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM to every process group still there; SIGKILL after a grace period; reap them all."""
    alive = [c for c in children if c.poll() is None]
    for child in alive:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_SECONDS
    for child in alive:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        # The group too: a worker's own children (data loaders, a remote ssh) go with it.
        _signal_group(child, signal.SIGKILL)
        try:
            child.wait(_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _meaning(process: Process, status: int) -> str:
    """What a known exit status of detkit's own means, for the error line."""
    if process.role == "worker" and status == WATCHDOG_EXIT_STATUS:
        return " (its watchdog: the job made no progress; its own message says while doing what)"
    if process.role == "worker" and status in (1, 2):
        return " (its own message above says why)"
    if process.role != "worker" and status == PEER_EXIT_STATUS:
        return " (a process of the job had left)"
    return ""


def _say(message: str) -> None:
    print(f"detkit launch: {message}", file=sys.stderr, flush=True)


def _error(message: str) -> None:
    print(f"detkit: error: {message}", file=sys.stderr, flush=True)
