"""Reference sampling of the training set, against orders and arrays computed by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fdt.dataset.sampling import SamplingParams, TrainingSetError, reference_plan
from fdt.dataset.training_set import (
    TrainingSet,
    build_training_set,
    returns_to_go,
    timesteps_of,
    window_starts,
)

# RandomState(0).choice(arange(0, 2), 1)[0] draws 0, 1, 1, 0, 1, 1, 1, ... (checked below).
TWO_BUFFERS = {
    # C = 12. Buffer 0: trajectories [0,3) [3,8) [8,9) (short) and [9,12), whose terminal is
    # the last slot (dropped, buffer exhausted). Buffer 1: [0,5) [5,10), then [10,12) open.
    0: np.isin(np.arange(12), [2, 7, 8, 11]),
    1: np.isin(np.arange(12), [4, 9]),
}


def _params(**kw: int) -> SamplingParams:
    base = dict(seed=0, transitions=18, num_buffers=2, buffers_end=2, capacity=12,
                trajectories_per_visit=1, context_length=3)
    return SamplingParams(**{**base, **kw})


def test_rng_call_order_is_the_references() -> None:
    rng = np.random.RandomState(0)
    assert [int(rng.choice(np.arange(0, 2), 1)[0]) for _ in range(4)] == [0, 1, 1, 0]


def test_plan_one_trajectory_per_visit() -> None:
    plan = reference_plan(TWO_BUFFERS, _params())
    # Visits: b0 keeps [0,3); b1 [0,5); b1 [5,10); b0 [3,8): 3+5+5+5 = 18 transitions.
    assert plan.trajectories == [(0, 0, 3), (1, 0, 5), (1, 5, 10), (0, 3, 8)]
    assert [v["buffer"] for v in plan.visits] == [0, 1, 1, 0]
    assert [v["resume"] for v in plan.visits] == [3, 5, 10, 8]
    assert [v["stop"] for v in plan.visits] == [3, 5, 10, 8]


def test_plan_short_trajectories_do_not_count() -> None:
    # Two per visit: b0 keeps [0,3) and [3,8); b1 keeps [0,5) and [5,10).
    plan = reference_plan(TWO_BUFFERS, _params(trajectories_per_visit=2))
    assert plan.trajectories == [(0, 0, 3), (0, 3, 8), (1, 0, 5), (1, 5, 10)]
    # With K = 4 the 3-row trajectory [0,3) is dropped and b0's first visit keeps [3,8) and
    # then nothing: [8,9) is short and [9,12) ends on the last slot.
    plan = reference_plan(TWO_BUFFERS, _params(trajectories_per_visit=2, context_length=4,
                                                 transitions=10))
    assert plan.trajectories[0] == (0, 3, 8)
    assert plan.visits[0]["resume"] == 12 and plan.visits[0]["stop"] == 12


def test_plan_stops_when_every_buffer_is_used_up() -> None:
    with pytest.raises(TrainingSetError, match="hold only 18 usable transitions"):
        reference_plan(TWO_BUFFERS, _params(transitions=19))


def test_returns_to_go_and_timesteps() -> None:
    rewards = np.array([0, 1, 0, 1, 1, 0, 0], dtype=np.float32)
    ends = np.array([4, 7])
    assert returns_to_go(rewards, ends).tolist() == [2, 2, 1, 1, 1, 0, 0]
    assert timesteps_of(ends, 7).tolist() == [0, 1, 2, 3, 0, 1, 2]


def test_windows_never_cross_a_trajectory_end() -> None:
    ends = np.array([5, 9, 20])
    starts = window_starts(20, ends, 3)
    # n - 3K = 11 samples; sample i's window ends at min(i + 3, end of i's trajectory).
    assert starts.tolist() == [0, 1, 2, 2, 2, 5, 6, 6, 6, 9, 10]
    for s in starts:
        first_end = ends[np.searchsorted(ends, s, side="right")]
        assert s + 3 <= first_end
    with pytest.raises(TrainingSetError, match="no windows"):
        window_starts(9, np.array([9]), 3)


def _store_params(**kw: int) -> SamplingParams:
    base = dict(seed=0, transitions=20, num_buffers=3, buffers_end=3, capacity=10,
                trajectories_per_visit=1, context_length=2)
    return SamplingParams(**{**base, **kw})


def _build(store: list[Path], out: Path, **kw: int) -> dict:
    return build_training_set({n: p for n, p in enumerate(store)}, out, _store_params(**kw),
                              num_actions=4, progress=False)


def test_training_set_from_a_store(episode_store: list[Path], tmp_path: Path) -> None:
    """conftest.episode_run, slots 0..9 of checkpoints 0-2 in storage order:

        buffer 0: pad pad pad A0 A1 A2 A3* pad pad (slot 9 never written)
        buffer 1: B4 B5 B6 B7* pad pad pad D8 D9 pad(index 9)
        buffer 2: D11 D12 D13* pad pad pad E14 E15 E16* D10
    Draws (seed 0, 3 buffers): 0 1 0 1 1 2 0 2: b0 keeps [0,7); b1 [0,4); b0 and b1 then find
    only open trajectories; b2 keeps [0,3), later [3,9): 7 + 4 + 3 + 6 = 20 rows.
    """
    manifest = _build(episode_store, tmp_path / "set")
    data = TrainingSet(tmp_path / "set")
    assert [v["buffer"] for v in manifest["visits"]] == [0, 1, 0, 1, 1, 2, 0, 2]
    assert data.trajectory_ends.tolist() == [7, 11, 14, 20]
    assert data.buffer.tolist() == [0] * 7 + [1] * 4 + [2] * 9
    assert data.slot.tolist() == [*range(7), *range(4), *range(3), *range(3, 9)]
    assert data.replay_index.tolist() == [*range(7), *range(10, 14), *range(20, 29)]
    assert data.padding.tolist() == ([True] * 3 + [False] * 4 + [False] * 4 + [False] * 3
                                     + [True] * 3 + [False] * 3)
    # Transition t has action t % 4; padding rows have action 0.
    assert data.actions.tolist() == [0, 0, 0, 0, 1, 2, 3, 0, 1, 2, 3, 3, 0, 1, 0, 0, 0, 2, 3, 0]
    # Rewards +1 at t=1 (buffer 0 slot 4) and t=11 (buffer 2 slot 0); t=9 is not in the set.
    assert data.returns_to_go.tolist() == [1] * 5 + [0] * 2 + [0] * 4 + [1, 0, 0] + [0] * 6
    assert data.timesteps.tolist() == [*range(7), *range(4), *range(3), *range(6)]
    assert manifest["counts"] == {"transitions": 20, "trajectories": 4, "padding_rows": 6,
                                  "frames": int(data.frames.shape[0]), "visits": 8}
    # States: frames of the 4 rows ending at each row in storage order, wrapping modulo C.
    # A frame's pixels say which transition it is (t % 250 + 1); padding and slot 9 of
    # checkpoint 0 (never written) are zeros.
    pixel = data.frames[:, 0, 0][np.asarray(data.stacks)]
    assert pixel[0].tolist() == [0, 0, 0, 0]  # b0 slot 0: slots 7 8 9 0
    assert pixel[3].tolist() == [0, 0, 0, 1]  # A0
    assert pixel[7].tolist() == [9, 10, 0, 5]  # b1 slot 0 (B4): D8 D9 pad B4 (wrap quirk)
    assert pixel[11].tolist() == [16, 17, 11, 12]  # b2 slot 0 (D11): E15 E16 D10 D11
    assert pixel[14].tolist() == [12, 13, 14, 0]  # b2 slot 3: padding after D13
    assert pixel[17].tolist() == [0, 0, 0, 15]  # E14
    assert data.frames[0].max() == 0 and len(np.unique(data.stacks)) == len(data.frames)


def test_same_seed_same_bytes(episode_store: list[Path], tmp_path: Path) -> None:
    first = _build(episode_store, tmp_path / "a")
    second = _build(episode_store, tmp_path / "b")
    assert first["arrays"] == second["arrays"]
    for name in first["arrays"]:
        assert (tmp_path / "a" / f"{name}.npy").read_bytes() == (tmp_path / "b" / f"{name}.npy").read_bytes()
    other = _build(episode_store, tmp_path / "c", seed=2, transitions=10)
    assert other["visits"][0]["buffer"] == 0 and other["visits"][1]["buffer"] == 1


def test_partial_checkpoint_is_refused(episode_store: list[Path], tmp_path: Path) -> None:
    paths = {n: p for n, p in enumerate(episode_store)}
    with pytest.raises(TrainingSetError, match="partial last snapshot"):
        build_training_set(paths, tmp_path / "set", _store_params(num_buffers=4, buffers_end=4),
                           num_actions=4, progress=False)
    with pytest.raises(TrainingSetError, match=r"no converted file was given for \[2\]"):
        build_training_set({0: paths[0], 1: paths[1]}, tmp_path / "set", _store_params(),
                           num_actions=4, progress=False)
    with pytest.raises(TrainingSetError, match="the game has 3 actions"):
        build_training_set(paths, tmp_path / "set", _store_params(), num_actions=3, progress=False)


def test_missing_or_corrupt_arrays(episode_store: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "set"
    _build(episode_store, folder)
    spare = tmp_path / "spare"
    shutil.copytree(folder, spare)
    (folder / "actions.npy").unlink()
    with pytest.raises(TrainingSetError, match="actions.npy: missing"):
        TrainingSet(folder)
    shutil.rmtree(folder)
    shutil.copytree(spare, folder)
    frames = folder / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:-100])
    with pytest.raises(TrainingSetError, match="frames.npy: .* bytes, the manifest says"):
        TrainingSet(folder)
    shutil.rmtree(folder)
    shutil.copytree(spare, folder)
    raw = bytearray(frames.read_bytes())
    raw[-1] ^= 0xFF
    frames.write_bytes(bytes(raw))
    with pytest.raises(TrainingSetError, match="frames.npy: contents differ"):
        TrainingSet(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(TrainingSetError, match="manifest.json: missing"):
        TrainingSet(folder)


# The statistics set's loop (method.md §3). C = 20, K = 3; random draws from buffers 1 and 2 (the
# training set's range), which RandomState(0) draws as 1, 2, 2, 1, 2, ...; the ordered phase
# reads buffers 1, 2 of each run (the reference has no buffer buffers_end = 3).
RUNS = {
    # Run 1, buffer 1: [0,3) [3,8) [8,9) (short), then [9,20) ends on the last slot: dropped,
    # the buffer exhausted. Buffer 2: [0,5) [5,10) [10,15), then [15,20) open.
    (1, 1): np.isin(np.arange(20), [2, 7, 8, 19]),
    (1, 2): np.isin(np.arange(20), [4, 9, 14]),
    # Run 2: buffer 1 is missing; buffer 2: [0,6) [6,12), then [12,20) open.
    (2, 2): np.isin(np.arange(20), [5, 11]),
}


def _statistics(random_rows: int = 16, rows_per_run: int = 20, runs: tuple[int, ...] = (1, 2),
                transitions: int = 30):
    from fdt.dataset.sampling import StatisticsPhases, statistics_plan

    params = _params(transitions=transitions, buffers_end=3, capacity=20)
    phases = StatisticsPhases(random_rows=random_rows, ordered_trajectories_per_visit=2,
                              rows_per_run=rows_per_run, runs=runs)
    return statistics_plan(RUNS, params, phases)


def _visits(plan) -> list[tuple]:
    return [(v["run"], v["buffer"], v["start"], v["stop"], v["trajectories"], v["ordered"],
             v.get("missing", False)) for v in plan.visits]


def test_statistics_plan_random_then_ordered_then_the_next_run() -> None:
    plan = _statistics()
    assert _visits(plan) == [
        # Random phase, one trajectory a visit, as the training set: 3, 8, 13, 18 rows.
        (1, 1, 0, 3, 1, False, False), (1, 2, 0, 5, 1, False, False),
        (1, 2, 5, 10, 1, False, False), (1, 1, 3, 8, 1, False, False),
        # 18 >= 16 rows: buffers 1, 2 of run 1 in order, 2 trajectories a visit, each resuming
        # where the random phase left it. Buffer 1 has only a short trajectory, then one ending
        # on the last slot (dropped): nothing kept. Buffer 2 keeps [10,15); [15,20) is open.
        (1, 1, 8, 20, 0, True, False), (1, 2, 10, 20, 1, True, False),
        # 23 > 20 rows (rows_per_run): run 2 from buffer 1, which is missing (nothing read),
        # then buffer 2 from slot 0: 23 + 6 + 6 = 35 >= 30.
        (2, 1, 0, 0, 0, True, True), (2, 2, 0, 12, 2, True, False)]
    assert plan.trajectories == [(1, 0, 3), (2, 0, 5), (2, 5, 10), (1, 3, 8), (2, 10, 15),
                                 (2, 0, 6), (2, 6, 12)]
    # The random phase is the training set's loop.
    training = reference_plan({b: RUNS[(1, b)] for b in (1, 2)},
                              _params(transitions=18, buffers_end=3, capacity=20))
    assert plan.trajectories[:4] == training.trajectories


def test_statistics_plan_keeps_the_random_quota_at_exactly_random_rows() -> None:
    # Reference: the ordered quota applies only past random_rows rows; at exactly 18 the first
    # ordered visits still keep one trajectory, so buffer 2 stops after [10,15).
    plan = _statistics(random_rows=18)
    assert _visits(plan)[4:] == [
        (1, 1, 8, 20, 0, True, False), (1, 2, 10, 15, 1, True, False),
        (2, 1, 0, 0, 0, True, True), (2, 2, 0, 12, 2, True, False)]


@pytest.mark.parametrize("change, message", [
    ({"rows_per_run": 100}, r"holds 23 rows after buffers 1\.\.2 of run 1, short of the 30"),
    ({"runs": (1,)}, r"holds 23 rows, past 1 x 20 rows, where the reference goes on to another"),
])
def test_statistics_plan_refuses_what_the_reference_cannot_read(change: dict,
                                                                 message: str) -> None:
    with pytest.raises(TrainingSetError, match=message):
        _statistics(**change)
