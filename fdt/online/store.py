"""The online loop's clips, and rl-teacher's schedule of how many labels it wants when.

Clips are cut from the agent's play as it goes (and, first, from random play for the
pretraining labels). Each holds `length` consecutive steps of one episode: the observations the
reward model reads (frame stacks for Atari), the actions, the true rewards (the synthetic
labeller's and the report's; never the reward model's) and, for MuJoCo, the simulator state of
each step (qpos, qvel), from which a person's clip is rendered. A clip's id is its index.

The store is one compressed .npz, written atomically, that names its environment and clip
length: a store of another environment (or another length) is refused naming both, since its ids
mean other clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fdt.io import atomic_path
from fdt.preferences.clips import Clip, ClipBundle
from fdt.online.tasks import OnlineInputError

STORE = "clips.npz"


@dataclass
class ClipStore:
    env_id: str
    length: int
    observations: list[np.ndarray] = field(default_factory=list)  # (L, *obs_shape) each
    actions: list[np.ndarray] = field(default_factory=list)  # (L, *act_shape) each
    rewards: list[np.ndarray] = field(default_factory=list)  # (L,) true rewards
    physics: list[np.ndarray] = field(default_factory=list)  # (L, nq + nv) MuJoCo; (L, 0) Atari
    sources: list[str] = field(default_factory=list)  # "random" | "agent"
    steps: list[int] = field(default_factory=list)  # the environment step the clip ended at

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def returns(self) -> list[float]:
        return [float(r.sum()) for r in self.rewards]

    def add(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            physics: np.ndarray, source: str, step: int) -> int:
        if len(actions) != self.length:
            raise ValueError(f"a clip of {len(actions)} steps in a store of {self.length}-step clips")
        self.observations.append(np.asarray(observations))
        self.actions.append(np.asarray(actions))
        self.rewards.append(np.asarray(rewards, np.float32))
        self.physics.append(np.asarray(physics, np.float64))
        self.sources.append(source)
        self.steps.append(int(step))
        return len(self) - 1

    def returns_view(self) -> _Returns:
        """The clips' true returns, indexable by id, growing with the store (the synthetic
        labeller's view)."""
        return _Returns(self)

    def arrays(self, ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Observations (n, L, ...) and actions (n, L, ...) of the clips (all by default)."""
        ids = list(range(len(self))) if ids is None else ids
        return (np.stack([self.observations[i] for i in ids]),
                np.stack([self.actions[i] for i in ids]))

    def bundle(self, digest: str) -> ClipBundle:
        """The store as the preferences' clip bundle (start = id), so the sort tree, the
        training data and the app's pages take it unchanged; no clip is held out (the loop
        scores the agent's true return instead)."""
        clips = tuple(Clip(i, i, self.length, i, r) for i, r in enumerate(self.returns))
        return ClipBundle(digest, self.env_id, clips, ())

    def save(self, path: str | Path) -> None:
        meta = json.dumps({"env_id": self.env_id, "length": self.length, "sources": self.sources,
                           "steps": self.steps})
        empty = np.zeros((0, self.length))
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle, meta=np.array(meta),
                observations=np.stack(self.observations) if len(self) else empty,
                actions=np.stack(self.actions) if len(self) else empty,
                rewards=np.stack(self.rewards) if len(self) else empty,
                physics=np.stack(self.physics) if len(self) else empty)

    @classmethod
    def load(cls, path: str | Path, env_id: str | None = None, length: int | None = None) -> ClipStore:
        """Read a store; with `env_id`/`length`, refuse one of another environment or length."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in ("observations", "actions", "rewards", "physics")}
        except (OSError, ValueError, KeyError) as err:
            raise OnlineInputError(f"{path}: not a clip store of the online loop ({err})") from None
        if env_id is not None and meta["env_id"] != env_id:
            raise OnlineInputError(f"{path}: a clip store of {meta['env_id']!r}, but this run is "
                                   f"on {env_id!r}: its clips are of another environment")
        if length is not None and meta["length"] != length:
            raise OnlineInputError(f"{path}: clips of {meta['length']} steps, but this run cuts "
                                   f"clips of {length}")
        store = cls(meta["env_id"], int(meta["length"]))
        for i in range(len(meta["sources"])):
            store.add(arrays["observations"][i], arrays["actions"][i], arrays["rewards"][i],
                      arrays["physics"][i], meta["sources"][i], meta["steps"][i])
        return store


class _Returns:
    def __init__(self, store: ClipStore) -> None:
        self.store = store

    def __getitem__(self, clip: int) -> float:
        return float(self.store.rewards[clip].sum())

    def __len__(self) -> int:
        return len(self.store)


@dataclass(frozen=True)
class LabelSchedule:
    """rl-teacher's LabelAnnealer (rl_teacher/label_schedules.py): the labels wanted after `t`
    of `total` steps start at the pretraining labels and approach `labels` as 1 - 0.01^(t/T),
    so most labels come early, when the agent's behaviour changes fastest."""

    labels: int
    pretrain: int
    total_steps: int

    def wanted(self, step: int) -> int:
        decay = 0.01 ** (step / self.total_steps)
        fraction = self.pretrain / self.labels
        return int((fraction + (1 - fraction) * (1 - decay)) * self.labels)


def cut_clips(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
              physics: np.ndarray, episode_starts: list[int], length: int, count: int,
              rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to `count` (start, end) windows of `length` steps inside one episode each, drawn at
    random from a stretch of play (rl-teacher's sample_segment_from_path, per episode piece);
    pieces shorter than a clip give none."""
    bounds = sorted({0, *episode_starts, len(actions)})
    pieces = [(a, b) for a, b in zip(bounds, bounds[1:]) if b - a >= length]
    if not pieces:
        return []
    windows = []
    for _ in range(count):
        a, b = pieces[int(rng.integers(len(pieces)))]
        start = int(rng.integers(a, b - length + 1))
        windows.append((start, start + length))
    return windows
