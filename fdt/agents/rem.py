"""REM and Ensemble-DQN as batch_rl trains them offline (fixed_replay/configs/rem.gin and
multi_head_dqn.gin; batch_rl's multi_head/multi_head_dqn_agent.py and atari_helpers.py).

One network with K heads of Q-values. REM (transform_strategy STOCHASTIC) draws a mixture alpha
each update, alpha_k = u_k / sum(u), u_k ~ U(0, 1), shared by the online and the target network,
and trains the mixed Q-function: y = r + gamma * max_a sum_k alpha_k Q^target_k(s', a), Huber loss
of y - sum_k alpha_k Q_k(s, a). Ensemble-DQN (IDENTITY) trains every head on its own target,
y_k = r + gamma * max_a Q^target_k(s', a), the Huber losses averaged over batch and heads. Both act
on the heads' mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from fdt.agents.agent import Batch, bellman_targets, chosen, huber
from fdt.agents.networks import QNetwork
from fdt.agents.optimizers import TFAdam
from fdt.settings import defaults

_REM = defaults("agents", "rem")  # the schema's, the one place they live
_ENSEMBLE = defaults("agents", "ensemble_dqn")


@dataclass(frozen=True)
class REMParams:
    learning_rate: float = _REM["learning_rate"]  # tf.train.AdamOptimizer.learning_rate = 0.00005
    adam_epsilon: float = _REM["adam_epsilon"]  # AdamOptimizer.epsilon = 0.0003125
    gamma: float = _REM["gamma"]  # FixedReplayMultiHeadDQNAgent.gamma = 0.99, update_horizon = 1
    target_update_period: int = _REM["target_update_period"]  # 8000 agent steps / update_period 4
    num_heads: int = _REM["num_heads"]  # FixedReplayMultiHeadDQNAgent.num_heads = 200


@dataclass(frozen=True)
class EnsembleDQNParams:
    learning_rate: float = _ENSEMBLE["learning_rate"]  # multi_head_dqn.gin: Adam lr = 0.00005
    adam_epsilon: float = _ENSEMBLE["adam_epsilon"]  # AdamOptimizer.epsilon = 0.0003125
    gamma: float = _ENSEMBLE["gamma"]  # gamma = 0.99, update_horizon = 1
    target_update_period: int = _ENSEMBLE["target_update_period"]  # 8000 agent steps / 4
    num_heads: int = _ENSEMBLE["num_heads"]  # num_heads = 200, transform_strategy = 'IDENTITY'


def random_mixture(heads: int, generator: torch.Generator) -> torch.Tensor:
    """A random convex combination of the heads (atari_helpers.random_stochastic_matrix, one
    column): uniform draws normalised by their sum."""
    draws = torch.rand(heads, generator=generator)
    return draws / draws.sum()


def rem_loss(heads: torch.Tensor, next_heads: torch.Tensor, batch: Batch, gamma: float,
             mixture: torch.Tensor) -> torch.Tensor:
    """`heads` (N, A, K) online at the states, `next_heads` (N, A, K) target at the next states,
    `mixture` (K,) the convex combination of this update."""
    mixed = heads @ mixture  # (N, A)
    next_mixed = next_heads @ mixture
    targets = bellman_targets(batch["reward"], batch["terminal"], next_mixed.max(-1).values, gamma)
    return huber(targets.detach() - chosen(mixed, batch["action"])).mean()


def ensemble_loss(heads: torch.Tensor, next_heads: torch.Tensor, batch: Batch,
                  gamma: float) -> torch.Tensor:
    """Every head on its own target; the mean over batch and heads."""
    targets = bellman_targets(batch["reward"], batch["terminal"], next_heads.max(1).values, gamma)
    return huber(targets.detach() - chosen(heads, batch["action"])).mean()


class _MultiHead:
    params: REMParams | EnsembleDQNParams

    def network(self, num_actions: int) -> QNetwork:
        return QNetwork(num_actions, self.params.num_heads, init="variance_scaling")

    def optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return TFAdam(parameters, lr=self.params.learning_rate, epsilon=self.params.adam_epsilon)


class REM(_MultiHead):
    name = "rem"
    Params = REMParams

    def __init__(self, params: REMParams) -> None:
        self.params = params

    def loss(self, online: nn.Module, target: nn.Module, batch: Batch,
             generator: torch.Generator) -> torch.Tensor:
        heads = online(batch["state"])
        mixture = random_mixture(self.params.num_heads, generator).to(heads.device)
        with torch.no_grad():
            next_heads = target(batch["next_state"])
        return rem_loss(heads, next_heads, batch, self.params.gamma, mixture)


class EnsembleDQN(_MultiHead):
    name = "ensemble_dqn"
    Params = EnsembleDQNParams

    def __init__(self, params: EnsembleDQNParams) -> None:
        self.params = params

    def loss(self, online: nn.Module, target: nn.Module, batch: Batch,
             generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            next_heads = target(batch["next_state"])
        return ensemble_loss(online(batch["state"]), next_heads, batch, self.params.gamma)
