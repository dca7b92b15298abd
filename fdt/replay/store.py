"""The Parquet store of replay transitions: one file per (game, run, checkpoint).

One row per real transition (padding rows are not stored; they sit in the slots no row names),
in file-slot order, so row groups cover consecutive slots. Columns: replay_index (the row's
chronological position in the run), buffer, slot, episode_id (replay index of the episode's first
transition), step, action, reward (clipped, as stored), terminal (as stored), truncated (the last
row of an episode cut by the step cap), episode_return, episode_length, episode_complete and the
84x84 frame as fixed-size binary. The footer holds the counts and the source files' checksums.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.io import atomic_path, file_digests
from fdt.replay.dopamine import (
    FILE_KINDS,
    FRAME_BYTES,
    FRAME_SHAPE,
    STACK_SIZE,
    GzipReader,
    ReplayCheckpoint,
    check_header,
    episode_transitions,
    file_name,
    load_checkpoint,
    read_npy_header,
)

METADATA_KEY = "fdt.replay"
FORMAT_VERSION = 1
SCHEMA = pa.schema([
    ("replay_index", pa.int64()),
    ("buffer", pa.int32()),
    ("slot", pa.int32()),
    ("episode_id", pa.int64()),
    ("step", pa.int32()),
    ("action", pa.int32()),
    ("reward", pa.float32()),
    ("terminal", pa.bool_()),
    ("truncated", pa.bool_()),
    ("episode_return", pa.float32()),
    ("episode_length", pa.int32()),
    ("episode_complete", pa.bool_()),
    ("frame", pa.binary(FRAME_BYTES)),
])
LIGHT_COLUMNS = [name for name in SCHEMA.names if name != "frame"]
# How the writer pages the frames (measured in benchmarks/convert_buffer.py, 1M rows): the
# default batch of 1,024 values grows each page to 7 MB in a buffer that reallocates as it
# fills; 256 frames (1.8 MB) avoid that, and version-2 pages compress the values without first
# copying them behind the levels. Together the writer takes ~0.8x the time, files ~2.8% larger.
FRAME_PAGE_OPTIONS: dict[str, Any] = {"write_batch_size": 256, "data_page_version": "2.0"}


class StoreError(ValueError):
    pass


def frames_array(frames: np.ndarray) -> pa.FixedSizeBinaryArray:
    """(n, 84, 84) uint8 -> Arrow fixed-size binary, without copying."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(FRAME_BYTES), len(frames),
                                                [None, pa.py_buffer(frames)])


def frames_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow fixed-size binary frames -> (n, 84, 84) uint8."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    data = np.frombuffer(column.buffers()[1], dtype=np.uint8,
                         count=len(column) * FRAME_BYTES, offset=column.offset * FRAME_BYTES)
    return data.reshape(len(column), *FRAME_SHAPE)


@dataclass(frozen=True)
class _RowGroup:
    """Rows lo:hi of the slot-sorted transitions, their frames at the head of `buffer`; the
    observation file has been read up to slot `slot_end`."""

    lo: int
    hi: int
    buffer: np.ndarray
    slot_end: int

    @property
    def frames(self) -> np.ndarray:
        return self.buffer[:self.hi - self.lo]


def _slot_runs(slots: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive values in sorted, distinct `slots`."""
    if not len(slots):
        return []
    breaks = np.flatnonzero(np.diff(slots) != 1) + 1
    starts = slots[np.concatenate([[0], breaks])]
    ends = slots[np.concatenate([breaks - 1, [len(slots) - 1]])] + 1
    return list(zip(starts.tolist(), ends.tolist()))


def _row_groups_in_thread(reader: GzipReader, slots: np.ndarray, capacity: int,
                          group_slots: int, buffers: int = 3) -> Iterator[_RowGroup]:
    """The frames of the transitions (`slots`, sorted), `group_slots` slots of the file at a time.

    A second thread inflates (isal and zlib release the GIL) straight into the row group's frame
    buffer: a transition's frames are runs of consecutive slots between padding (and stale) rows,
    so each run is read into place and the rows between are skipped, never copied. Frame buffers
    are recycled once the consumer asks for the next group, i.e. once it has written this one,
    so memory stays at `buffers` groups however large the file.
    """
    header = read_npy_header(reader)
    check_header(reader.path, header, np.uint8, (capacity, *FRAME_SHAPE))
    free: queue.Queue[np.ndarray | None] = queue.Queue()
    for _ in range(buffers):
        free.put(np.empty((group_slots, *FRAME_SHAPE), dtype=np.uint8))
    ready: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for first in range(0, capacity, group_slots):
                if stop.is_set():
                    return
                last = min(first + group_slots, capacity)
                lo, hi = (int(i) for i in np.searchsorted(slots, [first, last]))
                if hi == lo:  # no transition here: nothing to write
                    reader.skip((last - first) * FRAME_BYTES)
                    continue
                frames = free.get()
                if frames is None:  # the consumer has stopped
                    return
                at, row = first, 0
                for start, end in _slot_runs(slots[lo:hi]):
                    reader.skip((start - at) * FRAME_BYTES)
                    reader.readinto(memoryview(frames[row:row + end - start].reshape(-1)))
                    at, row = end, row + end - start
                reader.skip((last - at) * FRAME_BYTES)
                ready.put(_RowGroup(lo, hi, frames, last))
            reader.expect_end()
            ready.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            ready.put(err)

    worker = threading.Thread(target=produce, name="inflate", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
            free.put(item.buffer)
    finally:
        stop.set()
        free.put(None)  # wakes a producer waiting for a buffer
        worker.join()


def _table(columns: dict[str, np.ndarray], frames: np.ndarray) -> pa.Table:
    arrays = [pa.array(columns[name], type=SCHEMA.field(name).type) for name in LIGHT_COLUMNS]
    return pa.Table.from_arrays([*arrays, frames_array(frames)], schema=SCHEMA)


def convert_checkpoint(replay_dir: str | Path, number: int, out_path: str | Path, *,
                       with_previous: bool = False, with_following: bool = False,
                       episode_cap: int = 27_000, row_group_rows: int = 4096, zstd_level: int = 1,
                       provenance: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Convert checkpoint `number` of a Dopamine replay folder to one Parquet file.

    `with_previous` / `with_following` use the neighbouring checkpoints (same folder) to place
    the episodes that cross the file's edges. The observation file is streamed once; the output
    is written under a temporary name and renamed when complete. Returns the summary stored in
    the file's footer.
    """
    replay_dir = Path(replay_dir)
    target = load_checkpoint(replay_dir, number)
    previous = load_checkpoint(replay_dir, number - 1) if with_previous else None
    following = load_checkpoint(replay_dir, number + 1) if with_following else None
    transitions = episode_transitions(target, previous, following, episode_cap)

    order = np.argsort(transitions.slot, kind="stable")
    slot_sorted = transitions.slot[order]
    columns = {name: getattr(transitions, name)[order] for name in LIGHT_COLUMNS
               if name not in ("buffer", "slot")}
    columns["slot"] = slot_sorted.astype(np.int32)
    columns["buffer"] = np.full(len(order), number, dtype=np.int32)

    summary = _summary(target, transitions.counts, episode_cap, provenance)
    bar = tqdm(total=target.capacity, unit="slot", unit_scale=True, mininterval=1.0,
               desc=f"convert {replay_dir.name}/{number}", disable=not progress)
    with atomic_path(out_path) as tmp, GzipReader(target.observation_path, hash_raw=True) as reader:
        writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd", compression_level=zstd_level,
                                  use_dictionary=LIGHT_COLUMNS, write_statistics=LIGHT_COLUMNS,
                                  **FRAME_PAGE_OPTIONS)
        try:
            read = 0
            for group in _row_groups_in_thread(reader, slot_sorted, target.capacity, row_group_rows):
                light = {name: values[group.lo:group.hi] for name, values in columns.items()}
                writer.write_table(_table(light, group.frames), row_group_size=row_group_rows)
                bar.update(group.slot_end - read)
                read = group.slot_end
            bar.update(target.capacity - read)
            summary["sources"] = _source_digests(replay_dir, number, reader)
            writer.add_key_value_metadata({METADATA_KEY: json.dumps(summary, sort_keys=True)})
        finally:
            writer.close()
            bar.close()
    return summary


def _summary(target: ReplayCheckpoint, counts: dict[str, int], episode_cap: int,
             provenance: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "buffer": target.number,
        "capacity": target.capacity,
        "add_count": target.add_count,
        "cursor": target.cursor,
        "partial": target.is_partial,
        "episode_cap": episode_cap,
        "counts": counts,
        **(provenance or {}),
    }


def _source_digests(replay_dir: Path, number: int, observation: GzipReader) -> dict[str, Any]:
    """md5 and size of the six source files; the observation's md5 was taken while streaming."""
    digests = {}
    for kind in FILE_KINDS:
        path = replay_dir / file_name(kind, number)
        if kind == "observation":
            assert observation.md5 is not None
            digests[path.name] = {"size": observation.raw_bytes, "md5": observation.md5.hexdigest()}
        else:
            digests[path.name] = {"size": path.stat().st_size, "md5": file_digests(path)[0]}
    return digests


def read_summary(path: str | Path) -> dict[str, Any]:
    """The counts, provenance and checksums stored in a converted file's footer."""
    metadata = pq.read_metadata(path).metadata or {}
    raw = metadata.get(METADATA_KEY.encode())
    if raw is None:
        raise StoreError(f"{path}: not a converted replay file (no {METADATA_KEY} metadata)")
    return json.loads(raw)


class ReplayStore:
    """Random access to the transitions of one run's converted checkpoints.

    The light columns of every file are held in memory (sorted by replay index); frames are read
    per row group on demand and the last few row groups are kept.
    """

    def __init__(self, paths: Sequence[str | Path], cached_groups: int = 8) -> None:
        if not paths:
            raise StoreError("ReplayStore needs at least one converted checkpoint file")
        self.paths = [Path(p) for p in paths]
        self._files = [pq.ParquetFile(p) for p in self.paths]
        tables = []
        for number, parquet in enumerate(self._files):
            table = parquet.read(columns=LIGHT_COLUMNS)
            table = table.append_column("_file", pa.array(np.full(len(table), number, np.int32)))
            tables.append(table.append_column("_row", pa.array(np.arange(len(table), dtype=np.int64))))
        light = pa.concat_tables(tables).sort_by("replay_index")
        self.replay_index = light["replay_index"].to_numpy()
        duplicated = np.flatnonzero(np.diff(self.replay_index) == 0)
        if len(duplicated):
            raise StoreError(f"replay index {self.replay_index[duplicated[0]]} appears twice: the "
                             "same checkpoint was given more than once")
        self.step = light["step"].to_numpy()
        self._file = light["_file"].to_numpy()
        self._row = light["_row"].to_numpy()
        self.table = light.drop_columns(["_file", "_row"])
        self._group_starts = [np.cumsum([0] + [f.metadata.row_group(g).num_rows
                                               for g in range(f.num_row_groups)])
                              for f in self._files]
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached_groups = cached_groups

    def __len__(self) -> int:
        return len(self.replay_index)

    def positions(self, replay_indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Positions (in replay-index order) of the given transitions; error if one is absent."""
        wanted = np.asarray(replay_indices, dtype=np.int64)
        found = np.searchsorted(self.replay_index, wanted)
        found = np.minimum(found, len(self.replay_index) - 1)
        missing = self.replay_index[found] != wanted
        if np.any(missing):
            raise StoreError(f"replay index {int(wanted[np.flatnonzero(missing)[0]])} is not a "
                             f"transition of this store ({', '.join(p.name for p in self.paths)}); it "
                             "is padding, stale, or in a checkpoint not given")
        return found

    def _group(self, file: int, group: int) -> np.ndarray:
        key = (file, group)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        frames = frames_numpy(self._files[file].read_row_group(group, columns=["frame"])["frame"])
        self._cache[key] = frames
        if len(self._cache) > self._cached_groups:
            self._cache.popitem(last=False)
        return frames

    def frames(self, replay_indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """The frames of the given transitions, (n, 84, 84) uint8."""
        where = self.positions(replay_indices)
        out = np.empty((len(where), *FRAME_SHAPE), dtype=np.uint8)
        files, rows = self._file[where], self._row[where]
        for file in np.unique(files):
            mine = np.flatnonzero(files == file)
            starts = self._group_starts[file]
            groups = np.searchsorted(starts, rows[mine], side="right") - 1
            for group in np.unique(groups):
                take = mine[groups == group]
                out[take] = self._group(int(file), int(group))[rows[take] - starts[group]]
        return out

    def stacks(self, replay_indices: np.ndarray | Sequence[int], size: int = STACK_SIZE) -> np.ndarray:
        """4-frame states (n, 4, 84, 84), oldest first, zeros before the episode's first frame."""
        wanted = np.asarray(replay_indices, dtype=np.int64)
        step = self.step[self.positions(wanted)]
        out = np.zeros((len(wanted), size, *FRAME_SHAPE), dtype=np.uint8)
        for k in range(size):
            back = size - 1 - k
            inside = step >= back  # earlier frames of the same episode sit at consecutive indices
            if np.any(inside):
                out[inside, k] = self.frames(wanted[inside] - back)
        return out


def run_summary(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Totals over one run's converted checkpoints, with each file's own summary.

    Rows add up across files, but an episode that crosses a file edge is in both files' counts,
    so the run's episodes are counted by their ids.
    """
    per_buffer = {Path(p).name: read_summary(p) for p in paths}
    totals: dict[str, int] = {}
    for summary in per_buffer.values():
        for name, value in summary["counts"].items():
            totals[name] = totals.get(name, 0) + value
    episodes = pa.concat_tables(pq.read_table(p, columns=["episode_id", "episode_complete"])
                                for p in paths)
    ids = episodes["episode_id"].to_numpy()
    totals["episodes"] = int(len(np.unique(ids)))
    totals["episodes_complete"] = int(len(np.unique(ids[episodes["episode_complete"].to_numpy()])))
    return {"totals": totals, "buffers": per_buffer,
            "parquet_bytes": sum(Path(p).stat().st_size for p in paths)}
