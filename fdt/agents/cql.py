"""Discrete CQL(H) (Kumar et al. 2020) as its Atari code runs it: QR-DQN (batch_rl's quantile agent,
quantile.gin) plus alpha times the conservative term

    mean over the batch of  logsumexp_a Q(s, a) - Q(s, a_data),

Q being the mean of the quantiles. `base: dqn` puts the same term on DQN's Huber loss (DQN's
Q-values, RMSProp as dqn.gin; no published run of CQL on DQN exists to compare with). alpha is
the CQL README's minq_weight: 4.0 for 1% of the data (the DT paper's protocol), 1.0 for 10%;
left unset, it follows the data regime (`regime_alpha`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from fdt.agents.agent import Batch, chosen
from fdt.agents.dqn import DQN, DQNParams, dqn_loss
from fdt.agents.networks import QNetwork
from fdt.agents.optimizers import TFAdam
from fdt.agents.qr_dqn import qr_dqn_loss
from fdt.settings import defaults

_CQL = defaults("agents", "cql")  # the schema's, the one place they live
BASES = ("qr_dqn", "dqn")


@dataclass(frozen=True)
class CQLParams:
    base: str = _CQL["base"]  # the CQL paper's Atari agent is QR-DQN
    alpha: float | None = _CQL["alpha"]  # minq_weight; None: the data regime's (regime_alpha)
    learning_rate: float = _CQL["learning_rate"]  # quantile.gin: Adam lr = 0.00005
    adam_epsilon: float = _CQL["adam_epsilon"]  # AdamOptimizer.epsilon = 0.0003125
    gamma: float = _CQL["gamma"]  # gamma = 0.99, update_horizon = 1
    target_update_period: int = _CQL["target_update_period"]  # 8000 agent steps / update_period 4
    num_quantiles: int = _CQL["num_quantiles"]  # num_atoms = 200
    kappa: float = _CQL["kappa"]  # kappa = 1.0


ALPHA_ONE_PERCENT = 4.0  # CQL's README: "For 1% data, use minq_weight=4.0"
ALPHA_MORE_DATA = 1.0  # "and for 10% data, use minq_weight=1.0"; none is published for more
ONE_PERCENT = 0.01


def regime_alpha(data: str, data_fraction: float) -> float:
    """CQL's weight for a data regime: the README's 1% value when an agent sees at most 1% of
    each checkpoint (`training_set` is the DT paper's 1%; `batch_rl` sees `data_fraction` of each
    checkpoint), its 10% value otherwise, the full buffers included."""
    share = ONE_PERCENT if data == "training_set" else data_fraction
    return ALPHA_ONE_PERCENT if share <= ONE_PERCENT else ALPHA_MORE_DATA


def cql_term(q: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The conservative term: mean of logsumexp_a Q(s, a) - Q(s, a_data) over the batch (N, A)."""
    return (torch.logsumexp(q, dim=-1) - chosen(q, action)).mean()


class CQL:
    name = "cql"
    Params = CQLParams

    def __init__(self, params: CQLParams) -> None:
        if params.base not in BASES:
            raise ValueError(f"agents.cql.base must be one of {', '.join(BASES)}, not "
                             f"{params.base!r}")
        if params.alpha is None:
            raise ValueError("agents.cql.alpha is unset: it follows the data regime, so build the "
                             "agent with fdt.agents.registry.agent_for_data, or give a number")
        self.params = params
        self.alpha: float = params.alpha

    def network(self, num_actions: int) -> QNetwork:
        if self.params.base == "dqn":
            return QNetwork(num_actions, 1, init="glorot")
        return QNetwork(num_actions, self.params.num_quantiles, init="variance_scaling")

    def optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        p = self.params
        if p.base == "dqn":  # DQN's own optimizer (dqn.gin), at its learning rate
            return DQN(DQNParams(gamma=p.gamma)).optimizer(parameters)
        return TFAdam(parameters, lr=p.learning_rate, epsilon=p.adam_epsilon)

    def loss(self, online: nn.Module, target: nn.Module, batch: Batch,
             generator: torch.Generator) -> torch.Tensor:
        p = self.params
        outputs = online(batch["state"])  # (N, A, K)
        with torch.no_grad():
            next_outputs = target(batch["next_state"])
        if p.base == "dqn":
            base = dqn_loss(outputs[..., 0], next_outputs[..., 0], batch, p.gamma)
        else:
            base = qr_dqn_loss(outputs, next_outputs, batch, p.gamma, p.kappa)
        return base + self.alpha * cql_term(outputs.mean(-1), batch["action"])
