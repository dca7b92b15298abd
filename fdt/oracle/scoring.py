"""The oracle's own score, under the Dopamine protocol it would have been scored under (sticky
actions 0.25, epsilon 0.001, no no-ops), so a report can say how good it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fdt.evaluation.policies import MemorylessPolicy
from fdt.oracle.c51 import C51Network, OracleError
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE


class QPolicy(MemorylessPolicy):
    """A Q-network (the C51 oracle) as a policy for the rollouts: its Q-values are the logits (so
    argmax and epsilon-greedy act greedily on Q)."""

    def __init__(self, net: C51Network, slots: int) -> None:
        self.net, self.slots = net.eval(), slots
        self.stacks = np.zeros((slots, STACK_SIZE, *FRAME_SHAPE), np.uint8)

    def observe(self, slots: Sequence[int], stacks: np.ndarray) -> None:
        self.stacks[list(slots)] = stacks

    @torch.inference_mode()
    def logits(self, slots: Sequence[int]) -> np.ndarray:
        return self.net.q_values(torch.from_numpy(self.stacks[list(slots)])).numpy()

def evaluate_oracle(net: C51Network, game: str, *, episodes: int, seed: int,
                    max_steps: int | None = None, envs: int = 8, rom_dir: str | None = None,
                    progress: bool = True, backend: str = "processes") -> dict[str, Any]:
    """The oracle's score under the Dopamine protocol it was scored under (sticky actions 0.25,
    epsilon-greedy 0.001, no no-ops, no forced FIRE), its environments stepping in our
    processes or ale-py's vector environment (`backend`: the same episodes either way)."""
    from fdt.atari import minimal_action_count
    from fdt.evaluation.protocols import PROTOCOLS, Job
    from fdt.evaluation.rollout import rollout

    actions = minimal_action_count(game, rom_dir)
    if actions != net.num_actions:
        raise OracleError(f"the oracle has {net.num_actions} actions, {game} has {actions}")
    jobs = [Job("eps", 0.0, seed, e) for e in range(episodes)]
    bar = tqdm(total=episodes, desc=f"evaluate oracle on {game}", unit="episode",
               disable=not progress)
    try:
        rows = rollout(QPolicy(net, envs), game, jobs, PROTOCOLS["dopamine"], envs=envs,
                       max_steps=max_steps, rom_dir=rom_dir, progress=bar.update,
                       backend=backend)
    finally:
        bar.close()
    returns = np.array([r["return"] for r in rows])
    return {"game": game, "protocol": "dopamine", "seed": seed, "max_steps": max_steps,
            "episodes": [{k: r[k] for k in ("episode", "return", "steps", "game_over")}
                         for r in sorted(rows, key=lambda r: r["episode"])],
            "mean_return": float(returns.mean()) if len(rows) else None,
            "std_return": float(returns.std()) if len(rows) else None}
