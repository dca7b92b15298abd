"""Where the agents' training and scoring follow batch_rl and Dopamine (issue 29): the target
network's copy timing, the evaluation budget in steps, CQL's weight per data regime."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from fdt.agents.registry import make_agent

# --- Dopamine's target-network timing ---


def test_target_copies_follow_dopamines_step_counter() -> None:
    from fdt.agents.training import target_synced_after

    assert [u for u in range(1, 6002) if target_synced_after(u, 2000)] == [1, 2001, 4001, 6001]
    assert [u for u in range(1, 8) if target_synced_after(u, 3)] == [1, 4, 7]
    assert [u for u in range(1, 4) if target_synced_after(u, 1)] == [1, 2, 3]


def test_training_copies_the_target_after_update_one(episode_store: list[Path],
                                                     tmp_path: Path) -> None:
    """With a period of 2 updates the target is copied after updates 1 and 3: after 3 updates
    it equals the online network, after 2 it holds the weights of update 1."""
    from fdt.agents.replay import BatchRLData
    from fdt.agents.training import CHECKPOINT, AgentTrainingParams, train_agent
    from fdt.torchfile import load_torch_file

    def trained(updates: int) -> dict:
        out = tmp_path / f"updates{updates}"
        seen: dict[int, dict[str, torch.Tensor]] = {}
        train_agent(make_agent("dqn", {"target_update_period": 2}),
                    BatchRLData(dict(enumerate(episode_store)), 2, seed=1), 4, out,
                    AgentTrainingParams(seed=1, iterations=1, steps_per_iteration=updates,
                                        batch_size=4, device="cpu"),
                    on_update=lambda u, net: seen.update({u: copy.deepcopy(net.state_dict())}),
                    progress=False)
        return {"checkpoint": load_torch_file(out / CHECKPOINT), "seen": seen}

    three = trained(3)
    for name, value in three["checkpoint"]["target"].items():
        assert torch.equal(value, three["seen"][3][name]), name
    two = trained(2)
    for name, value in two["checkpoint"]["target"].items():
        assert torch.equal(value, two["seen"][1][name]), name
    assert any(not torch.equal(v, two["seen"][2][k]) for k, v in two["checkpoint"]["target"].items())


# --- CQL's weight per data regime ---


def test_cqls_weight_follows_the_data_regime_as_cqls_readme() -> None:
    from fdt.agents.registry import agent_for_data
    from fdt.settings import defaults

    assert defaults("agents", "cql")["alpha"] is None  # left to the regime unless set
    assert agent_for_data("cql", {}, "training_set").params.alpha == 4.0  # the DT paper's 1%
    assert agent_for_data("cql", {}, "batch_rl", 1.0).params.alpha == 1.0  # the full buffers
    assert agent_for_data("cql", {}, "batch_rl", 0.1).params.alpha == 1.0  # the README's 10%
    assert agent_for_data("cql", {}, "batch_rl", 0.01).params.alpha == 4.0  # its 1%
    assert agent_for_data("cql", {"alpha": 2.5}, "batch_rl").params.alpha == 2.5  # set: kept
    assert agent_for_data("qr_dqn", {}, "training_set").params == make_agent("qr_dqn").params
    with pytest.raises(ValueError, match="agents.cql.alpha is unset: it follows the data regime"):
        make_agent("cql")


# --- Dopamine's evaluation budget ---


def test_dopamines_runner_counts_whole_episodes_until_the_budget() -> None:
    from fdt.agents.evaluation import counted_episodes, describe_budget
    from fdt.agents.training import AgentEvaluation

    lengths = [10, 5, 20, 7]
    assert counted_episodes(lengths, 30) == 3  # 35 steps: the third episode passes 30, finished
    assert counted_episodes(lengths, 35) == 3
    assert counted_episodes(lengths, 36) == 4
    assert counted_episodes(lengths, 1) == 1
    assert counted_episodes(lengths, 43) is None  # 42 steps fall short: play on
    assert describe_budget("steps", 125000, 10) == "125,000 steps"
    assert describe_budget("episodes", 125000, 10) == "10 episodes"
    with pytest.raises(ValueError, match="budget must be one of steps, episodes"):
        describe_budget("minutes", 1, 1)
    default = AgentEvaluation()  # the protocol's default is batch_rl's, evaluation_steps 125,000
    assert (default.budget, default.steps, default.max_steps) == ("steps", 125000, None)


def test_a_step_budget_plays_whole_episodes_in_order(episode_store: list[Path],
                                                     tmp_path: Path) -> None:
    """Episodes capped at 12 steps and a budget of 30: the third episode reaches 36 steps, so
    three count, whatever the fourth played beside it in the same round of 2 environments."""
    from fdt.agents.replay import BatchRLData
    from fdt.agents.training import AgentEvaluation, AgentTrainingParams, train_agent

    params = AgentTrainingParams(seed=1, iterations=1, steps_per_iteration=1, batch_size=2,
                                 device="cpu", evaluation=AgentEvaluation(
                                     budget="steps", steps=30, max_steps=12, seed=5, envs=2))
    metrics = train_agent(make_agent("dqn"), BatchRLData(dict(enumerate(episode_store)), 2, seed=1),
                          4, tmp_path / "out", params, game="Breakout", progress=False)
    scored = metrics["evaluations"][-1]
    assert [e["episode"] for e in scored["episodes"]] == [0, 1, 2]
    assert [e["steps"] for e in scored["episodes"]] == [12, 12, 12] and scored["steps"] == 36
    assert scored["budget"] == "30 steps" and metrics["final_evaluation"]["budget"] == "30 steps"
    returns = [e["return"] for e in scored["episodes"]]
    assert scored["mean_return"] == pytest.approx(sum(returns) / 3)


def test_the_report_says_which_budget_was_played(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from fdt.report.build import build_agents_report
    from tests.conftest import REPO

    files = []
    for seed, final in ((1, {"budget": "125,000 steps", "episodes": 41}), (2, {"episodes": 10})):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        metrics = {"agent": "qr_dqn", "game": "Pong", "seed": seed,
                   "history": [{"iteration": 1, "updates": 10, "loss": 1.0, "eval_mean": 1.0}],
                   "final_evaluation": {"iteration": 1, "mean_return": 1.0, "std_return": 0.0,
                                        **final}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "params.json").write_text(json.dumps({"params": {"data": "batch_rl"}}))
        files.append(folder / "metrics.json")
    build_agents_report(files, REPO / "workflow" / "data" / "paper_results.csv", tmp_path / "r")
    table = pd.read_csv(tmp_path / "r" / "agents.csv")
    assert sorted(table["evaluation"]) == ["10 episodes", "125,000 steps"]  # older metrics: episodes
    section = json.loads((tmp_path / "r" / "section.json").read_text())
    assert "each evaluation playing 10 episodes, 125,000 steps" in section["summary"]
