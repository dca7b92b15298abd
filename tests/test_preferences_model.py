"""Preferences end to end on a small training set we write: clips, synthetic comparisons, a
reward model that ranks held-out clips by their true return, and the relabelled training set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.dataset.training_set import (
    MANIFEST,
    TrainingSet,
    returns_to_go,
    save_arrays,
    timesteps_of,
)
from fdt.io import write_json
from fdt.preferences.clips import (
    ClipError,
    clip_frames,
    draw_clips,
    read_bundle,
    write_bundle,
)
from fdt.preferences.comparisons import Answer, read_comparisons
from fdt.preferences.relabel import relabel_training_set
from fdt.preferences.reward_model import RewardParams
from fdt.preferences.stage import ComparisonParams, learn_reward, make_comparisons
from fdt.replay.dopamine import FRAME_SHAPE

CPU = torch.device("cpu")
# Chance ranks held-out clips with accuracy 0.5; a model that learnt the reward must reach this.
RANK_ACCURACY_FLOOR = 0.75


def write_training_set(folder: Path, trajectories: int = 8, length: int = 50, seed: int = 0) -> None:
    """A training set whose rewarded steps show a bright square in their newest frame (a spot
    that moves, so the model must find it): row r has its own frame r + 1; frame 0 is zeros."""
    rng = np.random.default_rng(seed)
    n = trajectories * length
    rewards = (rng.random(n) < 0.3).astype(np.float32)
    frames = rng.integers(0, 40, size=(n + 1, *FRAME_SHAPE), dtype=np.uint8)
    frames[0] = 0
    for row in np.flatnonzero(rewards):
        y, x = rng.integers(0, FRAME_SHAPE[0] - 12, size=2)
        frames[row + 1, y:y + 12, x:x + 12] = 255
    ends = np.arange(length, n + 1, length, dtype=np.int64)
    own = np.arange(n) + 1
    start = np.repeat(ends - length, length) + 1
    stacks = np.stack([np.maximum(own - back, start) for back in (3, 2, 1, 0)], 1).astype(np.int32)
    arrays = {"stacks": stacks, "actions": rng.integers(0, 4, n).astype(np.int32),
              "rewards": rewards, "returns_to_go": returns_to_go(rewards, ends),
              "timesteps": timesteps_of(ends, n), "buffer": np.zeros(n, np.int32),
              "slot": np.arange(n, dtype=np.int32), "replay_index": np.arange(n, dtype=np.int64),
              "padding": np.zeros(n, bool), "trajectory_ends": ends, "frames": frames}
    folder.mkdir(parents=True)
    entries = save_arrays(folder, arrays)
    write_json(folder / MANIFEST, {"format_version": 1, "num_actions": 4, "arrays": entries,
                                   "max_timestep": length - 1,
                                   "max_return": float(arrays["returns_to_go"].max())})


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> TrainingSet:
    folder = tmp_path_factory.mktemp("pref") / "dataset"
    write_training_set(folder)
    return TrainingSet(folder)


def test_clips_are_drawn_with_a_seed_and_held_out(training_set: TrainingSet, tmp_path: Path) -> None:
    bundle = draw_clips(training_set, "k" * 16, count=40, length=8, heldout_fraction=0.25, seed=1)
    assert len(bundle.clips) == 40 and len(bundle.heldout) == 10 and len(bundle.training_ids) == 30
    for clip in bundle.clips:
        assert clip.start // 50 == (clip.start + 7) // 50 == clip.trajectory  # one trajectory
        assert clip.true_return == float(training_set.rewards[clip.start:clip.start + 8].sum())
    assert draw_clips(training_set, "k" * 16, count=40, length=8, heldout_fraction=0.25,
                      seed=1) == bundle
    other = draw_clips(training_set, "k" * 16, count=40, length=8, heldout_fraction=0.25, seed=2)
    assert other.digest != bundle.digest
    write_bundle(tmp_path / "clips.json", bundle)
    assert read_bundle(tmp_path / "clips.json") == bundle
    frames = clip_frames(training_set, bundle.clips[0])
    start = bundle.clips[0].start
    assert frames.shape == (8, 84, 84) and (frames[0] == training_set.frames[start + 1]).all()
    with pytest.raises(ClipError, match="fewer than preferences.clips = 1000"):
        draw_clips(training_set, "k" * 16, count=1000, length=8, heldout_fraction=0.25, seed=1)


@pytest.mark.parametrize(("mode", "loss"), [("tree", "ordinal"), ("pairs", "bradley_terry")])
def test_noiseless_synthetic_preferences_teach_the_true_order(
        training_set: TrainingSet, tmp_path: Path, mode: str, loss: str) -> None:
    bundle = draw_clips(training_set, "k" * 16, count=80, length=4, heldout_fraction=0.25, seed=0)
    summary = make_comparisons(bundle, ComparisonParams(seed=0, source="synthetic", mode=mode,
                                                        budget=200, noise=0.0,
                                                        heldout_comparisons=60), tmp_path)
    train, heldout, _ = read_comparisons(tmp_path / "comparisons.json", bundle.digest, bundle.ids)
    assert len(heldout) == 60 and summary["heldout"] == 60
    held = set(bundle.heldout)
    assert all(c.left not in held and c.right not in held for c in train)
    assert all(c.left in held and c.right in held for c in heldout)
    returns = dict(zip(bundle.ids, bundle.returns))
    for c in train:  # a noiseless labeller answers by the true returns
        sign = np.sign(returns[c.left] - returns[c.right])
        assert c.answer == {1: Answer.LEFT, -1: Answer.RIGHT, 0: Answer.EQUAL}[sign]
    if mode == "tree":
        assert summary["tree_size"] == len({returns[i] for i in bundle.training_ids})
        assert summary["true_order_accuracy"] == 1.0
    else:
        assert len(train) == 200
    metrics = learn_reward(training_set, bundle, tmp_path,
                           RewardParams(seed=0, loss=loss, updates=60, batch_size=8),
                           min_comparisons=10, out_path=tmp_path / "reward_model.pt", device=CPU,
                           progress=False)
    assert metrics["heldout_rank_accuracy"] >= RANK_ACCURACY_FLOOR, metrics
    assert metrics["heldout_accuracy"] >= RANK_ACCURACY_FLOOR, metrics

    relabelled = tmp_path / "relabelled"
    manifest = relabel_training_set(training_set, tmp_path / "reward_model.pt", relabelled, CPU,
                                    {"reward_key": "r" * 16})
    again = TrainingSet(relabelled)  # the trainer's reader: every array checked by its sha256
    assert np.array_equal(again.frames, training_set.frames)
    assert np.array_equal(again.actions, training_set.actions)
    assert again.returns_to_go.max() == pytest.approx(training_set.returns_to_go.max(), rel=1e-5)
    assert again.rewards.min() == 0.0
    assert np.allclose(again.returns_to_go, returns_to_go(again.rewards, again.trajectory_ends))
    assert manifest["relabelled"]["reward_key"] == "r" * 16
    assert manifest["relabelled"]["reward_correlation"] > 0.5
    assert json.loads((relabelled / MANIFEST).read_text())["max_return"] == manifest["max_return"]


def test_an_ensemble_trains_every_member(training_set: TrainingSet, tmp_path: Path) -> None:
    bundle = draw_clips(training_set, "k" * 16, count=30, length=4, heldout_fraction=0.2, seed=3)
    make_comparisons(bundle, ComparisonParams(seed=0, source="synthetic", mode="pairs", budget=40,
                                              noise=0.1, heldout_comparisons=10), tmp_path)
    metrics = learn_reward(training_set, bundle, tmp_path,
                           RewardParams(seed=0, loss="bradley_terry", ensemble=3, updates=5),
                           min_comparisons=5, out_path=tmp_path / "reward_model.pt", device=CPU,
                           progress=False)
    assert metrics["updates"] == 15 and metrics["ensemble"] == 3
    payload = torch.load(tmp_path / "reward_model.pt", weights_only=True)
    assert payload["members"] == 3 and payload["bundle"] == bundle.digest
