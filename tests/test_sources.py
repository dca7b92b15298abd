"""Sources on loopback only: a local folder, the GCS emulator, an https mirror, refusals."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from fdt.replay.dopamine import checkpoint_files, load_checkpoint
from fdt.replay.sources import (
    STAGING,
    GcsSource,
    HttpsSource,
    LocalSource,
    SourceError,
    SourceMissingError,
    SourceRefusedError,
    fetch_checkpoint,
    merge_manifest,
)
from tests.conftest import write_episodes
from tests.loopback import CuttingProxy, gcs_emulator, serve_folder, upload

BUCKET = "atari-replay-datasets"


@pytest.fixture
def bucket_layout(tmp_path: Path) -> Path:
    """{root}/Breakout/1/replay_logs with checkpoints 0-2; frames random so they barely compress."""
    root = tmp_path / "bucket"
    folder = root / "Breakout" / "1" / "replay_logs"
    write_episodes(folder, 64, [30, 25, 40, 20, 30], open_tail=10)
    rng = np.random.default_rng(0)
    from fdt.replay.dopamine import file_name, read_npy_gz, write_npy_gz
    for n in range(3):
        obs = read_npy_gz(folder / file_name("observation", n))
        obs[obs > 0] = rng.integers(1, 256, int((obs > 0).sum()), dtype=np.uint8)
        write_npy_gz(folder / file_name("observation", n), obs, compresslevel=1)
    return root


def _same_files(src: Path, dest: Path, number: int) -> None:
    for name in checkpoint_files(number):
        assert (dest / name).read_bytes() == (src / name).read_bytes(), name
    assert not any((dest / STAGING).iterdir())  # left empty (other fetches may share it)


def test_local_fetch_verifies_and_resumes(bucket_layout: Path, tmp_path: Path) -> None:
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    dest = tmp_path / "dest"
    staging = dest / STAGING
    staging.mkdir(parents=True)
    obs = checkpoint_files(1)[0]
    data = (src / obs).read_bytes()
    (staging / f"{obs}.part").write_bytes(data[:1000])  # an interrupted copy
    (staging / checkpoint_files(1)[1]).write_bytes((src / checkpoint_files(1)[1]).read_bytes())  # a finished one
    record = fetch_checkpoint(LocalSource(bucket_layout), "Breakout", 1, 1, dest, progress=False)
    _same_files(src, dest, 1)
    assert record["files"][checkpoint_files(1)[1]]["reused"] is True
    assert "gzip" in record["files"][obs]["checked"]
    assert load_checkpoint(dest, 1).add_count == 127


def test_local_missing_checkpoint_names_the_ones_there(bucket_layout: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceMissingError, match=r"checkpoint 50 of Breakout run 1 is not available .*checkpoints 0-2"):
        fetch_checkpoint(LocalSource(bucket_layout), "Breakout", 1, 50, tmp_path / "d", progress=False)
    assert not (tmp_path / "d" / STAGING).exists()


@pytest.mark.slow
def test_gcs_emulator_download_with_a_cut_that_resumes(bucket_layout: Path, tmp_path: Path) -> None:
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    with gcs_emulator(BUCKET) as endpoint:
        for n in range(3):
            for name in checkpoint_files(n):
                upload(endpoint, BUCKET, f"dqn/Breakout/1/replay_logs/{name}", (src / name).read_bytes())
        assert GcsSource(BUCKET, "dqn", endpoint).list_checkpoints("Breakout", 1) == [0, 1, 2]

        observation_size = (src / checkpoint_files(2)[0]).stat().st_size
        assert observation_size > 200_000
        proxy = CuttingProxy(int(endpoint.rsplit(":", 1)[1]), cut_after=100_000)
        source = GcsSource(BUCKET, "dqn", f"http://127.0.0.1:{proxy.port}")
        record = fetch_checkpoint(source, "Breakout", 1, 2, tmp_path / "dest", workers=1,
                                  backoff=0.01, progress=False)
        proxy.close()
    assert proxy.cuts == 1
    assert any("alt=media" in r and "Range: bytes=" in r for r in proxy.requests)
    _same_files(src, tmp_path / "dest", 2)
    entry = record["files"][checkpoint_files(2)[0]]
    assert entry["checked"] == ["size", "md5", "crc32c", "gzip"]
    assert entry["location"] == f"gs://{BUCKET}/dqn/Breakout/1/replay_logs/$store$_observation_ckpt.2.gz"
    manifest = merge_manifest([record])
    assert manifest["checkpoints"] == [2] and len(manifest["files"]) == 6


@pytest.mark.slow
def test_gcs_missing_object_lists_what_exists(bucket_layout: Path, tmp_path: Path) -> None:
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    with gcs_emulator(BUCKET) as endpoint:
        for name in checkpoint_files(0):
            upload(endpoint, BUCKET, f"dqn/Breakout/1/replay_logs/{name}", (src / name).read_bytes())
        with pytest.raises(SourceMissingError, match=r"checkpoint 1 of Breakout run 1 .*checkpoints 0\)"):
            fetch_checkpoint(GcsSource(BUCKET, "dqn", endpoint), "Breakout", 1, 1, tmp_path, progress=False)


def test_refused_bucket_names_the_alternatives(tmp_path: Path) -> None:
    server, url = serve_folder(tmp_path, status=403)
    try:
        with pytest.raises(SourceRefusedError) as info:
            fetch_checkpoint(GcsSource(BUCKET, "dqn", url), "Breakout", 1, 0, tmp_path / "d", progress=False)
    finally:
        server.shutdown()
    message = str(info.value)
    assert "gs://atari-replay-datasets/dqn/Breakout/1/replay_logs/$store$_observation_ckpt.0.gz" in message
    assert "HTTP 403" in message and "source.kind" in message
    assert "'https'" in message and "'local'" in message and "'demo'" in message
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_https_mirror_percent_encodes_and_verifies_md5(bucket_layout: Path, tmp_path: Path) -> None:
    server, url = serve_folder(bucket_layout)
    try:
        source = HttpsSource(url + "/{game}/{run}/replay_logs/{name}")
        assert source.location("Breakout", 1, "$store$_action_ckpt.0.gz").endswith("/%24store%24_action_ckpt.0.gz")
        record = fetch_checkpoint(source, "Breakout", 1, 0, tmp_path / "dest", progress=False)
        assert source.list_checkpoints("Breakout", 1) == [0, 1, 2]
    finally:
        server.shutdown()
    _same_files(bucket_layout / "Breakout" / "1" / "replay_logs", tmp_path / "dest", 0)
    assert all(e["checked"][:2] == ["size", "md5"] for e in record["files"].values())


def test_corrupt_transfer_is_rejected_and_not_kept(bucket_layout: Path, tmp_path: Path) -> None:
    server, url = serve_folder(bucket_layout, corrupt=True)
    try:
        with pytest.raises(SourceError, match=r"md5 [0-9a-f]{32} after transfer, the source says"):
            fetch_checkpoint(HttpsSource(url + "/{game}/{run}/replay_logs/{name}"), "Breakout", 1, 0,
                             tmp_path / "dest", workers=1, progress=False)
    finally:
        server.shutdown()
    dest = tmp_path / "dest"
    assert not any(p.is_file() for p in dest.iterdir())
    assert not any(p.name.endswith(".gz") for p in (dest / STAGING).iterdir())


def test_local_gzip_damage_is_caught_at_fetch(bucket_layout: Path, tmp_path: Path) -> None:
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    name = checkpoint_files(0)[0]
    data = (src / name).read_bytes()
    (src / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"fetched, but .*truncated"):
        fetch_checkpoint(LocalSource(bucket_layout), "Breakout", 1, 0, tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest" / name).exists()


def test_partial_file_from_another_source_is_fetched_again(bucket_layout: Path, tmp_path: Path) -> None:
    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    staging = tmp_path / "dest" / STAGING
    staging.mkdir(parents=True)
    obs = checkpoint_files(0)[0]
    (staging / f"{obs}.part").write_bytes(b"\x1f\x8b" + bytes(5000))  # not this source's bytes
    fetch_checkpoint(LocalSource(bucket_layout), "Breakout", 1, 0, tmp_path / "dest", progress=False)
    _same_files(src, tmp_path / "dest", 0)


def test_checkpoint_failing_the_replay_checks_is_not_cached(bucket_layout: Path, tmp_path: Path) -> None:
    """Fetch applies conversion's checks; the message names the source and the local copy, and
    once the source is mended a rerun fetches the good files."""
    from fdt.replay.dopamine import file_name, read_npy_gz, write_npy_gz

    src = bucket_layout / "Breakout" / "1" / "replay_logs"
    name = file_name("add_count", 1)
    good = read_npy_gz(src / name)
    write_npy_gz(src / name, np.array(good + 500, dtype=np.int64))  # a gzip'd .npy that passes every per-file check
    dest = tmp_path / "dest"
    with pytest.raises(SourceError, match=rf"{src / name}: the source's files fail the checks "
                       rf"on them, so nothing was kept in {dest} .*{dest / STAGING / name}: add_count "
                       rf"{int(good) + 500} does not belong to checkpoint 1"):
        fetch_checkpoint(LocalSource(bucket_layout), "Breakout", 1, 1, dest, progress=False)
    assert not any(p.is_file() for p in dest.iterdir())
    assert not any((dest / STAGING).iterdir())
    write_npy_gz(src / name, good)
    fetch_checkpoint(LocalSource(bucket_layout), "Breakout", 1, 1, dest, progress=False)
    _same_files(src, dest, 1)
    assert load_checkpoint(dest, 1).add_count == int(good)


@pytest.mark.parametrize("template, message", [
    ("https://h/{game}/{run}/replay_logs/{nmae}", r"uses \{nmae\}; it may use only \{game\}, \{run\}, \{name\}"),
    ("https://h/{}/{run}/{name}", r"uses a positional field \{\}"),
    ("https://h/{0}/{name}", r"uses a positional field"),
    ("https://h/{game/{name}", r"is malformed"),
    ("https://h/{game}}/{name}", r"is malformed"),
    ("https://h/{game}/{run}/replay_logs/", r"has no \{name\}"),
])
def test_url_template_is_checked_before_any_request(template: str, message: str) -> None:
    from fdt.replay.sources import check_url_template

    with pytest.raises(ValueError, match=message):
        check_url_template(template)
    with pytest.raises(ValueError, match=message):
        HttpsSource(template)
    check_url_template("https://h/dqn/{game}/{run}/replay_logs/{name}?x={{literal}}")


def test_number_ranges_are_short_however_many() -> None:
    from fdt.replay.dopamine import number_ranges

    assert number_ranges([5, 0, 1, 2]) == "0-2, 5"
    assert number_ranges(range(4, 200_001)) == "4-200000"
    assert number_ranges(range(0, 200, 2), limit=3) == "0, 2, 4 and 97 more ranges"


def test_a_full_disk_while_staging_names_the_file(bucket_layout: Path, tmp_path: Path) -> None:
    """Issue 28 item 10b: the staged copy cannot be written (here it is a link to /dev/full, whose
    writes fail with ENOSPC); the error names the file and the source's, not a bare Errno 28."""
    dest = tmp_path / "dest"
    (dest / STAGING).mkdir(parents=True)
    observation = checkpoint_files(1)[0]
    part = dest / STAGING / f"{observation}.part"
    part.symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        fetch_checkpoint(LocalSource(bucket_layout), "Breakout", 1, 1, dest, workers=1, progress=False)
    location = bucket_layout / "Breakout" / "1" / "replay_logs" / observation
    assert str(raised.value) == f"[Errno 28] No space left on device while fetching {location} into: '{part}'"
    assert raised.value.errno == errno.ENOSPC
    assert not any((dest / name).exists() for name in checkpoint_files(1))  # nothing looks fetched
