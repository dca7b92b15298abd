"""The agents by name, each built from its hyperparameters (a config section, the schema's defaults
for what it leaves out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fdt.agents.agent import Agent
from fdt.agents.c51 import C51
from fdt.agents.cql import CQL
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
