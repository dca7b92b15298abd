"""Fetched checkpoints that the conversion refuses are removed, so a rerun fetches them again once
the source is mended, as a fetched file that fails the fetch's checks is (issue 28 item 10a)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fdt.replay.dopamine import (
    ReplayFormatError,
    checkpoint_files,
    file_name,
    invalid_range,
    write_npy_gz,
)
from fdt.replay.refused import discard_refused_copies
from fdt.replay.sources import LocalSource, fetch_checkpoint
from fdt.replay.store import convert_checkpoint


def _convert_fetched(fetched: Path, out: Path, source: LocalSource) -> dict:
    """What convert_replay.py does with checkpoint 3, the run's last, and its neighbour 2."""
    try:
        return convert_checkpoint(fetched, 3, out, with_previous=True, progress=False)
    except ReplayFormatError as err:
        raise discard_refused_copies(fetched, [2, 3], err, source.describe()) from None


def test_a_last_file_with_both_counters_moved_forward_is_fetched_again_once_mended(
        episode_run: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(episode_run, mirror / "Pong" / "1" / "replay_logs")
    source = LocalSource(mirror)
    served = mirror / "Pong" / "1" / "replay_logs"
    # Both counters of the last file moved from cursor 4 to 6: each file alone looks right.
    write_npy_gz(served / file_name("add_count", 3), np.array(6, dtype=np.int64))
    write_npy_gz(served / file_name("invalid_range", 3), invalid_range(6, 10))
    fetched = tmp_path / "resources" / "replay_logs"
    for number in (2, 3):
        fetch_checkpoint(source, "Pong", 1, number, fetched, progress=False)

    with pytest.raises(ReplayFormatError) as info:
        _convert_fetched(fetched, tmp_path / "buffer3.parquet", source)
    assert str(info.value).startswith(f"{fetched / file_name('add_count', 3)}: add_count 6 puts the cursor at 6")
    assert str(info.value).endswith(
        f"(the files in {fetched} were fetched from {{'kind': 'local', 'path': '{mirror}'}}; the copies "
        "of checkpoint 3 were removed, so the next run fetches them again: rerun once the source is mended)")
    assert "delete" not in str(info.value)
    assert sorted(p.name for p in fetched.iterdir()) == sorted([".partial", *checkpoint_files(2)])

    for name in ("add_count", "invalid_range"):  # the source mended
        shutil.copy(episode_run / file_name(name, 3), served / file_name(name, 3))
    fetch_checkpoint(source, "Pong", 1, 3, fetched, progress=False)
    summary = _convert_fetched(fetched, tmp_path / "buffer3.parquet", source)
    assert summary["counts"]["transitions"] == 2  # F's two steps, as in the run never shifted


def test_a_refusal_that_names_no_file_removes_every_checkpoint_read(tmp_path: Path) -> None:
    for number in (1, 2):
        for name in checkpoint_files(number):
            (tmp_path / name).write_bytes(b"x")
    error = ReplayFormatError(f"{tmp_path}: checkpoint 1 has no episode end")
    raised = discard_refused_copies(tmp_path, [1, 2], error, {"kind": "demo"})
    assert str(raised) == (f"{tmp_path}: checkpoint 1 has no episode end (the files in {tmp_path} were "
                           "fetched from {'kind': 'demo'}; the copies of checkpoints 1-2 were removed, so "
                           "the next run fetches them again: rerun once the source is mended)")
    assert list(tmp_path.iterdir()) == []
