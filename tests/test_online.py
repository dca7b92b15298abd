"""The online loop (fdt.online, issue 32): rl-teacher's label schedule, clips cut inside episodes,
the clip store refusing another environment, bad settings refused in one sentence, tiny synth,
tree and rl runs on Hopper-v5, a killed run resumed, and a diverged reward model stopping the
loop with the last good model kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fdt.online.reward as reward_module
from fdt.online.loop import OnlineLoop, OnlineLoopStopped, OnlineParams, params_from, run_online
from fdt.online.store import ClipStore, LabelSchedule, cut_clips
from fdt.online.tasks import OnlineInputError, resolve_task

pytest.importorskip("mujoco")

# A loop small enough for a test: a few hundred steps, tiny networks, few updates.
TINY = dict(env="Hopper-v5", steps=300, labels=12, pretrain_iters=20, retrain_every=100,
            retrain_updates=5, eval_every=150, eval_episodes=1, start_steps=200, hidden=16,
            batch_size=16, checkpoint_every=100, reward_batch=8)


def test_label_schedule_is_rl_teachers_annealer() -> None:
    schedule = LabelSchedule(labels=100, pretrain=25, total_steps=1000)
    assert schedule.wanted(0) == 25
    assert schedule.wanted(1000) == 99  # 0.25 + 0.75 * (1 - 0.01) of 100
    wanted = [schedule.wanted(t) for t in range(0, 1001, 100)]
    assert wanted == sorted(wanted)
    assert wanted[1] - wanted[0] > wanted[-1] - wanted[-2]  # most labels come early


def test_clips_are_cut_inside_one_episode() -> None:
    n = 50
    arrays = [np.arange(n)[:, None], np.zeros((n, 1)), np.ones(n), np.zeros((n, 2))]
    windows = cut_clips(*arrays, episode_starts=[12, 30], length=10, count=40,
                        rng=np.random.default_rng(0))
    assert len(windows) == 40
    for start, end in windows:
        assert end - start == 10
        assert (start >= 12) == (end > 12) and (start >= 30) == (end > 30)  # no episode boundary
    assert cut_clips(*arrays, episode_starts=[5, 10, 15, 20, 25, 30, 35, 40, 45], length=10,
                     count=3, rng=np.random.default_rng(0)) == []


def test_clip_store_round_trip_and_refuses_another_environment(tmp_path: Path) -> None:
    store = ClipStore("Hopper-v5", 3)
    store.add(np.ones((3, 11)), np.zeros((3, 3)), np.array([1.0, 2.0, 3.0]), np.zeros((3, 12)),
              "random", 0)
    store.save(tmp_path / "clips.npz")
    again = ClipStore.load(tmp_path / "clips.npz", "Hopper-v5", 3)
    assert again.returns == [6.0] and again.sources == ["random"]
    with pytest.raises(OnlineInputError, match="a clip store of 'Hopper-v5', but this run is on "
                                                "'HalfCheetah-v5'"):
        ClipStore.load(tmp_path / "clips.npz", "HalfCheetah-v5")
    (tmp_path / "junk.npz").write_text("not a store")
    with pytest.raises(OnlineInputError, match="junk.npz: not a clip store"):
        ClipStore.load(tmp_path / "junk.npz")


def test_bad_settings_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OnlineInputError, match="'Hoper-v5' is not installed.*'Hopper-v5'"):
        resolve_task("Hoper-v5")
    with pytest.raises(OnlineInputError, match="neither a gymnasium MuJoCo id"):
        resolve_task("Breakou")
    assert resolve_task("Hopper-v5").clip_length == 60  # rl-teacher: 1.5 s at 40 fps
    assert resolve_task("HalfCheetah-v5").clip_length == 30
    assert resolve_task("Breakout").clip_length == 22
    with pytest.raises(OnlineInputError, match="ordinal regresses on the sort tree"):
        OnlineParams(loss="ordinal", comparisons="pairs").check()
    with pytest.raises(OnlineInputError, match="not known"):
        params_from({"n_labels": 3})
    with pytest.raises(OnlineInputError, match="human mode needs"):
        OnlineLoop(OnlineParams(**{**TINY, "mode": "human"}), tmp_path / "h")


def test_tiny_synth_run_follows_the_schedule(tmp_path: Path) -> None:
    summary = run_online(OnlineParams(**TINY, mode="synth"), tmp_path / "run")
    assert summary["steps"] == 300 and summary["retrainings"] == 4  # pretraining + 3
    assert summary["labels"] == LabelSchedule(12, 3, 300).wanted(300)
    curve = (tmp_path / "run" / "curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,true_return,labels") and len(curve) == 3
    assert (tmp_path / "run" / "reward_model.pt").is_file()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    store = ClipStore.load(tmp_path / "run" / "clips.npz", "Hopper-v5", 60)
    assert store.sources[:6] == ["random"] * 6 and "agent" in store.sources


def test_tiny_synth_run_on_halfcheetah(tmp_path: Path) -> None:
    """The second MuJoCo task: rl-teacher's 30-step cheetah clips of 17 observations and 6
    actions, which never terminates (so NeverDone changes nothing)."""
    summary = run_online(OnlineParams(**{**TINY, "env": "HalfCheetah-v5"}, mode="synth"),
                         tmp_path / "cheetah")
    assert summary["clip_length"] == 30 and summary["steps"] == 300
    store = ClipStore.load(tmp_path / "cheetah" / "clips.npz", "HalfCheetah-v5", 30)
    assert store.observations[0].shape == (30, 17) and store.actions[0].shape == (30, 6)


@pytest.mark.slow
def test_tree_ordinal_and_rl_runs(tmp_path: Path) -> None:
    tree = run_online(OnlineParams(**TINY, mode="synth", comparisons="tree", loss="ordinal",
                                   ensemble=2), tmp_path / "tree")
    assert tree["labels"] >= 3 and (tmp_path / "tree" / "tree.json").is_file()
    rl = run_online(OnlineParams(**TINY, mode="rl"), tmp_path / "rl")
    assert rl["labels"] == 0 and rl["retrainings"] == 0 and rl["clips"] == 0


def test_a_killed_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = OnlineParams(**TINY, mode="synth")
    calls = {"n": 0}
    original = OnlineLoop._evaluate

    def killed(self: OnlineLoop, step: int) -> None:
        original(self, step)
        calls["n"] += 1
        if step >= 250 and (self.out / "checkpoint.pt").is_file():
            raise KeyboardInterrupt  # as a kill would stop it, after a checkpoint
    monkeypatch.setattr(OnlineLoop, "_evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        run_online(params, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    monkeypatch.setattr(OnlineLoop, "_evaluate", original)
    summary = run_online(params, tmp_path / "run")
    assert summary["resumed"] and summary["steps"] == 300
    with pytest.raises(OnlineInputError, match="another environment|of 'Hopper-v5', but"):
        ClipStore.load(tmp_path / "run" / "clips.npz", "Walker2d-v5")


def test_a_diverged_reward_model_stops_the_loop(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    original = reward_module.train_reward_model
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        net, fit = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # the first retraining after pretraining
            with torch.no_grad():
                next(net.parameters()).fill_(float("nan"))
            fit = {**fit, "final_loss": float("nan")}
        return net, fit
    monkeypatch.setattr(reward_module, "train_reward_model", diverging)
    with pytest.raises(OnlineLoopStopped, match="retraining 2 diverged.*last good model"):
        run_online(OnlineParams(**TINY, mode="synth"), tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "reward_model.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in saved["net"].values())
    assert saved["rounds"] == 1


@pytest.mark.slow
def test_tiny_atari_run_with_the_online_dqn(tmp_path: Path) -> None:
    pytest.importorskip("ale_py")
    summary = run_online(OnlineParams(env="Breakout", mode="synth", steps=120, labels=8,
                                      pretrain_iters=2, retrain_every=60, retrain_updates=2,
                                      eval_every=120, eval_episodes=1, start_steps=60,
                                      batch_size=8, reward_batch=4, episode_steps=60,
                                      checkpoint_every=1000), tmp_path / "atari")
    assert summary["clip_length"] == 22 and summary["steps"] == 120 and summary["retrainings"] == 3
    store = ClipStore.load(tmp_path / "atari" / "clips.npz", "Breakout", 22)
    assert store.observations[0].shape == (22, 4, 84, 84) and store.observations[0].dtype == np.uint8


def test_report_table_means_seeds_and_the_reward_models_correlation(tmp_path: Path) -> None:
    """Two synth seeds and one rl seed, written by hand: each step's mean over seeds, the
    bootstrap interval inside the seeds' range, the correlation averaged where it exists."""
    from fdt.online.report import markdown, online_table

    def run(mode: str, seed: int, returns: list[float], correlations: list[str]) -> dict:
        folder = tmp_path / f"{mode}{seed}"
        folder.mkdir()
        rows = "".join(f"{1000 * (i + 1)},{r},{5 * (i + 1)},{c}\n"
                       for i, (r, c) in enumerate(zip(returns, correlations)))
        (folder / "curve.csv").write_text("step,true_return,labels,reward_correlation\n" + rows)
        (folder / "summary.json").write_text('{"seconds": %d}' % (60 * (seed + 1)))
        return {"env": "Hopper-v5", "mode": mode, "budget": 0 if mode == "rl" else 10,
                "seed": seed, "curve": folder / "curve.csv", "summary": folder / "summary.json"}

    rows = online_table([run("synth", 0, [10.0, 30.0], ["", "0.5"]),
                         run("synth", 1, [20.0, 50.0], ["", "0.7"]),
                         run("rl", 0, [5.0, 7.0], ["", ""])])
    synth = [r for r in rows if r["mode"] == "synth"]
    assert [(r["step"], r["true_return"], r["seeds"]) for r in synth] == [(1000, 15.0, 2),
                                                                          (2000, 40.0, 2)]
    assert 30.0 <= synth[1]["ci_low"] <= 40.0 <= synth[1]["ci_high"] <= 50.0
    assert np.isnan(synth[0]["reward_correlation"]) and synth[1]["reward_correlation"] == \
        pytest.approx(0.6)
    assert synth[1]["seconds_per_run"] == 90.0
    table = markdown(rows)
    assert "| Hopper-v5 | synth | 10 | 2000 | 2 | 40.0 |" in table and "| 0.60 | 1.5 |" in table
    assert "| Hopper-v5 | rl | - | 2000 | 1 | 7.0 | [7.0, 7.0] | - | 1.0 |" in table
