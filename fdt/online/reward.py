"""The online loop's reward model: the preferences' Bradley-Terry or ordinal model (with its
ensemble option), retrained as comparisons arrive, and its predictions normalised for the agent.

Members: the preferences' Atari CNN for frame stacks, and for MuJoCo's observation vectors
rl-teacher's FullyConnectedMLP shape (two hidden layers of 64 over the observation and the
action, one reward out). Each retraining continues the same model for `updates` minibatches, as
rl-teacher's predictor keeps training one network.

Normalisation: Christiano et al. (2017, section 2.2.1) normalise the predicted reward "to have
zero mean and constant standard deviation". The mean and standard deviation are those of the
current model's predictions over the agent's replay after each retraining; the agent's rewards
are (r - mean) / std, recomputed for the whole replay each time the model changes (the agent is
off-policy, so old transitions must carry the new reward).

A retraining that leaves a non-finite loss or weight (a diverged model) restores the last good
weights and raises `RewardModelDiverged`: the loop stops with that message and the last good
model on disk.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from fdt.preferences.clips import ClipBundle
from fdt.preferences.comparisons import Comparison
from fdt.preferences.reward_model import (
    RewardEnsemble,
    RewardNet,
    RewardParams,
    predicted_clip_returns,
    train_reward_model,
)
from fdt.preferences.stage import reward_training_data
from fdt.preferences.tree import SortTree


class RewardModelDiverged(RuntimeError):
    """A retraining produced a non-finite loss or weight."""


class VectorRewardNet(nn.Module):
    """Per-step reward from an observation vector (N, d) and a continuous action (N, k)."""

    def __init__(self, observation_size: int, action_size: int, hidden: int = 64) -> None:
        super().__init__()
        self.num_actions = 0  # continuous: no one-hot
        self.net = nn.Sequential(nn.Linear(observation_size + action_size, hidden), nn.LeakyReLU(),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1))

    def forward(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([observations.float(), actions.float().reshape(len(actions), -1)], dim=1)
        return self.net(joint).squeeze(1)


class OnlineRewardModel:
    def __init__(self, params: RewardParams, *, kind: str, observation_size: int = 0,
                 action_size: int = 0, num_actions: int = 0, min_comparisons: int = 1) -> None:
        self.params = params
        self.kind = kind
        self.num_actions = num_actions
        self.min_comparisons = min_comparisons
        member = (lambda: VectorRewardNet(observation_size, action_size)) if kind == "mujoco" \
            else (lambda: RewardNet(num_actions))
        torch.manual_seed(params.seed)
        self.net = RewardEnsemble(num_actions, params.ensemble, member)
        self.mean, self.std = 0.0, 1.0
        self.rounds = 0  # retrainings so far; seeds each one's minibatches
        self.history: list[dict[str, Any]] = []

    def fit(self, bundle: ClipBundle, states: np.ndarray, actions: np.ndarray,
            comparisons: Sequence[Comparison], tree: SortTree | None, updates: int) -> dict[str, Any]:
        """Continue training on every comparison so far for `updates` minibatches per member."""
        data = reward_training_data(bundle, states, actions, comparisons, tree, self.params.loss,
                                    self.min_comparisons, "online loop")
        good = copy.deepcopy(self.net.state_dict())
        params = replace(self.params, updates=updates, seed=self.params.seed + 7919 * self.rounds)
        try:
            _, fit = train_reward_model(data, params, self.num_actions, torch.device("cpu"),
                                        progress=False, ensemble=self.net)
        except (RuntimeError, ValueError) as err:  # a NaN can surface inside the loss
            self.net.load_state_dict(good)
            raise RewardModelDiverged(f"reward model retraining {self.rounds + 1} failed ({err}); "
                                      "the last good model is kept") from None
        finite = all(torch.isfinite(p).all() for p in self.net.parameters())
        if not finite or not math.isfinite(fit["final_loss"]):
            self.net.load_state_dict(good)
            raise RewardModelDiverged(
                f"reward model retraining {self.rounds + 1} diverged (loss {fit['final_loss']}, "
                f"weights {'finite' if finite else 'not finite'}) on {len(data.targets)} "
                f"examples; the last good model is kept: lower reward_model.learning_rate")
        self.net.eval()
        self.rounds += 1
        fit = {"round": self.rounds, "examples": len(data.targets), "loss": fit["final_loss"],
               "seconds": fit["seconds"]}
        self.history.append(fit)
        return fit

    @torch.no_grad()
    def predict(self, observations: np.ndarray, actions: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Raw per-step predicted rewards of (N, ...) observations and actions."""
        out = np.empty(len(actions), np.float32)
        for start in range(0, len(actions), batch):
            rows = slice(start, start + batch)
            out[rows] = self.net(torch.as_tensor(observations[rows]),
                                 torch.as_tensor(actions[rows])).numpy()
        return out

    def normalise_on(self, observations: np.ndarray, actions: np.ndarray) -> None:
        """Set the normalisation from the model's predictions on these transitions."""
        predicted = self.predict(observations, actions)
        self.mean = float(predicted.mean())
        self.std = float(predicted.std()) or 1.0

    def reward(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """What the agent learns from: the normalised predicted rewards."""
        return (self.predict(observations, actions) - self.mean) / self.std

    def clip_returns(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return predicted_clip_returns(self.net, states, actions, torch.device("cpu"))

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "mean": self.mean, "std": self.std,
                "rounds": self.rounds, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.mean, self.std = float(state["mean"]), float(state["std"])
        self.rounds, self.history = int(state["rounds"]), list(state["history"])
        self.net.eval()
