"""detkit's one HTTP download against loopback servers that misbehave: stalls, oversized bodies."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from detkit._base import FetchFailed, fetch


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "drip"

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        if self.mode == "drip":  # a server that never stops sending, one byte at a time
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            for _ in range(200):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)
        elif self.mode == "announced":  # announces more than the caller accepts
            self.send_header("Content-Length", str(10_000))
            self.end_headers()
            self.wfile.write(b"x" * 10_000)
        else:  # no Content-Length: a body that just keeps coming
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * 50_000)

    def log_message(self, *args):
        pass


@pytest.fixture()
def serve():
    servers = []

    def start(mode: str) -> str:
        handler = type("Handler", (_Handler,), {"mode": mode})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/file"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_transfer_that_trickles_is_a_stall_not_a_hang(serve, tmp_path) -> None:
    url = serve("drip")  # 20 bytes a second: every read returns, none ever times out
    started = time.monotonic()
    with pytest.raises(FetchFailed, match=r"/file: the transfer stalled \(\d+ bytes in 1 s\); nothing was saved"):
        fetch(url, tmp_path / "part", label="file", progress=False, min_rate=(1000, 1.0))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("mode", "fragment"), [
    ("announced", "the server announces 10000 bytes, more than the 4096 expected at most"),
    ("endless", "the body is larger than the 4096 bytes expected at most"),
])
def test_a_body_larger_than_allowed_is_refused_as_it_arrives(serve, tmp_path, mode, fragment) -> None:
    with pytest.raises(FetchFailed, match=fragment):
        fetch(serve(mode), tmp_path / "part", label="file", progress=False, max_bytes=4096)
    assert (tmp_path / "part").stat().st_size <= 4096 + 65536  # at most one read past the limit
