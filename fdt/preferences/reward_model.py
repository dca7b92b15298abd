"""The reward model: a small CNN predicting each step's reward from its frame stack and action.

A clip's predicted return is the sum of its steps' predicted rewards. Two ways to learn it:

- bradley_terry (rl-teacher): P(left better) = exp(R_left) / (exp(R_left) + exp(R_right)), so the
  loss is the cross-entropy of sigmoid(R_left - R_right) against 1 (left), 0 (right) or 0.5
  (equal).
- ordinal (rl-teacher-atari): the sort tree gives each clip an ordinal o of N classes; its return
  is regressed (squared error) on std * Phi^-1((o + 0.5) / N), the inverse normal CDF of the
  class's midpoint quantile, with std the clip length as rl-teacher-atari sets it.

An ensemble trains `ensemble` members from different initialisations, each on a bootstrap
resample of the data, and predicts their mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fdt.io import atomic_path
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.settings import defaults
from fdt.torchfile import load_torch_file

LOSSES = ("bradley_terry", "ordinal")
MODEL_FILE = "reward_model.pt"

_REWARD = defaults("preferences", "reward_model")  # the schema's, the one place they live


@dataclass(frozen=True)
class RewardParams:
    seed: int
    loss: str = _REWARD["loss"]
    ensemble: int = _REWARD["ensemble"]
    updates: int = _REWARD["updates"]
    batch_size: int = _REWARD["batch_size"]
    learning_rate: float = _REWARD["learning_rate"]
    device: str = _REWARD["device"]


class RewardModelError(ValueError):
    """Data a reward model cannot learn from."""


class RewardNet(nn.Module):
    """Per-step reward from a uint8 frame stack (N, 4, 84, 84) and an action (N,).

    Smaller than the Nature torso (frames halved to 42 x 42, 16 channels, a 64-unit layer): it
    ranks a few hundred clips, and learns on a laptop in seconds."""

    def __init__(self, num_actions: int, channels: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.convs = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(STACK_SIZE, channels, 4, 2), nn.ReLU(),
            nn.Conv2d(channels, channels, 4, 2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, STACK_SIZE, *FRAME_SHAPE)).shape[1]
        self.fc = nn.Linear(flat + num_actions, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        features = self.convs(states.float() / 255.0)
        one_hot = F.one_hot(actions.long(), self.num_actions).float()
        return self.out(F.relu(self.fc(torch.cat([features, one_hot], dim=1)))).squeeze(1)


class RewardEnsemble(nn.Module):
    """The members' mean reward. `member` makes one member (default: the Atari CNN); the online
    loop (fdt.online) passes an MLP over observation vectors and continuous actions."""

    def __init__(self, num_actions: int, members: int,
                 member: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        make = member or (lambda: RewardNet(num_actions))
        self.members = nn.ModuleList(make() for _ in range(members))

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(states, actions) for m in self.members]).mean(0)


def clip_returns(net: nn.Module, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Predicted returns of clips: states (n, L, 4, 84, 84), actions (n, L) -> (n,); actions may
    carry trailing dimensions (continuous actions, (n, L, d))."""
    n, length = actions.shape[:2]
    rewards = net(states.reshape(n * length, *states.shape[2:]),
                  actions.reshape(n * length, *actions.shape[2:]))
    return rewards.reshape(n, length).sum(1)


def bradley_terry_loss(left_returns: torch.Tensor, right_returns: torch.Tensor,
                       targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of P(left better) = sigmoid(R_left - R_right) against the targets."""
    return F.binary_cross_entropy_with_logits(left_returns - right_returns, targets)


def ordinal_targets(ordinals: Sequence[int], classes: int, std: float) -> np.ndarray:
    """rl-teacher-atari's targets: std * Phi^-1((o + 0.5) / N) for ordinal o of N classes."""
    if classes < 1:
        raise RewardModelError("ordinal targets need a sort tree with at least one node")
    normal = NormalDist()
    return np.array([std * normal.inv_cdf((o + 0.5) / classes) for o in ordinals], dtype=np.float32)


def ordinal_loss(returns: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(returns, targets)


@dataclass
class TrainingData:
    """What a reward model learns from, as clip indices into `states`/`actions`.

    bradley_terry: `pairs` (m, 2) and `targets` (m,) probabilities that the left clip is better;
    ordinal: `clips` (m,) and `targets` (m,) return targets."""

    states: np.ndarray  # (n, L, 4, 84, 84) uint8
    actions: np.ndarray  # (n, L)
    indices: np.ndarray  # (m, 2) pairs or (m,) clips
    targets: np.ndarray  # (m,)


def train_reward_model(data: TrainingData, params: RewardParams, num_actions: int,
                       device: torch.device, progress: bool = True,
                       ensemble: RewardEnsemble | None = None) -> tuple[RewardEnsemble, dict[str, Any]]:
    """Train each member for `updates` minibatch steps on a bootstrap resample of the data.

    `ensemble` continues training a model (the online loop retrains the same model as labels
    arrive, as rl-teacher does); without it a fresh one is trained."""
    if params.loss not in LOSSES:
        raise RewardModelError(f"reward_model.loss must be one of {', '.join(LOSSES)}; "
                               f"got {params.loss!r}")
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    if ensemble is None:
        ensemble = RewardEnsemble(num_actions, params.ensemble).to(device)
    ensemble.train()
    states = torch.from_numpy(np.ascontiguousarray(data.states)).to(device)
    actions = torch.from_numpy(np.ascontiguousarray(data.actions)).to(device)
    targets = torch.from_numpy(np.asarray(data.targets, dtype=np.float32)).to(device)
    m = len(data.targets)
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(total=params.updates * params.ensemble, desc="reward model", unit="update",
               mininterval=1.0, disable=not progress)
    for member in ensemble.members:
        optimizer = torch.optim.Adam(member.parameters(), lr=params.learning_rate)
        resample = rng.integers(0, m, size=m) if params.ensemble > 1 else np.arange(m)
        for _ in range(params.updates):
            batch = resample[rng.integers(0, m, size=min(params.batch_size, m))]
            loss = _batch_loss(member, params.loss, data.indices[batch], states, actions,
                               targets[torch.from_numpy(batch).to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    clips_seen = params.updates * params.ensemble * min(params.batch_size, m) * \
        (2 if params.loss == "bradley_terry" else 1)
    ensemble.eval()
    return ensemble, {"final_loss": float(np.mean(losses[-10:])), "first_loss": losses[0],
                      "updates": params.updates * params.ensemble, "seconds": seconds,
                      "clips_per_s": clips_seen / max(seconds, 1e-9), "examples": m}


def _batch_loss(net: nn.Module, loss: str, indices: np.ndarray, states: torch.Tensor,
                actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if loss == "bradley_terry":
        clips = torch.from_numpy(indices.reshape(-1)).to(states.device)
        returns = clip_returns(net, states[clips], actions[clips]).reshape(-1, 2)
        return bradley_terry_loss(returns[:, 0], returns[:, 1], targets)
    clips = torch.from_numpy(indices).to(states.device)
    return ordinal_loss(clip_returns(net, states[clips], actions[clips]), targets)


@torch.no_grad()
def predict_rewards(net: nn.Module, frames: np.ndarray, stacks: np.ndarray, actions: np.ndarray,
                    device: torch.device, batch: int = 1024) -> np.ndarray:
    """Per-row predicted reward of a training set's rows (frames gathered batch by batch)."""
    out = np.empty(len(actions), dtype=np.float32)
    for start in range(0, len(actions), batch):
        rows = slice(start, start + batch)
        states = torch.from_numpy(np.asarray(frames)[np.asarray(stacks[rows])]).to(device)
        acts = torch.from_numpy(np.asarray(actions[rows], dtype=np.int64)).to(device)
        out[rows] = net(states, acts).float().cpu().numpy()
    return out


@torch.no_grad()
def predicted_clip_returns(net: nn.Module, states: np.ndarray, actions: np.ndarray,
                           device: torch.device, batch: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(actions), batch):
        s = torch.from_numpy(np.ascontiguousarray(states[start:start + batch])).to(device)
        a = torch.from_numpy(np.ascontiguousarray(actions[start:start + batch])).to(device)
        out.append(clip_returns(net, s, a).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def pair_accuracy(predicted: np.ndarray, pairs: np.ndarray, better_left: np.ndarray) -> float:
    """Fraction of strict pairs whose predicted returns order them as `better_left` says."""
    if len(pairs) == 0:
        return float("nan")
    left_higher = predicted[pairs[:, 0]] > predicted[pairs[:, 1]]
    return float(np.mean(left_higher == better_left))


def rank_accuracy(predicted: Sequence[float], true: Sequence[float]) -> float:
    """Fraction of clip pairs with different true returns that the predictions order the same
    way (ties in the prediction count as wrong): 0.5 is chance, 1 a perfect ranking."""
    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    i, j = np.triu_indices(len(t), k=1)
    strict = t[i] != t[j]
    if not strict.any():
        return float("nan")
    i, j = i[strict], j[strict]
    return float(np.mean(np.sign(p[i] - p[j]) == np.sign(t[i] - t[j])))


def save_reward_model(path: str | Path, net: RewardEnsemble, params: RewardParams,
                      details: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"state": net.state_dict(), "num_actions": net.members[0].num_actions,
                    "members": len(net.members), "params": asdict(params), **details}, tmp)


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> RewardEnsemble:
    payload = load_torch_file(path, device)  # a planted pickle is refused naming the file
    net = RewardEnsemble(int(payload["num_actions"]), int(payload["members"]))
    net.load_state_dict(payload["state"])
    return net.to(device).eval()
