"""Mining statistics, ranking and sampling on hand-built sequences, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fdt.mining.ranking import (
    CellStatistics,
    collect_returns,
    dense_cells,
    discounted_returns,
    important_states,
    rank_cells,
)


def test_discounted_returns() -> None:
    rewards = np.array([0, 1, 0, 0, 0, 0, 1], dtype=np.float32)
    ends = np.array([4, 7])
    assert discounted_returns(rewards, ends, 0.5).tolist() == [0.5, 1, 0, 0, 0.25, 0.5, 1]


def test_life_loss_penalty_window() -> None:
    rewards = np.array([0, 1, 0, 0, 0, 0, 1], dtype=np.float32)
    ends = np.array([4, 7])
    # Life lost at step 2; the trajectory ends (3 and 6) count as losses too.
    life_loss = np.array([0, 0, 1, 1, 0, 0, 1], dtype=bool)
    # S = 2: step t is penalised if a life is lost at t or t+1, or its trajectory ends within 2.
    got = discounted_returns(rewards, ends, 0.5, life_loss=life_loss, penalty=-10, horizon=2)
    assert got.tolist() == [0.5, 1 - 10, -10, -10, 0.25, 0.5 - 10, 1 - 10]
    # Offset 1 (Pong's is 6): the loss at t itself is not looked at; S = 3.
    got = discounted_returns(rewards, ends, 0.5, life_loss=life_loss, penalty=-10, horizon=3,
                             offset=1)
    # t=0: window [1,3) holds the loss at 2; t=4: window [5,7) reaches the end (6): near end.
    assert got.tolist() == [0.5 - 10, 1 - 10, -10, -10, 0.25 - 10, 0.5 - 10, 1 - 10]
    assert discounted_returns(rewards, ends, 0.5, life_loss=life_loss, penalty=0,
                              horizon=3).tolist() == [0.5, 1, 0, 0, 0.25, 0.5, 1]


# idx: cell action return allowed choosable          (trajectories 0-5 and 6-11)
SEQUENCE = [
    (0, 0, 1.0, True, True),     # 0: c0 becomes a candidate
    (0, 1, 3.0, True, True),     # 1
    (0, 0, 2.0, True, True),     # 2: (c0, a0) already seen in this trajectory: not added
    (1, 2, 5.0, False, True),    # 3: c1 is not a candidate yet: ignored
    (1, 2, 4.0, True, True),     # 4: c1 becomes a candidate
    (1, 3, 0.0, False, True),    # 5: not allowed, new action of a candidate: added (reference)
    (0, 0, 2.0, True, False),    # 6: new trajectory, first visit: added though not choosable
    (1, 3, 1.0, False, True),    # 7: action first added by a step not allowed: added again
    (2, 1, 7.0, True, False),    # 8: c2 met outside the choosable positions: skipped
    (2, 1, 6.0, True, True),     # 9: c2 becomes a candidate
    (2, 0, 6.0, True, True),     # 10: c2's two actions tie: gap 0, not ranked
    (0, 1, 1.0, False, True),    # 11: not allowed, action first added by an allowed step: ignored
]
ENDS = np.array([6, 12])


def _stats(first_visit: bool = True) -> CellStatistics:
    cells, actions, returns, allowed, choosable = (np.array(c) for c in zip(*SEQUENCE))
    return collect_returns(cells, actions, returns, allowed, choosable, ENDS,
                           first_visit=first_visit)


def test_collect_returns_by_the_reference_rules() -> None:
    stats = _stats()
    # (mean, count) per (cell, action): c0 a0 took 1.0 and 2.0 (step 6), c1 a3 0.0 and 1.0.
    assert stats.summary() == {0: {0: (1.5, 2), 1: (3.0, 1)}, 1: {2: (4.0, 1), 3: (0.5, 2)},
                               2: {1: (6.0, 1), 0: (6.0, 1)}}
    assert stats.occurrences == {0: [(0, 0), (1, 1), (2, 0)], 1: [(4, 2)], 2: [(9, 1), (10, 0)]}
    assert stats.skipped == 1 and stats.from_disallowed == 3
    every_visit = _stats(first_visit=False)
    # 1.0 + 2.0 (step 2) + 2.0, a float32 mean
    assert every_visit.summary()[0][0] == (float(np.float32(5 / 3)), 3)


def test_rank_and_default_sampling() -> None:
    stats = _stats()
    ranked = rank_cells(stats)
    # c1: 4.0 - 0.5 = 3.5; c0: 3.0 - 1.5 = 1.5; c2: gap 0.
    assert [(r.cell, r.best_action, r.worst_action, r.gap) for r in ranked] == [
        (1, 2, 3, 3.5), (0, 1, 0, 1.5)]
    chosen, dropped = important_states(ranked, stats)
    # c1's worst action (3) was never taken at an allowed, choosable step.
    assert [(s.index, s.rank, s.action, s.kind) for s in chosen] == [
        (4, 0, 2, "best"), (1, 1, 1, "best"), (0, 1, 0, "worst")]
    assert dropped == 0


def test_all_cell_pairs_and_window() -> None:
    stats = _stats()
    ranked = rank_cells(stats)
    chosen, _ = important_states(ranked, stats, extra_per_cell=1)
    assert [(s.index, s.kind) for s in chosen] == [(4, "best"), (1, "best"), (0, "worst"),
                                                   (2, "extra")]
    kept, dropped = important_states(ranked, stats, extra_per_cell=1, window=1)
    # 0 is within 1 of 1; 2 is within 1 of 1 (and of 0, itself dropped: it still counts).
    assert [s.index for s in kept] == [4, 1] and dropped == 2
    kept, dropped = important_states(ranked, stats, extra_per_cell=1, window=3)
    assert [s.index for s in kept] == [4] and dropped == 3


def test_extra_occurrences_let_n_plus_one_through() -> None:
    stats = CellStatistics.from_returns(
        {7: {0: [2.0], 1: [1.0]}},
        occurrences={7: [(10, 0), (11, 1), (12, 0), (13, 0), (14, 1), (15, 0)]})
    ranked = rank_cells(stats)
    chosen, _ = important_states(ranked, stats, extra_per_cell=2)
    # best (10), worst (11), then the reference's check admits 3 more: 12, 13, 14.
    assert [s.index for s in chosen] == [10, 11, 12, 13, 14]


def test_ties_keep_first_met_order() -> None:
    stats = CellStatistics.from_returns({5: {3: [1.0], 1: [0.5, 1.5], 2: [0.0]},
                                         4: {0: [2.0], 1: [1.0]}},
                                        occurrences={5: [(0, 3)], 4: [(1, 0)]})
    ranked = rank_cells(stats)
    assert [(r.cell, r.best_action, r.worst_action) for r in ranked] == [(5, 3, 2), (4, 0, 1)]


def test_dense_cells() -> None:
    digests = np.array([[5, 1], [2, 2], [5, 1], [5, 2]], dtype=np.uint64)
    ids = dense_cells(digests)
    assert ids[0] == ids[2] and len(set(ids.tolist())) == 3


@pytest.mark.parametrize("n", [0, 1])
def test_no_candidates(n: int) -> None:
    cells = np.zeros(n, dtype=np.int64)
    stats = collect_returns(cells, cells, cells.astype(float), np.zeros(n, bool),
                            np.ones(n, bool), np.array([n]) if n else np.array([], np.int64))
    assert stats.pairs == {} and rank_cells(stats) == []


def test_a_game_without_a_detector_is_refused_before_any_work(tmp_path) -> None:
    from fdt.mining.stage import MiningError, MiningParams, mine_states

    params = MiningParams(seed=0, transitions=10, num_buffers=1, buffers_end=1,
                          trajectories_per_visit=1, context_length=2)
    with pytest.raises(MiningError, match="no allowed-step detector for MsPacman yet"):
        mine_states({}, tmp_path / "missing", tmp_path / "out", params, "MsPacman")
    assert not (tmp_path / "out").exists()


def test_planned_checkpoints_paper_and_demo() -> None:
    from fdt.mining.stage import MiningParams, planned_checkpoints

    paper = MiningParams(seed=0, transitions=50_000_000, num_buffers=50, buffers_end=50,
                         trajectories_per_visit=10, context_length=30, runs=(1, 2),
                         checkpoints=tuple(range(50)))
    # Run 1: the random phase's 0..49; the ordered phase cannot pass 49. Run 2 starts past
    # 47M rows and gives under 3M: ceil(3M / 999,999) = 4 buffers, and 1 spare.
    assert planned_checkpoints(paper, 1_000_000) == {1: list(range(50)), 2: [1, 2, 3, 4, 5]}
    # A checkpoint the config does not ingest counts as missing; no run 3 is reached.
    fewer = MiningParams(**{**paper.__dict__, "checkpoints": (0, 1, 2, 4), "runs": (1, 2, 3),
                            "num_buffers": 3, "buffers_end": 3, "spare_buffers": 0})
    assert planned_checkpoints(fewer, 1_000_000) == {1: [0, 1, 2], 2: [1, 2]}
    demo = MiningParams(seed=0, transitions=9000, num_buffers=4, buffers_end=4,
                        trajectories_per_visit=3, context_length=10, random_rows=3000,
                        ordered_trajectories_per_visit=100, rows_per_run=9000, runs=(1,))
    assert planned_checkpoints(demo, 4000) == {1: [0, 1, 2, 3]}


def test_mining_reads_the_next_run_past_rows_per_run(episode_store, tmp_path) -> None:
    """conftest's checkpoints 0-2 stand for runs 1 and 2. Mining reads slots 0..8, so buffer 0
    holds [0,7) then an open tail; buffer 1 [0,4), open; buffer 2 [0,3), then [3,9), which ends
    on the last slot read (dropped). Draws (seed 0): 0 1 ...

    Random phase (1 trajectory a visit): b0 [0,7), b1 [0,4): 11 >= 10 rows. Ordered, 5 a visit:
    run 1 b1 from slot 4 keeps nothing, b2 keeps [0,3): 14 > 12 rows, so run 2 from buffer 1:
    [0,4), then buffer 2: [0,3): 21 >= 20.
    """
    from dataclasses import replace

    from fdt.dataset.sampling import SamplingParams
    from fdt.dataset.training_set import build_training_set
    from fdt.mining.stage import MiningError, MiningParams, mine_states

    build_training_set({b: episode_store[b] for b in range(3)}, tmp_path / "set",
                       SamplingParams(seed=0, transitions=10, num_buffers=3, buffers_end=3,
                                      capacity=10, trajectories_per_visit=1, context_length=2),
                       num_actions=4, progress=False)
    params = MiningParams(seed=0, transitions=20, num_buffers=3, buffers_end=3,
                          trajectories_per_visit=1, context_length=2, random_rows=10,
                          ordered_trajectories_per_visit=5, rows_per_run=12, runs=(1, 2),
                          checkpoints=(0, 1, 2), images=0)
    stores = {(run, b): episode_store[b] for run in (1, 2) for b in range(3)}
    counts = mine_states(stores, tmp_path / "set", tmp_path / "out", params, "Breakout",
                         progress=False)
    assert counts["rows_per_run"] == {"1": 14, "2": 7} and counts["transitions"] == 21
    assert counts["visits"] == 6 and counts["ordered_visits"] == 4
    assert counts["missing_checkpoints"] == []
    # Run 2's buffer 1 not given, though the config ingests it: the estimate was too short.
    del stores[(2, 1)]
    with pytest.raises(MiningError, match=r"reads checkpoint 1 of run 2, which was not given: "
                                          r"the workflow's estimate .* raise "
                                          r"mining.spare_buffers"):
        mine_states(stores, tmp_path / "set", tmp_path / "out2", params, "Breakout",
                    progress=False)
    # Not ingested by the config: missing, skipped as the reference skips a file it cannot find
    # (run 2 goes on at buffer 2: 14 + 3 = 17 rows).
    counts = mine_states(stores, tmp_path / "set", tmp_path / "out3",
                         replace(params, transitions=17, checkpoints=(0, 2)), "Breakout",
                         progress=False)
    assert counts["missing_checkpoints"] == [[2, 1]]
    assert counts["rows_per_run"] == {"1": 14, "2": 3}
