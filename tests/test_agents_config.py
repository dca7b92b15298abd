"""The agents' config: one clear sentence for bad input, before any work."""

from __future__ import annotations

import pytest

from fdt.config import ConfigError, validate_config

BASE = {"games": ["Breakout"], "runs": [1], "buffers": [0, 1, 2],
        "dataset": {"num_buffers": 2, "buffers_end": 2, "capacity": 1000}}


@pytest.mark.parametrize("agents, message", [
    ({"names": ["dqn", "remm"]}, r"at agents\.names: unknown agent 'remm' \(did you mean 'rem'\?\); "
                                 r"the agents are dqn, c51, qr_dqn, rem, ensemble_dqn, cql"),
    ({"names": ["rem"], "data_fraction": 0}, r"at agents\.data_fraction: 0 is outside \(0, 1\]"),
    ({"names": ["rem"], "data_fraction": 1.5}, r"at agents\.data_fraction: 1\.5 is outside \(0, 1\]"),
    ({"names": ["rem"], "data": "training_set", "data_fraction": 0.5},
     r"at agents\.data_fraction: 0\.5 applies to data batch_rl only"),
    ({"names": ["rem"]}, r"at agents\.checkpoints_per_iteration: an iteration loads 5 checkpoints, "
                         r"but run 1 has 3 \(buffers: 0-2\)"),
    ({"names": ["rem"], "checkpoints_per_iteration": 2, "run": 2},
     r"at agents\.run: run 2 is not among runs \[1\]"),
    ({"names": ["rem"], "checkpoints_per_iteration": 2, "iterations": 3, "evaluate_after": [1, 4]},
     r"at agents\.evaluate_after: iteration 4 is past agents\.iterations \(3\)"),
    ({"names": ["rem"], "rem": {"num_head": 3}}, r"at agents\.rem: Additional properties"),
    ({"names": ["cql"], "cql": {"base": "c51"}}, r"at agents\.cql\.base: 'c51' is not one of"),
])
def test_bad_agent_settings_stop_with_one_sentence(agents: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config({**BASE, "agents": agents}, origin="my.yaml")


def test_agents_are_optional_and_defaults_are_batch_rls() -> None:
    config = validate_config(BASE)
    agents = config["agents"]
    assert agents["names"] == [] and agents["iterations"] == 200
    assert agents["steps_per_iteration"] == 62500 and agents["checkpoints_per_iteration"] == 5
    assert agents["rem"]["num_heads"] == 200 and agents["cql"]["alpha"] is None
    validate_config({**BASE, "agents": {"names": ["rem", "cql"], "checkpoints_per_iteration": 3}})
