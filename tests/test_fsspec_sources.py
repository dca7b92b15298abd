"""The fsspec source on loopback only: moto's S3, the GCS emulator through gcsfs, file://, an
https server; staging, resume, verification and refusals as for the other kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fdt.replay.dopamine import checkpoint_files, load_checkpoint
from fdt.replay.sources import (
    STAGING,
    FsspecSource,
    RemoteFile,
    SourceError,
    SourceMissingError,
    SourceRefusedError,
    TransferCut,
    fetch_checkpoint,
    source_from_config,
)
from tests.loopback import (
    CuttingProxy,
    gcs_emulator,
    moto_s3,
    s3_put,
    serve_folder,
    upload,
)
from tests.test_sources import _same_files, bucket_layout  # noqa: F401 (bucket_layout: a fixture)

MIRROR = "dqn-mirror"
S3_URL = f"s3://{MIRROR}/dqn/{{game}}/{{run}}/replay_logs/{{name}}"
GCS_BUCKET = "atari-replay-datasets"


class RecordingSource(FsspecSource):
    """Records, per download attempt, the file and the bytes it already had staged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts: list[tuple[str, int]] = []

    def download(self, remote: RemoteFile, part: Path, progress: Any) -> None:
        self.starts.append((remote.name, part.stat().st_size if part.exists() else 0))
        super().download(remote, part, progress)


def _upload_s3(endpoint: str, src: Path, numbers: range, public: bool = True) -> None:
    for n in numbers:
        for name in checkpoint_files(n):
            s3_put(endpoint, MIRROR, f"dqn/Breakout/1/replay_logs/{name}", (src / name).read_bytes(),
                   public=public)


def _range_starts(requests: list[str], name: str) -> list[int]:
    """The first byte asked for by each ranged GET of `name` that went through a proxy."""
    quoted = name.replace("$", "%24")
    starts = []
    for head in requests:
        lines = head.split("\r\n")
        if lines[0].startswith("GET ") and quoted in lines[0]:
            ranges = [h for h in lines[1:] if h.lower().startswith("range:")]
            starts.append(int(ranges[0].split("=")[1].split("-")[0]) if ranges else 0)
    return starts


def test_s3_mirror_verifies_the_etag_md5_and_resumes_a_staged_part(bucket_layout: Path, tmp_path: Path) -> None:  # noqa: F811
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    obs = checkpoint_files(0)[0]
    dest = tmp_path / "dest"
    (dest / STAGING).mkdir(parents=True)
    (dest / STAGING / f"{obs}.part").write_bytes((src / obs).read_bytes()[:1000])  # an interrupted run
    with moto_s3(MIRROR) as endpoint:
        _upload_s3(endpoint, src, range(3))
        recorder = CuttingProxy(int(endpoint.rsplit(":", 1)[1]), cut_after=1 << 40)  # never cuts
        source = FsspecSource(S3_URL, {"endpoint_url": f"http://127.0.0.1:{recorder.port}", "anon": True})
        assert source.list_checkpoints("Breakout", 1) == [0, 1, 2]
        record = fetch_checkpoint(source, "Breakout", 1, 0, dest, progress=False)
        with pytest.raises(SourceMissingError, match=r"observation_ckpt\.7\.gz: no such object; checkpoint 7 "
                           r"of Breakout run 1 is not available from this source \(it has checkpoints 0-2\)"):
            fetch_checkpoint(source, "Breakout", 1, 7, tmp_path / "other", progress=False)
        recorder.close()
    _same_files(src, dest, 0)
    assert _range_starts(recorder.requests, obs)[0] == 1000  # resumed, not fetched from zero
    entry = record["files"][obs]
    assert entry["checked"] == ["size", "md5", "gzip"]  # md5 from the ETag of a one-part upload
    assert entry["location"] == f"s3://{MIRROR}/dqn/Breakout/1/replay_logs/$store$_observation_ckpt.0.gz"
    assert record["source"] == {"kind": "fsspec", "url": S3_URL, "storage_options": {
        "endpoint_url": f"http://127.0.0.1:{recorder.port}", "anon": True}}
    assert load_checkpoint(dest, 0).add_count == 63


@pytest.mark.parametrize("s3fs_retries", [None, 1])
def test_s3_cut_transfer_resumes(bucket_layout: Path, tmp_path: Path, s3fs_retries: int | None) -> None:  # noqa: F811
    """A response cut mid-file: s3fs retries the block itself; with its retries at 1 the cut
    reaches fetch's retry loop, which reopens the object and seeks to the staged length."""
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    obs = checkpoint_files(2)[0]
    assert (src / obs).stat().st_size > 200_000
    block = 1 << 16
    with moto_s3(MIRROR) as endpoint:
        _upload_s3(endpoint, src, range(2, 3))
        proxy = CuttingProxy(int(endpoint.rsplit(":", 1)[1]), cut_after=100_000, across_connections=True)
        source = RecordingSource(S3_URL, {"endpoint_url": f"http://127.0.0.1:{proxy.port}", "anon": True},
                                 block_size=block)
        if s3fs_retries is not None:
            source.filesystem(source.location("Breakout", 1, obs))[0].retries = s3fs_retries
        try:
            fetch_checkpoint(source, "Breakout", 1, 2, tmp_path / "dest", workers=1, backoff=0.01,
                             progress=False)
        finally:
            proxy.close()
    assert proxy.cuts == 1
    _same_files(src, tmp_path / "dest", 2)
    starts = _range_starts(proxy.requests, obs)
    assert starts.count(0) == 1 and len(starts) == len(set(starts)) + 1  # one block asked again
    attempts = [have for name, have in source.starts if name == obs]
    assert attempts == ([0] if s3fs_retries is None else [0, block])


def test_s3_bucket_refusing_anonymous_reads_names_the_alternatives(bucket_layout: Path, tmp_path: Path) -> None:  # noqa: F811
    with moto_s3(MIRROR) as endpoint:
        _upload_s3(endpoint, bucket_layout / "Breakout" / "1" / "replay_logs", range(1), public=False)
        source = FsspecSource(S3_URL, {"endpoint_url": endpoint, "anon": True})
        with pytest.raises(SourceRefusedError) as info:
            fetch_checkpoint(source, "Breakout", 1, 0, tmp_path / "d", progress=False)
    message = str(info.value)
    assert message.startswith(f"s3://{MIRROR}/dqn/Breakout/1/replay_logs/$store$_observation_ckpt.0.gz: "
                              "the source refused access (HTTP 403).")
    assert "source.kind" in message and "'https'" in message and "'local'" in message and "'demo'" in message
    assert "replay bucket" not in message  # that note is for the public bucket only
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_gcs_emulator_through_gcsfs_with_a_cut(bucket_layout: Path, tmp_path: Path) -> None:  # noqa: F811
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    with gcs_emulator(GCS_BUCKET) as endpoint:
        for n in range(3):
            for name in checkpoint_files(n):
                upload(endpoint, GCS_BUCKET, f"dqn/Breakout/1/replay_logs/{name}", (src / name).read_bytes())
        proxy = CuttingProxy(int(endpoint.rsplit(":", 1)[1]), cut_after=100_000, across_connections=True)
        source = source_from_config({"kind": "fsspec",
                                     "url": f"gs://{GCS_BUCKET}/dqn/{{game}}/{{run}}/replay_logs/{{name}}",
                                     "storage_options": {"endpoint_url": f"http://127.0.0.1:{proxy.port}",
                                                         "token": "anon"}})
        assert isinstance(source, FsspecSource) and source.list_checkpoints("Breakout", 1) == [0, 1, 2]
        source.block_size = 1 << 16
        try:
            record = fetch_checkpoint(source, "Breakout", 1, 2, tmp_path / "dest", workers=1,
                                      backoff=0.01, progress=False)
        finally:
            proxy.close()
    assert proxy.cuts == 1
    _same_files(src, tmp_path / "dest", 2)
    entry = record["files"][checkpoint_files(2)[0]]
    assert entry["checked"] == ["size", "md5", "crc32c", "gzip"]
    assert entry["location"] == f"gs://{GCS_BUCKET}/dqn/Breakout/1/replay_logs/$store$_observation_ckpt.2.gz"


def test_file_url_resumes_and_lists(bucket_layout: Path, tmp_path: Path) -> None:  # noqa: F811
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    source = FsspecSource(f"file://{bucket_layout}/{{game}}/{{run}}/replay_logs/{{name}}")
    assert source.list_checkpoints("Breakout", 1) == [0, 1, 2]
    assert source.list_checkpoints("Breakout", 4) == []
    obs = checkpoint_files(1)[0]
    dest = tmp_path / "dest"
    (dest / STAGING).mkdir(parents=True)
    (dest / STAGING / f"{obs}.part").write_bytes((src / obs).read_bytes()[:1000])
    source = RecordingSource(source.template)
    record = fetch_checkpoint(source, "Breakout", 1, 1, dest, progress=False)
    _same_files(src, dest, 1)
    assert [have for name, have in source.starts if name == obs] == [1000]  # resumed once, and right
    assert record["files"][obs]["checked"] == ["size", "gzip"]  # a file system gives no checksum


def test_https_url_through_fsspec_probes_for_checkpoints(bucket_layout: Path, tmp_path: Path) -> None:  # noqa: F811
    server, url = serve_folder(bucket_layout)
    try:
        source = FsspecSource(url + "/{game}/{run}/replay_logs/{name}")
        assert source.list_checkpoints("Breakout", 1) == [0, 1, 2]
        fetch_checkpoint(source, "Breakout", 1, 0, tmp_path / "dest", progress=False)
    finally:
        server.shutdown()
    _same_files(bucket_layout / "Breakout" / "1" / "replay_logs", tmp_path / "dest", 0)


class _FakeFs:
    """Stands in for a backend: `info` answers or raises what it was given."""

    protocol = ("s3", "s3a")

    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer

    def invalidate_cache(self, path: str) -> None:
        pass

    def info(self, path: str) -> dict[str, Any]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _stat_with(answer: dict[str, Any] | Exception) -> RemoteFile:
    source = FsspecSource(S3_URL)
    source.filesystem = lambda url: (_FakeFs(answer), url)  # type: ignore[method-assign]
    return source.stat("Breakout", 1, "add_count_ckpt.0.gz")


def test_only_an_etag_that_looks_like_an_md5_is_used() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    remote = _stat_with({"type": "file", "size": 5, "ETag": f'"{md5}"'})
    assert remote.md5 == md5 and remote.md5_origin.startswith("the source's ETag (the md5 of an object")
    assert _stat_with({"type": "file", "size": 5, "ETag": f'"{md5}-3"'}).md5 is None  # multipart
    assert _stat_with({"type": "file", "size": 5}).md5 is None


def _forbidden_cause() -> Exception:
    """fsspec's http backend: a 403 raised as FileNotFoundError from aiohttp's error."""
    import aiohttp

    try:
        raise FileNotFoundError("https://h/x") from aiohttp.ClientResponseError(
            None, (), status=403, message="Forbidden")  # type: ignore[arg-type]
    except FileNotFoundError as err:
        return err


def _gcsfs_error(code: int) -> Exception:
    from gcsfs.retry import HttpError

    return HttpError({"code": code, "message": "Anonymous caller does not have access"})


@pytest.mark.parametrize("error, expected, message", [
    (PermissionError("Forbidden"), SourceRefusedError, r"refused access \(permission denied\)\. Alternatives: .*'https'"),
    (OSError("Forbidden: b/atari/o/x"), SourceRefusedError, r"refused access \(HTTP 403\)"),  # gcsfs's 403
    (_gcsfs_error(401), SourceRefusedError, r"refused access \(HTTP 401\)"),
    (_forbidden_cause(), SourceRefusedError, r"refused access \(HTTP 403\)"),
    (FileNotFoundError("x"), SourceMissingError, r"add_count_ckpt\.0\.gz: no such object$"),
    (_gcsfs_error(503), TransferCut, r"asking for its size failed \(HttpError"),
    (ConnectionResetError("reset"), TransferCut, r"asking for its size failed"),
    (ValueError("Bad Request: invalid bucket"), SourceError, r"asking for its size failed \(ValueError: Bad Request"),
])
def test_backend_errors_map_to_ours(error: Exception, expected: type[Exception], message: str) -> None:
    with pytest.raises(expected, match=message) as info:
        _stat_with(error)
    assert str(info.value).startswith(f"s3://{MIRROR}/dqn/Breakout/1/replay_logs/add_count_ckpt.0.gz: ")
    if expected is SourceError:
        assert type(info.value) is SourceError


def test_the_public_bucket_through_fsspec_keeps_the_2025_note() -> None:
    source = FsspecSource("gs://atari-replay-datasets/dqn/{game}/{run}/replay_logs/{name}", {"token": "anon"})
    assert source.refusal_hint.startswith("The public DQN replay bucket has refused even anonymous reads")
    assert source.describe()["storage_options"] == {"token": "anon"}
    assert FsspecSource(S3_URL, {"key": "AKIA", "client_kwargs": {"region_name": "x", "aws_secret_access_key": "s"}}
                        ).describe()["storage_options"] == {"client_kwargs": {"region_name": "x"}}


@pytest.mark.parametrize("template, message", [
    ("s3://b/{game}/{run}/replay_logs/{nmae}", r"uses \{nmae\}; it may use only"),
    ("s3://b/{game}/{run}/replay_logs/", r"has no \{name\}"),
    ("/data/{game}/{run}/replay_logs/{name}", r"names no protocol; write an fsspec URL"),
    ("nosuchfs://b/{game}/{name}", r"uses protocol 'nosuchfs', which fsspec does not know"),
])
def test_fsspec_url_template_is_checked(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FsspecSource(template)
