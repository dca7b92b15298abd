"""Policies for the rollouts: action logits for many live episodes at once.

A `Policy` is told when an episode begins and ends, each new state and each action taken with its
reward, and gives logits for the episodes asked. A trained DT/BC/FDT model is one
(`ModelPolicy`); the C51 oracle is another (fdt.oracle.scoring.QPolicy, its Q-values as logits).

The model sees the last K steps: its states, the K-1 actions between them and the returns-to-go
(target minus the raw rewards so far). Two reference details: the global position embedding is
given the current step (clamped to the largest training timestep), as the reference's evaluation
does (`timestep: reference`; `window` gives the window's first step, as in training); and the
reference's misalignment of actions once its context is full (it pairs each state with the action
before it) is a bug we do not copy. State tokens are encoded once per new state and kept (the
encoder sees one stack at a time), so a step costs one encoder pass on the new states and one
transformer pass over all live windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from fdt.evaluation.protocols import EvaluationError, Setup
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE

if TYPE_CHECKING:  # the model's code is the trainer's; evaluating imports it through there
    from fdt.models.transformer import DecisionTransformer



class Policy(Protocol):
    """What a rollout needs of a policy: `slots` windows, told of each episode's states, actions
    and rewards, giving (n, A) logits for the episodes asked."""

    slots: int

    def begin(self, slot: int, target: float) -> None: ...

    def end(self, slot: int) -> None: ...

    def record(self, slot: int, action: int, reward: float) -> None: ...

    def observe(self, slots: Sequence[int], stacks: np.ndarray) -> None: ...

    def logits(self, slots: Sequence[int]) -> np.ndarray: ...


class MemorylessPolicy:
    """A policy that acts on the current state alone: it keeps nothing of an episode's returns,
    actions or earlier states (the random policy; a Q-network, fdt.oracle.scoring.QPolicy)."""

    slots: int

    def begin(self, slot: int, target: float) -> None:
        pass

    def end(self, slot: int) -> None:
        pass

    def record(self, slot: int, action: int, reward: float) -> None:
        pass

    def observe(self, slots: Sequence[int], stacks: np.ndarray) -> None:
        pass


class UniformPolicy(MemorylessPolicy):
    """Equal logits for every action: under the `sample` setup, a uniformly random action at
    every step (the random policy a score is read against)."""

    def __init__(self, num_actions: int, slots: int) -> None:
        self.num_actions = num_actions
        self.slots = slots

    def logits(self, slots: Sequence[int]) -> np.ndarray:
        return np.zeros((len(slots), self.num_actions), dtype=np.float32)


# --- a trained model as a policy ----------------------------------------------------------------


class ModelPolicy:
    """Action logits for many live episodes at once from a DT/BC/FDT model.

    Each slot's window of the last K steps lives in preallocated tensors (state tokens, or the
    stacks themselves when `cache_states` is off, the reference's way; actions; returns-to-go),
    shifted by one when a new state arrives at a full window.
    """

    def __init__(self, model: DecisionTransformer, device: str | torch.device = "cpu", *,
                 cache_states: bool = True, timestep: str = "reference", slots: int = 64) -> None:
        if timestep not in ("reference", "window"):
            raise EvaluationError(f"timestep must be 'reference' or 'window', not {timestep!r}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.k = model.config.context_length
        self.cache_states, self.timestep, self.slots = cache_states, timestep, slots
        item = (model.config.n_embd,) if cache_states else (STACK_SIZE, *FRAME_SHAPE)
        dtype = torch.float32 if cache_states else torch.uint8
        self.states = torch.zeros((slots, self.k, *item), dtype=dtype, device=self.device)
        self.actions = torch.zeros((slots, self.k), dtype=torch.long, device=self.device)
        self.returns = torch.zeros((slots, self.k), device=self.device)
        self.length = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.step = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.next_return = torch.zeros(slots, device=self.device)

    @property
    def num_actions(self) -> int:
        return self.model.config.num_actions

    def begin(self, slot: int, target: float) -> None:
        self.length[slot] = 0
        self.step[slot] = 0
        self.next_return[slot] = float(target)

    def end(self, slot: int) -> None:
        self.length[slot] = 0

    def record(self, slot: int, action: int, reward: float) -> None:
        """The action taken at the slot's current state and the reward it brought."""
        last = int(self.length[slot]) - 1
        self.actions[slot, last] = action
        self.next_return[slot] = self.returns[slot, last] - reward
        self.step[slot] += 1

    def state_windows(self, states: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-step windows of what is kept of each new state, with the new states' items:
        the model's state tokens (or the stacks). A subclass may keep more (another model's
        tokens); each is shifted and filled like the states."""
        items = self.model.encode_states(states) if self.cache_states else states
        return [(self.states, items)]

    @torch.inference_mode()
    def observe(self, slots: Sequence[int], stacks: np.ndarray) -> None:
        """The new states (n, 4, 84, 84) of the given episodes."""
        index = torch.tensor(list(slots), device=self.device)
        kept = self.state_windows(torch.from_numpy(stacks).to(self.device))
        full = index[self.length[index] == self.k]
        if len(full):  # drop the oldest step of full windows
            for window in (*(w for w, _ in kept), self.actions, self.returns):
                window[full, :-1] = window[full, 1:].clone()
        self.length[index] = torch.clamp(self.length[index] + 1, max=self.k)
        last = self.length[index] - 1
        for window, items in kept:
            window[index, last] = items.to(window.dtype)
        self.returns[index, last] = self.next_return[index]

    @torch.inference_mode()
    def logits(self, slots: Sequence[int]) -> np.ndarray:
        """(n, A) logits at each episode's current state; windows are right-padded to the
        longest, which causal attention makes exact for the shorter ones."""
        index = torch.tensor(list(slots), device=self.device)
        lengths = self.length[index]
        t = int(lengths.max())
        last = lengths - 1
        step = self.step[index]
        timesteps = step if self.timestep == "reference" else step - last
        args = (self.actions[index, :t], self.returns[index, :t], timesteps)
        if self.cache_states:
            out = self.model.forward_tokens(self.states[index, :t], *args, at_step=last)
        else:  # the reference's way: every state of the window encoded at every step
            out = self.model(self.states[index, :t], *args)
            out = out[torch.arange(len(index), device=self.device), last]
        return out.float().cpu().numpy()


def choose(logits: np.ndarray, setup: Setup, rng: np.random.Generator) -> int:
    if setup.policy == "argmax":
        return int(np.argmax(logits))
    if setup.policy == "eps":
        if rng.random() < setup.epsilon:
            return int(rng.integers(len(logits)))
        return int(np.argmax(logits))
    p = np.exp(logits - logits.max())
    return int(rng.choice(len(p), p=p / p.sum()))
