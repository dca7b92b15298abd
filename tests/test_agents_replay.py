"""The agents' transitions and samplers against hand-built ones on the `episode_run` store.

Transitions t = 0..18 (conftest): A 0-3 at replay indices 3-6, B 4-7 at 10-13, D 8-13 at 17-22
(crossing from checkpoint 1 into 2), E 14-16 at 26-28, F 17-18 at 32-33 (still open). Transition
t's frame has every pixel t + 1; terminals at t = 3, 7, 13, 16. Checkpoint 0 holds indices 0-8,
1 holds 9-18, 2 holds 19-28, 3 (the last) holds 29-33.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fdt.agents.replay import (
    BatchRLData,
    ReplayDataError,
    Sampler,
    TrainingSetData,
    load_pool,
)
from fdt.replay.store import ReplayStore

INDEX = {t: r for t, r in zip(range(19), [*range(3, 7), *range(10, 14), *range(17, 23),
                                          *range(26, 29), 32, 33])}
EPISODES = [range(0, 4), range(4, 8), range(8, 14), range(14, 17), range(17, 19)]
TERMINAL = {3, 7, 13, 16}


def hand_state(t: int) -> list[int]:
    """Pixel values of t's state, oldest first: zeros before its episode's first transition."""
    first = next(e.start for e in EPISODES if t in e)
    return [s + 1 if s >= first else 0 for s in range(t - 3, t + 1)]


def values(pool, stacks: np.ndarray) -> list[list[int]]:
    return pool.frames[stacks][:, :, 0, 0].tolist()


def test_every_transition_and_next_state_by_hand(episode_store: list[Path]) -> None:
    store = ReplayStore(episode_store)
    pool = load_pool(store, np.array(list(INDEX.values())))
    usable = [t for t in range(19) if t != 18]  # F's last transition has no logged next state
    assert pool.replay_index.tolist() == [INDEX[t] for t in usable] and pool.left_out == 1
    assert values(pool, pool.state) == [hand_state(t) for t in usable]
    assert values(pool, pool.next_state) == [hand_state(t + 1) if t not in TERMINAL else hand_state(t)
                                            for t in usable]
    assert pool.terminal.tolist() == [t in TERMINAL for t in usable]
    assert pool.action.tolist() == [t % 4 for t in usable]
    assert pool.reward.tolist() == [1.0 if t in (1, 9, 11) else 0.0 for t in usable]
    # The states are the store's own stacks.
    assert np.array_equal(pool.frames[pool.state], store.stacks(pool.replay_index))


def test_rows_needing_an_unloaded_checkpoint_are_left_out(episode_store: list[Path]) -> None:
    store = ReplayStore([episode_store[2]])  # indices 19-28: D's t = 10-13, E
    pool = load_pool(store, store.replay_index)
    # t = 10, 11, 12 need frames of indices 17-18 (checkpoint 1); t = 13 has them all.
    assert pool.replay_index.tolist() == [INDEX[t] for t in (13, 14, 15, 16)]
    assert pool.left_out == 3
    assert values(pool, pool.state) == [hand_state(t) for t in (13, 14, 15, 16)]
    assert values(pool, pool.next_state)[1] == hand_state(15)


def test_batch_rl_checkpoints_fraction_and_batches(episode_store: list[Path]) -> None:
    paths = dict(enumerate(episode_store))
    data = BatchRLData(paths, 2, seed=3)
    chosen = data.chosen(1)
    assert len(chosen) == 2 and len(set(chosen)) == 2 and chosen == data.chosen(1)
    assert len({tuple(data.chosen(i)) for i in range(1, 12)}) > 1  # a fresh draw per iteration
    # Checkpoint 1 holds index 9 in slot 9 and indices 10-18 in slots 0-8; its transitions by
    # slot are 10-13 (B) and 17-18 (D's start): the first half keeps 10, 11, 12.
    store = ReplayStore([paths[1]])
    columns = [store.table[c].to_numpy() for c in ("buffer", "slot", "replay_index")]
    half = BatchRLData(paths, 1, fraction=0.5, seed=3)
    assert half.kept(*columns, 1).tolist() == [10, 11, 12]
    random = BatchRLData(paths, 1, fraction=0.5, subset="random", seed=3)
    kept = random.kept(*columns, 1)
    assert len(kept) == 3 and set(kept) <= {10, 11, 12, 13, 17, 18}
    assert kept.tolist() == random.kept(*columns, 1).tolist()  # once per (seed, checkpoint)

    pool = data.pool(1)
    assert sorted(set(pool.group.tolist())) == [0, 1]
    sampler = Sampler(pool, batch_size=5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        rows = sampler.rows(rng)
        assert len(set(pool.group[rows].tolist())) == 1  # one checkpoint per batch, as batch_rl
    batch = sampler.batch(rows)
    assert batch["state"].shape == (5, 4, 84, 84) and batch["terminal"].dtype.is_floating_point is False
    assert batch["state"][:, :, 0, 0].tolist() == values(pool, pool.state[rows])

    with pytest.raises(ReplayDataError, match="loads 5 checkpoints, but the run has 4"):
        BatchRLData(paths, 5)
    with pytest.raises(ReplayDataError, match=r"data_fraction must be in \(0, 1\]"):
        BatchRLData(paths, 1, fraction=1.5)


def test_training_set_regime_reads_the_training_sets_transitions(episode_store: list[Path],
                                                                 tmp_path: Path) -> None:
    from fdt.dataset.sampling import SamplingParams
    from fdt.dataset.training_set import TrainingSet, build_training_set

    folder = tmp_path / "set"
    build_training_set(dict(enumerate(episode_store)), folder,
                       SamplingParams(seed=0, transitions=20, num_buffers=3, buffers_end=3,
                                      capacity=10, trajectories_per_visit=1, context_length=2),
                       num_actions=4, progress=False)
    data = TrainingSet(folder)
    rows = np.asarray(data.replay_index)[~np.asarray(data.padding)]
    pool = TrainingSetData(folder, episode_store[:3]).pool(1)
    complete = [r for r in rows.tolist() if r in set(pool.replay_index.tolist())]
    assert pool.replay_index.tolist() == complete and len(complete) == len(rows) - pool.left_out
    t_of = {r: t for t, r in INDEX.items()}
    assert values(pool, pool.state) == [hand_state(t_of[r]) for r in complete]
    assert (pool.group == 0).all()
