"""The seed's pikachu download against a loopback HTTP server: good file, bad sum, server error, cut transfer."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import pytest

from detkit.data import _download, pikachu, synthetic_pikachu
from detkit.errors import DownloadError


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # path -> bytes, set per server
    requests: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        mode, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if mode == "error" or body is None:
            self.send_error(500 if mode == "error" else 404)
            return
        if mode == "corrupt":
            body = body[:-1] + bytes([body[-1] ^ 1])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # promise the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture()
def server(monkeypatch, tmp_path_factory):
    """A loopback server holding a small, valid pikachu-like dataset under /good/, /corrupt/, /error/, /cut/."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    source = tmp_path_factory.mktemp("source")
    synthetic_pikachu(source, num_train=4, num_val=2, image_size=48, progress=False)
    files = {name: (source / name).read_bytes() for name in ("train.rec", "train.idx", "val.rec")}
    handler = type("Handler", (_Handler,), {"files": files, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setattr(_download, "PIKACHU_SHA1", {n: hashlib.sha1(b).hexdigest() for n, b in files.items()})
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files, handler.requests
    httpd.shutdown()
    httpd.server_close()


def test_downloads_verifies_and_builds_val_idx(server, tmp_path):
    url, files, requests = server
    train, val = pikachu(tmp_path, base_url=f"{url}/good", progress=False)
    for name, body in files.items():
        assert (tmp_path / name).read_bytes() == body
    assert (len(train), len(val)) == (4, 2) and train.classes == ["pikachu"]
    assert (tmp_path / "val.idx").is_file() and val.idx_path == tmp_path / "val.idx"
    assert sorted(requests) == ["/good/train.idx", "/good/train.rec", "/good/val.rec"]
    # verified files are not downloaded again
    pikachu(tmp_path, base_url=f"{url}/good", progress=False)
    assert len(requests) == 3
    # a damaged local file is replaced
    (tmp_path / "val.rec").write_bytes(b"junk")
    pikachu(tmp_path, base_url=f"{url}/good/", progress=False)
    assert requests[-1] == "/good/val.rec" and (tmp_path / "val.rec").read_bytes() == files["val.rec"]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, files, _ = server
    with pytest.raises(DownloadError, match=r"train\.rec: SHA-1 mismatch: expected [0-9a-f]{40}, got [0-9a-f]{40}"):
        pikachu(tmp_path, base_url=f"{url}/corrupt", progress=False)
    assert _leftovers(tmp_path) == []


def test_corrupt_file_does_not_replace_a_previous_one(server, tmp_path):
    url, files, _ = server
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(DownloadError, match="SHA-1 mismatch"):
        _download.download(f"{url}/corrupt/val.rec", target, hashlib.sha1(files["val.rec"]).hexdigest(), progress=False)
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == ["x.bin"]


def test_server_error(server, tmp_path):
    url, _, _ = server
    with pytest.raises(DownloadError, match=r"train\.rec: the server answered HTTP 500"):
        pikachu(tmp_path, base_url=f"{url}/error", progress=False)
    assert _leftovers(tmp_path) == []


def test_interrupted_transfer(server, tmp_path):
    url, _, _ = server
    with pytest.raises(DownloadError, match="interrupted"):
        pikachu(tmp_path, base_url=f"{url}/cut", progress=True)
    assert _leftovers(tmp_path) == []


def test_unreachable_network_suggests_the_synthetic_dataset(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot reach .*synthetic_pikachu\(root\).*detkit data synth"):
        pikachu(tmp_path / "p", base_url=f"http://127.0.0.1:{port}/", progress=False)
    assert _leftovers(tmp_path / "p") == []


def test_refuses_a_folder_with_the_synthetic_set(tmp_path):
    synthetic_pikachu(tmp_path, num_train=2, num_val=1, image_size=32, progress=False)
    with pytest.raises(DownloadError, match="synthetic"):
        pikachu(tmp_path, base_url="http://127.0.0.1:9/", progress=False)


def test_seed_urls_and_sums():
    assert _download.PIKACHU_URL == "https://apache-mxnet.s3-accelerate.amazonaws.com/gluon/dataset/pikachu/"
    assert _download.PIKACHU_SHA1 == {
        "train.rec": "e6bcb6ffba1ac04ff8a9b1115e650af56ee969c8",
        "train.idx": "dcf7318b2602c06428b9988470c731621716c393",
        "val.rec": "d6c33f799b4d058e82f2cb5bd9a976f69d72d520",
    }
