"""Small replay runs we write ourselves, with layouts computed by hand in the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fdt.replay.dopamine import FRAME_SHAPE, CircularReplayWriter
from fdt.replay.store import convert_checkpoint

REPO = Path(__file__).resolve().parent.parent


def frame_of(value: int) -> np.ndarray:
    """A frame whose every pixel says which transition it belongs to (never 0)."""
    return np.full(FRAME_SHAPE, value % 250 + 1, dtype=np.uint8)


def write_episodes(directory: Path, capacity: int, lengths: list[int], *, open_tail: int = 0,
                   rewards: dict[int, float] | None = None) -> list[int]:
    """Log episodes of the given lengths through Dopamine's writer; return the snapshots.

    Transition t (0-based over the whole run) gets frame_of(t), action t % 4 and reward
    rewards.get(t, 0). `open_tail` more transitions begin an episode that never ends.
    """
    writer = CircularReplayWriter(directory, capacity, compresslevel=1)
    t = 0
    for length, ends in [*((n, True) for n in lengths), (open_tail, False)]:
        for step in range(length):
            writer.add(frame_of(t), t % 4, (rewards or {}).get(t, 0.0), ends and step == length - 1)
            t += 1
    writer.close()
    return writer.snapshots


@pytest.fixture
def episode_run(tmp_path: Path) -> Path:
    """Capacity 10; episodes A, B, D, E of 4, 4, 6, 3 transitions, then F still open (2).

        replay index  0-2 | 3-6 | 7-9 | 10-13 | 14-16 | 17-22 | 23-25 | 26-28 | 29-31 | 32-33
        row           pad |  A  | pad |   B   |  pad  |   D   |  pad  |   E   |  pad  |  F
        transition t      | 0-3 |     |  4-7  |       | 8-13  |       | 14-16 |       | 17-18
    Snapshots (each holds slot 9 first, then slots 0..): checkpoint 0 at add_count 9 (indices
    0-8 in slots 0-8, slot 9 never written), 1 at 19 (9-18), 2 at 29 (19-28), and checkpoint 3,
    the run's last, at 34: cursor 4, indices 29-33 in slots 9, 0-3, slots 4-8 stale.
    D crosses from checkpoint 1 into 2. Rewards: +1 at t=1 (A), +1 at t=9 and t=11 (D).
    """
    folder = tmp_path / "replay_logs"
    snapshots = write_episodes(folder, 10, [4, 4, 6, 3], open_tail=2,
                               rewards={1: 1.0, 9: 1.0, 11: 1.0})
    assert snapshots == [0, 1, 2, 3]
    return folder


def convert_run(run: Path, out: Path, numbers: range = range(4), row_group_rows: int = 64) -> list[Path]:
    """Convert checkpoints of a run written by `write_episodes`, each with its neighbours."""
    paths = []
    for n in numbers:
        path = out / f"buffer{n}.parquet"
        convert_checkpoint(run, n, path, with_previous=n > numbers[0], with_following=n < numbers[-1],
                           episode_cap=100, row_group_rows=row_group_rows, progress=False)
        paths.append(path)
    return paths


@pytest.fixture
def episode_store(episode_run: Path, tmp_path: Path) -> list[Path]:
    """`episode_run` converted to Parquet, checkpoints 0-3 (row groups of 4 rows)."""
    return convert_run(episode_run, tmp_path / "store", row_group_rows=4)
