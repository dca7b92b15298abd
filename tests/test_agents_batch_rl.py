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
