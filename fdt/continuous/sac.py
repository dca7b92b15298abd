"""A small Soft Actor-Critic (Haarnoja et al. 2018, automatic entropy tuning) that trains the
behaviour agent whose replay, snapshots and final policy become the D4RL-style datasets."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fdt.continuous.episodes import EpisodeRecorder, Episodes
from fdt.io import atomic_path
from fdt.settings import defaults
from fdt.torchfile import load_torch_file

log = logging.getLogger(__name__)

LOG_STD_RANGE = (-20.0, 2.0)


_SAC = defaults("continuous", "behaviour")


@dataclass(frozen=True)
class SACParams:
    """The behaviour agent's training (defaults in the schema: continuous.behaviour)."""

    steps: int = _SAC["steps"]                # environment steps of online training
    start_steps: int = _SAC["start_steps"]    # uniform random actions first
    batch_size: int = _SAC["batch_size"]
    hidden: int = _SAC["hidden"]
    learning_rate: float = _SAC["learning_rate"]
    gamma: float = _SAC["gamma"]
    tau: float = _SAC["tau"]
    eval_every: int = _SAC["eval_every"]      # steps between snapshots (scored deterministically)
    eval_episodes: int = _SAC["eval_episodes"]
    seed: int = _SAC["seed"]


def mlp(inputs: int, outputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


class Actor(nn.Module):
    """A tanh-squashed Gaussian policy scaled to the action bound."""

    def __init__(self, observation_size: int, action_size: int, hidden: int, max_action: float) -> None:
        super().__init__()
        self.net = mlp(observation_size, 2 * action_size, hidden)
        self.max_action = max_action

    def forward(self, observation: torch.Tensor, deterministic: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """An action and its log-probability (with the tanh change of variables)."""
        mean, log_std = self.net(observation).chunk(2, dim=-1)
        std = log_std.clamp(*LOG_STD_RANGE).exp()
        raw = mean if deterministic else mean + std * torch.randn_like(mean)
        log_prob = torch.distributions.Normal(mean, std).log_prob(raw).sum(-1)
        log_prob = log_prob - (2 * (np.log(2) - raw - F.softplus(-2 * raw))).sum(-1)
        return torch.tanh(raw) * self.max_action, log_prob

    @torch.no_grad()
    def act(self, observation: np.ndarray, deterministic: bool) -> np.ndarray:
        action, _ = self(torch.as_tensor(observation, dtype=torch.float32)[None], deterministic)
        return action[0].numpy()


class Critic(nn.Module):
    """Two Q networks (the smaller of them is the target, against over-estimation)."""

    def __init__(self, observation_size: int, action_size: int, hidden: int) -> None:
        super().__init__()
        self.q1 = mlp(observation_size + action_size, 1, hidden)
        self.q2 = mlp(observation_size + action_size, 1, hidden)

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        joint = torch.cat([observation, action], dim=-1)
        return self.q1(joint).squeeze(-1), self.q2(joint).squeeze(-1)


class ReplayBuffer:
    """Transitions for the updates, and the whole replay kept as episodes (medium-replay)."""

    def __init__(self, observation_size: int, action_size: int, capacity: int) -> None:
        self.observations = np.zeros((capacity, observation_size), np.float32)
        self.next_observations = np.zeros((capacity, observation_size), np.float32)
        self.actions = np.zeros((capacity, action_size), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size = 0

    def add(self, observation: np.ndarray, action: np.ndarray, reward: float,
            next_observation: np.ndarray, terminated: bool) -> None:
        i = self.size
        self.observations[i], self.actions[i], self.rewards[i] = observation, action, reward
        self.next_observations[i], self.terminated[i] = next_observation, terminated
        self.size += 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
        rows = rng.integers(0, self.size, batch_size)
        return [torch.as_tensor(a[rows]) for a in (self.observations, self.actions, self.rewards,
                                                    self.next_observations, self.terminated)]


class SAC:
    def __init__(self, observation_size: int, action_size: int, max_action: float, params: SACParams) -> None:
        self.params = params
        self.actor = Actor(observation_size, action_size, params.hidden, max_action)
        self.critic = Critic(observation_size, action_size, params.hidden)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.target_entropy = -float(action_size)
        lr = params.learning_rate
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr)

    def update(self, batch: list[torch.Tensor]) -> float:
        """One gradient step of the critics, the actor and the temperature; the critic loss."""
        observation, action, reward, next_observation, terminated = batch
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_observation)
            target_q = torch.min(*self.target(next_observation, next_action)) - alpha * next_log_prob
            backup = reward + self.params.gamma * (1 - terminated) * target_q
        q1, q2 = self.critic(observation, action)
        critic_loss = F.mse_loss(q1, backup) + F.mse_loss(q2, backup)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        new_action, log_prob = self.actor(observation)
        actor_loss = (alpha * log_prob - torch.min(*self.critic(observation, new_action))).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            for target, online in zip(self.target.parameters(), self.critic.parameters()):
                target.lerp_(online, self.params.tau)
        return critic_loss.item()


def run_episodes(env: Any, policy: Callable[[np.ndarray], np.ndarray], episodes: int | None,
                 steps: int | None, seed: int, policy_id: str) -> Episodes:
    """Roll a policy out for a number of episodes or of steps (the last episode then ends early,
    marked truncated as a D4RL timeout); episode i is reset with seed + i."""
    record = EpisodeRecorder(env.spec.id)
    episode = 0
    while (episodes is None or episode < episodes) and (steps is None or len(record) < steps):
        observation, _ = env.reset(seed=seed + episode)
        done, t = False, 0
        while not done:
            action = policy(observation)
            next_observation, reward, terminated, truncated, _ = env.step(action)
            cut = steps is not None and len(record) + 1 == steps
            done = terminated or truncated or cut
            record.add(episode, t, observation, action, reward, terminated,
                       truncated or (cut and not terminated), policy_id)
            observation, t = next_observation, t + 1
        episode += 1
    return record.episodes()


def deterministic_policy(actor: Actor) -> Callable[[np.ndarray], np.ndarray]:
    return lambda observation: actor.act(observation, True)


def stochastic_policy(actor: Actor) -> Callable[[np.ndarray], np.ndarray]:
    """Sampled actions, as D4RL's behaviour data was collected."""
    return lambda observation: actor.act(observation, False)


@dataclass
class BehaviourRun:
    """What the online training leaves: its replay as episodes, its snapshots with their scores,
    and its learning curve (one row per finished training episode and per snapshot)."""

    replay: Episodes
    snapshots: list[tuple[int, float, dict[str, torch.Tensor]]]  # (step, score, actor weights)
    curve: list[dict[str, float]]


def train_behaviour(env: Any, eval_env: Any, params: SACParams,
                    progress: Callable[[int, dict[str, float]], None] | None = None,
                    checkpoint: Path | None = None, checkpoint_every: int = 10_000) -> BehaviourRun:
    """Train SAC online for `params.steps` steps; every `eval_every` steps (and at the end) score
    the deterministic policy on `eval_episodes` episodes and keep its weights. With `checkpoint`,
    the whole state is saved at the first episode end after every `checkpoint_every` steps, and a
    run finding one resumes from it (episode i is reset with seed + i, so it plays the same)."""
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    env.action_space.seed(params.seed)
    observation_size = int(np.prod(env.observation_space.shape))
    action_size = int(np.prod(env.action_space.shape))
    max_action = float(np.abs(env.action_space.high).max())
    agent = SAC(observation_size, action_size, max_action, params)
    buffer = ReplayBuffer(observation_size, action_size, params.steps)
    record = EpisodeRecorder(env.spec.id)
    snapshots: list[tuple[int, float, dict[str, torch.Tensor]]] = []
    curve: list[dict[str, float]] = []
    done_steps, episode, loss = 0, 0, float("nan")
    if checkpoint is not None and checkpoint.is_file():
        done_steps, episode, loss = _restore(checkpoint, agent, buffer, record, snapshots, curve,
                                              rng, env)
        log.info("resumed from %s at step %d of %d (episode %d)", checkpoint, done_steps,
                 params.steps, episode)
    last_saved = done_steps
    t, score = 0, 0.0
    observation, _ = env.reset(seed=params.seed + episode)
    for step in range(done_steps + 1, params.steps + 1):
        random_phase = step <= params.start_steps
        action = env.action_space.sample() if random_phase else agent.actor.act(observation, False)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        buffer.add(observation, action, reward, next_observation, terminated)
        cut = step == params.steps and not (terminated or truncated)
        record.add(episode, t, observation, action, reward, terminated, truncated or cut,
                   "random" if random_phase else "sac-replay")
        score, t, observation = score + reward, t + 1, next_observation
        if terminated or truncated:
            curve.append({"step": step, "episode_return": score, "critic_loss": loss})
            episode, t, score = episode + 1, 0, 0.0
            observation, _ = env.reset(seed=params.seed + episode)
        if step > params.start_steps:
            loss = agent.update(buffer.sample(params.batch_size, rng))
        if step % params.eval_every == 0 or step == params.steps:
            scored = run_episodes(eval_env, deterministic_policy(agent.actor), params.eval_episodes,
                                  None, 10_000 + step, "eval").returns().mean()
            snapshots.append((step, float(scored), copy.deepcopy(agent.actor.state_dict())))
            curve.append({"step": step, "evaluation_return": float(scored)})
            if progress is not None:
                progress(step, curve[-1])
        if checkpoint is not None and t == 0 and step - last_saved >= checkpoint_every and step < params.steps:
            _save(checkpoint, step, episode, loss, agent, buffer, record, snapshots, curve, rng, env)
            last_saved = step
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return BehaviourRun(record.episodes(), snapshots, curve)


_MODULES = ("actor", "critic", "target", "actor_optimizer", "critic_optimizer", "alpha_optimizer")


def _save(path: Path, step: int, episode: int, loss: float, agent: SAC, buffer: ReplayBuffer,
          record: EpisodeRecorder, snapshots: list, curve: list, rng: np.random.Generator,
          env: Any) -> None:
    n = buffer.size
    state = {
        "step": step, "episode": episode, "loss": loss, "log_alpha": agent.log_alpha.detach().clone(),
        **{name: getattr(agent, name).state_dict() for name in _MODULES},
        "buffer": {name: torch.from_numpy(getattr(buffer, name)[:n].copy()) for name in _BUFFER},
        "replay": {name: torch.from_numpy(np.asarray(record.columns[name], dtype=dtype).copy())
                   for name, dtype in _REPLAY.items()},
        "policy": [str(p) for p in record.columns["policy"]],
        "snapshots": snapshots, "curve": curve,
        "rng": rng.bit_generator.state, "action_rng": env.action_space.np_random.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _restore(path: Path, agent: SAC, buffer: ReplayBuffer, record: EpisodeRecorder, snapshots: list,
             curve: list, rng: np.random.Generator, env: Any) -> tuple[int, int, float]:
    state = load_torch_file(path)
    for name in _MODULES:
        getattr(agent, name).load_state_dict(state[name])
    with torch.no_grad():
        agent.log_alpha.copy_(state["log_alpha"])
    for name in _BUFFER:
        values = state["buffer"][name].numpy()
        getattr(buffer, name)[:len(values)] = values
    buffer.size = len(state["buffer"]["rewards"])
    for name in _REPLAY:
        record.columns[name] = list(state["replay"][name].numpy())
    record.columns["policy"] = list(state["policy"])
    snapshots.extend(state["snapshots"])
    curve.extend(state["curve"])
    rng.bit_generator.state = state["rng"]
    env.action_space.np_random.bit_generator.state = state["action_rng"]
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), int(state["episode"]), float(state["loss"])


_BUFFER = ("observations", "next_observations", "actions", "rewards", "terminated")
_REPLAY = {"episode": np.int64, "step": np.int64, "observations": np.float32, "actions": np.float32,
           "rewards": np.float32, "terminated": bool, "truncated": bool}


def medium_snapshot(snapshots: list[tuple[int, float, dict[str, torch.Tensor]]],
                    fraction: float) -> tuple[int, float, dict[str, torch.Tensor]]:
    """The snapshot whose score is closest to `fraction` of the final one (D4RL's medium: a policy
    at about a third of the expert's return); ties go to the earlier snapshot."""
    wanted = fraction * snapshots[-1][1]
    return min(snapshots, key=lambda s: abs(s[1] - wanted))
