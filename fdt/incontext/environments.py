"""Dark-Room and Dark Key-Door, the grid-worlds RA-DT's in-context results are measured on.

The anchor (ml-jku/RA-DT, src/envs/minihack_utils.py) builds them on MiniHack: an empty dark
room of `size` x `size` cells, start at (0, 0), five actions (north, east, south, west, stay:
NetHack's cardinal directions and "."), 100 steps an episode, no step penalty, and the
observation is the cursor's position shifted to the room's origin. MiniHack and NLE need a
NetHack build, so the same geometry is written here on plain numpy:

* Dark-Room (MiniHack-Room-Dark-Dense-10x10-v0): a fountain at the goal; reward 1 on every step
  that ends on it (the "dense" reward manager, repeatable); the episode never ends early.
* Dark Key-Door (MiniHack-KeyDoor-Dark-Dense-10x10-v0): a key, picked up automatically, gives
  reward 1 once; afterwards every step ending on the (open) door at the goal gives reward 1.

Positions in the task files are the level generator's [x, y] (x the column); the observation
is the terminal cursor's (row, column), that is (y, x), as the anchor's agents saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# The anchor's action order: NetHack's CompassCardinalDirection (N, E, S, W), then "." (stay).
MOVES: tuple[tuple[int, int], ...] = ((0, -1), (1, 0), (0, 1), (-1, 0), (0, 0))  # (dx, dy)
N_ACTIONS = len(MOVES)
ENVS = {"dark_room": "dark_room_10x10.yaml", "dark_keydoor": "dark_keydoor_10x10.yaml"}


class InContextInputError(ValueError):
    """Bad input to the in-context system: the message names the file and what was wrong."""


@dataclass(frozen=True)
class Task:
    """One task: where the goal (and key) lie; the start is always the anchor's (0, 0)."""

    goal: tuple[int, int]
    key: tuple[int, int] | None = None
    start: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:  # the anchor's data file stem: "[0,0]_[2,0]" (and "_[k,k]")
        parts = [self.start, self.goal] + ([self.key] if self.key is not None else [])
        return "_".join(f"[{a},{b}]" for a, b in parts)


@dataclass(frozen=True)
class TaskSplit:
    env: str
    size: int
    max_episode_steps: int
    train: tuple[Task, ...]
    evaluation: tuple[Task, ...]
    source: str  # the file the split was read from


def _positions(data: dict[str, Any], field: str, size: int, where: str) -> list[tuple[int, int]]:
    value = data.get(field)
    if not isinstance(value, list) or not value:
        raise InContextInputError(f"{where}: expected a list of [x, y] positions in {field!r}, "
                                  f"found {value!r}")
    out = []
    for item in value:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(v, int) for v in item)):
            raise InContextInputError(f"{where}: {field} holds {item!r}, not an [x, y] pair")
        if not all(0 <= v < size for v in item):
            raise InContextInputError(f"{where}: {field} holds {item}, outside a {size}x{size} "
                                      "grid (a task list of another grid size?)")
        out.append((item[0], item[1]))
    return out


def load_split(env: str, path: str | Path | None = None, size: int = 10) -> TaskSplit:
    """The tasks of `env`: the anchor's 80/20 split shipped here, or a file in the anchor's
    env_params format (train_goal_pos, eval_goal_pos, and for the key-door the key lists)."""
    if env not in ENVS:
        raise InContextInputError(f"incontext.envs: unknown environment {env!r}; known: "
                                  f"{sorted(ENVS)}")
    if path is None:
        text = resources.files("fdt.incontext").joinpath("goals").joinpath(ENVS[env]).read_text()
        where = f"fdt/incontext/goals/{ENVS[env]}"
    else:
        if not Path(path).is_file():
            raise InContextInputError(f"{path}: no such task list (incontext.goals)")
        text, where = Path(path).read_text(), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InContextInputError(f"{where}: not YAML ({err})") from err
    if not isinstance(data, dict):
        raise InContextInputError(f"{where}: expected a mapping with train_goal_pos and "
                                  "eval_goal_pos")
    file_size = data.get("size", size)
    if file_size != size:
        raise InContextInputError(f"{where}: a {file_size}x{file_size} task list, but the "
                                  f"environment is {size}x{size}")
    splits = []
    for part in ("train", "eval"):
        goals = _positions(data, f"{part}_goal_pos", size, where)
        keys: list[tuple[int, int] | None] = [None] * len(goals)
        if env == "dark_keydoor":
            keys = list(_positions(data, f"{part}_key_pos", size, where))
            if len(keys) != len(goals):
                raise InContextInputError(f"{where}: {len(keys)} {part}_key_pos for "
                                          f"{len(goals)} {part}_goal_pos")
        starts = data.get(f"{part}_start_pos", [[0, 0]])
        starts = [starts] if starts and isinstance(starts[0], int) else starts
        if any(tuple(s) != (0, 0) for s in starts):
            raise InContextInputError(f"{where}: {part}_start_pos {starts}; the anchor's "
                                      "grid-worlds start at [0, 0]")
        splits.append(tuple(Task(g, k) for g, k in zip(goals, keys)))
    return TaskSplit(env, size, int(data.get("max_episode_steps", 100)), splits[0], splits[1],
                     where)


class GridWorld:
    """One task of Dark-Room or Dark Key-Door; `step` returns (obs, reward, terminated,
    truncated, info) as gymnasium does; the observation is (row, column)."""

    def __init__(self, task: Task, size: int = 10, max_episode_steps: int = 100) -> None:
        self.task, self.size, self.max_episode_steps = task, size, max_episode_steps
        self.x, self.y, self.t, self.has_key = 0, 0, 0, False

    def observation(self) -> np.ndarray:
        return np.array([self.y, self.x], dtype=np.int64)

    def reset(self) -> np.ndarray:
        self.x, self.y = self.task.start
        self.t, self.has_key = 0, False
        return self.observation()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not 0 <= action < N_ACTIONS:
            raise ValueError(f"action {action} outside 0..{N_ACTIONS - 1}")
        dx, dy = MOVES[action]
        # walls: a move out of the room leaves the agent where it was (NetHack refuses it)
        self.x = min(max(self.x + dx, 0), self.size - 1)
        self.y = min(max(self.y + dy, 0), self.size - 1)
        self.t += 1
        here = (self.x, self.y)
        reward = 0.0
        if self.task.key is None:
            reward = float(here == self.task.goal)
        else:
            if not self.has_key and here == self.task.key:
                self.has_key, reward = True, 1.0  # autopickup, rewarded once
            elif self.has_key and here == self.task.goal:
                reward = 1.0  # the door rewards every step, once the key is held
        return self.observation(), reward, False, self.t >= self.max_episode_steps, {}
