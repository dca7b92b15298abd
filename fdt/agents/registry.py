"""The agents by name, each built from its hyperparameters (a config section, the schema's defaults
for what it leaves out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fdt.agents.agent import Agent
from fdt.agents.c51 import C51
from fdt.agents.cql import CQL, regime_alpha
from fdt.agents.dqn import DQN
from fdt.agents.qr_dqn import QRDQN
from fdt.agents.rem import REM, EnsembleDQN
from fdt.settings import params_from

AGENTS: dict[str, Any] = {cls.name: cls for cls in (DQN, C51, QRDQN, REM, EnsembleDQN, CQL)}


class UnknownAgentError(ValueError):
    pass


def make_agent(name: str, hyperparameters: Mapping[str, Any] | None = None) -> Agent:
    if name not in AGENTS:
        raise UnknownAgentError(f"unknown agent {name!r}; the agents are {', '.join(AGENTS)}")
    cls = AGENTS[name]
    return cls(params_from(cls.Params, hyperparameters or {}))


def agent_for_data(name: str, hyperparameters: Mapping[str, Any], data: str,
                   data_fraction: float = 1.0) -> Agent:
    """The agent as trained on a data regime (`data`: batch_rl or training_set): a setting left
    to the regime (CQL's alpha, when unset) takes the regime's value, so the weights' file and
    metrics hold the number used."""
    settings = dict(hyperparameters)
    if name == CQL.name and settings.get("alpha") is None:
        settings["alpha"] = regime_alpha(data, data_fraction)
    return make_agent(name, settings)
