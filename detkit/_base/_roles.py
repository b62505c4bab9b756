"""What a process does about MXNet's parameter-server roles before MXNet is first imported.

``import mxnet`` with ``DMLC_ROLE=server`` or ``scheduler`` in the environment
turns the process into that role: it serves the job and exits. Two things must
happen before that import (only the standard library is used here):

- ``detkit launch`` itself never takes a role, whatever it inherited: it
  removes every ``DMLC_*`` variable from its own environment (its processes
  get theirs from it).
- Every process of a job that imports detkit -- the scheduler and the servers
  that ``detkit launch`` and its ``--print-env`` lines start (``python -c
  'import detkit'``), and workers that use detkit -- gets a
  :class:`PeerMonitor`: ps-lite never ends a process whose peers died, so the
  monitor ends it once a process of the job has left and the job did not end
  with it (:data:`PEER_GRACE_SECONDS`). A dead process thus ends the others
  within two such periods (its servers and scheduler, then the other workers),
  whatever they were doing.
"""

from __future__ import annotations

import os
import sys
import threading
import time

__all__ = ["PEER_EXIT_STATUS", "PEER_GRACE_SECONDS", "PeerMonitor", "is_launcher", "prepare_process"]

#: Seconds a scheduler or server waits, once a process of its job has left, for the job to end by itself.
PEER_GRACE_SECONDS = 10.0
#: The exit status of a scheduler or server that the monitor ended.
PEER_EXIT_STATUS = 4
_POLL_SECONDS = 0.5
_ROLES = ("scheduler", "server", "worker")


def is_launcher(argv: list[str]) -> bool:
    """Whether ``argv`` is that of ``detkit launch`` (the console script, or ``python -m detkit.cli``)."""
    if len(argv) < 2 or argv[1] != "launch":
        return False
    program = os.path.basename(argv[0])
    return program in ("detkit", "detkit.exe", "cli.py", "-m")


def prepare_process() -> None:
    """Called once before MXNet's first import: shed inherited roles in the launcher, watch peers in a server."""
    if is_launcher(sys.argv):
        for name in [name for name in os.environ if name.startswith("DMLC_")]:
            del os.environ[name]
        return
    role = os.environ.get("DMLC_ROLE", "")
    if role in _ROLES and os.path.isdir("/proc/self/fd"):
        PeerMonitor(role).start()


class PeerMonitor:
    """Ends this process of a job when another process of the job has gone and the job did not end.

    ps-lite keeps a TCP connection from every other process of the job to each
    scheduler and server. The monitor counts the connections to this process's
    listening sockets (Linux: ``/proc``); when their number falls below the
    most it has seen, a process has left: at the job's normal end this process
    exits by itself at once, else, after :data:`PEER_GRACE_SECONDS`, the monitor
    prints one ``detkit: error:`` line and ends it with :data:`PEER_EXIT_STATUS`.
    """

    def __init__(self, role: str, grace: float = PEER_GRACE_SECONDS) -> None:
        self.role = role
        self.grace = grace
        self.peak = 0
        self._left_at: float | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="detkit-peer-monitor", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(_POLL_SECONDS)
            if self.check(connections()):
                sys.stdout.flush()
                print(f"detkit: error: the {self.role} of the distributed job (pid {os.getpid()}) stops: another "
                      f"process of the job left (its connections to this one fell below {self.peak}) and the job "
                      f"did not end within {self.grace:g} s.", file=sys.stderr, flush=True)
                os._exit(PEER_EXIT_STATUS)

    def check(self, count: int, now: float | None = None) -> bool:
        """Record ``count`` connections; whether this process must stop now."""
        now = time.monotonic() if now is None else now
        if count >= self.peak:
            self.peak = count
            self._left_at = None
            return False
        if self._left_at is None:
            self._left_at = now
        return now - self._left_at > self.grace


def connections() -> int:
    """The established TCP connections to this process's listening sockets (from ``/proc``)."""
    inodes = _socket_inodes()
    tables = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name, encoding="ascii") as table:
                tables.append([line.split() for line in table.readlines()[1:]])
        except OSError:
            continue
    rows = [row for table in tables for row in table if len(row) > 9 and row[9] in inodes]
    listening = {row[1].rsplit(":", 1)[1] for row in rows if row[3] == "0A"}
    return sum(1 for row in rows if row[3] == "01" and row[1].rsplit(":", 1)[1] in listening)


def _socket_inodes() -> set[str]:
    inodes: set[str] = set()
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes
