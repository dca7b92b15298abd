"""The mining stage: statistics over sampled trajectories, important states inside the training set.

The statistics set is sampled from the converted checkpoints by the reference's loop
(fdt.dataset.sampling.statistics_plan): the training set's random visits while it holds fewer than
`random_rows` rows, then buffers 1, 2, 3, ... in order, and the next run's past each
`rows_per_run` rows. It reads file slots 0..capacity-1 (the reference: 999,999) with states
stacked in storage order modulo the file's capacity, as the reference's mining buffer does.
Each buffer's frames are streamed once: per slot a cell digest (fdt.mining.cells) and the features the
game's detector reads (fdt.mining.detectors); the detector then replays every row each visit reads. Only
rows up to index `transitions` of the training set (reference: 500,000) that are transitions of
the training set may be chosen, so the output lines up with the training set (its `position`
column).

Outputs: `states.parquet` (the ordered important states), `counts.json`, `images/` (the frame
stacks of the top states as PNG, and a contact sheet).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.dataset.sampling import (
    BufferSlots,
    CheckpointNotGiven,
    SamplingParams,
    StatisticsPhases,
    TrainingSetError,
    load_buffer_slots,
    replay_index_of,
    statistics_plan,
)
from fdt.dataset.training_set import TrainingSet
from fdt.games import game_facts
from fdt.io import atomic_path, write_json
from fdt.mining.cells import DIGEST_WORDS, digest_hex, pooled_frame_digests, stack_digests
from fdt.mining.detectors import GAME_CHECKS, Features, empty_features
from fdt.mining.images import contact_sheet, stack_strip, write_png
from fdt.mining.ranking import (
    collect_returns,
    dense_cells,
    discounted_returns,
    important_states,
    rank_cells,
)
from fdt.replay.dopamine import STACK_SIZE
from fdt.replay.store import frames_numpy, read_summary
from fdt.settings import defaults


class MiningError(ValueError):
    pass


_MINING = defaults("mining")  # the schema's, the one place they live


@dataclass(frozen=True)
class MiningParams:
    seed: int
    transitions: int
    num_buffers: int
    buffers_end: int
    trajectories_per_visit: int
    context_length: int
    capacity: int | None = None  # slots read per buffer; None: the file's capacity - 1
    gamma: float = _MINING["gamma"]
    first_visit: bool = _MINING["first_visit"]
    life_loss_penalty: float = _MINING["life_loss_penalty"]
    life_loss_horizon: int = _MINING["life_loss_horizon"]
    extra_per_cell: int = _MINING["extra_per_cell"]
    window: int = _MINING["window"]
    images: int = _MINING["images"]
    # The statistics set past the training set's loop (fdt.dataset.sampling.StatisticsPhases).
    random_rows: int = _MINING["random_rows"]
    ordered_trajectories_per_visit: int = _MINING["ordered_trajectories_per_visit"]
    rows_per_run: int = _MINING["rows_per_run"]
    runs: tuple[int, ...] = _MINING["runs"]  # the first is the training set's
    # Checkpoint numbers the workflow ingests (the others count as missing, as the reference
    # skips a file it cannot find); None: those given are all there is.
    checkpoints: tuple[int, ...] | None = None
    spare_buffers: int = _MINING["spare_buffers"]  # planning margin, see `planned_checkpoints`



@dataclass
class StatisticsSet:
    """The statistics set, in sampling order."""

    cells: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    allowed: np.ndarray
    life_loss: np.ndarray
    run: np.ndarray
    buffer: np.ndarray
    slot: np.ndarray
    trajectory_ends: np.ndarray


def planned_checkpoints(params: MiningParams, file_capacity: int) -> dict[int, list[int]]:
    """Per run, the checkpoints the statistics set may read, for the workflow to ingest: the
    training set's run's random-phase buffers, and buffers 1, 2, ... of each run as far as the
    ordered phase may go. How far depends on the data, so it is estimated: a run gives at most
    the rows up to the next run's start (or `transitions`) plus one more buffer, at most
    `capacity` rows a buffer; the training set's run counts the random phase's rows too, since
    they may come from the same buffers. Buffers give somewhat fewer rows (trajectories
    dropped), hence `spare_buffers` more; mining stops with an error naming the key if that is
    still too few. Checkpoints the config does not ingest are left out (missing)."""
    capacity = params.capacity or file_capacity - 1
    plan: dict[int, list[int]] = {}
    for k, run in enumerate(params.runs):
        if k and params.transitions <= params.rows_per_run * k:
            break  # the statistics set is complete before this run starts
        reach = min(params.transitions, params.rows_per_run * (k + 1) + capacity)
        rows = reach - params.rows_per_run * k if k else reach
        last = min(params.buffers_end - 1, math.ceil(rows / capacity) + params.spare_buffers)
        numbers = set(range(1, last + 1))
        if k == 0:
            numbers |= set(range(params.buffers_end - params.num_buffers, params.buffers_end))
        plan[run] = sorted(b for b in numbers
                           if params.checkpoints is None or b in params.checkpoints)
    return plan


def mine_states(store_paths: Mapping[tuple[int, int], str | Path], training_set: str | Path,
                out_dir: str | Path, params: MiningParams, game: str, *,
                progress: bool = True) -> dict[str, Any]:
    if game not in GAME_CHECKS:
        raise MiningError(f"no allowed-step detector for {game} yet; mining supports "
                          f"{', '.join(GAME_CHECKS)}")
    data = TrainingSet(training_set)
    sequence, file_capacity, plan_counts = _statistics_set(store_paths, params, game, progress)
    replay_index = replay_index_of(sequence.buffer, sequence.slot, file_capacity)
    returns = discounted_returns(sequence.rewards, sequence.trajectory_ends, params.gamma,
                                 life_loss=sequence.life_loss, penalty=params.life_loss_penalty,
                                 horizon=params.life_loss_horizon,
                                 offset=game_facts(game).life_loss_lag)
    transitions = np.asarray(data.replay_index)[~np.asarray(data.padding)]
    # Reference: rows up to index 500,000, the training set's size, may be chosen; of those,
    # the training set's transitions (the same rows while no visit passes the training set's
    # capacity), so that every chosen row has a position in it.
    inside = np.arange(len(replay_index)) <= int(data.manifest["sampling"]["transitions"])
    choosable = (inside & (sequence.run == params.runs[0])
                 & np.isin(replay_index, transitions))
    cells = dense_cells(sequence.cells)
    stats = collect_returns(cells, sequence.actions, returns, sequence.allowed, choosable,
                            sequence.trajectory_ends, first_visit=params.first_visit)
    ranked = rank_cells(stats)
    chosen, dropped = important_states(ranked, stats, extra_per_cell=params.extra_per_cell,
                                       window=params.window)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = np.array([s.index for s in chosen], dtype=np.int64)
    order = np.argsort(np.asarray(data.replay_index))
    chosen_replay = replay_index[index]
    position = order[np.searchsorted(np.asarray(data.replay_index), chosen_replay, sorter=order)]
    table = {
        "order": np.arange(len(chosen), dtype=np.int64),
        "rank": np.array([s.rank for s in chosen], dtype=np.int64),
        "kind": [s.kind for s in chosen],
        "position": position.astype(np.int64),
        "replay_index": chosen_replay,
        "buffer": sequence.buffer[index],
        "slot": sequence.slot[index],
        "cell": digest_hex(sequence.cells[index]),
        "best_action": np.array([ranked[s.rank].best_action for s in chosen], dtype=np.int32),
        "worst_action": np.array([ranked[s.rank].worst_action for s in chosen], dtype=np.int32),
        "gap": np.array([ranked[s.rank].gap for s in chosen], dtype=np.float64),
        "action": sequence.actions[index].astype(np.int32),
        "allowed": sequence.allowed[index],
    }
    with atomic_path(out_dir / "states.parquet") as tmp:
        pq.write_table(pa.table(table), tmp)
    counts = {
        "transitions": int(len(cells)),
        "trajectories": int(len(sequence.trajectory_ends)),
        "allowed_states": int(sequence.allowed.sum()),
        "choosable_transitions": int(choosable.sum()),
        "cells": len(stats.pairs),
        "ranked_cells": len(ranked),
        "skipped": stats.skipped,
        "disallowed_steps_at_candidate_cells": stats.from_disallowed,
        "important_states": len(chosen),
        "dropped_by_window": dropped,
        "life_losses": int(sequence.life_loss.sum()),
        **plan_counts,
    }
    write_json(out_dir / "counts.json", {"game": game, "params": asdict(params), "counts": counts})
    _export_images(out_dir / "images", data, position[:params.images], table)
    return counts


def _statistics_set(store_paths: Mapping[tuple[int, int], str | Path], params: MiningParams,
                    game: str, progress: bool) -> tuple[StatisticsSet, int, dict[str, Any]]:
    first_run = params.runs[0]
    drawn = list(range(params.buffers_end - params.num_buffers, params.buffers_end))
    missing = [b for b in drawn if (first_run, b) not in store_paths]
    if missing:
        raise MiningError(f"mining draws from checkpoints {drawn[0]}..{drawn[-1]} of run "
                          f"{first_run}, but no converted file was given for {missing}")
    capacities = {int(read_summary(path)["capacity"]) for path in store_paths.values()}
    if len(capacities) != 1:
        raise MiningError(f"converted checkpoints differ in capacity: {sorted(capacities)}")
    file_capacity = capacities.pop()
    capacity = params.capacity or file_capacity - 1
    # One slot more than is read: the row after the last one read is a detector's "next" row.
    slots = {key: load_buffer_slots(path, min(capacity + 1, file_capacity))
             for key, path in store_paths.items()}
    sampling = SamplingParams(seed=params.seed, transitions=params.transitions,
                              num_buffers=params.num_buffers, buffers_end=params.buffers_end,
                              capacity=capacity,
                              trajectories_per_visit=params.trajectories_per_visit,
                              context_length=params.context_length)
    phases = StatisticsPhases(random_rows=params.random_rows,
                              ordered_trajectories_per_visit=params.ordered_trajectories_per_visit,
                              rows_per_run=params.rows_per_run, runs=tuple(params.runs))
    existing = (None if params.checkpoints is None
                else {(run, b) for run in params.runs for b in params.checkpoints})
    try:
        plan = statistics_plan({key: s.terminal for key, s in slots.items()}, sampling, phases,
                               existing=existing)
    except CheckpointNotGiven as err:
        raise MiningError(f"{err}: the workflow's estimate of the checkpoints mining reads was "
                          "short; raise mining.spare_buffers") from None
    except TrainingSetError as err:
        raise MiningError(f"{err} (mining.transitions, mining.rows_per_run, mining.runs)") from None
    skipped = sorted({(v["run"], v["buffer"]) for v in plan.visits if v.get("missing")})
    lengths = np.array([e - s for _, s, e in plan.trajectories], dtype=np.int64)
    n = int(lengths.sum())
    out = StatisticsSet(cells=np.zeros((n, DIGEST_WORDS), np.uint64), actions=np.zeros(n, np.int32),
                        rewards=np.zeros(n, np.float32), allowed=np.zeros(n, bool),
                        life_loss=np.zeros(n, bool), run=np.zeros(n, np.int32),
                        buffer=np.zeros(n, np.int32), slot=np.zeros(n, np.int32),
                        trajectory_ends=np.cumsum(lengths))
    starts = out.trajectory_ends - lengths
    # Which trajectories each visit kept, in plan order.
    visit_of = np.repeat(np.arange(len(plan.visits)), [v["trajectories"] for v in plan.visits])
    compute, scan = GAME_CHECKS[game]
    used = sorted({(v["run"], v["buffer"]) for v in plan.visits if v["trajectories"]})
    for key in tqdm(used, desc=f"mine {game}", unit="buffer", disable=not progress):
        run, b = key
        digest, features = _per_slot(store_paths[key], slots[key], file_capacity, game, compute)
        for v, visit in enumerate(plan.visits):
            if (visit["run"], visit["buffer"]) != key or not visit["trajectories"]:
                continue
            read = np.arange(visit["start"], visit["stop"], dtype=np.int64)
            older = (read[:, None] - np.arange(1, STACK_SIZE)[None, :]) % file_capacity
            following = (read + 1) % file_capacity
            allowed, life_loss = scan(features, read, features["blank"][older].all(axis=1),
                                      slots[key].reward[read], slots[key].terminal[read],
                                      next_slots=following, actions=slots[key].action[read],
                                      next_actions=_actions_at(slots[key], following))
            for k in np.flatnonzero(visit_of == v):
                _, s, e = plan.trajectories[k]
                rows = slice(int(starts[k]), int(out.trajectory_ends[k]))
                within = slice(s - visit["start"], e - visit["start"])
                stack = (np.arange(s, e)[:, None] - np.arange(STACK_SIZE - 1, -1, -1)[None, :])
                out.cells[rows] = stack_digests(digest, stack % file_capacity)
                out.actions[rows] = slots[key].action[s:e]
                out.rewards[rows] = slots[key].reward[s:e]
                out.allowed[rows] = allowed[within]
                out.life_loss[rows] = life_loss[within] | slots[key].terminal[s:e]
                out.run[rows] = run
                out.buffer[rows] = b
                out.slot[rows] = np.arange(s, e)
    runs, rows_of_run = np.unique(out.run, return_counts=True)
    counts = {
        "visits": len(plan.visits),
        "ordered_visits": sum(1 for v in plan.visits if v["ordered"]),
        "rows_per_run": {str(r): int(c) for r, c in zip(runs, rows_of_run)},
        "missing_checkpoints": [list(key) for key in skipped],
    }
    return out, file_capacity, counts


def _actions_at(slots: BufferSlots, where: np.ndarray) -> np.ndarray:
    """Actions of file slots, 0 beyond the slots read (the reference's buffer holds them, but
    only Qbert's detector looks one row ahead, and only at whether it is 0 or 1)."""
    inside = where < len(slots.action)
    return np.where(inside, slots.action[np.minimum(where, len(slots.action) - 1)], 0)


def _per_slot(path: str | Path, slots: BufferSlots, file_capacity: int, game: str,
              compute: Callable[[np.ndarray], Features]) -> tuple[np.ndarray, Features]:
    """Cell digest and detector features of every slot of one file (blank where no row is)."""
    blank = np.zeros((1, 84, 84), np.uint8)
    digest = np.repeat(pooled_frame_digests(game, blank), file_capacity, axis=0)
    features = empty_features(file_capacity, compute)
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=["slot", "frame"])
        where = table["slot"].to_numpy().astype(np.int64)
        frames = frames_numpy(table["frame"])
        digest[where] = pooled_frame_digests(game, frames)
        for name, values in compute(frames).items():
            features[name][where] = values
    return digest, features


def _export_images(folder: Path, data: TrainingSet, positions: np.ndarray,
                   table: Mapping[str, Any]) -> None:
    """The frame stack of each top state as PNG, named by order, and a contact sheet."""
    folder.mkdir(parents=True, exist_ok=True)
    strips = []
    frames, stacks = data.frames, data.stacks
    for k, position in enumerate(positions):
        strip = stack_strip(np.asarray(frames[np.asarray(stacks[int(position)])]))
        name = (f"{k:04d}_pos{int(position)}_action{int(table['action'][k])}"
                f"_best{int(table['best_action'][k])}_worst{int(table['worst_action'][k])}.png")
        write_png(folder / name, strip)
        strips.append(strip)
    write_png(folder / "contact_sheet.png", contact_sheet(strips))
