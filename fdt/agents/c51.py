"""C51 as batch_rl trains it offline (fixed_replay/configs/c51.gin: Dopamine's Rainbow agent with
uniform replay, 1-step, no noisy nets or dueling): the oracle's network and loss (fdt.oracle.c51,
fdt.oracle.training), Adam as TensorFlow 1 computes it, Rainbow's initialisation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from fdt.agents.agent import Batch
from fdt.agents.networks import initialize
from fdt.agents.optimizers import TFAdam
from fdt.oracle.c51 import C51Network
from fdt.oracle.training import c51_loss
from fdt.settings import defaults

_C51 = defaults("agents", "c51")  # the schema's, the one place they live


@dataclass(frozen=True)
class C51Params:
    learning_rate: float = _C51["learning_rate"]  # tf.train.AdamOptimizer.learning_rate = 0.00025
    adam_epsilon: float = _C51["adam_epsilon"]  # AdamOptimizer.epsilon = 0.0003125
    gamma: float = _C51["gamma"]  # FixedReplayRainbowAgent.gamma = 0.99, update_horizon = 1
    target_update_period: int = _C51["target_update_period"]  # 8000 agent steps / update_period 4
    num_atoms: int = _C51["num_atoms"]  # FixedReplayRainbowAgent.num_atoms = 51
    v_max: float = _C51["v_max"]  # FixedReplayRainbowAgent.vmax = 10.


class C51:
    name = "c51"
    Params = C51Params

    def __init__(self, params: C51Params) -> None:
        self.params = params

    def network(self, num_actions: int) -> C51Network:
        net = C51Network(num_actions, self.params.num_atoms, self.params.v_max)
        initialize(net, "variance_scaling")
        return net

    def optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return TFAdam(parameters, lr=self.params.learning_rate, epsilon=self.params.adam_epsilon)

    def loss(self, online: nn.Module, target: nn.Module, batch: Batch,
             generator: torch.Generator) -> torch.Tensor:
        return c51_loss(online, target, batch, self.params.gamma)  # type: ignore[arg-type]
