"""Multi-target evaluation (CORL's prompting with several target returns), many episodes at once.

Every episode of a group starts together and steps in lockstep, so all share the same history
length and one forward pass of the model serves every live episode; finished ones drop out.

Seeding (`seeding`): "corl" as CORL's dt.py does it: before each target's episodes the evaluation
env is seeded once with the evaluation seed, and episode i starts from that env's generator as
i resets left it, so every target meets the same start states. Played in parallel, each env is
given the generator's state before episode i's reset (captured by resetting one env in turn):
MuJoCo's step draws nothing from the generator, so this is the stream CORL's one env walks.
"per_episode": episode i of every target is reset with its own seed, `seed + i` (ours before
issue 29; a start state then depends only on its episode number).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fdt.continuous.model import ContinuousDecisionTransformer


@dataclass(frozen=True)
class Prompting:
    """How observations and returns reach the model (the training set's statistics)."""

    state_mean: np.ndarray
    state_std: np.ndarray
    reward_scale: float


@dataclass(frozen=True)
class EpisodeResult:
    target: float
    episode: int
    seed: int  # per_episode: the episode's own seed; corl: the stream's, seeded once per target
    score: float  # undiscounted return, unscaled
    length: int


SEEDINGS = ("corl", "per_episode")

# How an episode starts: a seed to reset with, the env generator's state to continue from, or
# None: the env's own generator as its previous episodes left it (CORL's one env, played in turn).
Start = int | dict | None


def reset_from(env: Any, start: Start) -> np.ndarray:
    """Reset `env` with a seed, from a captured generator state, or from where it stands."""
    if start is None:
        return env.reset()[0]
    if isinstance(start, int):
        return env.reset(seed=start)[0]
    generator = np.random.Generator(getattr(np.random, start["bit_generator"])())
    generator.bit_generator.state = start
    env.unwrapped.np_random = generator
    return env.reset()[0]


def corl_starts(make_env: Callable[[], Any], seed: int, episodes: int) -> list[Start]:
    """CORL's starts: the env seeded once, then each episode's reset continues its generator;
    returns the seed for the first episode and the generator's state before each later reset."""
    env = make_env()
    try:
        starts: list[Start] = [seed]
        env.reset(seed=seed)
        for _ in range(1, episodes):
            starts.append(dict(env.unwrapped.np_random.bit_generator.state))
            env.reset()
    finally:
        env.close()
    return starts


def episode_starts(make_env: Callable[[], Any], seed: int, episodes: int, seeding: str) -> list[Start]:
    """How episode i of each target starts under `seeding` (see the module's docstring)."""
    if seeding == "corl":
        return corl_starts(make_env, seed, episodes)
    if seeding == "per_episode":
        return [seed + i for i in range(episodes)]
    raise ValueError(f"continuous.dt.eval_seeding: {seeding!r} is not one of {', '.join(SEEDINGS)}")


@torch.no_grad()
def play_group(model: ContinuousDecisionTransformer, envs: Sequence[Any], targets: Sequence[float],
               starts: Sequence[Start], prompting: Prompting, device: torch.device) -> list[tuple[float, int]]:
    """Play one episode in each env, env i prompted with targets[i] and started from starts[i]
    (a seed or a generator state); return each episode's (score, length)."""
    n, shape = len(envs), model.shape
    horizon, window = shape.episode_len, shape.seq_len
    mean = torch.as_tensor(prompting.state_mean, device=device)
    std = torch.as_tensor(prompting.state_std, device=device)
    states = torch.zeros(n, horizon + 1, shape.observation_size, device=device)
    actions = torch.zeros(n, horizon, shape.action_size, device=device)
    returns = torch.zeros(n, horizon + 1, device=device)
    time_steps = torch.arange(horizon, device=device).expand(n, horizon)
    first = np.stack([reset_from(env, start) for env, start in zip(envs, starts)])
    states[:, 0] = (torch.as_tensor(first, dtype=torch.float32, device=device) - mean) / std
    returns[:, 0] = torch.as_tensor(targets, dtype=torch.float32, device=device) * prompting.reward_scale
    scores, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    live = np.arange(n)
    for step in range(horizon):
        if not len(live):
            break
        begin = max(0, step + 1 - window)
        rows = torch.as_tensor(live, device=device)
        # the last action is a placeholder (zeros): the model predicts it from the state token
        predicted = model(states[rows, begin:step + 1], actions[rows, begin:step + 1],
                          returns[rows, begin:step + 1], time_steps[rows, begin:step + 1])[:, -1]
        chosen = predicted.cpu().numpy()
        stepped = [envs[row].step(action) for row, action in zip(live, chosen)]
        observations = np.stack([o for o, *_ in stepped])
        rewards = np.array([r for _, r, *_ in stepped], dtype=np.float64)
        scores[live] += rewards
        lengths[live] += 1
        # one write per array for all live episodes, not one per episode
        actions[rows, step] = predicted
        states[rows, step + 1] = (torch.as_tensor(observations, dtype=torch.float32, device=device)
                                  - mean) / std
        returns[rows, step + 1] = returns[rows, step] - torch.as_tensor(
            rewards * prompting.reward_scale, dtype=torch.float32, device=device)
        live = live[[not (terminated or truncated) for *_, terminated, truncated, _ in stepped]]
    return [(float(s), int(length)) for s, length in zip(scores, lengths)]


def evaluate_targets(model: ContinuousDecisionTransformer, make_env: Callable[[], Any],
                     targets: Sequence[float], episodes: int, parallel: int, seed: int,
                     prompting: Prompting, device: torch.device,
                     seeding: str = "corl") -> list[EpisodeResult]:
    """`episodes` episodes per target, episode i of every target started alike (`seeding`),
    played `parallel` at a time."""
    starts = episode_starts(make_env, seed, episodes, seeding)
    was_training = model.training
    model.eval()
    jobs = [(float(t), i) for t in targets for i in range(episodes)]
    envs = [make_env() for _ in range(min(parallel, len(jobs)))]
    results = []
    try:
        for first in range(0, len(jobs), len(envs)):
            group = jobs[first:first + len(envs)]
            played = play_group(model, envs[:len(group)], [t for t, _ in group],
                                [starts[i] for _, i in group], prompting, device)
            results += [EpisodeResult(t, i, seed + i if seeding == "per_episode" else seed, score, length)
                        for (t, i), (score, length) in zip(group, played)]
    finally:
        for env in envs:
            env.close()
        model.train(was_training)
    return results
