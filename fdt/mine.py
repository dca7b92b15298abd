"""The mining stage: statistics over sampled trajectories, important states inside the training set.

The statistics set is sampled from the converted checkpoints by the reference's visit loop
(fdt.dataset.reference_plan), reading file slots 0..capacity-1 (the reference: 999,999) with
states stacked in storage order modulo the file's capacity, as the reference's mining buffer does.
Each buffer's frames are streamed once: per slot a cell digest (fdt.cells) and the features the
game's detector reads (fdt.checks); the detector then replays every row each visit reads. Only
rows whose replay index is a transition of the training set may be chosen, so the output lines
up with the training set (its `position` column).

Outputs: `states.parquet` (the ordered important states), `counts.json`, `images/` (the frame
stacks of the top states as PNG, and a contact sheet).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.cells import DIGEST_WORDS, digest_hex, pooled_frame_digests, stack_digests
from fdt.checks import GAME_CHECKS, Features, empty_features
from fdt.dataset import (BufferSlots, SamplingParams, TrainingSet, load_buffer_slots,
                         reference_plan, replay_index_of)
from fdt.dopamine import STACK_SIZE
from fdt.images import contact_sheet, stack_strip, write_png
from fdt.io import atomic_path, write_json
from fdt.mining import (LIFE_LOSS_OFFSET, collect_returns, dense_cells, discounted_returns,
                        important_states, rank_cells)
from fdt.store import frames_numpy, read_summary


class MiningError(ValueError):
    pass


@dataclass(frozen=True)
class MiningParams:
    seed: int
    transitions: int
    num_buffers: int
    buffers_end: int
    trajectories_per_visit: int
    context_length: int
    capacity: int | None = None  # slots read per buffer; None: the file's capacity - 1
    gamma: float = 0.9
    first_visit: bool = True
    life_loss_penalty: float = 0.0
    life_loss_horizon: int = 0
    extra_per_cell: int = 0
    window: int = 0
    images: int = 16


@dataclass
class StatisticsSet:
    """The statistics set, in sampling order."""

    cells: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    allowed: np.ndarray
    life_loss: np.ndarray
    buffer: np.ndarray
    slot: np.ndarray
    trajectory_ends: np.ndarray


def mine_states(store_paths: Mapping[int, str | Path], training_set: str | Path,
                out_dir: str | Path, params: MiningParams, game: str, *,
                progress: bool = True) -> dict[str, Any]:
    if game not in GAME_CHECKS:
        raise MiningError(f"no allowed-step detector for {game} yet; mining supports "
                          f"{', '.join(GAME_CHECKS)}")
    data = TrainingSet(training_set)
    sequence, file_capacity = _statistics_set(store_paths, params, game, progress)
    replay_index = replay_index_of(sequence.buffer, sequence.slot, file_capacity)
    returns = discounted_returns(sequence.rewards, sequence.trajectory_ends, params.gamma,
                                 life_loss=sequence.life_loss, penalty=params.life_loss_penalty,
                                 horizon=params.life_loss_horizon,
                                 offset=LIFE_LOSS_OFFSET.get(game, 0))
    transitions = np.asarray(data.replay_index)[~np.asarray(data.padding)]
    choosable = np.isin(replay_index, transitions)
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
    }
    write_json(out_dir / "counts.json", {"game": game, "params": asdict(params), "counts": counts})
    _export_images(out_dir / "images", data, position[:params.images], table)
    return counts


def _statistics_set(store_paths: Mapping[int, str | Path], params: MiningParams, game: str,
                    progress: bool) -> tuple[StatisticsSet, int]:
    buffers = list(range(params.buffers_end - params.num_buffers, params.buffers_end))
    missing = [b for b in buffers if b not in store_paths]
    if missing:
        raise MiningError(f"mining draws from checkpoints {buffers[0]}..{buffers[-1]}, but no "
                          f"converted file was given for {missing}")
    file_capacity = int(read_summary(store_paths[buffers[0]])["capacity"])
    capacity = params.capacity or file_capacity - 1
    # One slot more than is read: the row after the last one read is a detector's "next" row.
    slots = {b: load_buffer_slots(store_paths[b], min(capacity + 1, file_capacity))
             for b in buffers}
    sampling = SamplingParams(seed=params.seed, transitions=params.transitions,
                              num_buffers=params.num_buffers, buffers_end=params.buffers_end,
                              capacity=capacity,
                              trajectories_per_visit=params.trajectories_per_visit,
                              context_length=params.context_length)
    plan = reference_plan({b: s.terminal for b, s in slots.items()}, sampling)
    lengths = np.array([e - s for _, s, e in plan.trajectories], dtype=np.int64)
    n = int(lengths.sum())
    out = StatisticsSet(cells=np.zeros((n, DIGEST_WORDS), np.uint64), actions=np.zeros(n, np.int32),
                    rewards=np.zeros(n, np.float32), allowed=np.zeros(n, bool),
                    life_loss=np.zeros(n, bool), buffer=np.zeros(n, np.int32),
                    slot=np.zeros(n, np.int32), trajectory_ends=np.cumsum(lengths))
    starts = out.trajectory_ends - lengths
    # Which trajectories each visit kept, in plan order.
    visit_of = np.repeat(np.arange(len(plan.visits)), [v["trajectories"] for v in plan.visits])
    compute, scan = GAME_CHECKS[game]
    used = sorted({v["buffer"] for v in plan.visits})
    for b in tqdm(used, desc=f"mine {game}", unit="buffer", disable=not progress):
        digest, features = _per_slot(store_paths[b], slots[b], file_capacity, game, compute)
        for v, visit in enumerate(plan.visits):
            if visit["buffer"] != b:
                continue
            read = np.arange(visit["start"], visit["stop"], dtype=np.int64)
            older = (read[:, None] - np.arange(1, STACK_SIZE)[None, :]) % file_capacity
            following = (read + 1) % file_capacity
            allowed, life_loss = scan(features, read, features["blank"][older].all(axis=1),
                                      slots[b].reward[read], slots[b].terminal[read],
                                      next_slots=following, actions=slots[b].action[read],
                                      next_actions=_actions_at(slots[b], following))
            for k in np.flatnonzero(visit_of == v):
                _, s, e = plan.trajectories[k]
                rows = slice(int(starts[k]), int(out.trajectory_ends[k]))
                within = slice(s - visit["start"], e - visit["start"])
                stack = (np.arange(s, e)[:, None] - np.arange(STACK_SIZE - 1, -1, -1)[None, :])
                out.cells[rows] = stack_digests(digest, stack % file_capacity)
                out.actions[rows] = slots[b].action[s:e]
                out.rewards[rows] = slots[b].reward[s:e]
                out.allowed[rows] = allowed[within]
                out.life_loss[rows] = life_loss[within] | slots[b].terminal[s:e]
                out.buffer[rows] = b
                out.slot[rows] = np.arange(s, e)
    return out, file_capacity


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
