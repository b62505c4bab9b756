"""One HTTP download for every caller: a timeout, a progress bar, truncation and failures as one clause."""

from __future__ import annotations

import hashlib
import http.client
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

__all__ = ["FetchFailed", "fetch"]

FETCH_TIMEOUT_S = 30.0
_CHUNK = 1 << 16


class FetchFailed(Exception):
    """Why a download failed, as a clause the caller puts in its own :class:`~detkit.errors.DownloadError`."""


def fetch(url: str, path: Path, *, label: str, progress: bool = True, timeout: float = FETCH_TIMEOUT_S) -> str:
    """Write the body of ``url`` to ``path``; return its SHA-1 (hex).

    ``path`` is the caller's temporary file (``atomic_path``): a failure leaves
    it for the caller to discard. Each read waits at most ``timeout`` seconds.
    A body shorter than its ``Content-Length`` is a failure.

    Raises
    ------
    FetchFailed
        For an HTTP error, an unreachable host, an interrupted or truncated
        transfer; its message is a clause starting with the URL.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "detkit"})
    digest = hashlib.sha1()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as file:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    file.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
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
