"""One HTTP download for every caller: timeouts, a size cap, a progress bar, failures as one clause."""

from __future__ import annotations

import hashlib
import http.client
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

__all__ = ["FetchFailed", "fetch"]

FETCH_TIMEOUT_S = 30.0
#: The slowest transfer that is not a stall: at least this many bytes in every window of that many seconds.
MIN_RATE: tuple[int, float] = (10 * 1024, 60.0)
_CHUNK = 1 << 16


class FetchFailed(Exception):
    """Why a download failed, as a clause the caller puts in its own :class:`~detkit.errors.DownloadError`."""


def fetch(
    url: str,
    path: Path,
    *,
    label: str,
    progress: bool = True,
    timeout: float = FETCH_TIMEOUT_S,
    max_bytes: int | None = None,
    min_rate: tuple[int, float] = MIN_RATE,
) -> str:
    """Write the body of ``url`` to ``path``; return its SHA-1 (hex).

    ``path`` is the caller's temporary file (``atomic_path``): a failure leaves
    it for the caller to discard. Three limits keep a bad server from hanging
    the caller or filling the disk: each read waits at most ``timeout`` seconds;
    a transfer slower than ``min_rate`` (bytes, seconds: fewer bytes in any
    window of that length) is a stall; a body larger than ``max_bytes``, or than
    its own ``Content-Length``, is refused as it arrives. A body shorter than
    its ``Content-Length`` is a failure too.

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
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as file:
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
        raise FetchFailed(f"{url}: the server answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise FetchFailed(f"{url}: cannot reach it ({error.reason})") from None
    except (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as error:
        raise FetchFailed(f"{url}: the transfer was interrupted ({type(error).__name__}: {error}); "
                          "nothing was saved. Try again") from None
    if total is not None and received != total:
        raise FetchFailed(f"{url}: the transfer was interrupted after {received} of {total} bytes; "
                          "nothing was saved. Try again")
    return digest.hexdigest()
