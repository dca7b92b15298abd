"""DQN as batch_rl trains it offline (fixed_replay/configs/dqn.gin, Dopamine's DQNAgent).

Target y = r + gamma * max_a Q_target(s', a) (r alone at a terminal row); loss: the Huber loss
(delta 1) of y - Q(s, a), averaged over the batch. RMSProp with TensorFlow's semantics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from fdt.agents.agent import Batch, bellman_targets, chosen, huber
from fdt.agents.networks import QNetwork
from fdt.agents.optimizers import TFRMSProp
from fdt.settings import defaults

_DQN = defaults("agents", "dqn")  # the schema's, the one place they live


@dataclass(frozen=True)
class DQNParams:
    learning_rate: float = _DQN["learning_rate"]  # tf.train.RMSPropOptimizer.learning_rate = 0.00025
    rmsprop_decay: float = _DQN["rmsprop_decay"]  # RMSPropOptimizer.decay = 0.95 (momentum 0.0)
    rmsprop_epsilon: float = _DQN["rmsprop_epsilon"]  # RMSPropOptimizer.epsilon = 0.00001, centered
    gamma: float = _DQN["gamma"]  # FixedReplayDQNAgent.gamma = 0.99, update_horizon = 1
    # target_update_period = 8000 agent steps at update_period = 4: every 2,000 updates
    target_update_period: int = _DQN["target_update_period"]


def dqn_loss(q: torch.Tensor, next_q: torch.Tensor, batch: Batch, gamma: float) -> torch.Tensor:
    """Huber loss of the one-step TD error: `q` the online Q-values (N, A) at the states,
    `next_q` the target network's (N, A) at the next states."""
    targets = bellman_targets(batch["reward"], batch["terminal"], next_q.max(-1).values, gamma)
    return huber(targets.detach() - chosen(q, batch["action"])).mean()


class DQN:
    name = "dqn"
    Params = DQNParams

    def __init__(self, params: DQNParams) -> None:
        self.params = params

    def network(self, num_actions: int) -> QNetwork:
        return QNetwork(num_actions, 1, init="glorot")  # Keras's default, as Dopamine's DQN

    def optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        p = self.params
        return TFRMSProp(parameters, lr=p.learning_rate, decay=p.rmsprop_decay, momentum=0.0,
                         epsilon=p.rmsprop_epsilon, centered=True)

    def loss(self, online: nn.Module, target: nn.Module, batch: Batch,
             generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            next_q = target(batch["next_state"])[..., 0]
        return dqn_loss(online(batch["state"])[..., 0], next_q, batch, self.params.gamma)
