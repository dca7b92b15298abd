"""Loopback servers for source tests: a GCS emulator, moto's S3, a cutting proxy, a tiny
https-like mirror."""

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
from typing import Any

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


@contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """moto's S3 server (ThreadedMotoServer) on 127.0.0.1 with an empty `bucket`. moto keeps its
    state per process, so it is reset when the server stops."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3_client(endpoint).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=30)
        server.stop()


def s3_client(endpoint: str) -> Any:
    """A boto3 client for the moto server (which takes any credentials while IAM is off)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def s3_put(endpoint: str, bucket: str, key: str, data: bytes, public: bool = True) -> None:
    """Upload one object in one part (so its ETag is its md5); `public` lets anonymous reads in."""
    s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=data,
                                   ACL="public-read" if public else "private")


class CuttingProxy:
    """Forwards TCP to `target`; the first response longer than `cut_after` bytes is cut there.

    With `across_connections`, bytes are counted over all responses instead (clients that open a
    connection per ranged GET are then cut inside a later block, not the first). Records the
    request heads it forwards, so a test can see that a Range request followed.
    """

    def __init__(self, target_port: int, cut_after: int, across_connections: bool = False) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.across_connections = across_connections
        self.cuts = 0
        self.forwarded = 0  # response bytes, all connections
        self.requests: list[str] = []
        self.lock = threading.Lock()
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
                else:
                    with self.lock:
                        before = self.forwarded if self.across_connections else sent
                        cut = self.cuts == 0 and before + len(data) > self.cut_after
                        if cut:
                            self.cuts += 1
                            data = data[: self.cut_after - before]
                        self.forwarded += len(data)
                    if cut:
                        dst.sendall(data)
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
