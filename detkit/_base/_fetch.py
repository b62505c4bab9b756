"""One HTTP download for every caller: timeouts, a size cap, a progress bar, failures as one clause."""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

__all__ = ["FetchFailed", "fetch"]

FETCH_TIMEOUT_S = 30.0
#: The longest a whole download may take, connection, headers and body together.
FETCH_DEADLINE_S = 3600.0
#: The slowest transfer that is not a stall: at least this many bytes in every window of that many seconds.
MIN_RATE: tuple[int, float] = (10 * 1024, 60.0)
_CHUNK = 1 << 16


class FetchFailed(Exception):
    """Why a download failed, as a clause the caller puts in its own :class:`~detkit.errors.DownloadError`."""


class _Deadline:
    """Shuts the download's sockets down when a phase's time is up, so that no blocked read outlives it.

    A socket's own timeout bounds each read; a server that sends its headers one
    byte every few seconds never trips it. The phases: until the response's
    headers are complete (``timeout`` seconds from the start), then until the
    whole body is in (``deadline`` seconds from the start).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self.expired: str | None = None  # the phase whose time ran out

    def add(self, sock: Any) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    @staticmethod
    def _shut(sock: Any) -> None:
        try:
            # The plain socket's shutdown: ssl.SSLSocket's would unwrap the TLS layer, and the next read
            # would then raise a ValueError instead of the OSError that ends the download with its message.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def _expire(self, phase: str) -> None:
        with self._lock:
            self.expired = phase
            for sock in self._sockets:
                self._shut(sock)

    def start(self, seconds: float, phase: str) -> None:
        self.cancel()
        self._timer = threading.Timer(max(0.0, seconds), self._expire, args=(phase,))
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """``urllib``'s opener whose connections hand their sockets to ``deadline`` (redirects included)."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.add(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.add(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(SecureConnection, req, context=getattr(self, "_context", None))

    return urllib.request.build_opener(Handler, SecureHandler)


def fetch(
    url: str,
    path: Path,
    *,
    label: str,
    progress: bool = True,
    timeout: float = FETCH_TIMEOUT_S,
    max_bytes: int | None = None,
    min_rate: tuple[int, float] = MIN_RATE,
    deadline: float = FETCH_DEADLINE_S,
) -> str:
    """Write the body of ``url`` to ``path``; return its SHA-1 (hex).

    ``path`` is the caller's temporary file (``atomic_path``): a failure leaves
    it for the caller to discard. Three limits keep a bad server from hanging
    the caller or filling the disk: each read waits at most ``timeout`` seconds;
    a transfer slower than ``min_rate`` (bytes, seconds: fewer bytes in any
    window of that length) is a stall; a body larger than ``max_bytes``, or than
    its own ``Content-Length``, is refused as it arrives. A body shorter than
    its ``Content-Length`` is a failure too. Two deadlines bound the whole: the
    connection and the response's headers must be complete within ``timeout``
    seconds of the start (a server sending its headers a byte at a time is cut
    off), and the whole download within ``deadline`` seconds.

    Raises
    ------
    FetchFailed
        For an HTTP error, an unreachable host, an interrupted, stalled,
        truncated or oversized transfer; its message is a clause starting with the URL.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "detkit"})
    digest = hashlib.sha1()
    received = 0
    window_bytes, window_seconds = min_rate
    clock = _Deadline()
    started = time.monotonic()
    clock.start(min(timeout, deadline), "headers")
    try:
        with _opener(clock).open(request, timeout=timeout) as response, open(path, "wb") as file:
            if clock.expired:
                raise socket.timeout("deadline")
            clock.start(deadline - (time.monotonic() - started), "download")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            limits = [v for v in (total, max_bytes) if v is not None]
            limit = min(limits) if limits else None
            if max_bytes is not None and total is not None and total > max_bytes:
                raise FetchFailed(f"{url}: the server announces {total} bytes, more than the {max_bytes} expected "
                                  "at most; nothing was saved")
            window_start, window_received = time.monotonic(), 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False, disable=not progress) as bar:
                # read1: what one receive gives, so that the checks below run while data trickles in.
                for chunk in iter(lambda: response.read1(_CHUNK), b""):
                    file.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if limit is not None and received > limit:
                        raise FetchFailed(f"{url}: the body is larger than the {limit} bytes expected at most; "
                                          "nothing was saved")
                    now = time.monotonic()
                    if now - window_start >= window_seconds:
                        if received - window_received < window_bytes:
                            raise FetchFailed(
                                f"{url}: the transfer stalled ({received - window_received} bytes in "
                                f"{now - window_start:.0f} s); nothing was saved. Try again")
                        window_start, window_received = now, received
    except urllib.error.HTTPError as error:
        if clock.expired:
            raise _late(url, clock.expired, timeout, deadline) from None
        raise FetchFailed(f"{url}: the server answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        if clock.expired:
            raise _late(url, clock.expired, timeout, deadline) from None
        _raise_failed(url, error)
    finally:
        clock.cancel()
    if total is not None and received != total:
        raise FetchFailed(f"{url}: the transfer was interrupted after {received} of {total} bytes; "
                          "nothing was saved. Try again")
    return digest.hexdigest()


def _late(url: str, phase: str, timeout: float, deadline: float) -> FetchFailed:
    if phase == "headers":
        return FetchFailed(f"{url}: the server did not answer within {min(timeout, deadline):g} s (connection and "
                           "headers); nothing was saved. Try again later")
    return FetchFailed(f"{url}: the download took longer than {deadline:g} s; nothing was saved. Try again later")


def _raise_failed(url: str, error: Exception) -> None:
    """Raise ``error`` as a :class:`FetchFailed` clause, or as it is when the server is not its cause (a full disk)."""
    if isinstance(error, urllib.error.URLError):
        raise FetchFailed(f"{url}: cannot reach it ({error.reason})") from None
    if isinstance(error, (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)):
        raise FetchFailed(f"{url}: the transfer was interrupted ({type(error).__name__}: {error}); "
                          "nothing was saved. Try again") from None
    raise error
