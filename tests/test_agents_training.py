"""Training an agent: iterations, checkpoints, exact resume after a kill, tracking, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fdt.agents.registry import make_agent
from fdt.agents.replay import BatchRLData
from fdt.agents.training import (
    CHECKPOINT,
    CURVE,
    METRICS,
    WEIGHTS,
    AgentTrainingError,
    AgentTrainingParams,
    load_agent_network,
    train_agent,
)
from fdt.torchfile import TorchFileError, load_torch_file
from tests.conftest import REPO
from tests.planted import plant

TINY = dict(iterations=3, steps_per_iteration=4, batch_size=4, log_every=2, device="cpu")


def _train(paths: list[Path], out: Path, agent: str = "rem", **kw) -> dict:
    data = BatchRLData(dict(enumerate(paths)), 2, seed=1)
    return train_agent(make_agent(agent, {"num_heads": 3} if agent == "rem" else None), data, 4,
                       out, AgentTrainingParams(seed=1, **{**TINY, **kw}), progress=False)


def test_trains_iterations_and_writes_its_outputs(episode_store: list[Path], tmp_path: Path) -> None:
    metrics = _train(episode_store, tmp_path / "rem")
    assert metrics["iterations"] == 3 and metrics["updates"] == 12
    assert [h["iteration"] for h in metrics["history"]] == [1, 2, 3]
    assert all(len(h["checkpoints"]) == 2 for h in metrics["history"])
    assert metrics["final_evaluation"] is None  # no game given: nothing scored
    for name in (WEIGHTS, METRICS, CURVE, CHECKPOINT):
        assert (tmp_path / "rem" / name).is_file()
    assert (tmp_path / "rem" / CURVE).read_text().count("\n") == 4
    net = load_agent_network(tmp_path / "rem" / WEIGHTS, 4)
    assert net.q_values(torch.zeros((1, 4, 84, 84), dtype=torch.uint8)).shape == (1, 4)
    with pytest.raises(AgentTrainingError, match="an agent for 4 actions, but the game has 6"):
        load_agent_network(tmp_path / "rem" / WEIGHTS, 6)
    again = _train(episode_store, tmp_path / "rem")  # a finished run is found, not redone
    assert again["updates"] == 12 and again["history"] == metrics["history"]
    with pytest.raises(AgentTrainingError, match="logged action 3 is outside the game's 2 actions"):
        train_agent(make_agent("dqn"), BatchRLData(dict(enumerate(episode_store)), 2), 2,
                    tmp_path / "other", AgentTrainingParams(seed=0, **TINY), progress=False)


def test_planted_checkpoint_is_refused(episode_store: list[Path], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plant(tmp_path / "out" / CHECKPOINT, marker)
    with pytest.raises(TorchFileError, match=r"checkpoint\.pt: holds something other than weights"):
        _train(episode_store, tmp_path / "out")
    assert not marker.exists()


KILLER = """
import os, signal, sys
from pathlib import Path
import torch
from fdt.agents.registry import make_agent
from fdt.agents.replay import BatchRLData
from fdt.agents.training import AgentTrainingParams, train_agent
torch.set_num_threads(1)
paths, out, kill_at = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
def hook(updates, online):
    if updates == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
data = BatchRLData(dict(enumerate(paths)), 2, seed=1)
train_agent(make_agent("rem", {"num_heads": 3}), data, 4, out,
            AgentTrainingParams(seed=1, **{tiny}), on_update=hook if kill_at else None,
            progress=False)
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    script = KILLER.replace("{tiny}", repr(TINY))
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_kill_and_resume_gives_the_same_weights(episode_store: list[Path], tmp_path: Path) -> None:
    paths = ",".join(map(str, episode_store))
    whole = _run(paths, str(tmp_path / "whole"), "0")
    assert whole.returncode == 0, whole.stderr
    killed = _run(paths, str(tmp_path / "resumed"), "6")  # in iteration 2 (updates 5-8)
    assert killed.returncode == -9
    state = load_torch_file(tmp_path / "resumed" / CHECKPOINT)["state"]
    assert state["iteration"] == 1 and state["updates"] == 4
    assert not (tmp_path / "resumed" / WEIGHTS).exists()
    resumed = _run(paths, str(tmp_path / "resumed"), "0")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming rem" in resumed.stderr
    x = load_torch_file(tmp_path / "whole" / WEIGHTS)["model"]
    y = load_torch_file(tmp_path / "resumed" / WEIGHTS)["model"]
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    first = json.loads((tmp_path / "whole" / METRICS).read_text())["history"]
    second = json.loads((tmp_path / "resumed" / METRICS).read_text())["history"]
    assert [h["loss"] for h in first] == [h["loss"] for h in second]


def test_tracking_receives_loss_q_statistics_and_rates(episode_store: list[Path],
                                                       tmp_path: Path) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.params, self.metrics, self.ended = {}, [], None

        def start(self, run_id=None):
            return "run-1"

        def log_params(self, params):
            self.params.update(params)

        def log_metrics(self, metrics, step):
            self.metrics.append((step, dict(metrics)))

        def log_artifact(self, path):
            pass

    recorder = Recorder()
    data = BatchRLData(dict(enumerate(episode_store)), 2, seed=1)
    train_agent(make_agent("dqn"), data, 4, tmp_path / "dqn", AgentTrainingParams(seed=1, **TINY),
                tracker=recorder, progress=False)
    assert recorder.params["agent"] == "dqn" and recorder.params["learning_rate"] == 0.00025
    names = set().union(*(m for _, m in recorder.metrics))
    assert {"loss", "q_mean", "q_data", "updates_per_s", "iteration"} <= names
    assert [s for s, m in recorder.metrics if "iteration" in m] == [4, 8, 12]


def test_scores_after_the_chosen_iterations_under_the_dopamine_protocol(
        episode_store: list[Path], tmp_path: Path) -> None:
    from fdt.agents.training import AgentEvaluation

    params = AgentTrainingParams(seed=1, iterations=3, steps_per_iteration=1, batch_size=2,
                                 evaluate_after=(1,), device="cpu",
                                 evaluation=AgentEvaluation(budget="episodes", episodes=2,
                                                            max_steps=12, seed=5))
    data = BatchRLData(dict(enumerate(episode_store)), 2, seed=1)
    metrics = train_agent(make_agent("dqn"), data, 4, tmp_path / "out", params, game="Breakout",
                          progress=False)
    assert [e["iteration"] for e in metrics["evaluations"]] == [1, 3]  # chosen, and the last
    last = metrics["evaluations"][-1]
    assert last["seed"] == 5 + 3 and len(last["episodes"]) == 2
    assert all(e["steps"] <= 12 for e in last["episodes"])
    assert metrics["final_evaluation"]["iteration"] == 3
    assert metrics["final_evaluation"]["budget"] == "2 episodes"
    assert "eval_mean" in metrics["history"][0] and "eval_mean" not in metrics["history"][1]
