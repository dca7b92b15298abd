"""Clips: short segments of the training set's trajectories, the things people compare.

rl-teacher shows 1.5 s of play; at the agent's 15 steps a second (60 Hz, frame skip 4) that is
about 22 steps. A clip is `length` consecutive rows of one trajectory, none of them padding, drawn
with a seed. Its true return (the sum of the stored clipped rewards) is what the synthetic
labeller compares; people see its frames.

A bundle is the clips drawn from one training set. Its digest (over the training set's key and
the clips' rows) names it: comparisons record it, so they cannot be applied to other clips. A
fraction of the clips is held out: the reward model never learns from them, and its accuracy on
them is the report's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdt.dataset.training_set import TrainingSet
from fdt.io import read_json, write_json
from fdt.keys import canonical_json

BUNDLE = "clips.json"


class ClipError(ValueError):
    """Clips that cannot be drawn or a bundle file that is not one."""


@dataclass(frozen=True)
class Clip:
    id: int
    start: int  # first row in the training set
    length: int
    trajectory: int
    true_return: float


@dataclass(frozen=True)
class ClipBundle:
    digest: str
    dataset_key: str
    clips: tuple[Clip, ...]
    heldout: tuple[int, ...]  # ids of the clips no reward model learns from

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.clips]

    @property
    def training_ids(self) -> list[int]:
        held = set(self.heldout)
        return [c.id for c in self.clips if c.id not in held]

    @property
    def returns(self) -> list[float]:
        return [c.true_return for c in self.clips]

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "dataset_key": self.dataset_key,
                "clips": [asdict(c) for c in self.clips], "heldout": list(self.heldout)}


def clip_starts(trajectory_ends: np.ndarray, padding: np.ndarray, length: int) -> np.ndarray:
    """Every row where a clip of `length` rows can start: inside one trajectory, no padding."""
    n = len(padding)
    if n < length:
        return np.zeros(0, dtype=np.int64)
    trajectory = np.searchsorted(trajectory_ends, np.arange(n), side="right")
    window = np.arange(length)
    starts = np.arange(n - length + 1)
    rows = starts[:, None] + window[None, :]
    same_trajectory = trajectory[rows[:, -1]] == trajectory[starts]
    no_padding = ~np.asarray(padding)[rows].any(axis=1)
    return starts[same_trajectory & no_padding]


def draw_clips(data: TrainingSet, dataset_key: str, *, count: int, length: int,
               heldout_fraction: float, seed: int) -> ClipBundle:
    """Draw `count` distinct clips of `length` steps with a seed, and hold out a fraction."""
    ends = np.asarray(data.trajectory_ends)
    starts = clip_starts(ends, np.asarray(data.padding), length)
    if len(starts) < count:
        raise ClipError(f"the training set in {data.folder} has {len(starts)} places for a clip of "
                        f"{length} steps, fewer than preferences.clips = {count}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(starts, size=count, replace=False))
    rewards = np.asarray(data.rewards, dtype=np.float64)
    trajectories = np.searchsorted(ends, chosen, side="right")
    clips = tuple(Clip(i, int(s), length, int(t), float(rewards[s:s + length].sum()))
                  for i, (s, t) in enumerate(zip(chosen, trajectories)))
    heldout_count = round(heldout_fraction * count)
    heldout = tuple(sorted(int(i) for i in rng.permutation(count)[:heldout_count]))
    payload = canonical_json({"dataset_key": dataset_key, "clips": [asdict(c) for c in clips],
                              "heldout": heldout})
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return ClipBundle(digest, dataset_key, clips, heldout)


def write_bundle(path: str | Path, bundle: ClipBundle) -> None:
    write_json(path, bundle.to_dict())


def read_bundle(path: str | Path) -> ClipBundle:
    try:
        data = read_json(path)
        clips = tuple(Clip(**c) for c in data["clips"])
        return ClipBundle(data["digest"], data["dataset_key"], clips, tuple(data["heldout"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClipError(f"{path}: not a clip bundle ({err})") from None


def clip_rows(clips: Sequence[Clip]) -> np.ndarray:
    """(n, length) training-set rows of each clip (clips of one bundle share a length)."""
    return np.stack([np.arange(c.start, c.start + c.length) for c in clips])


def clip_states(data: TrainingSet, clips: Sequence[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """The clips' frame stacks (n, length, 4, 84, 84) uint8 and actions (n, length)."""
    rows = clip_rows(clips)
    stacks = np.asarray(data.stacks)[rows]
    return np.asarray(data.frames)[stacks], np.asarray(data.actions)[rows].astype(np.int64)


def clip_frames(data: TrainingSet, clip: Clip) -> np.ndarray:
    """What a person watches: the newest frame of each step's stack, (length, 84, 84) uint8."""
    rows = np.arange(clip.start, clip.start + clip.length)
    return np.asarray(data.frames)[np.asarray(data.stacks)[rows, -1]]
