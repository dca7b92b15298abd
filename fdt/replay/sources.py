"""Where replay logs come from: the public GCS bucket, an https mirror, a local folder, or any
fsspec URL (s3://, gs://, https://, file://, ...).

Every source fetches a checkpoint's six files the same way: in parallel, into a staging folder
(`.partial/`) where an interrupted transfer resumes from the bytes it has (HTTP Range, or a seek
in the fsspec file) and a file that finished is never fetched again; each file is verified (size,
the server's md5 or crc32c where it gives one, gzip integrity and the .npy length) before the six
are moved into place together. A refused bucket (401/403) ends with one message naming the
alternatives.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import os
import re
import shutil
import string
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
import urllib3
from tqdm import tqdm

from fdt.credentials import refuse_credentials, without_credentials
from fdt.io import atomic_path, file_digests, naming_full_disk
from fdt.replay.dopamine import (
    ReplayFormatError,
    checkpoint_files,
    checkpoint_numbers,
    file_name,
    load_checkpoint,
    number_ranges,
    verify_npy_gz,
)

STAGING = ".partial"
ALTERNATIVES = (
    "set source.kind to 'https' with source.url a mirror template "
    "(e.g. 'https://host/dqn/{game}/{run}/replay_logs/{name}'), or to 'fsspec' with source.url "
    "an fsspec URL template of a mirror (e.g. 's3://bucket/dqn/{game}/{run}/replay_logs/{name}'), "
    "or to 'local' with source.path a copy laid out as {Game}/{run}/replay_logs/, or to 'demo' "
    "to run offline on simulated data")
PUBLIC_BUCKET_NOTE = "The public DQN replay bucket has refused even anonymous reads since 2025."


class SourceError(RuntimeError):
    """A source could not deliver a file; the message says which and why."""


class SourceRefusedError(SourceError):
    pass


class SourceMissingError(SourceError):
    pass


class TransferCut(Exception):
    """A transfer stopped early; worth retrying from where it stopped."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    location: str
    size: int
    md5: str | None = None
    crc32c: str | None = None
    md5_origin: str = "the source"  # who vouches for md5, as the mismatch message names it


ProgressFn = Callable[[int], None]


def _hex_digest(b64: str | None) -> str | None:
    """A checksum as GCS sends it (base64) in hex, as file_digests gives it."""
    return base64.b64decode(b64).hex() if b64 else None


def _goog_hash(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """md5 and crc32c (hex) from an `x-goog-hash` or `Content-MD5` header, when present."""
    md5 = crc = None
    for part in headers.get("x-goog-hash", "").split(","):
        kind, _, value = part.strip().partition("=")
        if kind == "md5":
            md5 = _hex_digest(value)
        elif kind == "crc32c":
            crc = _hex_digest(value)
    if md5 is None and headers.get("Content-MD5"):
        md5 = _hex_digest(headers["Content-MD5"])
    return md5, crc


class ReplaySource:
    """Base: locating, describing and fetching one replay file."""

    kind = "base"

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def location(self, game: str, run: int, name: str) -> str:
        raise NotImplementedError

    def stat(self, game: str, run: int, name: str) -> RemoteFile:
        raise NotImplementedError

    def list_checkpoints(self, game: str, run: int) -> list[int]:
        raise NotImplementedError

    def probe_checkpoints(self, game: str, run: int, limit: int = 200) -> list[int]:
        """Checkpoints 0, 1, ... whose observation file exists, up to the first missing one: for
        sources that cannot list a folder."""
        found = []
        for number in range(limit):
            try:
                self.stat(game, run, file_name("observation", number))
            except SourceMissingError:
                break
            except TransferCut as err:
                raise SourceError(str(err)) from None
            found.append(number)
        return found

    def download(self, remote: RemoteFile, part: Path, progress: ProgressFn) -> None:
        """Append the bytes of `remote` missing from `part`; raise TransferCut if cut short."""
        raise NotImplementedError


class _HttpSource(ReplaySource):
    """Shared HTTP transfer: thread-local sessions, Range resume, status codes to errors."""

    BLOCK = 1 << 16
    # What a refusal says to do instead (the oracle's checkpoints name their own alternatives).
    refusal_hint = f"{PUBLIC_BUCKET_NOTE} Alternatives: {ALTERNATIVES}."

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as err:
            raise TransferCut(f"{what}: connection failed ({err})") from None
        except requests.Timeout:
            raise TransferCut(f"{what}: timed out after {self.timeout} s") from None
        if response.status_code in (401, 403):
            raise SourceRefusedError(
                f"{what}: the server refused access (HTTP {response.status_code}). "
                f"{self.refusal_hint}")
        if response.status_code >= 500 or response.status_code == 429:
            raise TransferCut(f"{what}: server error HTTP {response.status_code}")
        return response

    def _media_url(self, remote: RemoteFile) -> str:
        return remote.location

    def download(self, remote: RemoteFile, part: Path, progress: ProgressFn) -> None:
        have = part.stat().st_size if part.exists() else 0
        if have >= remote.size:
            return
        # identity: the objects are gzip files themselves and must arrive byte for byte.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        with self._request("GET", self._media_url(remote), remote.location, headers=headers,
                           stream=True) as response:
            if response.status_code == 416:
                part.unlink()
                raise TransferCut(f"{remote.location}: partial file did not fit the object; restarting")
            if response.status_code not in (200, 206):
                raise SourceError(f"{remote.location}: unexpected HTTP {response.status_code}")
            mode = "ab" if response.status_code == 206 else "wb"  # 200: the server ignored Range
            if mode == "wb" and have:
                progress(-have)
            # Only network errors count as a cut; a local write error (disk full) is raised as is.
            try:
                with open(part, mode) as out:
                    for block in response.raw.stream(self.BLOCK, decode_content=False):
                        out.write(block)
                        progress(len(block))
            except (urllib3.exceptions.HTTPError, requests.RequestException) as err:
                raise TransferCut(f"{remote.location}: transfer cut ({err})") from None
        if part.stat().st_size < remote.size:
            raise TransferCut(f"{remote.location}: got {part.stat().st_size} of {remote.size} bytes")


class GcsSource(_HttpSource):
    """A GCS bucket through its JSON API, anonymously (`endpoint` may point at a stand-in)."""

    kind = "gcs"

    def __init__(self, bucket: str = "atari-replay-datasets", prefix: str = "dqn",
                 endpoint: str = "https://storage.googleapis.com", timeout: float = 60.0,
                 folder: str = "replay_logs") -> None:
        super().__init__(timeout)
        refuse_url_credentials(endpoint, "endpoint")
        self.bucket, self.prefix, self.endpoint = bucket, prefix.strip("/"), endpoint.rstrip("/")
        self.folder = folder  # below {prefix}/{Game}/{run}/: replay_logs, or "" for C51 checkpoints

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "bucket": self.bucket, "prefix": self.prefix, "endpoint": self.endpoint}

    def _object(self, game: str, run: int, name: str) -> str:
        return "/".join(p for p in (self.prefix, game, str(run), self.folder, name) if p)

    def location(self, game: str, run: int, name: str) -> str:
        return f"gs://{self.bucket}/{self._object(game, run, name)}"

    def _object_url(self, obj: str) -> str:
        return (f"{self.endpoint}/storage/v1/b/{self.bucket}/o/"
                f"{urllib.parse.quote(obj, safe='')}")

    def stat(self, game: str, run: int, name: str) -> RemoteFile:
        where = self.location(game, run, name)
        response = self._request("GET", self._object_url(self._object(game, run, name)), where)
        if response.status_code == 404:
            raise SourceMissingError(f"{where}: no such object")
        if response.status_code != 200:
            raise SourceError(f"{where}: unexpected HTTP {response.status_code} asking for metadata")
        meta = response.json()
        return RemoteFile(name, where, int(meta["size"]), _hex_digest(meta.get("md5Hash")),
                          _hex_digest(meta.get("crc32c")))

    def _media_url(self, remote: RemoteFile) -> str:
        obj = remote.location.removeprefix(f"gs://{self.bucket}/")
        return self._object_url(obj) + "?alt=media"

    def list_checkpoints(self, game: str, run: int) -> list[int]:
        prefix = self._object(game, run, "")
        url = f"{self.endpoint}/storage/v1/b/{self.bucket}/o"
        names: list[str] = []
        token: str | None = None
        while True:
            params = {"prefix": prefix, **({"pageToken": token} if token else {})}
            response = self._request("GET", url, f"gs://{self.bucket}/{prefix}", params=params)
            if response.status_code == 404:
                raise SourceMissingError(f"gs://{self.bucket}: no such bucket")
            body = response.json()
            names += [item["name"].rsplit("/", 1)[-1] for item in body.get("items", [])]
            token = body.get("nextPageToken")
            if not token:
                return _numbers_from_names(names)


URL_FIELDS = ("game", "run", "name")


def check_url_template(template: str) -> None:
    """A mirror's url template may use {game}, {run} and {name} (required) and nothing else;
    raise ValueError saying what is wrong, before any job runs."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:  # unbalanced braces
        raise ValueError(f"url template {template!r} is malformed ({err}); write literal braces "
                         "as {{ and }}") from None
    for field in fields:
        if field not in URL_FIELDS:
            what = "a positional field {}" if field == "" or field.isdigit() else f"{{{field}}}"
            raise ValueError(f"url template {template!r} uses {what}; it may use only "
                             f"{', '.join('{' + f + '}' for f in URL_FIELDS)}")
    if "name" not in fields:
        raise ValueError(f"url template {template!r} has no {{name}}, so every file of a "
                         "checkpoint would map to one address")


class HttpsSource(_HttpSource):
    """An https mirror: `url` holds {game}, {run} and {name}; `$` in names is sent as %24."""

    kind = "https"

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        super().__init__(timeout)
        refuse_url_credentials(url)
        check_url_template(url)
        self.template = url

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.template}

    def location(self, game: str, run: int, name: str) -> str:
        return self.template.format(game=game, run=run, name=urllib.parse.quote(name, safe=""))

    def stat(self, game: str, run: int, name: str) -> RemoteFile:
        url = self.location(game, run, name)
        response = self._request("HEAD", url, url, allow_redirects=True)
        if response.status_code == 404:
            raise SourceMissingError(f"{url}: not found (HTTP 404)")
        if response.status_code != 200 or "Content-Length" not in response.headers:
            raise SourceError(f"{url}: HEAD gave HTTP {response.status_code} without a size")
        md5, crc = _goog_hash(response.headers)
        return RemoteFile(name, url, int(response.headers["Content-Length"]), md5, crc)

    def list_checkpoints(self, game: str, run: int, limit: int = 200) -> list[int]:
        return self.probe_checkpoints(game, run, limit)  # a mirror cannot be listed


class LocalSource(ReplaySource):
    """A folder laid out like the bucket: {root}/{Game}/{run}/replay_logs/."""

    kind = "local"

    def __init__(self, root: str | Path, describe_as: Mapping[str, Any] | None = None,
                 folder: str = "replay_logs") -> None:
        self.root = Path(root)
        self._describe = dict(describe_as) if describe_as else None
        self.folder = folder

    def describe(self) -> dict[str, Any]:
        return self._describe or {"kind": self.kind, "path": str(self.root)}

    def location(self, game: str, run: int, name: str) -> str:
        return str(self.root / game / str(run) / self.folder / name)

    def stat(self, game: str, run: int, name: str) -> RemoteFile:
        path = Path(self.location(game, run, name))
        if not path.is_file():
            raise SourceMissingError(f"{path}: file not found")
        return RemoteFile(name, str(path), path.stat().st_size)

    def list_checkpoints(self, game: str, run: int) -> list[int]:
        folder = self.root / game / str(run) / self.folder
        return checkpoint_numbers(folder) if folder.is_dir() else []

    def download(self, remote: RemoteFile, part: Path, progress: ProgressFn) -> None:
        have = part.stat().st_size if part.exists() else 0
        with open(remote.location, "rb") as src, open(part, "ab") as out:
            src.seek(have)
            while block := src.read(1 << 22):
                out.write(block)
                progress(len(block))


# --- any fsspec URL -------------------------------------------------------------------------

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
ETAG_ORIGIN = ("the source's ETag (the md5 of an object uploaded in one part, unless it is "
               "encrypted with SSE-KMS or SSE-C)")


def refuse_url_credentials(url: str, where: str = "url") -> None:
    """A source's URL enters its manifest and the artifact keys, so it may hold no credentials
    (user:password@, a token in its query): raise CredentialError (a ValueError) saying so."""
    refuse_credentials(url, where, "a source's URL, which enters the manifest and the artifact "
                       "keys in plain text")


def check_fsspec_url(template: str) -> None:
    """An fsspec url template: the fields check_url_template allows, and a protocol whose fsspec
    backend is installed here; raise ValueError saying what is wrong, before any job runs."""
    check_url_template(template)
    if "://" not in template:
        raise ValueError(f"url template {template!r} names no protocol; write an fsspec URL such "
                         "as 's3://bucket/dqn/{game}/{run}/replay_logs/{name}' or "
                         "'file:///data/dqn/{game}/{run}/replay_logs/{name}'")
    import fsspec

    for piece in template.split("::"):  # chained URLs, e.g. simplecache::s3://...
        protocol = piece.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except ValueError:
            raise ValueError(f"url template {template!r} uses protocol {protocol!r}, which fsspec "
                             "does not know") from None
        except ImportError as err:
            raise ValueError(f"url template {template!r} needs fsspec's backend for {protocol!r}, "
                             f"which is not installed ({err}); s3:// and gs:// come with "
                             "pip install 'fdt[cloud]'") from None


def _causes(err: BaseException) -> list[BaseException]:
    """`err` and the exceptions behind it (a backend often wraps the HTTP error it got)."""
    chain = [err]
    while len(chain) < 10:
        behind = chain[-1].__cause__ or (None if chain[-1].__suppress_context__ else chain[-1].__context__)
        if behind is None or behind in chain:
            break
        chain.append(behind)
    return chain


def _http_status(err: BaseException) -> int | None:
    """The HTTP status a server answered, as an exception carries it: botocore's ClientError
    (response metadata), requests' HTTPError (response), aiohttp's ClientResponseError (status),
    gcsfs's HttpError and urllib's HTTPError (code; aiohttp's parser errors have a `code` too,
    which is no server's answer)."""
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    elif response is not None and hasattr(response, "status_code"):
        status = response.status_code
    elif type(err).__name__ in ("HttpError", "HTTPError"):
        status = getattr(err, "code", None)
    else:
        status = getattr(err, "status", None)
    return status if isinstance(status, int) and 100 <= status < 600 else None


def _refusal(err: BaseException) -> str | None:
    """'HTTP 401', 'HTTP 403' or 'permission denied' when `err` (or what it wraps) is a refusal."""
    chain = _causes(err)
    for cause in chain:
        if _http_status(cause) in (401, 403):
            return f"HTTP {_http_status(cause)}"
    for cause in chain:
        if isinstance(cause, PermissionError):
            return "permission denied"
        if isinstance(cause, OSError) and str(cause).startswith("Forbidden"):  # gcsfs's 403
            return "HTTP 403"
    return None


@functools.cache
def _network_errors() -> tuple[type[BaseException], ...]:
    """The backends' exceptions for a connection that failed or was cut."""
    import http.client

    types: list[type[BaseException]] = [ConnectionError, TimeoutError, http.client.HTTPException,
                                        requests.RequestException, urllib3.exceptions.HTTPError]
    with contextlib.suppress(ImportError):
        import aiohttp

        types.append(aiohttp.ClientError)
    with contextlib.suppress(ImportError):
        import botocore.exceptions

        types += [botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError]
    return tuple(types)


def _is_cut(err: BaseException) -> bool:
    """Worth resuming: a connection that failed or was cut, a server error or a throttle."""
    for cause in _causes(err):
        status = _http_status(cause)
        if status is not None:
            return status >= 500 or status in (408, 429)
        if isinstance(cause, _network_errors()):
            return True
    return isinstance(err, OSError) and not isinstance(
        err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError))


def _protocols(fs: Any) -> set[str]:
    """The protocols an fsspec filesystem answers to, e.g. {'s3', 's3a'}."""
    return {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)


class FsspecSource(ReplaySource):
    """Any fsspec URL: `url` holds {game}, {run} and {name} (names go in as they are, `$`
    included) and `storage_options` go to the backend (e.g. endpoint_url, anon, token='anon').

    Checksums: GCS gives md5 and crc32c; S3 an ETag that is the md5 of an object uploaded in one
    part (used only when it looks like one); a server's Content-MD5 is used; file:// and most
    https:// servers give the size only (the gzip and .npy checks still apply).
    """

    kind = "fsspec"
    BLOCK = 8 << 20  # bytes per read: one ranged GET each on an object store

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None,
                 block_size: int = BLOCK) -> None:
        refuse_url_credentials(url)
        check_fsspec_url(url)
        self.template = url
        self.storage_options = dict(storage_options or {})
        self.block_size = block_size
        public = url.startswith("gs://atari-replay-datasets/")
        self.refusal_hint = f"{PUBLIC_BUCKET_NOTE + ' ' if public else ''}Alternatives: {ALTERNATIVES}."

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.template,
                "storage_options": without_credentials(self.storage_options)}

    def location(self, game: str, run: int, name: str) -> str:
        return self.template.format(game=game, run=run, name=name)

    def filesystem(self, url: str) -> tuple[Any, str]:
        """The backend and its path for `url` (fsspec keeps one instance per set of options)."""
        import fsspec

        try:
            return fsspec.core.url_to_fs(url, **self.storage_options)
        except Exception as err:  # noqa: BLE001 (a backend rejecting its options: any type)
            raise SourceError(f"{url}: fsspec could not open it with storage_options "
                              f"{without_credentials(self.storage_options)} "
                              f"({type(err).__name__}: {err})") from None

    @contextlib.contextmanager
    def _translated(self, url: str, doing: str) -> Iterator[None]:
        """Backends raise many types of their own; each leaves here as one of ours (a refusal, a
        missing object, a cut worth resuming, or else a SourceError), naming the URL."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 (translated, never swallowed)
            raise self._error(err, url, doing) from None

    def _error(self, err: Exception, url: str, doing: str) -> Exception:
        """What a backend's exception means here: a refusal, a missing object, a cut worth
        resuming, or else a SourceError naming the URL."""
        refused = _refusal(err)
        if refused:
            return SourceRefusedError(f"{url}: the source refused access ({refused}). {self.refusal_hint}")
        if isinstance(err, FileNotFoundError):
            return SourceMissingError(f"{url}: no such object")
        if _is_cut(err):
            return TransferCut(f"{url}: {doing} failed ({type(err).__name__}: {err})")
        return SourceError(f"{url}: {doing} failed ({type(err).__name__}: {err})")

    def stat(self, game: str, run: int, name: str) -> RemoteFile:
        url = self.location(game, run, name)
        fs, path = self.filesystem(url)
        with self._translated(url, "asking for its size"):
            fs.invalidate_cache(path)  # a listing cached earlier in this process may be stale
            info = fs.info(path)
        if info.get("type", "file") != "file" or info.get("size") is None:
            raise SourceMissingError(f"{url}: not a file (the source says type "
                                     f"{info.get('type')!r}, size {info.get('size')!r})")
        md5 = crc = None
        origin = "the source"
        if info.get("md5Hash") or info.get("crc32c"):  # GCS: base64, as its JSON API gives them
            md5, crc = _hex_digest(info.get("md5Hash")), _hex_digest(info.get("crc32c"))
        elif "s3" in _protocols(fs) and _MD5_HEX.fullmatch(str(info.get("ETag", "")).strip('"').lower()):
            md5, origin = str(info["ETag"]).strip('"').lower(), ETAG_ORIGIN
        elif info.get("Content-MD5"):
            md5 = _hex_digest(info["Content-MD5"])
        return RemoteFile(name, url, int(info["size"]), md5, crc, origin)

    def list_checkpoints(self, game: str, run: int, limit: int = 200) -> list[int]:
        """List the folder {name} sits in; probe observation files 0, 1, ... where it cannot be
        listed (an http(s) server, or {name} not a whole path segment)."""
        marker = "\0"  # in no file name
        folder, _, last = self.location(game, run, marker).rpartition("/")
        fs, path = self.filesystem(folder)
        if last != marker or {"http", "https"} & _protocols(fs):
            return self.probe_checkpoints(game, run, limit)
        try:
            with self._translated(folder, "listing it"):
                fs.invalidate_cache(path)
                names = fs.ls(path, detail=False)
        except SourceMissingError:
            return []
        except TransferCut as err:
            raise SourceError(str(err)) from None
        return _numbers_from_names([str(n).rstrip("/").rsplit("/", 1)[-1] for n in names])

    def download(self, remote: RemoteFile, part: Path, progress: ProgressFn) -> None:
        have = part.stat().st_size if part.exists() else 0
        if have >= remote.size:
            return
        fs, path = self.filesystem(remote.location)
        with self._translated(remote.location, "opening it"):
            src = fs.open(path, "rb", block_size=self.block_size, cache_type="none")
        # Only the source's errors count as a cut; a local write error (disk full) is raised as is.
        with src, open(part, "ab") as out:
            with self._translated(remote.location, f"seeking to byte {have} to resume"):
                src.seek(have)
            while have < remote.size:
                with self._translated(remote.location, f"reading from byte {have}"):
                    block = src.read(min(self.block_size, remote.size - have))
                if not block:
                    break
                out.write(block)
                have += len(block)
                progress(len(block))
        if have < remote.size:
            raise TransferCut(f"{remote.location}: got {have} of {remote.size} bytes")


def _numbers_from_names(names: list[str]) -> list[int]:
    numbers = set()
    for name in names:
        if name.startswith("$store$_observation_ckpt.") and name.endswith(".gz"):
            numbers.add(int(name.split(".")[1]))
    return sorted(numbers)


def source_from_config(source: Mapping[str, Any], demo_root: str | Path | None = None,
                       folder: str = "replay_logs") -> ReplaySource:
    """The source a config's `source:` section names. The demo is a local folder we made.
    `folder` is what lies below {Game}/{run}/ (replay logs; "" for C51 checkpoints)."""
    kind = source["kind"]
    if kind == "gcs":
        return GcsSource(source["bucket"], source["prefix"], source["endpoint"], folder=folder)
    if kind == "https":
        return HttpsSource(source["url"])
    if kind == "fsspec":
        return FsspecSource(source["url"], source.get("storage_options") or {})
    if kind == "local":
        return LocalSource(source["path"], folder=folder)
    if kind == "demo":
        if demo_root is None:
            raise ValueError("source kind 'demo' needs the folder the simulator wrote")
        return LocalSource(demo_root, describe_as={"kind": "demo", "path": str(demo_root)})
    raise ValueError(f"unknown source kind {kind!r}; expected gcs, https, fsspec, local or demo")


# --- fetching one checkpoint ----------------------------------------------------------------


def _verify(path: Path, remote: RemoteFile, check_gzip: bool) -> dict[str, Any]:
    """Check a complete file against what the source said; return its manifest entry."""
    size = path.stat().st_size
    if size != remote.size:
        raise SourceError(f"{remote.location}: size {size} after transfer, the source says {remote.size}")
    md5, crc = file_digests(path)
    if remote.md5 and md5 != remote.md5:
        raise SourceError(f"{remote.location}: md5 {md5} after transfer, {remote.md5_origin} "
                          f"says {remote.md5}")
    if remote.crc32c and crc != remote.crc32c:
        raise SourceError(f"{remote.location}: crc32c {crc} after transfer, the source says {remote.crc32c}")
    entry: dict[str, Any] = {"location": remote.location, "size": size, "md5": md5, "crc32c": crc,
                             "checked": ["size"] + (["md5"] if remote.md5 else [])
                             + (["crc32c"] if remote.crc32c else [])}
    if check_gzip:
        try:
            header = verify_npy_gz(path)
        except ReplayFormatError as err:
            raise SourceError(f"{remote.location}: fetched, but {err}") from None
        entry["npy"] = {"dtype": header.dtype.str, "shape": list(header.shape)}
        entry["checked"].append("gzip")
    return entry


def _download_with_retries(source: ReplaySource, remote: RemoteFile, part: Path,
                           progress: ProgressFn, attempts: int, backoff: float) -> None:
    for attempt in range(attempts):
        try:
            source.download(remote, part, progress)
            return
        except TransferCut:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff * 2 ** attempt)


def _fetch_file(source: ReplaySource, remote: RemoteFile, staging: Path, check_gzip: bool,
                progress: ProgressFn, attempts: int, backoff: float) -> dict[str, Any]:
    done = staging / remote.name
    part = staging / f"{remote.name}.part"
    if done.exists():
        try:
            entry = _verify(done, remote, check_gzip)
            progress(remote.size)
            entry["reused"] = True
            return entry
        except SourceError:
            done.unlink()  # stale or damaged: fetch again
    resumed = part.exists() and part.stat().st_size > 0
    while True:
        if part.exists():
            progress(part.stat().st_size)
        # The bytes kept stay, to resume once space is freed; the error names the file.
        with naming_full_disk(part, f"while fetching {remote.location} into"):
            _download_with_retries(source, remote, part, progress, attempts, backoff)
        try:
            entry = _verify(part, remote, check_gzip)
            break
        except SourceError:
            size = part.stat().st_size
            part.unlink()  # a complete-looking file that fails verification must not be resumed
            if not resumed:
                raise
            progress(-size)
            resumed = False  # the kept bytes may be another source's: once more from zero
    os.replace(part, done)
    return entry


def fetch_checkpoint(source: ReplaySource, game: str, run: int, number: int, dest: str | Path, *,
                     workers: int = 4, check_gzip: bool = True, attempts: int = 5,
                     backoff: float = 1.0, progress: bool = True) -> dict[str, Any]:
    """Fetch the six files of replay checkpoint `number` into `dest`; return its manifest record.

    A checkpoint the source lacks is named with the ones it has. The six files are checked
    together as conversion checks them (dtypes, shapes, add_count against the number,
    invalid_range, padding) before they are accepted, so a bad checkpoint is never cached.
    """
    try:
        record = fetch_files(source, game, run, checkpoint_files(number), dest, workers=workers,
                             check_gzip=check_gzip, attempts=attempts, backoff=backoff,
                             progress=progress, label=f"{game}/{run}/{number}",
                             check=lambda staged: load_checkpoint(staged, number))
    except SourceMissingError as err:
        try:
            available = source.list_checkpoints(game, run)
        except SourceError:
            available = []
        have = (f"it has checkpoints {number_ranges(available)}" if available
                else "no checkpoints were found there")
        raise SourceMissingError(f"{err}; checkpoint {number} of {game} run {run} is not available "
                                 f"from this source ({have})") from None
    return {"checkpoint": number, **record}


def fetch_files(source: ReplaySource, game: str, run: int, names: list[str], dest: str | Path, *,
                workers: int = 4, check_gzip: bool = False, attempts: int = 5,
                backoff: float = 1.0, progress: bool = True, label: str = "",
                check: Callable[[Path], Any] | None = None,
                check_errors: tuple[type[Exception], ...] = (ReplayFormatError,)
                ) -> dict[str, Any]:
    """Fetch a set of files that belong together into `dest`; return their manifest record.

    Files land in `dest/.partial/` first; only when all are verified (and `check` of the staging
    folder passes, raising none of `check_errors`) are they moved into `dest`, so `dest` never
    holds a partial or refused set. Rerunning after an interruption resumes.
    """
    dest = Path(dest)
    staging = dest / STAGING
    description = source.describe()
    refuse_credentials(description, "source", "a manifest, which is written in plain text")
    try:
        remotes = [source.stat(game, run, name) for name in names]
    except TransferCut as err:
        raise SourceError(str(err)) from None
    for remote in remotes:  # each file's location is recorded in the manifest
        refuse_credentials(remote.location, f"the location of {remote.name}",
                           "a manifest, which is written in plain text")
    staging.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    bar = tqdm(total=sum(r.size for r in remotes), unit="B", unit_scale=True, mininterval=1.0,
               desc=f"fetch {label or game}", disable=not progress)

    def advance(n: int) -> None:
        with lock:
            bar.update(n)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {r.name: pool.submit(_fetch_file, source, r, staging, check_gzip, advance,
                                           attempts, backoff) for r in remotes}
            entries = {name: f.result() for name, f in futures.items()}
    except TransferCut as err:
        raise SourceError(f"{err} (gave up after {attempts} attempts; rerun to resume)") from None
    finally:
        bar.close()
    if check is not None:
        _check_staged(check, check_errors, staging, dest, remotes)
    for name in names:  # link all first: if killed here, the staged copies remain for a rerun
        with contextlib.suppress(FileNotFoundError):
            (dest / name).unlink()
        try:
            os.link(staging / name, dest / name)
        except OSError:  # another filesystem: a copy, atomic so a full disk leaves no half file
            with atomic_path(dest / name) as tmp:
                shutil.copy2(staging / name, tmp)
    for name in names:
        (staging / name).unlink()
    # The staging folder stays (empty): fetches of other checkpoints may be using it right now.
    return {
        "game": game, "run": run, "source": description,
        "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": entries,
    }


def _check_staged(check: Callable[[Path], Any], errors: tuple[type[Exception], ...],
                  staging: Path, dest: Path, remotes: list[RemoteFile]) -> None:
    """Run `check` on the staged set; on one of its format `errors` drop the set (a rerun
    fetches again, e.g. once the source is mended) and name the source's file and the local
    copy."""
    try:
        check(staging)
    except errors as err:
        message = str(err)
        at_fault = [r.location for r in remotes if str(staging / r.name) in message]
        for remote in remotes:
            with contextlib.suppress(FileNotFoundError):
                (staging / remote.name).unlink()
        # A layout error concerns the set, not one file: name the source's folder.
        where = at_fault[0] if at_fault else remotes[0].location.rsplit("/", 1)[0] + "/"
        raise SourceError(f"{where}: the source's files fail the checks on them, so nothing was "
                          f"kept in {dest} (the staged copies in {staging} were removed; rerun "
                          f"once the source is mended): {message}") from None


def merge_manifest(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's manifest from its per-checkpoint records."""
    if not records:
        raise ValueError("merge_manifest: no checkpoint records")
    first = records[0]
    manifest = {"game": first["game"], "run": first["run"], "source": first["source"],
                "checkpoints": sorted(r["checkpoint"] for r in records),
                "files": {name: entry for r in records for name, entry in r["files"].items()},
                "total_bytes": sum(e["size"] for r in records for e in r["files"].values())}
    refuse_credentials(manifest, "manifest", "a manifest, which is written in plain text")
    return manifest


__all__ = ["FsspecSource", "GcsSource", "HttpsSource", "LocalSource", "RemoteFile", "ReplaySource", "SourceError",
           "SourceMissingError", "SourceRefusedError", "fetch_checkpoint", "fetch_files", "merge_manifest",
           "source_from_config"]
