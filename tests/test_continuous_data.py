"""Continuous-control datasets: Parquet round trip, returns-to-go, length-weighted windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fdt.continuous.episodes import (
    EpisodeRecorder,
    Episodes,
    concatenate,
    read_episodes,
    read_metadata,
    write_episodes,
)
from fdt.continuous.sequences import SequenceSampler, returns_to_go

FIELDS = ("episode", "step", "observations", "actions", "rewards", "terminated", "truncated", "policy")


def hand_built(lengths: list[int], env_id: str = "Hopper-v5", policy: str = "medium") -> Episodes:
    """Episodes of the given lengths; step t of the whole set has observation (t, -t, t/3),
    action (t/7, 1 - t), reward t + 0.25; the last step of each episode terminates."""
    record = EpisodeRecorder(env_id)
    t = 0
    for episode, length in enumerate(lengths):
        for step in range(length):
            record.add(episode, step, np.array([t, -t, t / 3]), np.array([t / 7, 1 - t]),
                       t + 0.25, step == length - 1, False, policy)
            t += 1
    return record.episodes()


def assert_same(a: Episodes, b: Episodes) -> None:
    assert a.env_id == b.env_id
    for name in FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype and left.shape == right.shape, name
        assert np.array_equal(left, right), name


def test_parquet_round_trip_is_exact(tmp_path: Path) -> None:
    episodes = hand_built([3, 1, 4])
    episodes.observations[0] = [np.float32(1e-38), np.float32(-0.0), np.float32(3.4e38)]
    episodes.truncated[-1] = True
    write_episodes(tmp_path / "set.parquet", episodes, {"seed": 5, "policies": ["medium"]})
    back = read_episodes(tmp_path / "set.parquet")
    assert_same(episodes, back)
    assert read_metadata(tmp_path / "set.parquet") == {"env_id": "Hopper-v5", "seed": 5,
                                                       "policies": ["medium"]}
    schema = pq.read_schema(tmp_path / "set.parquet")
    for name, width in (("observation", 3), ("action", 2)):
        kind = schema.field(name).type
        assert kind.list_size == width and str(kind.value_type) == "float"
    assert not list(tmp_path.glob(".*tmp-*"))  # written atomically


def test_episode_arithmetic() -> None:
    episodes = hand_built([3, 1, 4])
    assert episodes.starts().tolist() == [0, 3, 4]
    assert episodes.lengths().tolist() == [3, 1, 4]
    # rewards t + 0.25: (0 + 1 + 2) + 0.75, 3.25, (4 + 5 + 6 + 7) + 1
    assert episodes.returns().tolist() == [3.75, 3.25, 23.0]
    assert (episodes.observation_size, episodes.action_size) == (3, 2)


def test_medium_expert_concatenation_renumbers_episodes() -> None:
    medium, expert = hand_built([2, 3], policy="medium"), hand_built([4], policy="expert")
    both = concatenate([medium, expert])
    assert both.episode.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert both.policies() == ["medium", "medium", "expert"]
    assert np.array_equal(both.rewards[5:], expert.rewards)
    with pytest.raises(ValueError, match="different environments"):
        concatenate([medium, hand_built([1], env_id="Walker2d-v5")])


def test_returns_to_go_by_hand() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0], dtype=np.float32)
    assert returns_to_go(rewards, np.array([0, 3])).tolist() == [6.0, 5.0, 3.0, 30.0, 20.0]


def test_window_is_normalised_scaled_and_padded_past_the_end() -> None:
    episodes = hand_built([3, 5])
    sampler = SequenceSampler(episodes, seq_len=4, reward_scale=0.5, seed=0)
    window = sampler.window(np.array([0]), np.array([1]))  # steps 1, 2 of episode 0, then 2 pads
    assert window.mask.tolist() == [[1, 1, 0, 0]]
    assert window.time_steps.tolist() == [[1, 2, 3, 4]]  # pads keep counting, as CORL's
    # returns-to-go of steps 1 and 2: (1.25 + 2.25) and 2.25, times 0.5
    assert window.returns_to_go.tolist() == [[1.75, 1.125, 0.0, 0.0]]
    mean = episodes.observations.mean(0)
    std = episodes.observations.std(0) + 1e-6
    np.testing.assert_allclose(window.states[0, :2], (episodes.observations[1:3] - mean) / std, rtol=1e-5)
    assert np.array_equal(window.actions[0, :2], episodes.actions[1:3])
    assert not window.states[0, 2:].any() and not window.actions[0, 2:].any()


def test_length_weighted_sampling_matches_the_lengths() -> None:
    """Trajectories drawn in proportion to their lengths (CORL: p = len / sum(len)), starts
    uniform within each. 200,000 draws: each frequency's standard error is below 0.0011, so a
    tolerance of 0.005 (over 4.5 standard errors) fails by chance less than once in 10^5 runs."""
    lengths = [1, 2, 3, 14]
    sampler = SequenceSampler(hand_built(lengths), seq_len=2, reward_scale=1.0, seed=3)
    trajectories, offsets = sampler.draw(200_000)
    frequencies = np.bincount(trajectories, minlength=4) / len(trajectories)
    np.testing.assert_allclose(frequencies, np.array(lengths) / 20, atol=0.005)
    long = offsets[trajectories == 3]
    assert long.min() == 0 and long.max() == 13
    np.testing.assert_allclose(np.bincount(long) / len(long), np.full(14, 1 / 14), atol=0.01)
    assert (offsets[trajectories == 0] == 0).all()
