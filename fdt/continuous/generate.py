"""D4RL-style datasets from our own behaviour agent, as D4RL builds its MuJoCo sets:

random: uniform actions; medium: a snapshot at about a third of the final return; expert: the
final policy; medium-replay: the agent's whole online replay; medium-expert: medium then expert.
Policies act stochastically (their sampled actions), as D4RL's behaviour data does.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdt.continuous.environments import ContinuousInputError, task_sizes
from fdt.continuous.episodes import Episodes, concatenate, read_episodes
from fdt.continuous.sac import (
    Actor,
    BehaviourRun,
    SACParams,
    medium_snapshot,
    run_episodes,
    stochastic_policy,
)
from fdt.io import atomic_path
from fdt.torchfile import load_torch_file

# Each rollout quality's episodes are reset with seed + offset + i, so the sets never share one.
SEED_OFFSETS = {"random": 0, "medium": 1_000_000, "expert": 2_000_000, "reference": 3_000_000}


def save_policies(path: str | Path, env: Any, run: BehaviourRun, params: SACParams,
                  medium_fraction: float) -> dict[str, Any]:
    """The medium and expert actors (with what rebuilds them); returns their summary."""
    medium_step, medium_score, medium_weights = medium_snapshot(run.snapshots, medium_fraction)
    final_step, final_score, final_weights = run.snapshots[-1]
    sizes = task_sizes(env)
    summary = {"medium": {"step": medium_step, "score": medium_score},
               "expert": {"step": final_step, "score": final_score},
               "sizes": asdict(sizes), "hidden": params.hidden}
    weights = {"medium": plain_weights(medium_weights), "expert": plain_weights(final_weights)}
    with atomic_path(path) as tmp:
        torch.save({**summary, "weights": weights}, tmp)
    return summary


def plain_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as a plain dict with interned names. Pickle writes an object it has met
    before as a reference: a run resumed from its checkpoint holds snapshots whose names (and
    `_metadata`) were unpickled apart, and without this its policies.pt differed in bytes from
    a run never stopped."""
    return {sys.intern(str(name)): tensor for name, tensor in state.items()}


def load_actor(path: str | Path, which: str) -> Actor:
    saved = load_torch_file(path)
    sizes = saved["sizes"]
    actor = Actor(sizes["observation_size"], sizes["action_size"], saved["hidden"], sizes["max_action"])
    actor.load_state_dict(saved["weights"][which])
    return actor.eval()


def random_policy(env: Any, seed: int) -> Any:
    env.action_space.seed(seed)
    return lambda _observation: env.action_space.sample()


def rollout(env: Any, quality: str, policies: str | Path | None, steps: int | None, episodes: int | None,
            seed: int) -> Episodes:
    """Episodes of one behaviour policy: random, medium or expert."""
    base = seed + SEED_OFFSETS[quality]
    torch.manual_seed(base)
    policy = (random_policy(env, base) if quality == "random"
              else stochastic_policy(load_actor(policies, quality)))
    return run_episodes(env, policy, episodes, steps, base, quality)


def reference_return(env: Any, quality: str, policies: str | Path | None, episodes: int,
                     seed: int) -> float:
    """Mean return of a policy (random or expert) over `episodes` fresh-seeded episodes."""
    base = seed + SEED_OFFSETS["reference"]
    return float(rollout(env, quality, policies, None, episodes, base).returns().mean())


def references(env: Any, policies: str | Path, episodes: int, seed: int) -> dict[str, float]:
    """Our normalisation's reference returns: the random policy's and the expert (final)
    policy's mean returns."""
    return {"random": reference_return(env, "random", None, episodes, seed),
            "expert": reference_return(env, "expert", policies, episodes, seed), "episodes": episodes}


def generate(env: Any, quality: str, policies: str | Path, replay: str | Path, steps: int,
             seed: int) -> Episodes:
    """The dataset of a quality; `steps` transitions per rollout set (D4RL: 1,000,000)."""
    if quality == "medium-replay":
        return read_episodes(replay)
    if quality == "medium-expert":
        return concatenate([rollout(env, q, policies, steps, None, seed) for q in ("medium", "expert")])
    if quality in ("random", "medium", "expert"):
        return rollout(env, quality, policies, steps, None, seed)
    raise ContinuousInputError(f"unknown dataset quality {quality!r}")


def dataset_summary(episodes: Episodes) -> dict[str, Any]:
    returns = episodes.returns()
    return {"env_id": episodes.env_id, "transitions": len(episodes), "episodes": len(returns),
            "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "return_max": float(returns.max()), "return_min": float(returns.min()),
            "observation_size": episodes.observation_size, "action_size": episodes.action_size,
            "policies": sorted(set(episodes.policies())),
            "terminated": int(episodes.terminated.sum()), "truncated": int(episodes.truncated.sum()),
            "length_mean": float(np.mean(episodes.lengths()))}
