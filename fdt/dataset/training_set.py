"""The training set: the reference's "1% of the data" sample of a run, as arrays a trainer maps.

The rows are those of `fdt.dataset.sampling.reference_plan`. A row's state is the frames of the 4
rows ending at it in storage order, wrapping modulo C at the start (slots 0-2 take frames from
slots C-3..C-1: a reference quirk). Returns-to-go are undiscounted sums of the stored (clipped)
rewards to the trajectory's end; timesteps count from 0 within each trajectory (the reference's
timestep array is shifted by one row after the first trajectory; that bug changes no data and is
not copied).

Arrays (one `.npy` each, memory-mappable): frames (F, 84, 84) uint8 with frame 0 all zeros;
stacks (n, 4) int32 indices into frames, oldest first; actions, rewards, returns_to_go, timesteps,
buffer, slot, replay_index (global, chronological position in the run), padding (the row is one
of the 3 zero rows, not a transition); trajectory_ends (exclusive end positions). `manifest.json`
holds their shapes, dtypes and sha256, written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.dataset.sampling import (
    BufferSlots,
    SamplingParams,
    TrainingSetError,
    load_buffer_slots,
    reference_plan,
    replay_index_of,
)
from fdt.io import atomic_path, write_json
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.replay.store import frames_numpy

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ARRAYS: dict[str, np.dtype] = {
    "frames": np.dtype(np.uint8),
    "stacks": np.dtype(np.int32),
    "actions": np.dtype(np.int32),
    "rewards": np.dtype(np.float32),
    "returns_to_go": np.dtype(np.float32),
    "timesteps": np.dtype(np.int32),
    "buffer": np.dtype(np.int32),
    "slot": np.dtype(np.int32),
    "replay_index": np.dtype(np.int64),
    "padding": np.dtype(np.bool_),
    "trajectory_ends": np.dtype(np.int64),
}


def returns_to_go(rewards: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Undiscounted sum of rewards from each row to the end of its trajectory."""
    out = np.empty(len(rewards), dtype=np.float32)
    start = 0
    for end in ends:
        out[start:end] = np.cumsum(rewards[start:end][::-1], dtype=np.float64)[::-1]
        start = end
    return out


def timesteps_of(ends: np.ndarray, n: int) -> np.ndarray:
    """Step of each row within its trajectory, from 0."""
    starts = np.concatenate([[0], ends[:-1]])
    lengths = np.diff(np.concatenate([[0], ends]))
    return (np.arange(n) - np.repeat(starts, lengths)).astype(np.int32)


def build_training_set(store_paths: Mapping[int, str | Path], out_dir: str | Path,
                       params: SamplingParams, *, num_actions: int,
                       provenance: Mapping[str, Any] | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Sample the training set from converted checkpoints and write its arrays to `out_dir`.

    `store_paths` maps checkpoint numbers to Parquet files; every buffer of `params.buffers` must
    be there. Returns the manifest (also written to `out_dir/manifest.json`, last).
    """
    missing = [b for b in params.buffers if b not in store_paths]
    if missing:
        raise TrainingSetError(f"the training set draws from checkpoints {params.buffers[0]}.."
                               f"{params.buffers[-1]}, but no converted file was given for {missing}")
    slots = {b: load_buffer_slots(store_paths[b], params.capacity) for b in params.buffers}
    file_capacities = {s.file_capacity for s in slots.values()}
    if len(file_capacities) != 1:
        raise TrainingSetError(f"converted checkpoints of one run differ in capacity: "
                               f"{sorted(file_capacities)}")
    file_capacity = file_capacities.pop()
    plan = reference_plan({b: s.terminal for b, s in slots.items()}, params)

    buffer = np.concatenate([np.full(e - s, b, np.int32) for b, s, e in plan.trajectories])
    slot = np.concatenate([np.arange(s, e, dtype=np.int32) for _, s, e in plan.trajectories])
    ends = np.cumsum([e - s for _, s, e in plan.trajectories]).astype(np.int64)
    actions = _per_row(slots, buffer, slot, "action")
    if len(actions) and (actions.min() < 0 or actions.max() >= num_actions):
        raise TrainingSetError(f"dataset actions span {actions.min()}..{actions.max()}, but the game "
                               f"has {num_actions} actions: the replay is of another game")
    rewards = _per_row(slots, buffer, slot, "reward")
    padding = _per_row(slots, buffer, slot, "row") < 0
    stacks, frame_sources = _frame_table(slots, buffer, slot, params.capacity)
    arrays: dict[str, np.ndarray] = {
        "stacks": stacks,
        "actions": actions,
        "rewards": rewards,
        "returns_to_go": returns_to_go(rewards, ends),
        "timesteps": timesteps_of(ends, len(slot)),
        "buffer": buffer,
        "slot": slot,
        "replay_index": replay_index_of(buffer, slot, file_capacity),
        "padding": padding,
        "trajectory_ends": ends,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = save_arrays(out_dir, arrays)
    entries["frames"] = _write_frames(out_dir / "frames.npy", frame_sources, store_paths, progress)
    manifest = {
        "format_version": FORMAT_VERSION,
        "mode": "reference",
        "sampling": asdict(params),
        "num_actions": num_actions,
        "file_capacity": file_capacity,
        "counts": {
            "transitions": int(len(slot)),
            "trajectories": int(len(ends)),
            "padding_rows": int(padding.sum()),
            "frames": int(entries["frames"]["shape"][0]),
            "visits": len(plan.visits),
        },
        "max_timestep": int(arrays["timesteps"].max()),
        "max_return": float(arrays["returns_to_go"].max()),
        "visits": plan.visits,
        "arrays": entries,
        **dict(provenance or {}),
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def _per_row(slots: Mapping[int, BufferSlots], buffer: np.ndarray, slot: np.ndarray,
             column: str) -> np.ndarray:
    dtype = getattr(next(iter(slots.values())), column).dtype
    out = np.empty(len(slot), dtype=dtype)
    for b, source in slots.items():
        mine = buffer == b
        out[mine] = getattr(source, column)[slot[mine]]
    return out


def _frame_table(slots: Mapping[int, BufferSlots], buffer: np.ndarray, slot: np.ndarray,
                 capacity: int) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Stack indices into a table of distinct frames; frame 0 is the zero frame of padding.

    Returns the (n, 4) stacks and, per buffer, (Parquet rows, table positions) to fill the table.
    """
    back = np.arange(STACK_SIZE - 1, -1, -1)  # oldest first
    stack_slots = (slot[:, None].astype(np.int64) - back[None, :]) % capacity  # wraps (quirk)
    stack_buffers = np.broadcast_to(buffer[:, None], stack_slots.shape)
    rows = np.full(stack_slots.shape, -1, dtype=np.int64)
    for b, source in slots.items():
        mine = stack_buffers == b
        rows[mine] = source.row[stack_slots[mine]]
    key = np.where(rows >= 0, stack_buffers.astype(np.int64) * capacity + stack_slots, -1).ravel()
    # Distinct real frames numbered in order of first use, from 1; padding slots use frame 0.
    unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    real = unique >= 0
    order = np.argsort(first[real], kind="stable")
    number = np.zeros(len(unique), dtype=np.int64)
    number[np.flatnonzero(real)[order]] = np.arange(1, real.sum() + 1)
    stacks = number[inverse].reshape(stack_slots.shape).astype(np.int32)
    sources: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    real_keys = unique[real]
    for b, source in slots.items():
        mine = (real_keys // capacity) == b
        sources[b] = (source.row[real_keys[mine] % capacity], number[real][mine])
    return stacks, sources


def save_arrays(out_dir: Path, arrays: Mapping[str, np.ndarray],
                together: contextlib.ExitStack | None = None) -> dict[str, dict[str, Any]]:
    """Write each array as `name.npy` atomically; return their manifest entries. With
    `together`, each is renamed into place only when that stack closes (and removed if it
    closes on an error), so arrays that belong together appear together."""
    entries = {}
    for name, array in arrays.items():
        with contextlib.ExitStack() as alone:
            tmp = (together or alone).enter_context(atomic_path(out_dir / f"{name}.npy"))
            with open(tmp, "wb") as f:
                np.save(f, array)
            entries[name] = array_entry(tmp, array.shape, array.dtype)
    return entries


def array_entry(path: Path, shape: Sequence[int], dtype: np.dtype) -> dict[str, Any]:
    """What the manifest says of one array file: shape, dtype, size and sha256."""
    return {"shape": list(shape), "dtype": np.dtype(dtype).str, "sha256": sha256_of(path),
            "bytes": path.stat().st_size}


def _write_frames(path: Path, sources: Mapping[int, tuple[np.ndarray, np.ndarray]],
                  store_paths: Mapping[int, str | Path], progress: bool) -> dict[str, Any]:
    """Fill the frame table from the Parquet files, one row group at a time, on disk."""
    count = 1 + sum(len(rows) for rows, _ in sources.values())
    bar = tqdm(total=count - 1, unit="frame", unit_scale=True, mininterval=1.0,
               desc="gather frames", disable=not progress)
    with atomic_path(path) as tmp:
        table = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                          shape=(count, *FRAME_SHAPE))
        table[0] = 0
        for b, (rows, positions) in sources.items():
            parquet = pq.ParquetFile(store_paths[b])
            starts = np.cumsum([0] + [parquet.metadata.row_group(g).num_rows
                                      for g in range(parquet.num_row_groups)])
            groups = np.searchsorted(starts, rows, side="right") - 1
            for group in np.unique(groups):
                take = groups == group
                frames = frames_numpy(parquet.read_row_group(int(group), columns=["frame"])["frame"])
                table[positions[take]] = frames[rows[take] - starts[group]]
                bar.update(int(take.sum()))
        table.flush()
        del table
    bar.close()
    return array_entry(path, (count, *FRAME_SHAPE), np.dtype(np.uint8))


def sha256_of(path: str | Path, block: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class TrainingSet:
    """A written training set, memory-mapped, checked against its manifest.

    Missing files, a wrong shape or dtype, or (with `verify`) different bytes raise
    TrainingSetError naming the file.
    """

    def __init__(self, folder: str | Path, *, verify: bool = True) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise TrainingSetError(f"{manifest_path}: missing; the training set in {self.folder} "
                                   "is incomplete (rebuild it)")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        self.arrays: dict[str, np.ndarray] = {}
        for name, entry in self.manifest["arrays"].items():
            self.arrays[name] = self._open(name, entry, verify)
        n = len(self.arrays["actions"])
        for name in ("stacks", "returns_to_go", "timesteps", "replay_index", "padding"):
            if len(self.arrays[name]) != n:
                raise TrainingSetError(f"{self.folder / name}.npy: {len(self.arrays[name])} rows, "
                                       f"but actions.npy has {n}")
        ends = self.arrays["trajectory_ends"]
        if n and (len(ends) == 0 or ends[-1] != n):
            raise TrainingSetError(f"{self.folder}/trajectory_ends.npy: the last trajectory must end "
                                   f"at row {n}")

    def _open(self, name: str, entry: Mapping[str, Any], verify: bool) -> np.ndarray:
        path = self.folder / f"{name}.npy"
        if not path.is_file():
            raise TrainingSetError(f"{path}: missing from the training set")
        if path.stat().st_size != entry["bytes"]:
            raise TrainingSetError(f"{path}: {path.stat().st_size} bytes, the manifest says "
                                   f"{entry['bytes']} (truncated or replaced)")
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise TrainingSetError(f"{path}: not a readable .npy file ({err})") from None
        if list(array.shape) != entry["shape"] or array.dtype.str != entry["dtype"]:
            raise TrainingSetError(f"{path}: shape {list(array.shape)} dtype {array.dtype.str}, the "
                                   f"manifest says {entry['shape']} {entry['dtype']}")
        if verify and sha256_of(path) != entry["sha256"]:
            raise TrainingSetError(f"{path}: contents differ from the manifest's sha256 (corrupt)")
        return array

    def __len__(self) -> int:
        return len(self.arrays["actions"])

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def num_actions(self) -> int:
        return int(self.manifest["num_actions"])

    @property
    def max_timestep(self) -> int:
        return int(self.manifest["max_timestep"])


def window_starts(n: int, trajectory_ends: np.ndarray, context_length: int) -> np.ndarray:
    """First row of the window of each sample, as the reference's dataset indexes them.

    The reference has n - 3K samples (its block size is 3K); sample i's window ends at the
    sooner of i + K and the end of i's trajectory, and spans K rows, so it never crosses a
    trajectory end (every trajectory has at least K rows).
    """
    samples = n - 3 * context_length
    if samples <= 0:
        raise TrainingSetError(f"a training set of {n} rows has no windows of context length "
                               f"{context_length} (it needs more than {3 * context_length} rows)")
    index = np.arange(samples, dtype=np.int64)
    trajectory_end = trajectory_ends[np.searchsorted(trajectory_ends, index, side="right")]
    return np.minimum(index + context_length, trajectory_end) - context_length
