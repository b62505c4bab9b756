"""Training on several machines: one worker's view of MXNet's parameter-server kvstore (ps-lite).

A distributed :func:`fit` runs the same loop on every worker; what keeps the
workers in step goes through the kvstore of the job, on keys of detkit's own
(from :data:`KEY_BASE`) above the trainer's (one key per parameter, from 0),
and small enough for every number of servers:

- the seed and the epoch to start from are rank 0's, broadcast to all;
- the gradients are summed by the servers and every worker applies the same
  update locally (``update_on_kvstore=False``), so that every worker holds the
  same weights *and* the same optimizer state, which rank 0 can checkpoint;
- at each epoch's end the BatchNorm running statistics are averaged over the
  workers, the per-epoch sums (loss, images, ...) are added up, and the
  validation figures are rank 0's;
- rank 0 alone writes checkpoints; the others wait for it.

MXNet's dist kvstore exchanges float32 whatever the array's type; integers
below 2**24 are exact, and :meth:`Coordinator.broadcast` sends float64 values
exactly as four 16-bit pieces each.

A worker blocked on a dead peer waits inside MXNet forever (ps-lite's
``PS_HEARTBEAT_TIMEOUT`` does not end it), so a :class:`Watchdog` thread ends
the process when the job has made no progress for ``DETKIT_DISTRIBUTED_TIMEOUT``
seconds (default 60). Leaving the job is bounded too: a worker whose fit failed
(:func:`note_failure`) leaves at once when Python exits, without MXNet's
teardown (which waits for every other worker), and a worker that succeeded
waits at most the timeout for the others in that teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar, cast

import mxnet as mx
import numpy as np

from ..errors import DetkitError, InputError, TrainingError

T = TypeVar("T")

__all__ = ["DEFAULT_LEAD_TIMEOUT", "DEFAULT_TIMEOUT", "KEY_BASE", "LEAD_TIMEOUT_VARIABLE", "RANK_FILE_VARIABLE",
           "TIMEOUT_VARIABLE", "WATCHDOG_EXIT_STATUS", "Coordinator", "Watchdog", "dist_store", "is_distributed",
           "is_lead_worker", "lead_first", "lead_timeout_seconds", "note_failure", "note_trained", "process_store",
           "timeout_seconds", "worker_label", "worker_rank"]

#: The environment variable that bounds, in seconds, how long a worker waits for the rest of its job.
TIMEOUT_VARIABLE = "DETKIT_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
#: The environment variable that bounds, in seconds, how long workers wait for work rank 0 does alone
#: (preparing data, validating, writing a checkpoint); default :data:`DEFAULT_LEAD_TIMEOUT`.
LEAD_TIMEOUT_VARIABLE = "DETKIT_DISTRIBUTED_LEAD_TIMEOUT"
DEFAULT_LEAD_TIMEOUT = 1800.0
#: The exit status of a worker that its watchdog ended.
WATCHDOG_EXIT_STATUS = 3
#: Set by ``detkit launch`` (local mode): the file where a worker writes its rank once it joined the job.
RANK_FILE_VARIABLE = "DETKIT_LAUNCH_RANK_FILE"
# detkit's keys. The trainer's are 0 .. number of parameters - 1. MXNet 1.9 sends a small array to
# server ``(key * 9973) % servers`` computed in a 32-bit int, which overflows (and fails, or hangs the job)
# for keys above 215 325 as soon as there are two servers: detkit's keys stay well below.
KEY_BASE = 100_000
_KEY_LIMIT = (2**31 - 1) // 9973

_store: Any = None  # ps-lite starts once per process: the one dist kvstore of this process
_fitted: set[int] = set()  # the handles of dist kvstores a fit has used
_keys: dict[int, int] = {}  # array size -> detkit's key for it (a key is initialised once per job)
_failure: list[BaseException] = []  # what made a distributed fit of this process fail
_trained: list[bool] = []  # [True] once a distributed fit of this process returned
_timeout: list[float] = [DEFAULT_TIMEOUT]  # the job's timeout, read when the store was made


def is_distributed(kvstore: Any) -> bool:
    """Whether ``kvstore`` (a name or a KVStore) is one of MXNet's distributed kvstores."""
    kind = kvstore if isinstance(kvstore, str) else getattr(kvstore, "type", "")
    return isinstance(kind, str) and kind.startswith("dist")


def timeout_seconds() -> float:
    """The watchdog's timeout: ``DETKIT_DISTRIBUTED_TIMEOUT`` seconds, default 60."""
    return _seconds(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)


def lead_timeout_seconds() -> float:
    """How long workers wait for rank 0's work alone: ``DETKIT_DISTRIBUTED_LEAD_TIMEOUT`` seconds, default 1800."""
    return _seconds(LEAD_TIMEOUT_VARIABLE, DEFAULT_LEAD_TIMEOUT)


def _seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"The {variable} variable must be a positive number of seconds; got {text!r} instead.")
    return value


def dist_store(kvstore: Any) -> Any:
    """The dist kvstore that ``kvstore`` names or is, created once per process, for one :func:`fit`."""
    store = process_store(kvstore)
    handle = store_handle(store)
    if handle in _fitted:
        raise InputError(
            "A distributed kvstore serves one fit per process (its keys live on the servers until the job "
            "ends); run each training as its own job, or continue one with resume=True."
        )
    _fitted.add(handle)
    return store


def process_store(kvstore: Any) -> Any:
    """The one dist kvstore of this process: created from a name on the first call, or the object given."""
    global _store
    if isinstance(kvstore, str):
        if _store is None:
            if not os.environ.get("DMLC_ROLE"):
                raise InputError(
                    f"The kvstore {kvstore!r} needs a distributed job: start the training with "
                    "`detkit launch` (see the guide 'Training on several machines')."
                )
            _timeout[0] = timeout_seconds()
            waiting = ("waiting for the scheduler, the servers and the other workers to join (are all of them "
                       "started, with the same DMLC_NUM_WORKER and DMLC_NUM_SERVER?)")
            with Watchdog(_timeout[0], waiting).armed():
                _store = mx.kv.create(kvstore)
            atexit.register(_close_store)
            _joined(_store)
        elif _store.type != kvstore:
            raise InputError(
                f"The 'kvstore' argument must stay {_store.type!r} in this process (ps-lite starts once "
                f"per process); got {kvstore!r} instead."
            )
        store = _store
    else:
        if _store is not None and store_handle(kvstore) != store_handle(_store):
            raise InputError("The 'kvstore' argument must be the one dist kvstore of this process; got another.")
        store = kvstore
        if _store is None:
            _timeout[0] = timeout_seconds()
            _store = kvstore
            atexit.register(_close_store)
            _joined(kvstore)
    return store


def _joined(store: Any) -> None:
    """Once per process, at the start: this worker's rank for the launcher, and the job's size checked.

    Every worker counts itself and adds up the number of workers it was told
    (``DMLC_NUM_WORKER``): a number that disagrees with the workers that
    actually joined would give each worker a wrong share of the data.
    """
    rank, told = int(store.rank), int(store.num_workers)
    rank_file = os.environ.get(RANK_FILE_VARIABLE)
    if rank_file:
        with contextlib.suppress(OSError):
            with open(rank_file, "w", encoding="ascii") as stream:
                stream.write(f"{rank} {told}\n")
    try:
        joined, told_sum = (int(round(v)) for v in Coordinator(store, _timeout[0]).allreduce([1, told]))
    except BaseException as error:
        note_failure(error)
        raise
    if joined != told or told_sum != joined * told:
        mismatch = InputError(
            f"The distributed job's size disagrees: {joined} worker(s) joined, but this worker (rank {rank}) was "
            f"told {told} (DMLC_NUM_WORKER), and the workers together {told_sum}. Start every process of the job "
            "with the same DMLC_NUM_WORKER, as many workers as it says (detkit launch -n does both)."
        )
        note_failure(mismatch)
        raise mismatch


def note_failure(error: BaseException) -> None:
    """A distributed fit (or rank 0's work) of this process failed with ``error``: leave the job at once on exit.

    MXNet's teardown of the kvstore waits for every other worker, which a failed
    worker must not: it would hang until another worker's watchdog ends the job.
    """
    if _store is not None and not _failure:
        _failure.append(error)


def note_trained() -> None:
    """A distributed fit of this process returned: on exit, this worker leaves the job as MXNet does (bounded)."""
    _trained[:] = [True]


def worker_label() -> str:
    """``"worker R of N"`` in a distributed job this process joined, else ``""``."""
    store = _store
    if store is None or not store_handle(store):
        return ""
    return f"worker {int(store.rank)} of {int(store.num_workers)}"


def _failure_status(error: BaseException) -> int:
    """The exit status a process ends with after ``error`` (that of detkit's command for its own errors)."""
    if isinstance(error, SystemExit):
        code = error.code
        return code if isinstance(code, int) and code else 1  # leaving a job midway fails it
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 2 if isinstance(error, DetkitError) else 1


def store_handle(store: Any) -> int:
    return int(getattr(store.handle, "value", None) or 0)


def _close_store() -> None:
    # Free the kvstore before MXNet shuts its engine down (atexit runs this first): its
    # destructor waits for every worker, then rank 0 stops the servers and the job ends.
    # The trainer (kept by the detector's parameters) may still hold the Python object:
    # its handle becomes null, which MXKVStoreFree ignores.
    global _store
    store = _store
    if store is None or not store_handle(store):
        _store = None
        return
    if _failure or not _trained:
        # Failed, or leaving before its training ended: the others cannot meet this worker in MXNet's
        # teardown (which waits for every worker), so it leaves now, and its launcher or their monitors end
        # the job. (Python's own exit status is out of reach here: 1 when no failure was noted.)
        _leave(_failure_status(_failure[0]) if _failure else 1)
    label = worker_label()
    # Rank 0 waits for the others, which have nothing left to do; they may wait for work of rank 0 alone
    # after the fit (detkit train evaluates and draws with rank 0).
    limit = _timeout[0] if int(store.rank) == 0 else max(_timeout[0], lead_timeout_seconds())
    freed = threading.Event()

    def free() -> None:
        mx.base.check_call(mx.base._LIB.MXKVStoreFree(store.handle))
        freed.set()

    threading.Thread(target=free, name="detkit-kvstore-free", daemon=True).start()
    if not freed.wait(limit):
        sys.stdout.flush()
        variable = TIMEOUT_VARIABLE if int(store.rank) == 0 else LEAD_TIMEOUT_VARIABLE
        print(f"detkit: error: {label}: the distributed job did not end within {limit:g} s of this worker's "
              "end (another worker, a server or the scheduler stopped or cannot be reached); this worker stops. "
              f"(Set {variable} to wait longer.)", file=sys.stderr, flush=True)
        _leave(WATCHDOG_EXIT_STATUS)
    _store = None
    store.handle = mx.base.KVStoreHandle()


def _leave(status: int) -> None:
    """End this process now with ``status``, its output flushed, without MXNet's teardown."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def is_lead_worker() -> bool:
    """True outside a distributed job, and on rank 0 of one: the process that writes shared files."""
    return _store is None or int(_store.rank) == 0


def worker_rank(kvstore: Any) -> int:
    """This worker's rank in the distributed job of ``kvstore`` (joining it); 0 outside one."""
    return int(process_store(kvstore).rank) if is_distributed(kvstore) else 0


def lead_first(kvstore: Any, work: Callable[[], T]) -> T:
    """``work()`` on rank 0 first, then on the other workers once it succeeded; just ``work()`` outside a job.

    For what must happen once, such as generating a synthetic dataset into a shared folder.
    """
    if not is_distributed(kvstore):
        return work()
    coordinator = Coordinator(process_store(kvstore), timeout_seconds())
    result: list[Any] = []

    def lead_work() -> list[float]:
        result.append(work())
        return []

    try:
        lead_alone(coordinator, lead_work, failed="Rank 0 could not prepare the data (its own message says why); "
                                                  "this worker stops.")
        return cast(T, result[0]) if coordinator.rank == 0 else work()
    except BaseException as error:
        note_failure(error)
        raise


def lead_alone(coordinator: Coordinator, work: Callable[[], Sequence[float]], *, size: int = 0,
               failed: str) -> list[float]:
    """``work()`` on rank 0 alone; every worker returns its ``size`` numbers (exactly), or stops with its failure.

    The others wait for rank 0 (the lead timeout). When ``work()`` raises, rank 0 raises that
    exception and the others :class:`~detkit.errors.TrainingError` with the message ``failed``.
    The exchange is also a barrier: no worker goes on before rank 0's work is done.
    """
    values = [math.nan] * size  # the others' values count for nothing: the same size on every worker
    failure: Exception | None = None
    if coordinator.rank == 0:
        try:
            values = [float(v) for v in work()]
        except Exception as error:  # every worker stops with it, below
            failure = error
        else:
            if len(values) != size:
                raise RuntimeError(f"lead_alone's work gave {len(values)} numbers, not {size}")
    shared = coordinator.broadcast([*values, failure is not None], wait_for_lead=True)
    if failure is not None:
        raise failure
    if shared[-1]:
        raise TrainingError(failed)
    return [float(v) for v in shared[:-1]]


class Watchdog:
    """Ends this process, with a message, when the job makes no progress for ``timeout`` seconds.

    It counts only while armed (:meth:`armed`: while this worker waits on the
    job, in training steps and exchanges); :meth:`beat` marks progress. Work of
    this worker alone (validation, checkpoints, the user's callbacks) is not
    counted, nor is anything after an exception.
    """

    def __init__(self, timeout: float, doing: str) -> None:
        self.timeout = float(timeout)
        self.doing = doing
        self._last = time.monotonic()
        self._armed = 0
        self._limit = self.timeout  # of the innermost armed(): the job's timeout, or the wait for rank 0
        self._waiting_for = ""
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Progress: the timeout starts afresh."""
        self._last = time.monotonic()

    @contextlib.contextmanager
    def armed(self, timeout: float | None = None, waiting_for: str = "") -> Iterator[None]:
        """Counted inside, with ``timeout`` instead of the job's (``waiting_for``: what is awaited, for the message)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="detkit-watchdog", daemon=True)
            self._thread.start()
        previous = self._limit, self._waiting_for
        self._limit = self.timeout if timeout is None else float(timeout)
        self._waiting_for = waiting_for
        self.beat()
        self._armed += 1
        try:
            yield
        finally:
            self._armed -= 1
            self._limit, self._waiting_for = previous

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 10))
            limit = self._limit
            if self._armed and time.monotonic() - self._last > limit:
                variable = LEAD_TIMEOUT_VARIABLE if self._waiting_for else TIMEOUT_VARIABLE
                sys.stdout.flush()
                label = worker_label()
                print(
                    f"detkit: error: {label + ': ' if label else ''}the distributed job made no progress for "
                    f"{limit:g} s while "
                    f"{self._waiting_for or self.doing}: a worker, server or scheduler stopped or cannot be "
                    f"reached. This worker stops; the checkpoints on disk are intact. (Set {variable} to wait "
                    "longer.)",
                    file=sys.stderr, flush=True,
                )
                os._exit(WATCHDOG_EXIT_STATUS)


class Coordinator:
    """The exchanges that keep the workers of one distributed :func:`fit` in step, under a watchdog.

    Every worker must make the same calls in the same order (each is a
    collective operation of the job).
    """

    def __init__(self, store: Any, timeout: float) -> None:
        self.store = store
        self.rank = int(store.rank)
        self.num_workers = int(store.num_workers)
        self.watchdog = Watchdog(timeout, f"training (worker {self.rank} of {self.num_workers})")
        self.lead_timeout = max(lead_timeout_seconds(), timeout)

    def _exchange(self, values: np.ndarray, wait_for_lead: bool = False) -> np.ndarray:
        size = int(values.size)
        key = _keys.get(size)
        # While the others wait for work of rank 0 alone (data preparation, validation, a checkpoint),
        # the watchdog allows the lead timeout (30 minutes by default) instead of the job's: that work
        # takes as long as it takes, but a server that dies meanwhile must not leave the job hanging.
        # If rank 0 itself dies, the launcher ends the job at once (as a cluster manager's kill-on-bad-exit).
        # Rank 0 itself, its work done, waits for the others only: the job's timeout.
        watched = (self.watchdog.armed(self.lead_timeout, "waiting for worker 0's work alone (data, validation, "
                                       "a checkpoint)") if wait_for_lead and self.rank != 0
                   else self.watchdog.armed())
        with watched:
            if key is None:
                # A key is initialised once per job, by rank 0's value, with a barrier (MXNet's kvstore.init).
                key = KEY_BASE + len(_keys)
                if key > _KEY_LIMIT:  # pragma: no cover - thousands of array sizes
                    raise TrainingError("The distributed job ran out of kvstore keys for detkit's exchanges.")
                _keys[size] = key
                self.store.init(key, mx.nd.zeros((size,)))
            out = mx.nd.zeros((size,))
            self.store.push(key, mx.nd.array(values.ravel(), dtype="float32"))
            self.store.pull(key, out=out)
            return out.asnumpy()

    def allreduce(self, values: Any, *, wait_for_lead: bool = False) -> np.ndarray:
        """The sum over the workers of ``values`` (float32 precision), as float64.

        ``wait_for_lead``: the exchange waits for work of rank 0 alone, which the watchdog allows the
        lead timeout (``DETKIT_DISTRIBUTED_LEAD_TIMEOUT``) instead of the job's.
        """
        array = np.asarray(values, dtype=np.float64)
        return self._exchange(array.astype(np.float32), wait_for_lead).astype(np.float64).reshape(array.shape)

    def broadcast(self, values: Any, *, wait_for_lead: bool = False) -> np.ndarray:
        """Rank 0's ``values`` (float64), exactly, on every worker (``wait_for_lead`` as :meth:`allreduce`)."""
        array = np.ascontiguousarray(values, dtype="<f8")
        pieces = array.view("<u2").astype(np.float32)  # four exact 16-bit pieces per value
        if self.rank != 0:
            pieces[:] = 0
        summed = self._exchange(pieces, wait_for_lead)
        return np.rint(summed).astype("<u2").view("<f8").reshape(array.shape)

    def barrier(self) -> None:
        """Wait until every worker gets here."""
        self.allreduce(np.zeros(1))
