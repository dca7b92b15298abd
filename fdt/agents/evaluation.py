"""Scoring an agent under the Dopamine protocol (sticky actions 0.25, epsilon 0.001, no no-ops,
27,000-step cap), with the budget batch_rl's runner gives an evaluation.

Dopamine's Runner (`_run_one_phase`, `evaluation_steps = 125000` in every batch_rl gin file)
plays whole episodes, one after another, while fewer agent steps than the budget have been
played: the last episode is finished even when it passes the budget, and the score is the mean
return of the episodes played. Here episode e is the job ("eps", 0, seed, e) with its own seed,
so the episodes counted are the shortest prefix e = 0, 1, ... whose steps reach the budget,
however many environments run at once; episodes played beyond it in the same round are dropped.
The `episodes` budget plays a fixed number instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.nn as nn

from fdt.evaluation.environments import make_pool
from fdt.evaluation.protocols import PROTOCOLS, Job
from fdt.evaluation.rollout import rollout
from fdt.oracle.scoring import QPolicy

BUDGETS = ("steps", "episodes")


def counted_episodes(lengths: Sequence[int], steps: int) -> int | None:
    """How many of the episodes, in order, Dopamine's runner plays for a budget of `steps`
    agent steps (None while their steps fall short of it)."""
    total = 0
    for count, length in enumerate(lengths, 1):
        total += length
        if total >= steps:
            return count
    return None


def describe_budget(budget: str, steps: int, episodes: int) -> str:
    """The budget as the report names it: '125,000 steps' or '10 episodes'."""
    if budget not in BUDGETS:
        raise ValueError(f"agents.evaluation.budget must be one of {', '.join(BUDGETS)}, not "
                         f"{budget!r}")
    return f"{steps:,} steps" if budget == "steps" else f"{episodes:,} episodes"


def play_for_steps(policy: QPolicy, game: str, steps: int, seed: int, max_steps: int | None,
                   envs: int, rom_dir: str | None = None,
                   backend: str = "processes") -> list[dict[str, Any]]:
    """Episodes 0, 1, ... in rounds of `envs` until the ones counted reach `steps`."""
    protocol = PROTOCOLS["dopamine"]
    # one set of environments for every round (fdt.evaluation.environments.make_pool)
    pool = make_pool(game, protocol, backend=backend, envs=envs, rom_dir=rom_dir)
    rows: list[dict[str, Any]] = []
    try:
        while True:
            jobs = [Job("eps", 0.0, seed, len(rows) + i) for i in range(envs)]
            played = rollout(policy, game, jobs, protocol, envs=envs, max_steps=max_steps,
                             rom_dir=rom_dir, pool=pool)
            rows += sorted(played, key=lambda r: r["episode"])
            count = counted_episodes([r["steps"] for r in rows], steps)
            if count is not None:
                return rows[:count]
    finally:
        pool.close()


def play_episodes(policy: QPolicy, game: str, episodes: int, seed: int, max_steps: int | None,
                  envs: int, rom_dir: str | None = None,
                  backend: str = "processes") -> list[dict[str, Any]]:
    """Episodes 0 .. episodes - 1."""
    jobs = [Job("eps", 0.0, seed, e) for e in range(episodes)]
    played = rollout(policy, game, jobs, PROTOCOLS["dopamine"], envs=min(envs, episodes),
                     max_steps=max_steps, rom_dir=rom_dir, backend=backend)
    return sorted(played, key=lambda r: r["episode"])


def score_agent(net: nn.Module, game: str, *, budget: str, steps: int, episodes: int,
                seed: int, max_steps: int | None, envs: int, rom_dir: str | None = None,
                backend: str = "processes") -> dict[str, Any]:
    """The agent's mean return under the Dopamine protocol, with its budget named; the
    environments step in our processes or ale-py's vector environment (`backend`: the same
    episodes either way, tests/test_vector_env.py)."""
    described = describe_budget(budget, steps, episodes)
    policy = QPolicy(net, envs)  # type: ignore[arg-type]  # any network with q_values
    if budget == "steps":
        rows = play_for_steps(policy, game, steps, seed, max_steps, envs, rom_dir, backend)
    else:
        rows = play_episodes(policy, game, episodes, seed, max_steps, envs, rom_dir, backend)
    returns = np.array([r["return"] for r in rows], dtype=float)
    return {"game": game, "protocol": "dopamine", "budget": described, "seed": seed,
            "max_steps": max_steps, "steps": int(sum(r["steps"] for r in rows)),
            "episodes": [{k: r[k] for k in ("episode", "return", "steps", "game_over")}
                         for r in rows],
            "mean_return": float(returns.mean()), "std_return": float(returns.std())}
