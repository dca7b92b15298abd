"""The demo source: DQN-Replay-like logs made offline by playing a real ALE game.

A behaviour policy that improves over the run the way DQN's data does (mostly random in
checkpoint 0, mostly competent in the last): epsilon-greedy around a scripted ball-tracking
controller, epsilon annealed linearly over the complete checkpoints. Frames, rewards, terminals
and files are made exactly as in the dataset (Dopamine preprocessing, sticky actions, clipped
rewards, padding, snapshots at cursor capacity-1), so the result flows through the same ingest
path as real data.

Beside the Dopamine files (which stay exactly the dataset's format) the demo writes a file of its
own, `controller.parquet`: for every logged row, in the order rows were written (its replay
index), the action the scripted controller would have taken at that step, whether or not the
epsilon-greedy behaviour took it. It is the exact teacher FDT assumes (`oracle.kind: demo`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.atari import AtariEnvironment
from fdt.io import atomic_path, write_json
from fdt.replay.dopamine import PADDING_ROWS, CircularReplayWriter

Controller = Callable[[np.ndarray], int]


def breakout_controller(ram: np.ndarray) -> int:
    """Move the paddle under the ball; FIRE when no ball is in play. Minimal actions:
    0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT. RAM: paddle left edge = ram[72]-47, ball x = ram[99]-49,
    ball y = ram[101]+9 (screen pixels)."""
    ball_y = int(ram[101])
    if ball_y == 0:
        return 1
    paddle_centre = int(ram[72]) - 47 + 8
    ball_x = int(ram[99]) - 49 + 1
    if ball_x > paddle_centre + 3:
        return 2
    if ball_x < paddle_centre - 3:
        return 3
    return 0


CONTROLLERS: dict[str, Controller] = {"Breakout": breakout_controller}

CONTROLLER_FILE = "controller.parquet"  # beside the Dopamine files, the demo's own
NO_ACTION = -1  # padding rows: no step was taken, so the controller chose nothing


def write_controller_actions(directory: str | Path, logged: np.ndarray,
                             controller: np.ndarray) -> Path:
    """One row per logged row, by replay index: the logged (behaviour) action and the
    controller's own action (NO_ACTION on padding rows)."""
    if len(logged) != len(controller):
        raise ValueError(f"{len(logged)} logged actions but {len(controller)} controller actions")
    path = Path(directory) / CONTROLLER_FILE
    table = pa.table({"replay_index": np.arange(len(logged), dtype=np.int64),
                      "action": np.asarray(logged, np.int32),
                      "controller_action": np.asarray(controller, np.int32)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def epsilon_at(replay_index: int, *, start: float, end: float, anneal_rows: int) -> float:
    """Exploration rate at a replay position: linear from `start` to `end` over `anneal_rows`."""
    fraction = min(1.0, replay_index / max(1, anneal_rows))
    return start + (end - start) * fraction


def simulate_run(directory: str | Path, game: str = "Breakout", *, seed: int = 0,
                 capacity: int = 4000, checkpoints: int = 4, final_rows: int = 1500,
                 max_episode_steps: int = 2000, epsilon_start: float = 1.0,
                 epsilon_end: float = 0.05, sticky_actions: float = 0.25,
                 compresslevel: int = 6, progress: bool = True) -> dict[str, Any]:
    """Play until `checkpoints` complete snapshots (and `final_rows` rows of a partial one) exist.

    Returns, and writes to `demo.json` beside the logs, the episodes' raw returns per checkpoint;
    writes the controller's action at every logged row to `controller.parquet`.
    """
    if game not in CONTROLLERS:
        raise ValueError(f"the demo source has a behaviour policy for {sorted(CONTROLLERS)}, "
                         f"not {game!r}")
    controller = CONTROLLERS[game]
    directory = Path(directory)
    limit = checkpoints * capacity - 1 + final_rows
    writer = CircularReplayWriter(directory, capacity, limit=limit, compresslevel=compresslevel)
    env = AtariEnvironment(game, seed=seed, sticky_actions=sticky_actions)
    rng = np.random.default_rng(seed)
    anneal_rows = max(1, (checkpoints - 1) * capacity)
    returns: dict[int, list[float]] = {}
    # Per logged row, in write order: what the behaviour did and what the controller would do.
    logged: list[int] = []
    chosen: list[int] = []
    bar = tqdm(total=limit, desc=f"demo {game}", unit="row", disable=not progress, mininterval=1.0)
    while not writer.full:
        frame = env.reset()
        started_at = writer.add_count
        total, steps, done = 0.0, 0, False
        while not done and not writer.full:
            epsilon = epsilon_at(writer.add_count, start=epsilon_start, end=epsilon_end,
                                 anneal_rows=anneal_rows)
            # The controller reads the RAM only (no random draw), so asking it at every step
            # leaves the behaviour's random stream, and so the logs, as they were.
            wanted = controller(env.ram())
            if rng.random() < epsilon:
                action = int(rng.integers(env.num_actions))
            else:
                action = wanted
            next_frame, reward, game_over = env.step(action)
            steps += 1
            total += reward
            done = game_over or steps == max_episode_steps
            before = writer.add_count
            writer.add(frame, action, float(np.clip(reward, -1.0, 1.0)), done)
            _record_rows(logged, chosen, writer.add_count - before,
                         padded=steps == 1, action=action, wanted=wanted)
            frame = next_frame
        bar.update(writer.add_count - started_at)
        if done:
            returns.setdefault(started_at // capacity, []).append(total)
    writer.close()
    bar.close()
    write_controller_actions(directory, np.array(logged), np.array(chosen))
    summary = {
        "game": game,
        "capacity": capacity,
        "rows": writer.add_count,
        "snapshots": writer.snapshots,
        "episodes_per_checkpoint": {k: len(v) for k, v in sorted(returns.items())},
        "mean_return_per_checkpoint": {k: float(np.mean(v)) for k, v in sorted(returns.items())},
    }
    write_json(directory / "demo.json", summary)
    return summary


def _record_rows(logged: list[int], chosen: list[int], added: int, *, padded: bool, action: int,
                 wanted: int) -> None:
    """Extend the per-row record by the `added` rows one `writer.add` wrote: the episode's padding
    rows first (at its first step), then the transition, unless the row limit cut it off."""
    pads = PADDING_ROWS if padded else 0
    for _ in range(min(added, pads)):
        logged.append(0)
        chosen.append(NO_ACTION)
    if added > pads:
        logged.append(action)
        chosen.append(wanted)
