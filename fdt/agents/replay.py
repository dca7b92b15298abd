"""The agents' transitions, read from the Parquet store with the project's stacking rules, and the
two data regimes they are sampled from.

A transition is a stored row t: its state is the frames of rows t-3..t, zeros before its episode's
first frame (as ReplayStore.stacks); its next state is row t+1's state, inside the same episode;
at a terminal row (game over, or the step cap, which the data does not tell apart) the next state
is never used, the target being the reward alone. A row whose state or next state needs a frame the
loaded checkpoints do not hold is left out, as batch_rl leaves out the slots around a checkpoint's
write cursor (Dopamine's invalid_range); so is the last row of an episode still open.

Regimes:
- `batch_rl` (FixedReplayRunner): each iteration loads `checkpoints_per_iteration` checkpoints of
  the run drawn without replacement; a batch draws one of them uniformly, then its transitions
  uniformly with replacement (FixedReplayBuffer.sample_transition_batch). `data_fraction` keeps a
  share of each checkpoint: its first transitions by file slot (batch_rl's reduced
  replay_capacity) or a random subset, drawn once per (seed, checkpoint).
- `training_set`: the transitions of the training set DT, BC and FDT train on (its non-padding
  rows, in its order), sampled uniformly with replacement.
Every draw comes from a generator seeded by (seed, iteration), so an iteration replays exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fdt.dataset.training_set import TrainingSet
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.replay.store import ReplayStore

REGIMES = ("batch_rl", "training_set")
SUBSETS = ("first", "random")


class ReplayDataError(ValueError):
    pass


@dataclass
class TransitionPool:
    """Transitions whose states index `frames` (frame 0 is the zero frame of an episode's start)."""

    frames: np.ndarray  # (F, 84, 84) uint8
    state: np.ndarray  # (n, 4) int64, oldest frame first
    next_state: np.ndarray  # (n, 4) int64 (a terminal row's own state: never used)
    action: np.ndarray  # (n,) int64
    reward: np.ndarray  # (n,) float32
    terminal: np.ndarray  # (n,) bool
    replay_index: np.ndarray  # (n,) int64
    group: np.ndarray  # (n,) int64: the checkpoint a batch_rl batch is drawn from (0..groups-1)
    left_out: int = 0  # rows asked for whose state or next state the store cannot complete

    def __len__(self) -> int:
        return len(self.action)

    @property
    def groups(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0


def load_pool(store: ReplayStore, replay_indices: np.ndarray,
              groups: np.ndarray | None = None) -> TransitionPool:
    """The transitions of the given rows (replay indices of the store) that the store completes."""
    wanted = np.asarray(replay_indices, dtype=np.int64)
    groups = np.zeros(len(wanted), np.int64) if groups is None else np.asarray(groups, np.int64)
    table = store.table
    episode = table["episode_id"].to_numpy()
    terminal = table["terminal"].to_numpy().astype(bool)
    position = store.positions(wanted)
    step = store.step[position]

    def present(indices: np.ndarray) -> np.ndarray:
        found = np.minimum(np.searchsorted(store.replay_index, indices), len(store) - 1)
        return store.replay_index[found] == indices

    # Frames of the state: rows t-k for k < 4 with step >= k (earlier rows are the zero frame).
    backs = np.arange(STACK_SIZE - 1, -1, -1)  # oldest first
    sources = wanted[:, None] - backs[None, :]
    inside = step[:, None] >= backs[None, :]
    complete = np.all(~inside | present(sources), axis=1)
    # The next state: row t+1 of the same episode, unless t is terminal.
    ends = terminal[position]
    following = present(wanted + 1)
    following[following] &= episode[store.positions(wanted[following] + 1)] == episode[position[following]]
    usable = complete & (ends | following)

    wanted, groups, sources, inside = wanted[usable], groups[usable], sources[usable], inside[usable]
    ends = ends[usable]
    needed = np.unique(np.concatenate([sources[inside], wanted[~ends] + 1]))
    frames = np.empty((len(needed) + 1, *FRAME_SHAPE), np.uint8)
    frames[0] = 0
    frames[1:] = store.frames(needed)
    state = np.zeros(sources.shape, np.int64)  # frame numbers: 0 is the zero frame
    state[inside] = np.searchsorted(needed, sources[inside]) + 1
    next_state = state.copy()
    go_on = ~ends
    next_state[go_on, :-1] = state[go_on, 1:]
    next_state[go_on, -1] = np.searchsorted(needed, wanted[go_on] + 1) + 1
    where = store.positions(wanted)
    return TransitionPool(frames, state, next_state,
                          table["action"].to_numpy()[where].astype(np.int64),
                          table["reward"].to_numpy()[where].astype(np.float32),
                          ends.copy(), wanted, groups, left_out=int((~usable).sum()))


class Sampler:
    """Batches from a pool: per batch one group drawn uniformly, then rows uniformly within it
    (one group: uniform over the pool), with replacement."""

    def __init__(self, pool: TransitionPool, batch_size: int) -> None:
        if len(pool) == 0:
            raise ReplayDataError("no usable transitions to sample from")
        self.pool, self.batch_size = pool, batch_size
        order = np.argsort(pool.group, kind="stable")
        bounds = np.searchsorted(pool.group[order], np.arange(pool.groups + 1))
        self.members = [order[bounds[g]:bounds[g + 1]] for g in range(pool.groups)]
        self.members = [m for m in self.members if len(m)]

    def rows(self, rng: np.random.Generator) -> np.ndarray:
        members = self.members[int(rng.integers(len(self.members)))] if len(self.members) > 1 \
            else self.members[0]
        return members[rng.integers(0, len(members), self.batch_size)]

    def batch(self, rows: np.ndarray, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        p = self.pool
        tensors = {"state": p.frames[p.state[rows]], "next_state": p.frames[p.next_state[rows]],
                   "action": p.action[rows], "reward": p.reward[rows], "terminal": p.terminal[rows]}
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in tensors.items()}


def iteration_rng(seed: int, iteration: int, stream: int) -> np.random.Generator:
    """The generator of one use (`stream`) in one iteration: an iteration replays exactly."""
    return np.random.default_rng([seed, iteration, stream])


class BatchRLData:
    """batch_rl's regime over the converted checkpoints of one run ({number: parquet path})."""

    PICK, SUBSET = 0, 1  # streams

    def __init__(self, checkpoints: Mapping[int, str | Path], per_iteration: int, *,
                 fraction: float = 1.0, subset: str = "first", seed: int = 0) -> None:
        if per_iteration > len(checkpoints):
            raise ReplayDataError(f"an iteration loads {per_iteration} checkpoints, but the run has "
                                  f"{len(checkpoints)} ({', '.join(map(str, sorted(checkpoints)))})")
        if not 0 < fraction <= 1:
            raise ReplayDataError(f"data_fraction must be in (0, 1], not {fraction}")
        if subset not in SUBSETS:
            raise ReplayDataError(f"data_subset must be one of {', '.join(SUBSETS)}, not {subset!r}")
        self.checkpoints = {int(k): Path(v) for k, v in sorted(checkpoints.items())}
        self.per_iteration, self.fraction, self.subset, self.seed = per_iteration, fraction, subset, seed

    def chosen(self, iteration: int) -> list[int]:
        """The checkpoints an iteration loads (reload_buffer: np.random.choice without replacement)."""
        rng = iteration_rng(self.seed, iteration, self.PICK)
        return sorted(int(c) for c in rng.choice(list(self.checkpoints), self.per_iteration,
                                                 replace=False))

    def kept(self, buffer: np.ndarray, slot: np.ndarray, replay_index: np.ndarray,
             number: int) -> np.ndarray:
        """The replay indices of checkpoint `number` that `data_fraction` keeps."""
        mine = np.flatnonzero(buffer == number)
        mine = mine[np.argsort(slot[mine], kind="stable")]
        count = max(1, math.ceil(self.fraction * len(mine))) if len(mine) else 0
        if self.subset == "first":
            return replay_index[mine[:count]]
        rng = np.random.default_rng([self.seed, number, self.SUBSET])
        return np.sort(replay_index[rng.choice(mine, count, replace=False)])

    def pool(self, iteration: int) -> TransitionPool:
        chosen = self.chosen(iteration)
        store = ReplayStore([self.checkpoints[c] for c in chosen])
        columns = [store.table[c].to_numpy() for c in ("buffer", "slot", "replay_index")]
        rows, groups = [], []
        for group, number in enumerate(chosen):
            kept = self.kept(*columns, number)
            rows.append(kept)
            groups.append(np.full(len(kept), group, np.int64))
        return load_pool(store, np.concatenate(rows), np.concatenate(groups))

    def describe(self, iteration: int) -> dict[str, object]:
        return {"checkpoints": self.chosen(iteration)}


class TrainingSetData:
    """The training set's transitions (its non-padding rows), read from the checkpoints it drew."""

    def __init__(self, training_set: str | Path, buffers: Sequence[str | Path]) -> None:
        self.training_set, self.buffers = Path(training_set), [Path(b) for b in buffers]
        self._pool: TransitionPool | None = None

    def pool(self, iteration: int) -> TransitionPool:
        if self._pool is None:
            data = TrainingSet(self.training_set)
            rows = np.asarray(data.replay_index)[~np.asarray(data.padding)]
            self._pool = load_pool(ReplayStore(self.buffers), rows)
        return self._pool

    def describe(self, iteration: int) -> dict[str, object]:
        return {"training_set": str(self.training_set)}
