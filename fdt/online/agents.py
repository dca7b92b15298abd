"""The agents the online loop trains: our SAC for MuJoCo, and for Atari a small online DQN.

Both are off-policy and keep every transition in a replay whose rewards the loop rewrites after
each reward-model retraining (`relabel`), so nothing the agent saw is learnt under an outdated
reward. rl-teacher used TRPO/PPO (on-policy: each batch is rewarded once, by the model of its
time) and rl-teacher-atari GA3C, whose many actor processes and GPU predictor need more than 2
shared CPU cores; a single-process DQN (the batch_rl DQN's network, loss and optimizer, here fed
online with epsilon-greedy play) reuses each transition many times, which is what a few hundred
thousand frames on this machine can afford.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fdt.agents.dqn import DQN, DQNParams
from fdt.continuous.sac import SAC, ReplayBuffer, SACParams, deterministic_policy, run_episodes

RewardFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


class SACAgent:
    """SAC (fdt.continuous.sac) with its replay, one update per environment step."""

    def __init__(self, env: Any, params: SACParams, capacity: int) -> None:
        self.params = params
        self.observation_size = int(np.prod(env.observation_space.shape))
        self.action_size = int(np.prod(env.action_space.shape))
        torch.manual_seed(params.seed)
        self.sac = SAC(self.observation_size, self.action_size,
                       float(np.abs(env.action_space.high).max()), params)
        self.buffer = ReplayBuffer(self.observation_size, self.action_size, capacity)
        self.action_space = env.action_space
        self.action_space.seed(params.seed)
        self.rng = np.random.default_rng(params.seed)
        self.steps = 0

    def act(self, observation: np.ndarray) -> np.ndarray:
        if self.steps < self.params.start_steps:
            return self.action_space.sample()
        return self.sac.actor.act(observation, False)

    def add(self, observation: np.ndarray, action: np.ndarray, reward: float,
            next_observation: np.ndarray, terminated: bool) -> None:
        self.buffer.add(observation, action, reward, next_observation, terminated)
        self.steps += 1

    def update(self) -> None:
        if self.steps > self.params.start_steps:
            self.sac.update(self.buffer.sample(self.params.batch_size, self.rng))

    def replay(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.buffer.size
        return self.buffer.observations[:n], self.buffer.actions[:n]

    def relabel(self, rewards: np.ndarray) -> None:
        self.buffer.rewards[:self.buffer.size] = rewards

    def score(self, env: Any, episodes: int, seed: int) -> float:
        return float(run_episodes(env, deterministic_policy(self.sac.actor), episodes, None, seed,
                                  "eval").returns().mean())

    _MODULES = ("actor", "critic", "target", "actor_optimizer", "critic_optimizer",
                "alpha_optimizer")
    _BUFFER = ("observations", "next_observations", "actions", "rewards", "terminated")

    def state_dict(self) -> dict[str, Any]:
        n = self.buffer.size
        return {"modules": {m: getattr(self.sac, m).state_dict() for m in self._MODULES},
                "log_alpha": self.sac.log_alpha.detach().clone(),
                "buffer": {b: torch.from_numpy(getattr(self.buffer, b)[:n].copy())
                           for b in self._BUFFER},
                "steps": self.steps, "rng": self.rng.bit_generator.state,
                "action_rng": self.action_space.np_random.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for m in self._MODULES:
            getattr(self.sac, m).load_state_dict(state["modules"][m])
        with torch.no_grad():
            self.sac.log_alpha.copy_(state["log_alpha"])
        for b in self._BUFFER:
            values = state["buffer"][b].numpy()
            getattr(self.buffer, b)[:len(values)] = values
        self.buffer.size = len(state["buffer"]["rewards"])
        self.steps = int(state["steps"])
        self.rng.bit_generator.state = state["rng"]
        self.action_space.np_random.bit_generator.state = state["action_rng"]


@dataclass(frozen=True)
class DQNAgentParams:
    start_steps: int = 1_000  # random play first
    batch_size: int = 32
    update_every: int = 4  # environment steps per update, as Dopamine
    epsilon_steps: int = 10_000  # epsilon anneals 1 -> 0.1 over these steps
    epsilon_final: float = 0.1
    epsilon_eval: float = 0.001
    target_update_period: int = 500  # updates
    learning_rate: float = 0.00025
    seed: int = 0


class DQNAgent:
    """Online DQN on 4-frame stacks with batch_rl's DQN network, loss and optimizer."""

    def __init__(self, num_actions: int, params: DQNAgentParams, capacity: int) -> None:
        self.params = params
        torch.manual_seed(params.seed)
        self.dqn = DQN(DQNParams(learning_rate=params.learning_rate,
                                 target_update_period=params.target_update_period))
        self.num_actions = num_actions
        self.online = self.dqn.network(num_actions)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.optimizer = self.dqn.optimizer(self.online.parameters())
        self.generator = torch.Generator().manual_seed(params.seed)
        self.states = np.zeros((capacity, 4, 84, 84), np.uint8)
        self.next_states = np.zeros((capacity, 4, 84, 84), np.uint8)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminal = np.zeros(capacity, bool)
        self.size = self.steps = self.updates = 0
        self.rng = np.random.default_rng(params.seed)

    def epsilon(self) -> float:
        p = self.params
        done = min(1.0, max(0, self.steps - p.start_steps) / p.epsilon_steps)
        return 1.0 + done * (p.epsilon_final - 1.0)

    @torch.no_grad()
    def _greedy(self, state: np.ndarray) -> int:
        return int(self.online.q_values(torch.as_tensor(state)[None]).argmax(1)[0])

    def act(self, state: np.ndarray) -> int:
        if self.steps < self.params.start_steps or self.rng.random() < self.epsilon():
            return int(self.rng.integers(self.num_actions))
        return self._greedy(state)

    def add(self, state: np.ndarray, action: int, reward: float, next_state: np.ndarray,
            terminated: bool) -> None:
        i = self.size % len(self.actions)
        self.states[i], self.next_states[i] = state, next_state
        self.actions[i], self.rewards[i], self.terminal[i] = action, reward, terminated
        self.size += 1
        self.steps += 1

    def update(self) -> None:
        p = self.params
        if self.steps <= p.start_steps or self.steps % p.update_every:
            return
        rows = self.rng.integers(0, min(self.size, len(self.actions)), p.batch_size)
        batch = {"state": torch.as_tensor(self.states[rows]),
                 "next_state": torch.as_tensor(self.next_states[rows]),
                 "action": torch.as_tensor(self.actions[rows]),
                 "reward": torch.as_tensor(self.rewards[rows]),
                 "terminal": torch.as_tensor(self.terminal[rows])}
        loss = self.dqn.loss(self.online, self.target, batch, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        if self.updates % p.target_update_period == 0:
            self.target.load_state_dict(self.online.state_dict())

    def replay(self) -> tuple[np.ndarray, np.ndarray]:
        n = min(self.size, len(self.actions))
        return self.states[:n], self.actions[:n]

    def relabel(self, rewards: np.ndarray) -> None:
        self.rewards[:len(rewards)] = rewards

    def score(self, env: Any, episodes: int, seed: int) -> float:
        total = 0.0
        for episode in range(episodes):
            state, _ = env.reset(seed=seed + episode)
            done = False
            while not done:
                action = int(self.rng.integers(self.num_actions)) \
                    if self.rng.random() < self.params.epsilon_eval else self._greedy(state)
                state, reward, terminated, truncated, _ = env.step(action)
                total += reward
                done = terminated or truncated
        return total / episodes

    def state_dict(self) -> dict[str, Any]:
        n = min(self.size, len(self.actions))
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "replay": {k: torch.from_numpy(getattr(self, k)[:n].copy())
                           for k in ("states", "next_states", "actions", "rewards", "terminal")},
                "size": self.size, "steps": self.steps, "updates": self.updates,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        for k, values in state["replay"].items():
            getattr(self, k)[:len(values)] = values.numpy()
        self.size, self.steps, self.updates = int(state["size"]), int(state["steps"]), int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
