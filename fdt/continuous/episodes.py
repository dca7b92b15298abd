"""Offline datasets of continuous-control episodes: arrays in memory, one Parquet file on disk.

One row per step: episode id, step, observation and action (fixed-size float32 lists), reward,
terminated, truncated and the id of the behaviour policy that acted, as D4RL keeps its
observations/actions/rewards/terminals/timeouts. The environment id rides in the file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fdt.io import atomic_path

METADATA_KEY = b"fdt.continuous"


class EpisodesError(ValueError):
    """A dataset file or folder that is not what the reader expects."""


@dataclass
class Episodes:
    """Steps of whole episodes, stored episode after episode (each episode's steps contiguous)."""

    env_id: str
    episode: np.ndarray       # int64 [N]
    step: np.ndarray          # int64 [N]
    observations: np.ndarray  # float32 [N, observation size]
    actions: np.ndarray       # float32 [N, action size]
    rewards: np.ndarray       # float32 [N]
    terminated: np.ndarray    # bool [N]
    truncated: np.ndarray     # bool [N]
    policy: np.ndarray        # str [N]: the behaviour policy's id

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def observation_size(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_size(self) -> int:
        return int(self.actions.shape[1])

    def starts(self) -> np.ndarray:
        """Index of each episode's first step."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.r_[True, self.episode[1:] != self.episode[:-1]])

    def lengths(self) -> np.ndarray:
        return np.diff(np.r_[self.starts(), len(self)])

    def returns(self) -> np.ndarray:
        """Each episode's undiscounted return (float64 sums of the float32 rewards)."""
        if not len(self):
            return np.zeros(0)
        return np.add.reduceat(self.rewards.astype(np.float64), self.starts())

    def policies(self) -> list[str]:
        return [str(p) for p in self.policy[self.starts()]]


class EpisodeRecorder:
    """Collects a rollout's steps one at a time, then gives them as Episodes."""

    FIELDS = ("episode", "step", "observations", "actions", "rewards", "terminated", "truncated",
              "policy")

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id
        self.columns: dict[str, list] = {name: [] for name in self.FIELDS}

    def __len__(self) -> int:
        return len(self.columns["step"])

    def add(self, episode: int, step: int, observation: np.ndarray, action: np.ndarray,
            reward: float, terminated: bool, truncated: bool, policy: str) -> None:
        values = (episode, step, observation, action, reward, terminated, truncated, policy)
        for name, value in zip(self.FIELDS, values):
            self.columns[name].append(value)

    def episodes(self) -> Episodes:
        c, rows = self.columns, len(self)
        return Episodes(self.env_id, np.asarray(c["episode"], dtype=np.int64),
                        np.asarray(c["step"], dtype=np.int64),
                        np.asarray(c["observations"], dtype=np.float32).reshape(rows, -1),
                        np.asarray(c["actions"], dtype=np.float32).reshape(rows, -1),
                        np.asarray(c["rewards"], dtype=np.float32),
                        np.asarray(c["terminated"], dtype=bool), np.asarray(c["truncated"], dtype=bool),
                        np.asarray(c["policy"], dtype=str))


def concatenate(parts: list[Episodes]) -> Episodes:
    """One dataset of several (D4RL's medium-expert: medium then expert), episode ids renumbered
    so they stay unique."""
    env_ids = {p.env_id for p in parts}
    if len(env_ids) != 1:
        raise EpisodesError(f"cannot concatenate datasets of different environments: {sorted(env_ids)}")
    offset, episode_ids = 0, []
    for part in parts:
        _, renumbered = np.unique(part.episode, return_inverse=True)
        episode_ids.append(renumbered + offset)
        offset += int(renumbered.max()) + 1 if len(part) else 0
    return Episodes(parts[0].env_id, np.concatenate(episode_ids),
                    *(np.concatenate([getattr(p, name) for p in parts])
                      for name in ("step", "observations", "actions", "rewards", "terminated",
                                   "truncated", "policy")))


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    width = values.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), width)


def write_episodes(path: str | Path, episodes: Episodes, metadata: dict | None = None) -> None:
    """Write a dataset as Parquet, atomically; `metadata` (seeds, policy ids) goes in the footer."""
    table = pa.table({
        "episode": pa.array(episodes.episode, pa.int64()),
        "step": pa.array(episodes.step, pa.int64()),
        "observation": _fixed_list(episodes.observations),
        "action": _fixed_list(episodes.actions),
        "reward": pa.array(episodes.rewards, pa.float32()),
        "terminated": pa.array(episodes.terminated, pa.bool_()),
        "truncated": pa.array(episodes.truncated, pa.bool_()),
        "policy": pa.array(episodes.policy.astype(object), pa.string()),
    })
    info = {"env_id": episodes.env_id, **(metadata or {})}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(info, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_metadata(path: str | Path) -> dict:
    """The footer's metadata of a dataset file (its env_id, seeds, policies)."""
    schema = pq.read_schema(path)
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise EpisodesError(f"{path}: not a continuous-control dataset (no {METADATA_KEY.decode()} "
                            "metadata)")
    return json.loads(raw)


def _fixed_values(column: pa.ChunkedArray, rows: int) -> np.ndarray:
    width = column.type.list_size
    flat = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return np.concatenate(flat or [np.zeros(0)]).astype(np.float32).reshape(rows, width)


def read_episodes(path: str | Path) -> Episodes:
    table = pq.read_table(path)
    env_id = read_metadata(path)["env_id"]
    rows = table.num_rows
    column = table.column
    return Episodes(env_id, column("episode").to_numpy(), column("step").to_numpy(),
                    _fixed_values(column("observation"), rows), _fixed_values(column("action"), rows),
                    column("reward").to_numpy(), column("terminated").to_numpy(),
                    column("truncated").to_numpy(),
                    np.asarray(column("policy").to_pylist(), dtype=str))


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """A table as CSV, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
