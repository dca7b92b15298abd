"""Training an agent offline, iteration by iteration, as batch_rl's FixedReplayRunner does.

An iteration (re)loads its data (batch_rl: checkpoints drawn for the iteration; training_set: the
same transitions every time), makes `steps_per_iteration` updates on batches drawn from it, copies
the online network to the target network after updates 1, P + 1, 2P + 1, ... (P the
`target_update_period`, counted over the whole run: Dopamine's timing, `target_synced_after`),
and, after the chosen iterations (by default every one, as batch_rl; the last always), scores the
agent under the Dopamine protocol with batch_rl's budget, 125,000 agent steps of whole episodes,
or a number of episodes (fdt.agents.evaluation). A checkpoint is written after every iteration:
weights, target, optimizer, history. Every random draw of an iteration comes from generators seeded
by (seed, iteration), so a job killed mid-iteration resumes from the last checkpoint and ends with
the same weights as an uninterrupted run.

Output in `out_dir`: `agent.pt` (the online network), `metrics.json` (history, evaluations),
`curve.csv` (one row per iteration) and `checkpoint.pt`.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from fdt.agents.agent import Agent, chosen
from fdt.agents.evaluation import score_agent
from fdt.agents.registry import AGENTS, make_agent
from fdt.agents.replay import Sampler, TransitionPool, iteration_rng
from fdt.device import resolve_device
from fdt.io import atomic_path, write_json
from fdt.keys import canonical_json
from fdt.plan import AGENT_EVAL_RUN_SETTINGS
from fdt.settings import defaults
from fdt.torchfile import load_torch_file

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "agent.pt"
METRICS = "metrics.json"
CURVE = "curve.csv"
CURVE_COLUMNS = ["iteration", "updates", "loss", "q_mean", "q_data", "updates_per_s",
                 "transitions", "eval_mean", "eval_std", "eval_episodes"]
SAMPLE, PROBE = 2, 3  # generator streams of an iteration (0 and 1 belong to the data)

_AGENTS = defaults("agents")  # the schema's, the one place they live
_EVALUATION = defaults("agents", "evaluation")


class AgentTrainingError(RuntimeError):
    pass


@dataclass(frozen=True)
class AgentEvaluation:
    """Scoring under the Dopamine protocol; iteration i plays its episodes with seed + i."""

    budget: str = _EVALUATION["budget"]  # steps (Runner.evaluation_steps) or episodes
    steps: int = _EVALUATION["steps"]  # FixedReplayRunner.evaluation_steps = 125000
    episodes: int = _EVALUATION["episodes"]
    max_steps: int | None = _EVALUATION["max_steps"]
    seed: int = _EVALUATION["seed"]
    envs: int = _EVALUATION["envs"]  # how to run, not what is measured
    backend: str = _EVALUATION.get("backend", "processes")  # likewise: the same episodes


@dataclass(frozen=True)
class AgentTrainingParams:
    seed: int
    iterations: int = _AGENTS["iterations"]  # FixedReplayRunner.num_iterations = 200
    # training_steps = 250,000 agent steps at update_period = 4
    steps_per_iteration: int = _AGENTS["steps_per_iteration"]
    batch_size: int = _AGENTS["batch_size"]  # WrappedFixedReplayBuffer.batch_size = 32
    evaluate_after: tuple[int, ...] | None = _AGENTS["evaluate_after"]  # None: every iteration
    evaluation: AgentEvaluation = AgentEvaluation()
    log_every: int = _AGENTS["log_every"]  # how to run, not what is learnt
    device: str = _AGENTS["device"]

    def evaluated(self, iteration: int) -> bool:
        return (self.evaluate_after is None or iteration in self.evaluate_after
                or iteration == self.iterations)

    def digest(self, agent: Agent) -> str:
        """What decides the weights: a checkpoint resumes only when it is equal."""
        learning = {k: v for k, v in asdict(self).items() if k not in ("log_every", "device")}
        learning["evaluation"] = {k: v for k, v in learning["evaluation"].items()
                                  if k not in AGENT_EVAL_RUN_SETTINGS}
        payload = {"agent": agent.name, "hyperparameters": asdict(agent.params), **learning}
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


class AgentData(Protocol):
    """Where an iteration's transitions come from (fdt.agents.replay.BatchRLData, TrainingSetData)."""

    def pool(self, iteration: int) -> TransitionPool: ...

    def describe(self, iteration: int) -> dict[str, Any]: ...


@dataclass
class AgentState:
    """Everything a checkpoint restores."""

    iteration: int = 0  # iterations completed
    updates: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    tracking_run_id: str | None = None


UpdateHook = Callable[[int, nn.Module], None]


def train_agent(agent: Agent, data: AgentData, num_actions: int, out_dir: str | Path,
                params: AgentTrainingParams, *, game: str | None = None,
                tracker: Any | None = None, on_update: UpdateHook | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Train `agent` for `params.iterations` iterations; score it in `game` after the chosen
    iterations (no scoring without a game). A checkpoint of the same parameters in `out_dir` is
    continued. `tracker` (fdt.tracking.Tracker) receives params, loss, Q statistics, updates/s and
    scores; `on_update(updates, online)` runs after every update (tests use it to interrupt)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(params.device, "agents.device")
    torch.manual_seed(params.seed)
    online = agent.network(num_actions).to(device)
    target = agent.network(num_actions).to(device)
    target.load_state_dict(online.state_dict())
    optimizer = agent.optimizer(online.parameters())
    state = _restore(out_dir / CHECKPOINT, agent, params, online, target, optimizer, device)
    if tracker is not None:
        state.tracking_run_id = tracker.start(state.tracking_run_id)
        tracker.log_params({"agent": agent.name, **asdict(agent.params),
                            **{k: v for k, v in asdict(params).items() if k != "evaluation"},
                            **{f"evaluation_{k}": v for k, v in asdict(params.evaluation).items()},
                            "device": str(device)})
    period = agent.params.target_update_period
    bar = tqdm(total=params.iterations * params.steps_per_iteration,
               initial=state.iteration * params.steps_per_iteration, unit="update",
               desc=f"{agent.name} seed {params.seed}", mininterval=1.0, disable=not progress)
    started_run = time.perf_counter()
    try:
        while state.iteration < params.iterations:
            iteration = state.iteration + 1
            pool = data.pool(iteration)
            _check_actions(pool, num_actions)
            sampler = Sampler(pool, params.batch_size)
            rng = iteration_rng(params.seed, iteration, SAMPLE)
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            loss_sum = torch.zeros((), device=device)
            started = time.perf_counter()
            for step in range(1, params.steps_per_iteration + 1):
                batch = sampler.batch(sampler.rows(rng), device)
                loss = agent.loss(online, target, batch, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state.updates += 1
                if target_synced_after(state.updates, period):
                    target.load_state_dict(online.state_dict())
                loss_sum += loss.detach()
                if on_update is not None:
                    on_update(state.updates, online)
                if tracker is not None and state.updates % params.log_every == 0:
                    tracker.log_metrics({"loss": float(loss.detach()), **q_statistics(online, batch)},
                                        step=state.updates)
                bar.update(1)
            seconds = time.perf_counter() - started
            mean_loss = float(loss_sum) / params.steps_per_iteration
            if not math.isfinite(mean_loss):
                raise AgentTrainingError(
                    f"{agent.name}: the loss became NaN or infinite in iteration {iteration}; "
                    f"{out_dir / CHECKPOINT} keeps the {state.iteration} iterations before it")
            probe = sampler.batch(sampler.rows(iteration_rng(params.seed, iteration, PROBE)), device)
            record = {"iteration": iteration, "updates": state.updates, "loss": mean_loss,
                      **q_statistics(online, probe), "updates_per_s": params.steps_per_iteration / seconds,
                      "transitions": len(pool), "left_out": pool.left_out,
                      **data.describe(iteration)}
            if game is not None and params.evaluated(iteration):
                scored = _evaluate(online, game, params.evaluation, iteration)
                state.evaluations.append(scored)
                record.update(eval_mean=scored["mean_return"], eval_std=scored["std_return"],
                              eval_episodes=len(scored["episodes"]))
            bar.set_postfix(loss=f"{mean_loss:.4f}", q=f"{record['q_mean']:.3f}")
            state.history.append(record)
            state.iteration = iteration
            _save_checkpoint(out_dir / CHECKPOINT, agent, params, online, target, optimizer, state)
            if tracker is not None:
                tracker.log_metrics({k: record[k] for k in CURVE_COLUMNS[2:] if k in record}
                                    | {"iteration": iteration}, step=state.updates)
    finally:
        bar.close()
    return _finish(out_dir, agent, params, online, num_actions, state, game,
                   time.perf_counter() - started_run, device, tracker)


def target_synced_after(updates: int, period: int) -> bool:
    """Whether the target network takes the online weights after update number `updates`
    (counted from 1). Dopamine's _train_step trains when its step counter t is a multiple of
    update_period (4) and then, in the same call, copies when t is a multiple of
    target_update_period (8,000): t = 0 is the first update, so copies follow updates 1, 2001,
    4001, ... (the period here is in updates: 8,000 / 4 = 2,000)."""
    return (updates - 1) % period == 0


@torch.no_grad()
def q_statistics(online: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean over a batch of max_a Q(s, a) and of Q(s, a_data)."""
    q = online.q_values(batch["state"]).float()  # type: ignore[operator]
    return {"q_mean": float(q.max(-1).values.mean()),
            "q_data": float(chosen(q, batch["action"]).mean())}


def _check_actions(pool: TransitionPool, num_actions: int) -> None:
    if len(pool) and int(pool.action.max()) >= num_actions:
        raise AgentTrainingError(f"logged action {int(pool.action.max())} is outside the game's "
                                 f"{num_actions} actions (the replay is of another game)")


def _evaluate(online: nn.Module, game: str, evaluation: AgentEvaluation,
              iteration: int) -> dict[str, Any]:
    """The agent's score now, under the Dopamine protocol, on the CPU (as the rollouts feed it)."""
    net = copy.deepcopy(online).cpu().eval()
    result = score_agent(net, game, budget=evaluation.budget, steps=evaluation.steps,
                         episodes=evaluation.episodes, seed=evaluation.seed + iteration,
                         max_steps=evaluation.max_steps, envs=evaluation.envs,
                         backend=evaluation.backend)
    online.train()
    return {"iteration": iteration, **{k: result[k] for k in (
        "budget", "seed", "max_steps", "steps", "episodes", "mean_return", "std_return")}}


def _payload(agent: Agent, params: AgentTrainingParams, online: nn.Module, target: nn.Module,
             optimizer: torch.optim.Optimizer, state: AgentState) -> dict[str, Any]:
    return {"digest": params.digest(agent), "online": online.state_dict(),
            "target": target.state_dict(), "optimizer": optimizer.state_dict(),
            "state": asdict(state)}


def _save_checkpoint(path: Path, agent: Agent, params: AgentTrainingParams, online: nn.Module,
                     target: nn.Module, optimizer: torch.optim.Optimizer,
                     state: AgentState) -> None:
    with atomic_path(path) as tmp:
        torch.save(_payload(agent, params, online, target, optimizer, state), tmp)


def _restore(path: Path, agent: Agent, params: AgentTrainingParams, online: nn.Module,
             target: nn.Module, optimizer: torch.optim.Optimizer,
             device: torch.device) -> AgentState:
    if not path.is_file():
        return AgentState()
    payload = load_torch_file(path, device)  # a planted pickle is refused, never run
    if payload.get("digest") != params.digest(agent):
        print(f"{path}: a checkpoint of other parameters; training starts from scratch",
              file=sys.stderr, flush=True)
        return AgentState()
    online.load_state_dict(payload["online"])
    target.load_state_dict(payload["target"])
    optimizer.load_state_dict(payload["optimizer"])
    state = AgentState(**payload["state"])
    print(f"resuming {agent.name} from {path}: {state.iteration} of {params.iterations} "
          f"iterations done, {state.updates} updates", file=sys.stderr, flush=True)
    return state


def _finish(out_dir: Path, agent: Agent, params: AgentTrainingParams, online: nn.Module,
            num_actions: int, state: AgentState, game: str | None, seconds: float,
            device: torch.device, tracker: Any | None) -> dict[str, Any]:
    with atomic_path(out_dir / WEIGHTS) as tmp:
        torch.save({"agent": agent.name, "num_actions": num_actions,
                    "hyperparameters": asdict(agent.params),
                    "model": {k: v.cpu() for k, v in online.state_dict().items()}}, tmp)
    with atomic_path(out_dir / CURVE) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, CURVE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(state.history)
    final = state.evaluations[-1] if state.evaluations else None
    metrics = {"agent": agent.name, "game": game, "seed": params.seed,
               "hyperparameters": asdict(agent.params),
               "iterations": state.iteration, "updates": state.updates,
               "final_loss": state.history[-1]["loss"] if state.history else None,
               "final_evaluation": None if final is None else {
                   k: final[k] for k in ("iteration", "budget", "mean_return", "std_return")} | {
                   "episodes": len(final["episodes"])},
               "history": state.history, "evaluations": state.evaluations,
               "seconds_this_run": seconds, "device": str(device)}
    write_json(out_dir / METRICS, metrics)
    if tracker is not None:
        tracker.log_artifact(out_dir / WEIGHTS)
        tracker.log_artifact(out_dir / CURVE)
    return metrics


def load_agent_network(path: str | Path, num_actions: int | None = None) -> nn.Module:
    """A trained agent's network from its `agent.pt`, checked against the game's action count."""
    payload = load_torch_file(path)
    if payload.get("agent") not in AGENTS:
        raise AgentTrainingError(f"{path}: not an agent file of this project")
    if num_actions is not None and payload["num_actions"] != num_actions:
        raise AgentTrainingError(f"{path}: an agent for {payload['num_actions']} actions, but the "
                                 f"game has {num_actions}")
    net = make_agent(payload["agent"], payload["hyperparameters"]).network(payload["num_actions"])
    net.load_state_dict(payload["model"])
    return net.eval()
