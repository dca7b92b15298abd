"""The reference's sampling of a run (docs/method.md §2, §3): which rows of which buffers a visit
reads, for the training set and for mining's statistics set.

`reference_plan` rebuilds FDT's create_dataset loop exactly, quirks included, because feedback
positions and mined indices are positions in its list:

- `numpy.random.RandomState(seed)`, one `rng.choice(arange(end - num_buffers, end), 1)[0]` per
  visit (the reference: end 50, so file 50, a run's partial last file, is never used);
- only file slots 0..C-1 are read, in storage order (slot 0 first), padding rows included: each
  episode after the first in a file starts with its 3 zero rows, and the first trajectory of a
  file starts wherever slot 0 falls;
- a trajectory ends at a terminal row; one shorter than K is dropped (and does not count); a
  visit keeps 10 trajectories, then the next buffer is drawn. A visit resumes at the end of the
  buffer's last kept trajectory, so the rows after it are read again, as the reference does;
- quirks kept because they decide which rows are used: a trajectory whose terminal is slot C-1
  is dropped and leaves the buffer exhausted; one still open at slot C is dropped.

Mining's statistics set starts with the same loop and goes on through buffers in order and into
later runs: `statistics_plan`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from fdt.replay.store import read_summary
from fdt.settings import defaults


class TrainingSetError(ValueError):
    pass


class CheckpointNotGiven(TrainingSetError):
    """A loop reached a checkpoint that exists but whose rows were not given to it."""


_DATASET = defaults("dataset")  # the schema's, the one place they live


@dataclass(frozen=True)
class SamplingParams:
    """Everything that decides the reference list (docs/method.md §2)."""

    seed: int
    transitions: int = _DATASET["transitions"]
    num_buffers: int = _DATASET["num_buffers"]
    buffers_end: int = _DATASET["buffers_end"]  # buffers are drawn from [buffers_end - num_buffers, buffers_end)
    capacity: int = _DATASET["capacity"]  # file slots read per buffer (Pong with seed 512: 150,000)
    trajectories_per_visit: int = _DATASET["trajectories_per_visit"]
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
    """How the statistics set goes on past the training set's loop (method.md §3, the reference's
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

    Where method.md §3 is silent, as the reference's loop does: an exhausted buffer's visit reads
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
