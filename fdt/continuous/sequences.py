"""Training windows as CORL's SequenceDataset draws them, vectorised over a batch.

A trajectory is drawn with probability proportional to its length, a start uniformly among its
steps; the window of `seq_len` steps is padded with zeros past the trajectory's end (mask 0).
States are normalised by the dataset's mean and std (+1e-6), returns-to-go scaled by reward_scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fdt.continuous.episodes import Episodes


@dataclass
class Window:
    """A batch of windows: states [B, K, S], actions [B, K, A], returns-to-go [B, K],
    time steps [B, K] and mask [B, K] (1 on real steps)."""

    states: np.ndarray
    actions: np.ndarray
    returns_to_go: np.ndarray
    time_steps: np.ndarray
    mask: np.ndarray


def returns_to_go(rewards: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Undiscounted return from each step to its episode's end (float64 sums)."""
    ends = np.r_[starts[1:], len(rewards)]
    out = np.empty(len(rewards), dtype=np.float64)
    for start, end in zip(starts, ends):
        out[start:end] = np.cumsum(rewards[start:end][::-1].astype(np.float64))[::-1]
    return out


class SequenceSampler:
    """Length-weighted windows of a dataset, all arrays flat so a batch is one gather."""

    def __init__(self, episodes: Episodes, seq_len: int, reward_scale: float, seed: int) -> None:
        self.seq_len = seq_len
        self.starts = episodes.starts()
        self.lengths = episodes.lengths()
        self.state_mean = episodes.observations.mean(0, dtype=np.float64).astype(np.float32)
        self.state_std = (episodes.observations.std(0, dtype=np.float64) + 1e-6).astype(np.float32)
        self.states = (episodes.observations - self.state_mean) / self.state_std
        self.actions = episodes.actions
        self.returns = (returns_to_go(episodes.rewards, self.starts) * reward_scale).astype(np.float32)
        self.probabilities = self.lengths / self.lengths.sum()
        self.rng = np.random.default_rng(seed)

    def draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Trajectory indices (weighted by length) and a uniform start within each."""
        trajectories = self.rng.choice(len(self.lengths), size=batch_size, p=self.probabilities)
        offsets = (self.rng.random(batch_size) * self.lengths[trajectories]).astype(np.int64)
        return trajectories, offsets

    def window(self, trajectories: np.ndarray, offsets: np.ndarray) -> Window:
        steps = offsets[:, None] + np.arange(self.seq_len)  # [B, K] steps within the trajectory
        mask = steps < self.lengths[trajectories][:, None]
        rows = np.where(mask, self.starts[trajectories][:, None] + steps, 0)
        return Window(self.states[rows] * mask[..., None], self.actions[rows] * mask[..., None],
                      self.returns[rows] * mask, steps, mask.astype(np.float32))

    def sample(self, batch_size: int) -> Window:
        return self.window(*self.draw(batch_size))
