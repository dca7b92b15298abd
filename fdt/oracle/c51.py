"""Dopamine's C51 network in torch: the oracle (docs/method.md §4).

uint8 (N, 84, 84, 4) / 255; conv 32 8x8 s4, conv 64 4x4 s2, conv 64 3x3 s1, each with
TensorFlow "SAME" padding and ReLU (so 11x11x64 = 7744 features, and the second conv pads 1
before and 2 after); dense 512 ReLU; dense A x 51, read as (A, 51) logits over the support
linspace(-10, 10, 51). Q = sum(softmax(logits) * support); the greedy action is argmax Q.

Our states are (N, 4, 84, 84), oldest frame first, the same frames as Dopamine's (N, 84, 84, 4).
The flatten before the dense layers is in height-width-channel order, as TensorFlow's, so the
published kernels are used unchanged (only transposed to torch's layouts; see
fdt.oracle.checkpoints). Our own offline-trained oracle is saved as `oracle.pt`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.torchfile import load_torch_file

NUM_ATOMS = 51
V_MAX = 10.0
FEATURES = 11 * 11 * 64
# (out channels, kernel, stride) of the three convolutions.
CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
HIDDEN = 512


class OracleError(ValueError):
    """A checkpoint that does not fit the game or the network; the message says what differs."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: (before, after), the extra pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class NatureTorso(nn.Module):
    """Dopamine's Atari torso (the Nature CNN): uint8 states (N, 4, 84, 84) -> features (N, 512).
    The oracle's network and every offline agent (fdt.agents) put their heads on it."""

    def __init__(self) -> None:
        super().__init__()
        convs, pads, channels, size = [], [], STACK_SIZE, FRAME_SHAPE[0]
        for out, kernel, stride in CONVS:
            convs.append(nn.Conv2d(channels, out, kernel, stride))
            before, after = same_padding(size, kernel, stride)
            pads.append((before, after, before, after))  # (left, right, top, bottom)
            channels, size = out, math.ceil(size / stride)
        self.convs = nn.ModuleList(convs)
        self.pads = pads
        self.fc = nn.Linear(size * size * channels, HIDDEN)

    def features(self, states: torch.Tensor) -> torch.Tensor:
        x = states.float() / 255.0
        for conv, pad in zip(self.convs, self.pads):
            x = F.relu(conv(F.pad(x, pad)))
        x = x.permute(0, 2, 3, 1).flatten(1)  # height-width-channel, as TensorFlow flattens
        return F.relu(self.fc(x))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.features(states)


class C51Network(NatureTorso):
    """The torso with C51's head: A x 51 logits (its weights keep the names convs, fc, head)."""

    def __init__(self, num_actions: int, num_atoms: int = NUM_ATOMS, v_max: float = V_MAX) -> None:
        super().__init__()
        self.num_actions, self.num_atoms = num_actions, num_atoms
        self.register_buffer("support", torch.linspace(-v_max, v_max, num_atoms))
        self.head = nn.Linear(HIDDEN, num_actions * num_atoms)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Logits (N, A, atoms) of uint8 states (N, 4, 84, 84)."""
        return self.head(self.features(states)).view(-1, self.num_actions, self.num_atoms)

    def q_values(self, states: torch.Tensor) -> torch.Tensor:
        return (F.softmax(self.forward(states), dim=-1) * self.support).sum(-1)


def _expected_shapes(num_actions: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(kernel, bias) shapes in the checkpoint's own layouts (HWIO, (in, out))."""
    shapes, channels = [], STACK_SIZE
    for out, kernel, _ in CONVS:
        shapes.append(((kernel, kernel, channels, out), (out,)))
        channels = out
    shapes.append(((FEATURES, HIDDEN), (HIDDEN,)))
    shapes.append(((HIDDEN, num_actions * NUM_ATOMS), (num_actions * NUM_ATOMS,)))
    return shapes


def network_from_tensors(tensors: Mapping[str, np.ndarray], names: list[tuple[str, str]],
                         num_actions: int, origin: str) -> C51Network:
    """A C51Network from checkpoint tensors, checking every name and shape against the game."""
    missing = [n for pair in names for n in pair if n not in tensors]
    if missing:
        raise OracleError(f"{origin}: not a C51 checkpoint of Dopamine's network: missing "
                          f"{', '.join(missing)}")
    head = tensors[names[-1][0]].shape
    if len(head) == 2 and head[1] % NUM_ATOMS == 0 and head[1] // NUM_ATOMS != num_actions:
        raise OracleError(f"{origin}: the checkpoint's output layer has {head[1]} units = "
                          f"{head[1] // NUM_ATOMS} actions x {NUM_ATOMS} atoms, but the game has "
                          f"{num_actions} actions (a checkpoint of another game?)")
    net = C51Network(num_actions)
    layers = [*net.convs, net.fc, net.head]
    for layer, (kernel_name, bias_name), shapes in zip(layers, names, _expected_shapes(num_actions)):
        kernel, bias = np.asarray(tensors[kernel_name]), np.asarray(tensors[bias_name])
        if (kernel.shape, bias.shape) != shapes:
            raise OracleError(f"{origin}: {kernel_name} has shape {kernel.shape} and {bias_name} "
                              f"{bias.shape}; Dopamine's C51 for {num_actions} actions has "
                              f"{shapes[0]} and {shapes[1]}")
        weight = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T  # -> torch layout
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)))
            layer.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return net.eval()


def greedy_actions(net: C51Network, states: np.ndarray | torch.Tensor, *, batch_size: int = 512,
                   device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The oracle's greedy actions (N,) and Q-values (N, A) for uint8 states (N, 4, 84, 84)."""
    net = net.to(device).eval()
    actions = np.empty(len(states), dtype=np.int32)
    q = np.empty((len(states), net.num_actions), dtype=np.float32)
    with torch.inference_mode():
        for first in range(0, len(states), batch_size):
            chunk = torch.as_tensor(np.asarray(states[first:first + batch_size])).to(device)
            values = net.q_values(chunk).float()
            q[first:first + len(chunk)] = values.cpu().numpy()
            actions[first:first + len(chunk)] = values.argmax(-1).cpu().numpy()
    return actions, q


def save_network(net: C51Network, path: str | Path, **info: Any) -> None:
    from fdt.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": net.state_dict(), "num_actions": net.num_actions, **info}, tmp)


def load_network(path: str | Path, num_actions: int | None = None) -> C51Network:
    """Our own oracle file (`oracle.pt`), checked against the game's action count."""
    payload = load_torch_file(path)
    if num_actions is not None and payload["num_actions"] != num_actions:
        raise OracleError(f"{path}: an oracle for {payload['num_actions']} actions, but the game "
                          f"has {num_actions}")
    net = C51Network(payload["num_actions"])
    net.load_state_dict(payload["model"])
    return net.eval()
