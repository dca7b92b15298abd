"""In-context RL on grid-worlds (fdt.incontext): the environments against the anchor's
definition, learning histories (generated, resumed, imported, refused), the methods' training
(resumed after a kill), the in-context evaluation, the report's statistics and the plan's keys."""

from __future__ import annotations

import pickle
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fdt.config import validate_config
from fdt.incontext.environments import GridWorld, InContextInputError, Task, load_split
from fdt.incontext.evaluation import EvalParams, evaluate
from fdt.incontext.histories import (
    generate,
    import_local,
    read_anchor_file,
    read_history,
    task_file,
    write_history,
)
from fdt.incontext.learner import PPOParams, learning_history
from fdt.incontext.lm import FrozenLM, save_tiny_lm
from fdt.incontext.model import ModelParams
from fdt.incontext.plan import InContextPlan
from fdt.incontext.report import bootstrap_ci, curves, table
from fdt.incontext.sequences import build_memory, build_stream, gather, window_starts
from fdt.incontext.training import TrainParams, load_model, model_params, train
from fdt.retrieval.retrieve import RetrievalParams
from tests.conftest import REPO

NORTH, EAST, SOUTH, WEST, STAY = range(5)
TINY = ModelParams(context=40, n_layer=1, n_head=2, n_embd=16)
RETRIEVAL = RetrievalParams(top_k=5, reweight_top_k=1, sim_cutoff=None, eval_top_k=5)


@pytest.fixture(autouse=True, scope="module")
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny models on shared cores: more threads only contend (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the environments ------------------------------------------------------------------------

def test_split_is_the_anchors() -> None:
    """The anchor's dark_room.yaml lists: 80 training and 20 evaluation goals, disjoint, whose
    order is make_train_test_pos's (RandomState(43) over the 10x10 cells)."""
    split = load_split("dark_room")
    assert (len(split.train), len(split.evaluation)) == (80, 20)
    assert split.train[0].goal == (2, 0) and split.train[-1].goal == (0, 4)
    assert split.evaluation[0].goal == (9, 0) and split.evaluation[-1].goal == (6, 8)
    cells = [(i, j) for i in range(10) for j in range(10)]
    goals = [tuple(g) for g in np.random.RandomState(seed=43).permutation(cells).tolist()]
    assert [t.goal for t in split.train] + [t.goal for t in split.evaluation] == goals
    keydoor = load_split("dark_keydoor")
    assert keydoor.train[0] == Task(goal=(2, 0), key=(8, 3))
    assert keydoor.evaluation[1] == Task(goal=(8, 4), key=(3, 1))  # the anchor moved it off the goal
    assert all(t.key != t.goal for t in keydoor.evaluation)


def test_dark_room_geometry_and_dense_reward() -> None:
    world = GridWorld(Task(goal=(2, 1)))
    assert world.reset().tolist() == [0, 0]
    obs, reward, *_ = world.step(NORTH)  # a wall: stays
    assert obs.tolist() == [0, 0] and reward == 0
    world.step(EAST)
    obs, reward, *_ = world.step(EAST)
    assert obs.tolist() == [0, 2]  # (row, column) = (y, x)
    obs, reward, terminated, truncated, _ = world.step(SOUTH)
    assert obs.tolist() == [1, 2] and reward == 1.0 and not terminated
    rewards = [world.step(STAY)[1] for _ in range(95)]
    assert rewards == [1.0] * 95  # repeatable: every step on the goal
    *_, truncated, _ = world.step(STAY)
    assert truncated and world.t == 100


def test_key_door_rewards_key_once_then_door_every_step() -> None:
    world = GridWorld(Task(goal=(0, 1), key=(1, 0)))
    world.reset()
    assert world.step(SOUTH)[1] == 0.0  # the door without the key
    assert world.step(NORTH)[1] == 0.0
    assert world.step(EAST)[1] == 1.0  # the key
    assert world.step(STAY)[1] == 0.0  # only once
    world.step(WEST)
    assert [world.step(a)[1] for a in (SOUTH, STAY)] == [1.0, 1.0]


def test_bad_task_lists_are_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InContextInputError, match="nowhere.yaml: no such task list"):
        load_split("dark_room", tmp_path / "nowhere.yaml")
    big = tmp_path / "dark_room_20x20.yaml"
    big.write_text(yaml.safe_dump({"train_goal_pos": [[15, 3]], "eval_goal_pos": [[1, 1]]}))
    with pytest.raises(InContextInputError, match="dark_room_20x20.yaml.*outside a 10x10 grid"):
        load_split("dark_room", big)
    with pytest.raises(InContextInputError, match="unknown environment"):
        load_split("dark_maze")


# --- learning histories ------------------------------------------------------------------------

def test_ppo_learns_a_near_goal() -> None:
    world = GridWorld(Task(goal=(2, 1)))
    history = learning_history(world, 8000, PPOParams(), seed=0)
    returns = np.bincount(history["episode"], weights=history["reward"])
    assert len(returns) == 80 and len(history["t"]) == 8000
    assert returns[-10:].mean() > returns[:10].mean() + 20


def test_generation_resumes_and_corrupt_files_are_named(tmp_path: Path) -> None:
    split = load_split("dark_room")
    paths = generate(split, range(2), 300, PPOParams(), 0, tmp_path)
    first = paths[0].stat().st_mtime_ns
    paths[1].unlink()  # killed before the second task was written
    again = generate(split, range(2), 300, PPOParams(), 0, tmp_path)
    assert again == paths and paths[0].stat().st_mtime_ns == first and paths[1].exists()
    assert not list(tmp_path.glob("*.tmp*"))
    frame = read_history(paths[1])
    assert list(frame["task"].unique()) == [1] and len(frame) == 300
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    with pytest.raises(InContextInputError, match="task001.parquet: not a readable"):
        read_history(paths[1])
    wide = frame.assign(row=frame["row"] + 15)
    write_history(task_file(tmp_path, 5), 5, {c: wide[c].to_numpy() for c in wide.columns})
    with pytest.raises(InContextInputError, match="task005.parquet.*another grid size"):
        read_history(task_file(tmp_path, 5))


def _anchor_arrays(steps: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    dones = np.zeros((steps, 1), bool)
    dones[99::100] = True
    return {"observations": rng.integers(0, 10, (steps, 1, 2)).astype(np.float32),
            "actions": rng.integers(0, 5, (steps, 1)), "rewards": np.zeros((steps, 1), np.float32),
            "dones": dones}


def test_local_source_reads_the_anchors_npz_and_pickled_buffer(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    split = load_split("dark_room")
    np.savez(tmp_path / f"{split.train[0].name}.npz", **_anchor_arrays())
    # A pickled SB3 ReplayBuffer, written without SB3: a class pickled under its module's name.
    names = ("stable_baselines3", "stable_baselines3.common", "stable_baselines3.common.buffers")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    buffer_class = type("ReplayBuffer", (), {"__module__": names[-1]})
    sys.modules[names[-1]].ReplayBuffer = buffer_class  # type: ignore[attr-defined]
    buffer = buffer_class()
    buffer.__dict__.update(_anchor_arrays(), pos=150, full=False)
    (tmp_path / f"{split.train[1].name}.pkl").write_bytes(pickle.dumps(buffer))
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    paths = import_local(split, range(2), tmp_path, tmp_path / "out")
    assert len(read_history(paths[0])) == 200 and read_history(paths[0])["episode"].max() == 1
    assert len(read_history(paths[1])) == 150  # up to the buffer's pos
    with pytest.raises(InContextInputError, match=r"\[0,0\]_\[1,5\]\.pkl: missing"):
        import_local(split, range(3), tmp_path, tmp_path / "out")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(types.SimpleNamespace(a=1)))
    with pytest.raises(InContextInputError, match="evil.pkl: not a readable RA-DT dataset"):
        read_anchor_file(evil, 0)


# --- training and evaluation -------------------------------------------------------------------

@pytest.fixture(scope="module")
def stream():  # type: ignore[no-untyped-def]
    split = load_split("dark_room")
    frames = [pd.DataFrame({"task": i, **learning_history(
        GridWorld(split.train[i]), 600, PPOParams(), seed=i)}) for i in range(2)]
    return build_stream(frames)


def test_windows_stay_in_their_task_or_episode(stream) -> None:  # type: ignore[no-untyped-def]
    ad = window_starts(stream, 150, within_episode=False)
    assert len(ad) == 2 * (600 - 150 + 1)  # across episodes, never across tasks
    dt = window_starts(stream, 50, within_episode=True)
    assert len(dt) == 12 * 51
    batch = gather(stream, dt[:1], 50, True)
    assert batch["prev_action"][0, 0] == 5 and batch["rtg"].shape == (1, 50)


def test_training_resumes_after_a_kill(stream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mp = model_params("ad", TINY)
    params = TrainParams(method="ad", steps=4, batch_size=4, checkpoint_every=2, warmup_steps=1)
    whole = train(stream, mp, params, tmp_path / "whole")

    def killed(step: int, _: dict) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(stream, mp, replace(params, log_every=1), tmp_path / "resumed", log=killed)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    resumed = train(stream, mp, params, tmp_path / "resumed")
    assert resumed["steps"] == 4 and not (tmp_path / "resumed" / "checkpoint.pt").exists()
    a = torch.load(tmp_path / "whole" / "model.pt")["model"]
    b = torch.load(tmp_path / "resumed" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole["final_loss"] == pytest.approx(resumed["final_loss"])


def test_each_method_trains_and_evaluates_in_context(stream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 20-step episodes keep the test short; the models know up to 100
    split = replace(load_split("dark_room"), max_episode_steps=20)
    params = TrainParams(steps=2, batch_size=2, warmup_steps=1)
    train(stream, model_params("dt", TINY), replace(params, method="dt"), tmp_path / "dt")
    dt = load_model(tmp_path / "dt" / "model.pt")
    lm = FrozenLM(save_tiny_lm(tmp_path / "lm"), 10)
    embedders = {"ad": None, "dt": None, "radt": lambda b: dt.embed(b).numpy(), "radt_lm": lm}
    for method, embed in embedders.items():
        mp = model_params(method, TINY)
        memory = None
        if embed is not None:
            memory = build_memory(stream, embed, 10, 20, RETRIEVAL)
            mp = replace(mp, context=10)
            assert (memory.neighbours >= 0).all()
            own = stream.episode[memory.starts]
            assert (own[memory.neighbours[:, 0]] != own).all()  # never the query's own episode
        train(stream, mp, replace(params, method=method), tmp_path / method, memory)
        model = load_model(tmp_path / method / "model.pt")
        frame, timing = evaluate(model, method, split, [0, 1],
                                 EvalParams(episodes=2, retrieve_every=10, item_stride=5), embed, 10,
                                 RETRIEVAL, None if memory is None else memory.keys.shape[1])
        assert sorted(frame["episode"].unique()) == [1, 2] and len(frame) == 4
        if method.startswith("radt"):  # the second episode retrieves from the first
            assert timing["retrieval_share"] > 0


def test_missing_language_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InContextInputError, match="incontext.lm_path is not set"):
        FrozenLM(None, 10)
    with pytest.raises(InContextInputError, match="no-lm: no such folder"):
        FrozenLM(tmp_path / "no-lm", 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InContextInputError, match="empty: neither model.pt"):
        FrozenLM(tmp_path / "empty", 10)


# --- report and plan ---------------------------------------------------------------------------

def test_curves_and_table() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame([{"env": "dark_room", "method": m, "episode": e, "goal": g, "seed": 0,
                           "return": float(rng.normal(e, 1))}
                          for m in ("ad", "radt") for e in range(1, 41) for g in range(20)])
    curve = curves(frame)
    assert len(curve) == 80 and (curve["ci_low"] <= curve["mean"]).all()
    assert (curve["mean"] <= curve["ci_high"]).all()
    assert list(table(curve).columns) == ["env", "method", "episode 1", "episode 10", "episode 40"]
    low, high = bootstrap_ci(np.array([0.0, 10.0, 20.0]))
    assert 0 <= low < 10 < high <= 20


def test_plan_keys() -> None:
    text = (REPO / "config" / "config.yaml").read_text()
    config = validate_config(yaml.safe_load(text))
    code = {k: "c" for k in ("incontext_histories", "incontext_train", "incontext_evaluate",
                             "incontext_report")}
    plan = InContextPlan(config, code)
    radt = plan.model("dark_room", "radt")
    assert plan.model("dark_room", "dt").key in radt.inputs  # the pretrained DT embeds
    changed = validate_config(yaml.safe_load(text))
    changed["incontext"]["evaluation"]["episodes"] = 7
    other = InContextPlan(changed, code)
    assert other.model("dark_room", "ad").key == plan.model("dark_room", "ad").key
    assert other.evaluation("dark_room", "ad").key != plan.evaluation("dark_room", "ad").key
