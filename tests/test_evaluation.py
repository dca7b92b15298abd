"""The evaluator: frames as Dopamine's preprocessing makes them, FIRE and caps where the protocol
puts them, results independent of batching, scores by hand, bad input before any episode."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import torch

from fdt.evaluation.policies import ModelPolicy
from fdt.evaluation.protocols import PROTOCOLS, EvaluationError, Job, protocol_jobs
from fdt.evaluation.rollout import rollout
from fdt.evaluation.scores import normalized, paired_ttest, score_table
from fdt.evaluation.stage import EvalParams, check_model_fits
from fdt.models.transformer import DecisionTransformer, ModelConfig


class ScriptedPolicy:
    """Plays a fixed action script (by step) with one-hot logits; records what it is shown."""

    def __init__(self, script: Sequence[int], num_actions: int) -> None:
        self.script, self.num_actions = list(script), num_actions
        self.slots = 1
        self.shown: dict[int, list[np.ndarray]] = {}
        self.steps: dict[int, int] = {}
        self.taken: dict[int, list[int]] = {}

    def begin(self, slot: int, target: float) -> None:
        self.shown[slot], self.steps[slot], self.taken[slot] = [], 0, []

    def end(self, slot: int) -> None:
        self.finished = (self.shown.pop(slot), self.taken.pop(slot))

    def observe(self, slots: Sequence[int], stacks: np.ndarray) -> None:
        for slot, stack in zip(slots, stacks):
            self.shown[slot].append(stack.copy())

    def record(self, slot: int, action: int, reward: float) -> None:
        self.taken[slot].append(action)
        self.steps[slot] += 1

    def logits(self, slots: Sequence[int]) -> np.ndarray:
        out = np.full((len(slots), self.num_actions), -10.0)
        for i, slot in enumerate(slots):
            out[i, self.script[self.steps[slot] % len(self.script)]] = 10.0
        return out


def dopamine_replay(game: str, actions: Sequence[int], noops: int = 0) -> tuple[list, list, list]:
    """A plain re-implementation of Dopamine's preprocessing with raw ALE and OpenCV: frames,
    rewards and lives after each of `actions` (4-frame repeat, max of the last two grayscale
    screens, INTER_AREA to 84x84)."""
    cv2 = pytest.importorskip("cv2")
    import ale_py
    from ale_py import roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path(game.lower()))
    minimal = ale.getMinimalActionSet()
    ale.reset_game()
    for _ in range(noops):
        ale.act(minimal[0])
    first = cv2.resize(ale.getScreenGrayscale(), (84, 84), interpolation=cv2.INTER_AREA)
    frames, rewards, lives = [first], [], []
    for action in actions:
        screens, total = [], 0.0
        for _ in range(4):
            total += ale.act(minimal[action])
            screens.append(ale.getScreenGrayscale())
            if ale.game_over():
                break
        pooled = np.maximum(screens[-2], screens[-1]) if len(screens) == 4 else screens[-1]
        frames.append(cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA))
        rewards.append(total)
        lives.append(ale.lives())
    return frames, rewards, lives


def stack_of(frames: list[np.ndarray], t: int) -> np.ndarray:
    """The 4-frame state at step t (zeros before the first frame)."""
    out = np.zeros((4, 84, 84), np.uint8)
    for k in range(4):
        if t - 3 + k >= 0:
            out[k] = frames[t - 3 + k]
    return out


def test_frames_fire_and_cap_match_a_plain_dopamine_replay() -> None:
    """Breakout, NOOP scripted: FIRE at reset, the ball is missed, a life is lost, FIRE again."""
    policy = ScriptedPolicy([0], 4)
    job = Job("argmax", 90.0, 0, 0)
    rows = rollout(policy, "Breakout", [job], PROTOCOLS["fdt"], envs=1, max_steps=400,
                   record_fires=True)
    shown, taken = policy.finished
    row = rows[0]
    assert row["game_over"] and not row["truncated"] and row["steps"] < 400
    frames, rewards, lives = dopamine_replay("Breakout", taken)
    assert lives[-1] == 0 and len(taken) == row["steps"]
    # Every state the model was shown equals the plain replay's stacks, step by step (the
    # state after the last step is not shown: the episode is over).
    assert len(shown) == row["steps"]
    for t, stack in enumerate(shown):
        assert np.array_equal(stack, stack_of(frames, t)), f"step {t}"
    # FIRE (action 1) at step 0 and right after each of the 4 life losses before game over.
    lost = [t for t in range(1, len(lives)) if lives[t] < lives[t - 1] and lives[t] > 0]
    assert len(lost) == 4
    assert row["fire_steps"] == [0] + [t + 1 for t in lost]
    assert [t for t, a in enumerate(taken) if a == 1] == row["fire_steps"]
    assert row["return"] == sum(rewards)

    capped = rollout(ScriptedPolicy([0], 4), "Breakout", [job], PROTOCOLS["fdt"], envs=1,
                     max_steps=60)[0]
    assert capped["steps"] == 60 and capped["truncated"] and not capped["game_over"]


def test_noops_are_raw_frames_before_the_first_state() -> None:
    policy = ScriptedPolicy([2, 3], 4)
    job = Job("sample+noop", 90.0, 3, 1)
    rows = rollout(policy, "Breakout", [job], PROTOCOLS["fdt"], envs=1, max_steps=30)
    shown, taken = policy.finished
    noops = rows[0]["noops"]
    assert 0 <= noops < 30
    assert noops == int(np.random.default_rng(job.seed()).integers(30))
    frames, _, _ = dopamine_replay("Breakout", taken, noops=noops)
    assert all(np.array_equal(s, stack_of(frames, t)) for t, s in enumerate(shown))


def test_pong_point_forces_fire() -> None:
    policy = ScriptedPolicy([0], 6)
    rows = rollout(policy, "Pong", [Job("argmax", 20.0, 0, 0)], PROTOCOLS["fdt"], envs=1,
                   max_steps=300, record_fires=True)
    _, taken = policy.finished
    _, rewards, _ = dopamine_replay("Pong", taken)
    points = [t + 1 for t, r in enumerate(rewards) if r != 0 and t + 1 < 300]
    assert points, "the opponent scores within 300 steps of NOOP"
    assert rows[0]["fire_steps"] == [0] + points


def test_caps_and_setups() -> None:
    assert PROTOCOLS["fdt"].cap("Seaquest") == 5000 and PROTOCOLS["fdt"].cap("Breakout") == 27000
    assert PROTOCOLS["dopamine"].sticky_actions == 0.25 and not PROTOCOLS["dopamine"].fire_on_reset
    jobs = protocol_jobs(["argmax", "sample+noop"], [90, 120], [0, 1], 3)
    assert len(jobs) == 2 * 2 * 1 + 2 * 2 * 3  # argmax without no-ops: one episode per seed
    with pytest.raises(EvaluationError, match="unknown setup 'greedy'"):
        protocol_jobs(["greedy"], [90], [0], 1)


def _tiny_model(num_actions: int = 4) -> DecisionTransformer:
    torch.manual_seed(0)
    return DecisionTransformer(ModelConfig(num_actions=num_actions, context_length=4,
                                           max_timestep=50, n_layer=1, n_head=2, n_embd=16))


def test_results_do_not_depend_on_batching() -> None:
    model = _tiny_model()
    jobs = protocol_jobs(["sample+noop", "argmax", "eps"], [5.0], [0, 1], 2)
    one = rollout(ModelPolicy(model, slots=1, cache_states=False), "Breakout", jobs,
                  PROTOCOLS["fdt"], envs=1, max_steps=40)
    many = rollout(ModelPolicy(model, slots=8), "Breakout", jobs, PROTOCOLS["fdt"], envs=8,
                   max_steps=40, workers=2)
    key = lambda r: (r["setup"], r["test_seed"], r["episode"])  # noqa: E731
    assert [(key(r), r["return"], r["steps"]) for r in sorted(one, key=key)] == \
        [(key(r), r["return"], r["steps"]) for r in sorted(many, key=key)]


def test_cached_policy_logits_equal_the_full_forward() -> None:
    model = _tiny_model().eval()
    cached, full = ModelPolicy(model, slots=2), ModelPolicy(model, slots=2, cache_states=False)
    rng = np.random.default_rng(0)
    for policy in (cached, full):
        policy.begin(0, 7.0)
        policy.begin(1, 3.0)
    for step in range(6):  # slot 1 starts later: windows of different lengths, then full ones
        slots = [0, 1] if step >= 2 else [0]
        stacks = rng.integers(0, 256, (len(slots), 4, 84, 84), dtype=np.uint8)
        for policy in (cached, full):
            policy.observe(slots, stacks)
        a = cached.logits(slots)
        np.testing.assert_allclose(a, full.logits(slots), atol=1e-5)
        for policy in (cached, full):
            for slot in slots:
                policy.record(slot, step % 4, 1.0)
    assert cached.length.tolist() == [4, 4] and cached.returns[0].tolist() == [5.0, 4.0, 3.0, 2.0]


def test_bad_input_stops_before_any_episode(tmp_path) -> None:
    model = _tiny_model(num_actions=6)
    with pytest.raises(EvaluationError, match="the model has 6 actions, but Breakout's minimal "
                                              "action set has 4"):
        check_model_fits(model, "Breakout", "Breakout")
    with pytest.raises(EvaluationError, match="trained on Pong, not Breakout"):
        check_model_fits(model, "Breakout", "Pong")
    with pytest.raises(ValueError, match="unknown game 'Brekout'"):
        check_model_fits(model, "Brekout", None)
    with pytest.raises(FileNotFoundError, match="no ROM for Breakout: expected .*breakout.bin"):
        check_model_fits(model, "Breakout", None, rom_dir=str(tmp_path))
    assert EvalParams().episodes == 10


def test_normalized_scores_by_hand() -> None:
    assert normalized(90, "Breakout", "gamer") == pytest.approx(100 * 88 / 28)
    assert normalized(20, "Pong", "gamer") == pytest.approx(100 * 41 / 36)
    assert normalized(1150, "Seaquest", "gamer") == pytest.approx(100 * 1082 / 41987)
    assert normalized(14000, "Qbert", "human") == pytest.approx(100 * (14000 - 163.9) / (13455 - 163.9))
    assert normalized(100, "AirRaid", "human") is None and normalized(100, "Alien") is None


def _episodes(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["game", "model", "setup", "target", "train_seed",
                                       "test_seed", "episode", "return"])


def test_score_table_and_ttest_by_hand() -> None:
    episodes = _episodes([
        ("Breakout", "dt", "sample", 90.0, 1, 0, 0, 3.0), ("Breakout", "dt", "sample", 90.0, 1, 0, 1, 4.0),
        ("Breakout", "dt", "sample", 90.0, 1, 1, 0, 10.0),
        ("Breakout", "dt", "sample", 90.0, 1, 2, 0, 5.9),
        ("Breakout", "fdt", "sample", 90.0, 1, 0, 0, 4.0), ("Breakout", "fdt", "sample", 90.0, 1, 1, 0, 12.0),
        ("Breakout", "fdt", "sample", 90.0, 1, 2, 0, 8.0),
    ])
    table = score_table(episodes).set_index("model")
    # dt seed means: 3.5 -> 3, 10, 5.9 -> 5: mean 6, population std sqrt(26/3)
    assert table.loc["dt", "mean"] == 6.0
    assert table.loc["dt", "std"] == pytest.approx(math.sqrt(((3 - 6) ** 2 + 4 ** 2 + 1) / 3))
    assert table.loc["dt", "episodes"] == 4 and table.loc["dt", "seeds"] == 3
    assert table.loc["dt", "gamer_normalized"] == pytest.approx(100 * 4 / 28)
    test = paired_ttest(episodes).iloc[0]
    # differences fdt - dt per test seed: 1, 2, 3: t = 2 / (1 / sqrt(3))
    assert test["pairs"] == 3 and test["difference"] == 2.0
    assert test["t"] == pytest.approx(2 * math.sqrt(3))
    from scipy import stats
    assert test["p_value"] == pytest.approx(2 * stats.t.sf(2 * math.sqrt(3), df=2))
