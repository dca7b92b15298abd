"""The source algorithm whose learning histories AD and RA-DT distil: PPO, one learner per task.

The anchor trains Stable-Baselines3 PPO per task (configs/agent_params/ppo.yaml: SB3 defaults,
ent_coef 0.01) and keeps its whole replay, from the first random episode to the converged
policy. The grid-world's observation is a cell, so the policy and value here are tables over
the size*size cells (an MLP over two integers learns the same function, slower): the clipped
surrogate, generalised advantage estimation and entropy bonus are PPO's, with the analytic
gradient of a softmax table in place of autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fdt.incontext.environments import N_ACTIONS, GridWorld


@dataclass(frozen=True)
class PPOParams:
    n_steps: int = 400  # environment steps per rollout (four episodes)
    n_epochs: int = 4
    minibatch: int = 100
    learning_rate: float = 2.0  # on the logits of a table (tried 0.5: 3x slower to converge)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.01  # the anchor's ppo.yaml


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class TabularPPO:
    """PPO over a table of logits and values indexed by cell; `state` is (row, column) plus a
    key flag for the key-door (the cell alone does not say whether the key is held)."""

    def __init__(self, size: int, params: PPOParams, rng: np.random.Generator,
                 with_key: bool = False) -> None:
        self.size, self.p, self.rng = size, params, rng
        cells = size * size * (2 if with_key else 1)
        self.logits = np.zeros((cells, N_ACTIONS))
        self.values = np.zeros(cells)

    def cell(self, obs: np.ndarray, has_key: bool = False) -> int:
        return int((int(has_key) * self.size + obs[0]) * self.size + obs[1])

    def act(self, cell: int) -> int:
        return int(self.rng.choice(N_ACTIONS, p=_softmax(self.logits[cell])))

    def update(self, cells: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
               next_cells: np.ndarray, ends: np.ndarray) -> None:
        """One PPO update on a rollout; `ends` marks the last step of an episode, whose
        truncation is bootstrapped from the value of the cell it ended in (as SB3 does: the
        episode's clock is not in the observation)."""
        p = self.p
        values = self.values[cells]
        old_probs = _softmax(self.logits[cells])[np.arange(len(cells)), actions]
        next_values = self.values[next_cells]
        deltas = rewards + p.gamma * next_values - values
        advantages = np.zeros_like(deltas)
        running = 0.0
        for t in range(len(deltas) - 1, -1, -1):
            running = deltas[t] + p.gamma * p.gae_lambda * running * (0.0 if ends[t] else 1.0)
            advantages[t] = running
        returns = advantages + values
        for _ in range(p.n_epochs):
            order = self.rng.permutation(len(cells))
            for start in range(0, len(order), p.minibatch):
                idx = order[start:start + p.minibatch]
                c, a = cells[idx], actions[idx]
                adv = advantages[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                probs = _softmax(self.logits[c])
                ratio = probs[np.arange(len(idx)), a] / old_probs[idx]
                # the clipped surrogate's gradient is zero where the clip binds
                active = np.where(adv >= 0, ratio < 1 + p.clip, ratio > 1 - p.clip)
                onehot = np.eye(N_ACTIONS)[a]
                grad = ((active * adv * ratio)[:, None] * (onehot - probs))
                # entropy bonus: d H / d logits = -p * (log p + H)
                logp = np.log(probs + 1e-12)
                entropy = -(probs * logp).sum(axis=1, keepdims=True)
                grad += p.ent_coef * (-probs * (logp + entropy))
                np.add.at(self.logits, c, p.learning_rate * grad / len(idx))
                # value regression towards the GAE returns: each cell moves half way to the
                # mean return of its visits in the minibatch
                error = np.bincount(c, returns[idx] - self.values[c], len(self.values))
                visits = np.bincount(c, minlength=len(self.values))
                self.values += 0.5 * error / np.maximum(visits, 1)


def learning_history(world: GridWorld, steps: int, params: PPOParams,
                     seed: int) -> dict[str, np.ndarray]:
    """Run PPO on one task for `steps` environment steps and record every transition, in
    order: the learning history (episode, step, observation, action, reward)."""
    rng = np.random.default_rng(seed)
    agent = TabularPPO(world.size, params, rng, with_key=world.task.key is not None)
    episodes = steps // world.max_episode_steps
    total = episodes * world.max_episode_steps  # whole episodes only
    out = {name: np.zeros(total, dtype=np.int64)
           for name in ("episode", "t", "row", "col", "action")}
    out["reward"] = np.zeros(total, dtype=np.float32)
    cells = np.zeros(params.n_steps, dtype=np.int64)
    acts = np.zeros(params.n_steps, dtype=np.int64)
    rews = np.zeros(params.n_steps)
    nexts = np.zeros(params.n_steps, dtype=np.int64)
    ends = np.zeros(params.n_steps, dtype=bool)
    obs, episode, k = world.reset(), 0, 0
    for i in range(total):
        cell = agent.cell(obs, world.has_key)
        action = agent.act(cell)
        out["episode"][i], out["t"][i] = episode, world.t
        out["row"][i], out["col"][i], out["action"][i] = obs[0], obs[1], action
        obs, reward, _, truncated, _ = world.step(action)
        out["reward"][i] = reward
        cells[k], acts[k], rews[k], ends[k] = cell, action, reward, truncated
        nexts[k] = agent.cell(obs, world.has_key)
        k += 1
        if truncated:
            obs, episode = world.reset(), episode + 1
        if k == params.n_steps:
            agent.update(cells, acts, rews, nexts, ends)
            k = 0
    return out
