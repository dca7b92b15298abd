"""The MuJoCo tasks (gymnasium v5), dataset names, sizes checks and normalized scores."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

# D4RL's dataset qualities, in the order D4RL lists them.
QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert")

# D4RL's reference returns (d4rl/infos.py REF_MIN_SCORE, REF_MAX_SCORE) of the MuJoCo v2
# environments (mujoco-py): another environment version than gymnasium's v5, shown beside ours.
D4RL_REFERENCES: dict[str, tuple[float, float]] = {
    "Hopper": (-20.272305, 3234.3),
    "HalfCheetah": (-280.178953, 12135.0),
    "Walker2d": (1.629008, 4592.3),
}


class ContinuousInputError(ValueError):
    """Bad input to the continuous-control stages, said in one sentence before any work."""


@dataclass(frozen=True)
class TaskSizes:
    """What a model for a task must match: sizes, action bound, episode cap."""

    observation_size: int
    action_size: int
    max_action: float
    max_episode_steps: int


def parse_dataset_name(name: str) -> tuple[str, str]:
    """A generated dataset's name, "<environment id>/<quality>", e.g. "Hopper-v5/medium"."""
    env_id, _, quality = name.partition("/")
    if not env_id or quality not in QUALITIES:
        raise ContinuousInputError(
            f"continuous.datasets: {name!r} is not '<environment>/<quality>' with a quality among "
            f"{', '.join(QUALITIES)} (e.g. 'Hopper-v5/medium')")
    return env_id, quality


def dataset_slug(name: str) -> str:
    """A dataset's name as one folder name ("Hopper-v5/medium" -> "Hopper-v5-medium")."""
    return name.replace("/", "-")


def check_environment(env_id: str, where: str = "continuous.datasets") -> None:
    """Raise one clear sentence when gymnasium (with MuJoCo) has no such environment."""
    try:
        import gymnasium
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ContinuousInputError("continuous control needs gymnasium[mujoco] installed "
                                   f"(pip install 'gymnasium[mujoco]'): {err}") from err
    if env_id not in gymnasium.envs.registry:
        close = difflib.get_close_matches(env_id, list(gymnasium.envs.registry), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ContinuousInputError(f"{where}: environment {env_id!r} is not installed "
                                   f"(gymnasium has no such id){hint}")
    try:
        gymnasium.make(env_id).close()
    except Exception as err:  # a registered id whose simulator is missing (no mujoco)
        raise ContinuousInputError(f"{where}: environment {env_id!r} is registered but cannot be "
                                   f"made here ({type(err).__name__}: {err}); install "
                                   "gymnasium[mujoco]") from err


def make_env(env_id: str) -> Any:
    import gymnasium

    return gymnasium.make(env_id)


def task_sizes(env: Any) -> TaskSizes:
    """Sizes of an environment's spaces; the action bound is the largest |high| (symmetric boxes)."""
    high = np.asarray(env.action_space.high, dtype=np.float64)
    steps = env.spec.max_episode_steps if env.spec is not None else None
    return TaskSizes(int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)),
                     float(np.abs(high).max()), int(steps or 1000))


def check_sizes(env_id: str, sizes: TaskSizes, observation_size: int, action_size: int,
                where: str) -> None:
    """The dataset's observation and action sizes must be the environment's."""
    if (sizes.observation_size, sizes.action_size) != (observation_size, action_size):
        raise ContinuousInputError(
            f"{where}: observations of size {observation_size} and actions of size {action_size} "
            f"do not match environment {env_id!r} (observations {sizes.observation_size}, "
            f"actions {sizes.action_size})")


def d4rl_reference(env_id: str) -> tuple[float, float] | None:
    """D4RL's (random, expert) returns for the task of `env_id` (any version), if it has them."""
    return D4RL_REFERENCES.get(env_id.split("-v")[0])


def normalized_score(score: float | np.ndarray, random: float, expert: float) -> float | np.ndarray:
    """D4RL's normalized score: 100 * (score - random) / (expert - random)."""
    return 100.0 * (score - random) / (expert - random)
