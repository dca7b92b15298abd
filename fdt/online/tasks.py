"""The environments the online loop runs: gymnasium MuJoCo tasks and ALE games.

A clip is rl-teacher's 1.5 s of play. rl-teacher turns seconds into steps with the frame rate its
viewer wrapper gives each task (rl_teacher/envs.py: hopper 40 fps, so 60 steps; cheetah 20 fps, 30
steps; walker 30, swimmer 40, ant 20, humanoid 40, reacher 10); an Atari agent step is 4 frames at
60 Hz, 15 steps a second, so 22 steps (the offline preferences' `clip_length`).

rl-teacher also wraps its MuJoCo tasks in `NeverDone`: an episode runs to its time limit however
the body falls, because a learnt reward knows nothing of the termination rule and a constant sign
of it would reward (or punish) dying early. `terminate: false` does the same with gymnasium's own
switch (`terminate_when_unhealthy=False`; the v5 tasks then pay the healthy bonus only while
healthy, as rl-teacher's hopper bonus pays for height). The score reported is always the
unchanged task's (terminating) true return.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from fdt.continuous.environments import ContinuousInputError, check_environment

# rl-teacher's viewer frame rates (rl_teacher/envs.py), by gymnasium task name.
MUJOCO_FPS = {"Hopper": 40, "HalfCheetah": 20, "Walker2d": 30, "Swimmer": 40, "Ant": 20,
              "Humanoid": 40, "HumanoidStandup": 40, "Reacher": 10, "InvertedPendulum": 10,
              "InvertedDoublePendulum": 10}
CLIP_SECONDS = 1.5  # rl-teacher's CLIP_LENGTH
ATARI_CLIP_STEPS = 22  # 1.5 s at 15 agent steps a second
# Tasks whose termination rule rl-teacher removed (NeverDone) and gymnasium lets us switch off.
UNHEALTHY_TERMINATION = ("Hopper", "Walker2d", "Ant", "Humanoid")


class OnlineInputError(ValueError):
    """Bad input to the online loop, said in one sentence before any work."""


@dataclass(frozen=True)
class Task:
    env_id: str
    kind: str  # "mujoco" | "atari"
    clip_length: int

    @property
    def name(self) -> str:
        return self.env_id.split("-v")[0]


def resolve_task(env_id: str, clip_length: int | None = None) -> Task:
    """The task of `env_id`: a gymnasium MuJoCo id ("Hopper-v5") or an Atari game name
    ("Breakout"); anything else is one clear error."""
    from fdt.games import GAMES

    if env_id in GAMES:
        return Task(env_id, "atari", clip_length or ATARI_CLIP_STEPS)
    if "-v" not in env_id:
        close = difflib.get_close_matches(env_id, list(GAMES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OnlineInputError(f"online.env: {env_id!r} is neither a gymnasium MuJoCo id (like "
                               f"'Hopper-v5') nor an Atari game of fdt.games{hint}")
    try:
        check_environment(env_id, "online.env")
    except ContinuousInputError as err:
        raise OnlineInputError(str(err)) from None
    name = env_id.split("-v")[0]
    if clip_length is None:
        if name not in MUJOCO_FPS:
            raise OnlineInputError(f"online.env: {env_id!r} has no rl-teacher frame rate to size "
                                   "its clips by; set online.clip_length")
        clip_length = int(CLIP_SECONDS * MUJOCO_FPS[name])
    return Task(env_id, "mujoco", clip_length)


def make_training_env(task: Task, terminate: bool, seed: int, episode_steps: int = 27_000) -> Any:
    """The environment the agent learns in (`terminate: false` is rl-teacher's NeverDone)."""
    if task.kind == "atari":
        return AtariTask(task.env_id, seed, episode_steps)
    import gymnasium

    kwargs = {} if terminate or task.name not in UNHEALTHY_TERMINATION else \
        {"terminate_when_unhealthy": False}
    return gymnasium.make(task.env_id, **kwargs)


def make_eval_env(task: Task, seed: int, episode_steps: int = 27_000) -> Any:
    """The unchanged task, whose true return is the score."""
    if task.kind == "atari":
        return AtariTask(task.env_id, seed, episode_steps)
    import gymnasium

    return gymnasium.make(task.env_id)


class AtariTask:
    """An ALE game with Dopamine's preprocessing, behind a gymnasium-like step/reset over 4-frame
    stacks (uint8 (4, 84, 84)); clipped rewards are the agent's, raw ones the score."""

    def __init__(self, game: str, seed: int, max_steps: int = 27_000) -> None:
        import numpy as np

        from fdt.atari import AtariEnvironment

        self.env = AtariEnvironment(game, seed=seed)
        self.num_actions = self.env.num_actions
        self.max_steps = max_steps
        self._np = np
        self._stack = np.zeros((4, 84, 84), np.uint8)
        self._t = 0

    def reset(self, seed: int | None = None) -> tuple[Any, dict]:
        frame = self.env.reset()
        self._stack[:] = 0
        self._stack[-1] = frame
        self._t = 0
        return self._stack.copy(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        frame, reward, game_over = self.env.step(int(action))
        self._stack = self._np.roll(self._stack, -1, axis=0)
        self._stack[-1] = frame
        self._t += 1
        return self._stack.copy(), float(reward), game_over, self._t >= self.max_steps, {}

    def close(self) -> None:
        pass
