"""What every agent is, and the pieces their losses share.

An agent knows its hyperparameters (`params`, a frozen dataclass whose defaults are the schema's,
i.e. batch_rl's gin values), makes its Q-network and optimizer, and gives the loss of one batch
of transitions from the online and target networks. A batch holds `state` and `next_state`
(uint8, (N, 4, 84, 84)), `action` (long), `reward` (float, clipped as stored) and `terminal`
(bool). The update horizon is 1, as in every batch_rl gin file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import torch
import torch.nn as nn

Batch = dict[str, torch.Tensor]


class Agent(Protocol):
    name: str
    params: Any  # the agent's hyperparameter dataclass (learning_rate, gamma, target_update_period, ...)

    def network(self, num_actions: int) -> nn.Module:
        """A fresh network with `num_actions` and `q_values(states) -> (N, A)`."""
        ...

    def optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer: ...

    def loss(self, online: nn.Module, target: nn.Module, batch: Batch,
             generator: torch.Generator) -> torch.Tensor:
        """The loss of one batch (`generator` draws anything random, e.g. REM's mixture)."""
        ...


def huber(errors: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """Elementwise Huber loss: 0.5 u^2 where |u| <= kappa, kappa (|u| - kappa / 2) beyond
    (tf.losses.huber_loss with delta = kappa)."""
    absolute = errors.abs()
    return torch.where(absolute <= kappa, 0.5 * errors ** 2, kappa * (absolute - 0.5 * kappa))


def bellman_targets(reward: torch.Tensor, terminal: torch.Tensor, next_values: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """r + gamma * next value, the next value dropped at terminal rows; `next_values` may carry
    trailing dimensions (quantiles, heads), over which the reward is broadcast."""
    shape = (-1,) + (1,) * (next_values.dim() - 1)
    discount = gamma * (~terminal).to(next_values.dtype)
    return reward.view(shape) + discount.view(shape) * next_values


def chosen(values: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The entries of the taken actions: (N, A, ...) -> (N, ...)."""
    return values[torch.arange(len(values), device=values.device), action]
