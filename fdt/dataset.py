"""The training set: the reference's "1% of the data" sample of a run, as arrays a trainer maps.

Reference mode (SPEC §2) rebuilds FDT's create_dataset list exactly, quirks included, because
feedback positions and mined indices are positions in that list:

- `numpy.random.RandomState(seed)`, one `rng.choice(arange(end - num_buffers, end), 1)[0]` per
  visit (the reference: end 50, so file 50, a run's partial last file, is never used);
- only file slots 0..C-1 are read, in storage order (slot 0 first), padding rows included: each
  episode after the first in a file starts with its 3 zero rows, and the first trajectory of a
  file starts wherever slot 0 falls;
- a row's state is the frames of the 4 rows ending at it in storage order, wrapping modulo C at
  the start (slots 0-2 take frames from slots C-3..C-1);
- a trajectory ends at a terminal row; one shorter than K is dropped (and does not count); a
  visit keeps 10 trajectories, then the next buffer is drawn. A visit resumes at the end of the
  buffer's last kept trajectory, so the rows after it are read again, as the reference does;
- quirks kept because they decide which rows are used: a trajectory whose terminal is slot C-1
  is dropped and leaves the buffer exhausted; one still open at slot C is dropped;
- returns-to-go are undiscounted sums of the stored (clipped) rewards to the trajectory's end;
  timesteps count from 0 within each trajectory (the reference's timestep array is shifted by
  one row after the first trajectory; that bug changes no data and is not copied).

Mining's statistics set (SPEC §3) starts with the same loop and goes on through buffers in
order and into later runs: `statistics_plan`.

Arrays (one `.npy` each, memory-mappable): frames (F, 84, 84) uint8 with frame 0 all zeros;
stacks (n, 4) int32 indices into frames, oldest first; actions, rewards, returns_to_go, timesteps,
buffer, slot, replay_index (global, chronological position in the run), padding (the row is one
of the 3 zero rows, not a transition); trajectory_ends (exclusive end positions). `manifest.json`
holds their shapes, dtypes and sha256, written last.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.io import atomic_path, write_json
from fdt.store import frames_numpy, read_summary

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


class TrainingSetError(ValueError):
    pass


class CheckpointNotGiven(TrainingSetError):
    """A loop reached a checkpoint that exists but whose rows were not given to it."""


@dataclass(frozen=True)
class SamplingParams:
    """Everything that decides the reference list (SPEC §2)."""

    seed: int
    transitions: int = 500_000
    num_buffers: int = 50
    buffers_end: int = 50  # buffers are drawn from [buffers_end - num_buffers, buffers_end)
    capacity: int = 100_000  # file slots read per buffer (Pong with seed 512: 150,000)
    trajectories_per_visit: int = 10
    context_length: int = 30

    @property
    def buffers(self) -> list[int]:
        return list(range(self.buffers_end - self.num_buffers, self.buffers_end))


@dataclass
class Plan:
    """Which rows the training set holds: trajectories as (buffer, first slot, end slot)."""

    trajectories: list[tuple[int, int, int]]
    visits: list[dict[str, int]] = field(default_factory=list)

    @property
    def transitions(self) -> int:
        return sum(end - start for _, start, end in self.trajectories)


def reference_plan(terminals: Mapping[int, np.ndarray], params: SamplingParams) -> Plan:
    """Replay the reference's visit loop on the terminal flags of slots 0..C-1 of each buffer.

    `terminals[b]` is a bool array of length C. Raises when every buffer is used up before the
    list reaches `params.transitions` (the reference would loop forever).
    """
    rng = np.random.RandomState(params.seed)
    choices = np.arange(params.buffers_end - params.num_buffers, params.buffers_end)
    resume = {b: 0 for b in params.buffers}  # the reference's per-buffer saved slot
    plan = Plan(trajectories=[])
    total = 0
    dry: set[int] = set()  # buffers whose visit kept nothing: every later visit keeps nothing too
    while total < params.transitions:
        if len(dry) == len(choices):
            raise TrainingSetError(
                f"buffers {choices[0]}..{choices[-1]} hold only {total} usable transitions in "
                f"slots 0..{params.capacity - 1} (trajectories of at least {params.context_length} "
                f"rows), fewer than the {params.transitions} asked for")
        b = int(rng.choice(choices, 1)[0])
        visit = _read_visit(terminals[b], resume[b], params.capacity, params.context_length,
                            params.trajectories_per_visit)
        resume[b] = visit["resume"]
        plan.trajectories.extend((b, s, e) for s, e in visit.pop("kept"))
        plan.visits.append({"buffer": b, **visit})
        total = plan.transitions
        if visit["trajectories"] == 0:
            dry.add(b)
    return plan


@dataclass(frozen=True)
class StatisticsPhases:
    """How the statistics set goes on past the training set's loop (SPEC §3, the reference's
    `generate_important_states` in serial mode); the defaults are the reference's."""

    random_rows: int = 550_000  # random buffers, as the training set, while fewer rows than this
    ordered_trajectories_per_visit: int = 1_500  # then, once past random_rows
    rows_per_run: int = 47_000_000  # past k * rows_per_run rows, runs[k] from its buffer 1
    runs: tuple[int, ...] = (1, 2)  # the runs read, in order; the first is the training set's


def statistics_plan(terminals: Mapping[tuple[int, int], np.ndarray], params: SamplingParams,
                    phases: StatisticsPhases, *,
                    existing: Collection[tuple[int, int]] | None = None) -> Plan:
    """Replay the reference's statistics-set loop; `terminals[(run, b)]` as for `reference_plan`.

    While fewer than `random_rows` rows: the training set's loop (same RandomState, buffers drawn
    from the training set's range, `params.trajectories_per_visit` trajectories a visit, slots
    0..capacity-1). Then buffers 1, 2, 3, ... in order, one visit each, each resuming where
    earlier visits left it, keeping `ordered_trajectories_per_visit` trajectories a visit
    (reference: only once past `random_rows`, so a visit starting at exactly that many rows
    keeps the random phase's number); when a visit starts past k * rows_per_run rows, runs[k]
    from its buffer 1, its buffers unread so far. Until `params.transitions` rows.

    Where SPEC §3 is silent, as the reference's loop does: an exhausted buffer's visit reads
    nothing and the next number follows; a missing checkpoint (no key in `terminals`, nor in
    `existing` when given) is a visit that reads nothing (its loader finds no file; visits say
    `missing`); one in `existing` raises CheckpointNotGiven. The reference's
    bookkeeping has no buffer `buffers_end` or above (it fails there), so reaching it, or a run
    past those listed, raises TrainingSetError.
    """
    rng = np.random.RandomState(params.seed)
    choices = np.arange(params.buffers_end - params.num_buffers, params.buffers_end)
    resume: dict[tuple[int, int], int] = {}  # per (run, buffer), the reference's saved slot
    plan = Plan(trajectories=[])
    total = 0
    quota = params.trajectories_per_visit
    dry: set[int] = set()
    run_index, buffer, ordered = 0, 0, False
    while total < params.transitions:
        if total > phases.random_rows:
            quota = phases.ordered_trajectories_per_visit
        if total < phases.random_rows:
            if len(dry) == len(choices):
                raise TrainingSetError(
                    f"buffers {choices[0]}..{choices[-1]} hold only {total} usable transitions "
                    f"in slots 0..{params.capacity - 1}, fewer than the {phases.random_rows} "
                    "rows of the random phase")
            buffer = int(rng.choice(choices, 1)[0])
        else:
            buffer = buffer + 1 if ordered else 1
            ordered = True
            if total > phases.rows_per_run * (run_index + 1):
                run_index, buffer = run_index + 1, 1
                if run_index == len(phases.runs):
                    raise TrainingSetError(
                        f"the statistics set holds {total} rows, past {len(phases.runs)} x "
                        f"{phases.rows_per_run} rows, where the reference goes on to another run "
                        f"than {list(phases.runs)}, short of the {params.transitions} asked for")
            if buffer >= params.buffers_end:
                raise TrainingSetError(
                    f"the statistics set holds {total} rows after buffers 1..{buffer - 1} of run "
                    f"{phases.runs[run_index]}, short of the {params.transitions} asked for and "
                    f"of the next run's start ({phases.rows_per_run * (run_index + 1)} rows); the "
                    f"reference reads no buffer {params.buffers_end} or above")
        run = phases.runs[run_index]
        key = (run, buffer)
        start = resume.get(key, 0)
        if key not in terminals:
            if existing is not None and key in existing:
                raise CheckpointNotGiven(f"the statistics set reads checkpoint {buffer} of run "
                                         f"{run}, which was not given")
            visit = {"start": start, "stop": start, "trajectories": 0, "resume": start,
                     "missing": True}
        else:
            visit = _read_visit(terminals[key], start, params.capacity, params.context_length,
                                quota)
            resume[key] = visit["resume"]
            kept = visit.pop("kept")
            plan.trajectories.extend((buffer, s, e) for s, e in kept)
            total += sum(e - s for s, e in kept)
        plan.visits.append({"run": run, "buffer": buffer, "ordered": ordered, **visit})
        if not ordered and visit["trajectories"] == 0:
            dry.add(buffer)
    return plan


def _read_visit(terminal: np.ndarray, slot: int, capacity: int, context_length: int,
                quota: int) -> dict[str, Any]:
    """One visit: read rows from `slot` on, keep up to `quota` trajectories of at least
    `context_length` rows. Returns the kept (first slot, end slot) pairs, the rows read (up to
    the last kept trajectory's end when the quota was met, else to the end of the readable
    slots: mining replays every row read, kept or not) and the slot the next visit resumes at."""
    ends = np.flatnonzero(terminal[slot:capacity]) + slot + 1  # exclusive ends of trajectories
    kept: list[tuple[int, int]] = []
    resume = slot
    first = slot
    for end in ends:
        end = int(end)
        if end >= capacity:  # terminal on the last slot: dropped, buffer exhausted (quirk)
            resume = end
            break
        if end - first >= context_length:
            kept.append((first, end))
            resume = end
            if len(kept) == quota:
                break
        first = end
    stop = resume if len(kept) == quota else capacity
    return {"start": slot, "stop": stop, "trajectories": len(kept), "resume": resume,
            "kept": kept}


@dataclass
class BufferSlots:
    """Slots 0..C-1 of one converted checkpoint in storage order; padding slots hold zeros."""

    number: int
    file_capacity: int
    row: np.ndarray  # Parquet row of each slot, -1 where the slot holds no transition
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray


def load_buffer_slots(path: str | Path, capacity: int) -> BufferSlots:
    """Read the light columns of slots 0..C-1 of one converted checkpoint."""
    path = Path(path)
    summary = read_summary(path)
    number, file_capacity, cursor = summary["buffer"], summary["capacity"], summary["cursor"]
    if capacity > file_capacity:
        raise TrainingSetError(f"{path}: the training set reads slots 0..{capacity - 1}, but the "
                               f"file holds {file_capacity} slots")
    if summary["partial"] and capacity > cursor:
        raise TrainingSetError(
            f"{path}: checkpoint {number} is the run's partial last snapshot (only slots "
            f"0..{cursor - 1} are new), but the training set reads slots 0..{capacity - 1}; "
            "draw from complete checkpoints only (dataset.buffers_end)")
    table = pq.read_table(path, columns=["slot", "action", "reward", "terminal"],
                          filters=[("slot", "<", capacity)])
    slots = table["slot"].to_numpy()
    if np.any(np.diff(slots) <= 0):
        raise TrainingSetError(f"{path}: rows are not in slot order; convert the checkpoint again")
    row_of_slot = np.full(capacity, -1, dtype=np.int64)
    # Rows are stored in slot order, so the filtered rows are the file's first rows.
    row_of_slot[slots] = np.arange(len(slots))
    action = np.zeros(capacity, dtype=np.int32)
    reward = np.zeros(capacity, dtype=np.float32)
    terminal = np.zeros(capacity, dtype=bool)
    action[slots] = table["action"].to_numpy()
    reward[slots] = table["reward"].to_numpy()
    terminal[slots] = table["terminal"].to_numpy()
    return BufferSlots(number, file_capacity, row_of_slot, action, reward, terminal)


def replay_index_of(buffer: np.ndarray, slot: np.ndarray, file_capacity: int) -> np.ndarray:
    """Chronological position in the run of file slots (slot C-1 precedes slot 0 of its file)."""
    buffer = buffer.astype(np.int64)
    slot = slot.astype(np.int64)
    base = buffer * file_capacity
    return np.where(slot == file_capacity - 1, base - 1, base + slot)


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


def save_arrays(out_dir: Path, arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Write each array as `name.npy` atomically; return their manifest entries."""
    entries = {}
    for name, array in arrays.items():
        path = out_dir / f"{name}.npy"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array)
        entries[name] = array_entry(path, array.shape, array.dtype)
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
