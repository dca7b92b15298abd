"""Parquet conversion and the reader API, on the hand-built run of conftest.episode_run."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fdt.replay.dopamine import (
    FILE_KINDS,
    FRAME_SHAPE,
    CircularReplayWriter,
    ReplayFormatError,
    episode_transitions,
    file_name,
    load_checkpoint,
    read_npy_gz,
)
from fdt.replay.store import (
    LIGHT_COLUMNS,
    METADATA_KEY,
    SCHEMA,
    ReplayStore,
    StoreError,
    convert_checkpoint,
    frames_array,
    read_summary,
    run_summary,
)
from tests.conftest import convert_run, frame_of


def test_rows_columns_and_frames(episode_run: Path, tmp_path: Path) -> None:
    path = convert_run(episode_run, tmp_path)[2]
    table = pq.read_table(path)
    # File-slot order: slot 9 (index 19) is the file's last row although it is its earliest.
    assert table["slot"].to_pylist() == [0, 1, 2, 6, 7, 8, 9]
    assert table["replay_index"].to_pylist() == [20, 21, 22, 26, 27, 28, 19]
    assert table["buffer"].to_pylist() == [2] * 7
    assert table["episode_id"].to_pylist() == [17, 17, 17, 26, 26, 26, 17]
    assert table["step"].to_pylist() == [3, 4, 5, 0, 1, 2, 2]
    assert table["terminal"].to_pylist() == [False, False, True, False, False, True, False]
    assert table["episode_length"].to_pylist() == [6, 6, 6, 3, 3, 3, 6]
    transition = {20: 11, 21: 12, 22: 13, 26: 14, 27: 15, 28: 16, 19: 10}
    for index, frame in zip(table["replay_index"].to_pylist(), table["frame"].to_pylist()):
        assert frame == frame_of(transition[index]).tobytes()


def test_store_frames_and_stacks_cross_files(episode_run: Path, tmp_path: Path) -> None:
    store = ReplayStore(convert_run(episode_run, tmp_path, row_group_rows=4))
    assert len(store) == 4 + 4 + 6 + 3 + 2
    assert store.replay_index.tolist() == [3, 4, 5, 6, 10, 11, 12, 13, 17, 18, 19, 20, 21, 22,
                                           26, 27, 28, 32, 33]
    zero = np.zeros((84, 84), np.uint8)
    # D2 (index 19, checkpoint 2) stacks D0, D1 from checkpoint 1 with itself: [0, D0, D1, D2].
    stack = store.stacks([19])[0]
    assert [np.array_equal(stack[k], f) for k, f in enumerate([zero, frame_of(8), frame_of(9), frame_of(10)])] == [True] * 4
    # An episode's first state is zeros then its first frame; B1 = [0, 0, B0, B1].
    first, second = store.stacks([10, 11])
    assert np.array_equal(first[:3], np.zeros((3, 84, 84))) and np.array_equal(first[3], frame_of(4))
    assert np.array_equal(second[2], frame_of(4)) and np.array_equal(second[3], frame_of(5))
    # Stacks never reach back into the previous episode: E0 follows D5 but starts from zeros.
    assert not store.stacks([26])[0, :3].any()
    assert np.array_equal(store.frames([33, 3]), np.stack([frame_of(18), frame_of(0)]))
    with pytest.raises(StoreError, match="replay index 7 is not a transition"):
        store.frames([7])


def test_summary_counts_and_source_checksums(episode_run: Path, tmp_path: Path) -> None:
    paths = convert_run(episode_run, tmp_path)
    summary = read_summary(paths[3])
    assert (summary["buffer"], summary["capacity"], summary["add_count"], summary["cursor"]) == (3, 10, 4, 4)
    assert summary["partial"] is True
    assert summary["counts"]["transitions"] == 2 and summary["counts"]["unused_slots"] == 5
    for kind in ("observation", "action", "add_count"):
        name = file_name(kind, 3)
        data = (episode_run / name).read_bytes()
        assert summary["sources"][name] == {"size": len(data), "md5": hashlib.md5(data).hexdigest()}
    totals = run_summary(paths)["totals"]
    assert totals["transitions"] == 19
    assert totals["padding_rows"] == 5 + 4 + 3 + 3 == 15
    assert totals["rows_new"] == 34  # every row of the run, counted once
    # A, B, D (across files 1 and 2), E and the open F: five episodes, four of them complete.
    assert (totals["episodes"], totals["episodes_complete"]) == (5, 4)
    assert totals["episodes_ending_here"] == 4


def test_store_rejects_a_file_given_twice(episode_run: Path, tmp_path: Path) -> None:
    path = convert_run(episode_run, tmp_path)[1]
    with pytest.raises(StoreError, match="appears twice"):
        ReplayStore([path, path])


def test_failed_conversion_leaves_nothing(episode_run: Path, tmp_path: Path) -> None:
    data = (episode_run / file_name("observation", 1)).read_bytes()
    (episode_run / file_name("observation", 1)).write_bytes(data[: len(data) - 40])
    out = tmp_path / "out" / "buffer1.parquet"
    with pytest.raises(ReplayFormatError, match="observation_ckpt.1.gz"):
        convert_checkpoint(episode_run, 1, out, progress=False)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_round_trip_of_random_frames(tmp_path: Path) -> None:
    """Writer -> converter -> reader returns every stored frame exactly."""
    from fdt.replay.dopamine import write_checkpoint

    rng = np.random.default_rng(3)
    capacity = 300
    observation = rng.integers(0, 256, (capacity, 84, 84), dtype=np.uint8)
    terminal = np.zeros(capacity, np.uint8)
    terminal[[50, 120, 200]] = 1
    padding = [0, 1, 2, 51, 52, 53, 121, 122, 123, 201, 202, 203]
    observation[padding] = 0
    action = rng.integers(0, 4, capacity)
    action[padding] = 0  # padding rows are all zero, as Dopamine writes them
    write_checkpoint(tmp_path, 0, observation=observation, action=action,
                     reward=np.zeros(capacity), terminal=terminal, add_count=capacity - 1)
    out = tmp_path / "b0.parquet"
    convert_checkpoint(tmp_path, 0, out, row_group_rows=64, progress=False)
    store = ReplayStore([out])
    expected = [i for i in range(capacity - 1) if i not in padding]
    assert store.replay_index.tolist() == expected
    assert np.array_equal(store.frames(expected), observation[expected])
    assert pq.ParquetFile(out).num_row_groups == 5


@pytest.fixture
def random_run(tmp_path: Path) -> Path:
    """Capacity 50, random frames, 16 episodes of 1-19 transitions and an open one: checkpoints
    0-3 and a partial last (stale slots), with padding everywhere."""
    rng = np.random.default_rng(7)
    writer = CircularReplayWriter(tmp_path / "logs", 50, compresslevel=1)
    for length in [*rng.integers(1, 20, 16).tolist(), 6]:
        for step in range(length):
            writer.add(rng.integers(1, 256, FRAME_SHAPE, dtype=np.uint8), int(rng.integers(4)),
                       float(rng.integers(-1, 2)), step == length - 1 and writer.add_count < 230)
    writer.close()
    assert writer.snapshots[-1] == 4 and load_checkpoint(writer.directory, 4).is_partial
    return writer.directory


def reference_conversion(run: Path, number: int, out: Path, *, with_previous: bool,
                         with_following: bool, row_group_rows: int) -> None:
    """The conversion done plainly: the whole observation in memory, frames picked by slot, a
    row group for each `row_group_rows` slots of the file that hold transitions."""
    target = load_checkpoint(run, number)
    transitions = episode_transitions(
        target, load_checkpoint(run, number - 1) if with_previous else None,
        load_checkpoint(run, number + 1) if with_following else None, episode_cap=10)
    order = np.argsort(transitions.slot)
    slots = transitions.slot[order]
    columns = {name: getattr(transitions, name)[order] for name in LIGHT_COLUMNS
               if name not in ("buffer", "slot")}
    columns.update(slot=slots.astype(np.int32), buffer=np.full(len(slots), number, np.int32))
    frames = read_npy_gz(target.observation_path)[slots]
    table = pa.Table.from_arrays([*(pa.array(columns[name], SCHEMA.field(name).type)
                                    for name in LIGHT_COLUMNS), frames_array(frames)], schema=SCHEMA)
    with pq.ParquetWriter(out, SCHEMA, compression="zstd", compression_level=3,
                          use_dictionary=LIGHT_COLUMNS, write_statistics=LIGHT_COLUMNS) as writer:
        for first in range(0, target.capacity, row_group_rows):
            lo, hi = np.searchsorted(slots, [first, first + row_group_rows])
            if hi > lo:
                writer.write_table(table.slice(lo, hi - lo), row_group_size=row_group_rows)


@pytest.mark.parametrize("row_group_rows", [1, 3, 7, 64])
def test_conversion_equals_a_plain_reference(random_run: Path, tmp_path: Path,
                                             row_group_rows: int) -> None:
    """Rows, columns, frames, row groups and footer equal a plain conversion's, for row groups
    smaller than an episode's padding, in between, and larger than the file."""
    for number in range(5):
        neighbours = {"with_previous": number > 0, "with_following": number < 4}
        out, reference = tmp_path / f"b{number}.parquet", tmp_path / f"r{number}.parquet"
        summary = convert_checkpoint(random_run, number, out, episode_cap=10,
                                     row_group_rows=row_group_rows, progress=False, **neighbours)
        reference_conversion(random_run, number, reference, row_group_rows=row_group_rows,
                             **neighbours)
        assert pq.read_table(out).equals(pq.read_table(reference))
        got, want = pq.ParquetFile(out).metadata, pq.ParquetFile(reference).metadata
        assert ([got.row_group(g).num_rows for g in range(got.num_row_groups)]
                == [want.row_group(g).num_rows for g in range(want.num_row_groups)])
        footer = dict(got.metadata)
        assert json.loads(footer.pop(METADATA_KEY.encode())) == summary
        assert footer == dict(want.metadata)  # the Arrow schema
        target = load_checkpoint(random_run, number)
        assert summary["counts"]["transitions"] == got.num_rows > 0
        assert (summary["add_count"], summary["partial"]) == (target.add_count, number == 4)
        assert summary["sources"] == {
            file_name(kind, number): {
                "size": (random_run / file_name(kind, number)).stat().st_size,
                "md5": hashlib.md5((random_run / file_name(kind, number)).read_bytes()).hexdigest()}
            for kind in FILE_KINDS}


def test_a_failed_write_stops_the_inflating_thread(episode_run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail_on_the_second(self: pq.ParquetWriter, table: pa.Table, **kwargs: object) -> None:
        calls.append(len(table))
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_on_the_second)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(episode_run, 1, tmp_path / "b1.parquet", row_group_rows=2, progress=False)
    assert not [t for t in threading.enumerate() if t.name == "inflate"]
    assert not (tmp_path / "b1.parquet").exists()
