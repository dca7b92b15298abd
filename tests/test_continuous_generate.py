"""Continuous control with real MuJoCo environments: the behaviour agent and its datasets, batched
evaluation, resumed training, a Minari dataset made locally, and bad input refused up front."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.continuous.environments import (
    ContinuousInputError,
    check_environment,
    check_sizes,
    make_env,
    parse_dataset_name,
    task_sizes,
)
from fdt.continuous.evaluation import Prompting, corl_starts, evaluate_targets, play_group, reset_from
from fdt.continuous.generate import generate, references, save_policies
from fdt.continuous.minari_source import (
    check_minari_folder,
    minari_dataset,
    minari_references,
    read_minari,
)
from fdt.continuous.model import ContinuousDecisionTransformer, ModelShape
from fdt.continuous.sac import SACParams, medium_snapshot, run_episodes, train_behaviour
from fdt.continuous.training import DTParams, train_dt
from tests.test_continuous_data import hand_built

ENV = "InvertedPendulum-v5"


@pytest.fixture(scope="module")
def behaviour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A very short SAC run: 120 steps, the first 60 uniform, snapshots every 40 steps."""
    folder = tmp_path_factory.mktemp("behaviour")
    params = SACParams(steps=120, start_steps=60, batch_size=16, hidden=16, eval_every=40,
                       eval_episodes=1, seed=3)
    env = make_env(ENV)
    run = train_behaviour(env, make_env(ENV), params)
    from fdt.continuous.episodes import write_episodes

    write_episodes(folder / "replay.parquet", run.replay)
    save_policies(folder / "policies.pt", env, run, params, 1 / 3)
    return folder, run


def test_behaviour_run_keeps_its_whole_replay_and_snapshots(behaviour: tuple[Path, object]) -> None:
    _, run = behaviour
    assert len(run.replay) == 120
    assert [s[0] for s in run.snapshots] == [40, 80, 120]
    assert run.replay.policies()[0] == "random"
    # the replay's steps: 60 uniform ones, then the agent's own
    assert (run.replay.policy[:60] == "random").all() and (run.replay.policy[60:] == "sac-replay").all()
    assert run.replay.terminated.sum() + run.replay.truncated.sum() == len(run.replay.lengths())
    assert run.replay.truncated[-1] or run.replay.terminated[-1]  # the cut episode is closed
    assert sum(1 for point in run.curve if "evaluation_return" in point) == 3


def test_behaviour_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Killed at step 80 (its last checkpoint at an episode end after step 30), rerun: the same
    replay, snapshots, curve and final policy as a run that was never stopped."""
    params = SACParams(steps=120, start_steps=50, batch_size=8, hidden=8, eval_every=40,
                       eval_episodes=1, seed=4)
    whole = train_behaviour(make_env(ENV), make_env(ENV), params)

    class Killed(Exception):
        pass

    def kill_at_80(step: int, _point: dict) -> None:
        if step == 80:
            raise Killed

    checkpoint = tmp_path / "behaviour.pt"
    with pytest.raises(Killed):
        train_behaviour(make_env(ENV), make_env(ENV), params, kill_at_80, checkpoint, checkpoint_every=30)
    assert checkpoint.is_file()
    resumed = train_behaviour(make_env(ENV), make_env(ENV), params, None, checkpoint, checkpoint_every=30)
    assert not checkpoint.exists()
    for name in ("episode", "step", "observations", "actions", "rewards", "terminated", "truncated", "policy"):
        assert np.array_equal(getattr(whole.replay, name), getattr(resumed.replay, name)), name
    assert [s[:2] for s in whole.snapshots] == [s[:2] for s in resumed.snapshots]
    assert all(torch.equal(whole.snapshots[-1][2][k], resumed.snapshots[-1][2][k]) for k in whole.snapshots[-1][2])
    assert json.dumps(whole.curve) == json.dumps(resumed.curve)


def test_medium_is_the_snapshot_nearest_a_third_of_the_final() -> None:
    snapshots = [(10, 5.0, {}), (20, 31.0, {}), (30, 36.0, {}), (40, 100.0, {})]
    assert medium_snapshot(snapshots, 1 / 3)[0] == 20  # |31 - 33.3| < |36 - 33.3|
    assert medium_snapshot([(10, 30.0, {}), (20, 36.0, {}), (30, 99.0, {})], 1 / 3)[0] == 10  # tie: earlier


def test_step_capped_rollout_ends_in_a_timeout() -> None:
    env = make_env(ENV)
    episodes = run_episodes(env, lambda _o: np.zeros(1, dtype=np.float32), None, 25, 0, "zero")
    assert len(episodes) == 25 and episodes.policies()[0] == "zero"
    last = episodes.starts()[-1]
    assert episodes.truncated[-1] or episodes.terminated[-1]
    assert episodes.step[last:].tolist() == list(range(25 - last))


def test_generated_qualities(behaviour: tuple[Path, object]) -> None:
    folder, run = behaviour
    env = make_env(ENV)
    policies, replay = folder / "policies.pt", folder / "replay.parquet"
    random = generate(env, "random", policies, replay, 50, seed=0)
    assert len(random) == 50 and set(random.policies()) == {"random"}
    assert np.abs(random.actions).max() <= 3.0
    again = generate(env, "random", policies, replay, 50, seed=0)
    assert np.array_equal(random.actions, again.actions)  # seeded: the same set twice
    both = generate(env, "medium-expert", policies, replay, 40, seed=0)
    medium = generate(env, "medium", policies, replay, 40, seed=0)
    assert len(both) == 80 and np.array_equal(both.observations[:40], medium.observations)
    assert both.policies()[0] == "medium" and both.policies()[-1] == "expert"
    assert np.array_equal(generate(env, "medium-replay", policies, replay, 40, 0).rewards, run.replay.rewards)
    refs = references(env, policies, 2, seed=0)
    assert refs["episodes"] == 2 and refs["random"] > 0 and refs["expert"] > 0


def deterministic_model() -> ContinuousDecisionTransformer:
    torch.manual_seed(1)
    shape = ModelShape(observation_size=4, action_size=1, seq_len=5, episode_len=1000,
                       embedding_dim=8, num_layers=1, num_heads=1, max_action=3.0)
    return ContinuousDecisionTransformer(shape)


def test_batched_evaluation_plays_the_same_episodes_as_one_at_a_time() -> None:
    model = deterministic_model()
    prompting = Prompting(np.zeros(4, np.float32), np.ones(4, np.float32), 0.01)
    batched, alone = (evaluate_targets(model, lambda: make_env(ENV), [100.0, 30.0], 3, parallel, 5,
                                       prompting, torch.device("cpu"), seeding="per_episode")
                      for parallel in (6, 1))
    assert [(r.target, r.episode, r.seed) for r in batched] == [(100.0, 0, 5), (100.0, 1, 6), (100.0, 2, 7),
                                                                 (30.0, 0, 5), (30.0, 1, 6), (30.0, 2, 7)]
    for a, b in zip(batched, alone):
        assert a.length == b.length and a.score == pytest.approx(b.score, rel=1e-9)
    assert model.training  # evaluation leaves the model as it found it


def test_corl_seeding_plays_corls_episodes_in_parallel() -> None:
    """CORL seeds its one evaluation env once per target and plays the episodes in turn, each
    reset continuing the env's generator; the batched evaluation must meet the same start states
    and play the same episodes."""
    model = deterministic_model()
    prompting = Prompting(np.zeros(4, np.float32), np.ones(4, np.float32), 0.01)
    batched = evaluate_targets(model, lambda: make_env(ENV), [100.0, 30.0], 3, 6, 42, prompting,
                               torch.device("cpu"))
    corl = []
    env = make_env(ENV)
    model.eval()  # as evaluate_targets plays (no dropout)
    for target in (100.0, 30.0):
        for episode in range(3):  # eval_env.seed(eval_seed), then reset() before each episode
            start = 42 if episode == 0 else None
            corl += play_group(model, [env], [target], [start], prompting, torch.device("cpu"))
    env.close()
    assert [(r.target, r.episode, r.seed) for r in batched] == [
        (100.0, 0, 42), (100.0, 1, 42), (100.0, 2, 42), (30.0, 0, 42), (30.0, 1, 42), (30.0, 2, 42)]
    for result, (score, length) in zip(batched, corl):
        assert result.length == length and result.score == pytest.approx(score, rel=1e-9)
    # the three start states differ, and each target meets the same three
    starts = corl_starts(lambda: make_env(ENV), 42, 3)
    firsts = [reset_from(make_env(ENV), start) for start in starts]
    reference = make_env(ENV)
    expected = [reference.reset(seed=42)[0], reference.reset()[0], reference.reset()[0]]
    for first, want in zip(firsts, expected):
        np.testing.assert_array_equal(first, want)
    assert not np.array_equal(firsts[1], firsts[2])


def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Six updates in one go, or three, a kill, and three more: the same weights and curve."""
    episodes = hand_built([30, 12, 25], env_id=ENV)
    episodes.observations = np.random.default_rng(0).normal(size=(67, 4)).astype(np.float32)
    episodes.actions = np.random.default_rng(1).uniform(-1, 1, size=(67, 1)).astype(np.float32)
    sizes = task_sizes(make_env(ENV))
    params = DTParams(embedding_dim=8, num_layers=1, seq_len=5, batch_size=4, update_steps=6,
                      warmup_steps=2, target_returns=(50.0,), eval_episodes=1, eval_every=100,
                      envs=1, checkpoint_every=3, log_every=1, seed=0)
    refs = {"random": 5.0, "expert": 105.0}
    whole = train_dt(episodes, sizes, lambda: make_env(ENV), params, refs, tmp_path / "whole")

    class Killed(Exception):
        pass

    class KillAfterCheckpoint:
        def start(self, run_id: str | None = None) -> str:
            return "run-1"

        def log_params(self, params: dict) -> None:
            pass

        def log_metrics(self, metrics: dict, step: int) -> None:
            if step == 4 and "loss" in metrics:
                raise Killed

    with pytest.raises(Killed):
        train_dt(episodes, sizes, lambda: make_env(ENV), params, refs, tmp_path / "cut", KillAfterCheckpoint())
    assert (tmp_path / "cut" / "checkpoint.pt").is_file()
    resumed = train_dt(episodes, sizes, lambda: make_env(ENV), params, refs, tmp_path / "cut")
    assert resumed["final_loss"] == whole["final_loss"]
    first = torch.load(tmp_path / "whole" / "model.pt")["model"]
    second = torch.load(tmp_path / "cut" / "model.pt")["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert (tmp_path / "whole" / "curve.csv").read_text() == (tmp_path / "cut" / "curve.csv").read_text()
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["targets"]["50"]["episodes"] == 1


def test_bad_input_is_one_sentence_before_any_work() -> None:
    with pytest.raises(ContinuousInputError, match="environment 'Hoper-v5' is not installed.*'Hopper-v5'"):
        check_environment("Hoper-v5")
    with pytest.raises(ContinuousInputError, match="'<environment>/<quality>'"):
        parse_dataset_name("Hopper-v5/mediocre")
    sizes = task_sizes(make_env(ENV))
    with pytest.raises(ContinuousInputError, match="observations of size 11 and actions of size 3 do "
                                                   "not match environment 'InvertedPendulum-v5' "
                                                   r"\(observations 4, actions 1\)"):
        check_sizes(ENV, sizes, 11, 3, "continuous dataset 'x'")


def write_minari_dataset(root: Path, dataset_id: str, data_format: str = "hdf5") -> list[float]:
    """Three episodes of constant actions -0.5, 0, 0.5 written through minari's own storage
    (its DataCollector would need jax, which minari[create] pulls), in HDF5 or Arrow; returns
    their returns."""
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    env = make_env(ENV)
    (root / dataset_id).mkdir(parents=True)
    storage = MinariStorage.new(root / dataset_id / "data", observation_space=env.observation_space,
                                action_space=env.action_space, env_spec=env.spec, data_format=data_format)
    buffers, returns = [], []
    for episode in range(3):
        observation, _ = env.reset(seed=episode)
        action = np.array([0.5 * (episode - 1)], np.float32)
        record: dict[str, list] = {"observations": [observation], "actions": [], "rewards": [],
                                   "terminations": [], "truncations": []}
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(action)
            for name, value in (("observations", observation), ("actions", action), ("rewards", reward),
                                ("terminations", terminated), ("truncations", truncated)):
                record[name].append(value)
            done = terminated or truncated
        returns.append(float(sum(record["rewards"])))
        buffers.append(EpisodeBuffer(id=episode, seed=episode, infos={},
                                     **{k: np.asarray(v) for k, v in record.items()}))
    storage.update_episodes(buffers)
    import minari

    storage.update_metadata({"dataset_id": dataset_id, "algorithm_name": "constant",
                             "minari_version": minari.__version__,
                             "ref_min_score": 1.0, "ref_max_score": 1000.0})
    return returns


def test_minari_dataset_read_from_a_local_folder(tmp_path: Path) -> None:
    rewards = write_minari_dataset(tmp_path, "test/pendulum/simple-v0")
    metadata = check_minari_folder(tmp_path, "test/pendulum/simple-v0")
    assert minari_references(metadata) == {"random": 1.0, "expert": 1000.0}
    episodes = read_minari(tmp_path, "test/pendulum/simple-v0")
    assert episodes.env_id == ENV and episodes.observation_size == 4 and episodes.action_size == 1
    assert episodes.returns().tolist() == rewards
    assert episodes.actions[episodes.starts()].ravel().tolist() == [-0.5, 0.0, 0.5]
    assert set(episodes.policies()) == {"constant"}
    assert episodes.terminated.sum() == 3
    checked, references = minari_dataset(tmp_path, "test/pendulum/simple-v0", 2)
    assert len(checked) == len(episodes) and references["random"] == 1.0
    assert references["source"].startswith("Minari metadata")

    metadata_file = tmp_path / "test/pendulum/simple-v0/data/metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["ref_min_score"] = metadata["ref_max_score"] = None  # none: measured instead
    metadata_file.write_text(json.dumps(metadata))
    _, references = minari_dataset(tmp_path, "test/pendulum/simple-v0", 2)
    assert references["expert"] == max(rewards) and references["random"] > 0
    spec = json.loads(metadata["env_spec"])
    metadata["env_spec"] = json.dumps({**spec, "id": "Hopper-v5"})  # another task's sizes
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(ContinuousInputError, match="Minari dataset 'test/pendulum/simple-v0': "
                                                   "observations of size 4 and actions of size 1 "
                                                   "do not match environment 'Hopper-v5'"):
        minari_dataset(tmp_path, "test/pendulum/simple-v0", 2)

    os.remove(tmp_path / "test/pendulum/simple-v0/data/main_data.hdf5")
    with pytest.raises(ContinuousInputError, match="HDF5 format but .*main_data.hdf5 is missing"):
        check_minari_folder(tmp_path, "test/pendulum/simple-v0")
    with pytest.raises(ContinuousInputError, match="has no .*metadata.json"):
        check_minari_folder(tmp_path, "test/pendulum/other-v0")
