"""Loopback servers for source tests: a GCS emulator, a cutting proxy, a tiny https-like mirror."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """The gcp-storage-emulator package serving the GCS JSON API on 127.0.0.1."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def upload(endpoint: str, bucket: str, name: str, data: bytes) -> None:
    response = requests.post(f"{endpoint}/upload/storage/v1/b/{bucket}/o",
                             params={"uploadType": "media", "name": name}, data=data, timeout=30)
    response.raise_for_status()


class CuttingProxy:
    """Forwards TCP to `target`; the first response longer than `cut_after` bytes is cut there.

    Records the request heads it forwards, so a test can see that a Range request followed.
    """

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.cuts = 0
        self.requests: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, response: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if not response:
                    self.requests.append(data.decode("latin-1").split("\r\n\r\n")[0])
                elif self.cuts == 0 and sent + len(data) > self.cut_after:
                    dst.sendall(data[: self.cut_after - sent])
                    self.cuts += 1
                    raise OSError("cut")
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.listener.close()


def serve_folder(root: Path, status: int | None = None, corrupt: bool = False) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A mirror serving `root` with HEAD, Range and x-goog-hash; or only `status` for everything.

    With `corrupt`, bodies are altered while the advertised md5 stays the original's.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _file(self) -> Path | None:
            path = root / urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
            return path if path.is_file() else None

        def _head(self) -> bytes | None:
            if status is not None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            path = self._file()
            if path is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            data = path.read_bytes()
            md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
            if corrupt:
                data = data[:-8] + bytes(8)
            start = 0
            if "Range" in self.headers:
                start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("x-goog-hash", f"md5={md5}")
            self.end_headers()
            return data[start:]

        def do_HEAD(self) -> None:  # noqa: N802
            self._head()

        def do_GET(self) -> None:  # noqa: N802
            body = self._head()
            if body:
                self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
