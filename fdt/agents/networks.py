"""The Nature-CNN torso every agent shares, and the Q-network that puts K values per action on it.

The torso is Dopamine's (atari_lib, and batch_rl's atari_helpers): uint8 states (N, 4, 84, 84) / 255;
conv 32 8x8 stride 4, conv 64 4x4 stride 2, conv 64 3x3 stride 1, each with TensorFlow's SAME
padding and ReLU; flattened in height-width-channel order; dense 512 with ReLU. Its sizes and
padding are the C51 oracle's: the torso is fdt.oracle.c51.NatureTorso, so every agent sees states
as the oracle does.

`QNetwork` reads the last layer as (A, K) values: K = 1 for DQN, the quantiles of QR-DQN and CQL,
the heads of REM and Ensemble-DQN. The Q-value an agent acts on is their mean (batch_rl's
q_values: the quantiles' mean, the heads' mean).

Initialisation as Dopamine's Keras layers: DQN's network keeps Keras's default (Glorot uniform);
the quantile, multi-head and Rainbow networks use VarianceScaling(1/sqrt(3), fan_in, uniform);
biases start at zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from fdt.oracle.c51 import HIDDEN, NatureTorso

INITS = ("glorot", "variance_scaling")


class QNetwork(nn.Module):
    """K values per action on the Nature torso: forward gives (N, A, K), q_values (N, A)."""

    def __init__(self, num_actions: int, outputs: int = 1, init: str = "glorot") -> None:
        super().__init__()
        self.num_actions, self.outputs = num_actions, outputs
        self.torso = NatureTorso()
        self.head = nn.Linear(HIDDEN, num_actions * outputs)
        initialize(self, init)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(states)).view(-1, self.num_actions, self.outputs)

    def q_values(self, states: torch.Tensor) -> torch.Tensor:
        return self.forward(states).mean(-1)


def initialize(module: nn.Module, init: str) -> None:
    """Dopamine's initialisation of every convolution and dense layer of `module` (Keras's fan
    in and out are torch's: kernel height x width x channels, or the dense layer's widths)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")
    for layer in module.modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        if init == "glorot":
            nn.init.xavier_uniform_(layer.weight)
        else:
            fan_in = nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]
            bound = math.sqrt(3.0 * (1.0 / math.sqrt(3.0)) / fan_in)
            nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.zeros_(layer.bias)
