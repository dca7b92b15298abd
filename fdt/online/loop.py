"""rl-teacher's loop (teach.py): the agent acts, clips of its play are compared, the reward model
is retrained on a schedule, the agent learns from the model's normalised reward; repeat.

Modes, as teach.py's `-p`:

- `rl`: the agent learns from the true reward (the baseline); no clips, no reward model.
- `synth`: the synthetic labeller (fdt.preferences.comparisons) answers from the clips' true
  returns, with probability `noise` at random.
- `human`: the comparisons are queued for the feedback app (fdt.online.human serves them while
  the agent trains); answers land in the app's SQLite and are read at the next retraining.

Comparisons are asked as rl-teacher's plain random pairs of recent clips (`comparisons: pairs`)
or by inserting each new clip into rl-teacher-atari's sort tree (`comparisons: tree`, the
preferences' SortTree); the Bradley-Terry loss learns from either, the ordinal loss from the tree.

Schedule (rl-teacher's): first `pretrain_labels` (default labels / 4) comparisons of clips from
random play, `pretrain_iters` reward-model updates on them; then the wanted number of labels
follows LabelAnnealer (fdt.online.store.LabelSchedule) to `labels` at the last step. Every
`retrain_every` environment steps new clips are cut from the play since the last retraining,
comparisons are added up to the wanted number, the reward model takes `retrain_updates` more
minibatches (rl-teacher: one per 100 steps), its normalisation is recomputed and the agent's
replay relabelled. The agent is scored on the unchanged task's true return every `eval_every`
steps.

Resume: every `checkpoint_every` steps (after that step's retraining) the agent (with its
replay), the reward model, the clip store, the comparisons, the tree and the curve are saved
atomically; a run that finds the checkpoint goes on from there, the episode under way then
started afresh (with the next episode's seed). A human run's answers live in SQLite and are read
again. A diverged reward model stops the loop naming the retraining; reward_model.pt keeps the
last good one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdt.continuous.sac import SACParams
from fdt.io import atomic_path, write_json
from fdt.online.agents import DQNAgent, DQNAgentParams, SACAgent
from fdt.online.reward import OnlineRewardModel, RewardModelDiverged
from fdt.online.store import STORE, ClipStore, LabelSchedule, cut_clips
from fdt.online.tasks import OnlineInputError, Task, make_eval_env, make_training_env, resolve_task
from fdt.preferences.comparisons import (
    Answer,
    Comparison,
    informative,
    synthetic_labeller,
    write_comparisons,
)
from fdt.preferences.reward_model import RewardParams, rank_accuracy
from fdt.preferences.tree import SortTree
from fdt.torchfile import load_torch_file

log = logging.getLogger(__name__)

MODES = ("rl", "synth", "human")
CHECKPOINT = "checkpoint.pt"
QUERIES = "queries.json"  # what the loop asks people (human mode), read by fdt.online.human
LABELLER = "synthetic"


@dataclass(frozen=True)
class OnlineParams:
    env: str = "Hopper-v5"
    mode: str = "synth"
    steps: int = 1_000_000  # environment steps of agent training (teach.py --num_timesteps)
    labels: int = 700  # teach.py --n_labels: the comparisons wanted by the last step
    pretrain_labels: int | None = None  # teach.py --pretrain_labels (default labels // 4)
    pretrain_iters: int = 1_000  # reward-model updates on the pretraining labels
    comparisons: str = "pairs"  # pairs (rl-teacher) | tree (rl-teacher-atari's sort tree)
    loss: str = "bradley_terry"  # bradley_terry | ordinal (tree only)
    ensemble: int = 1
    reward_batch: int = 64  # rl-teacher's predictor minibatch
    reward_learning_rate: float = 0.001  # Adam's default, as rl-teacher's
    retrain_every: int = 1_000  # environment steps between retrainings
    retrain_updates: int = 10  # minibatches per retraining (rl-teacher: 1 per 100 steps)
    recent_clips: int = 200  # rl-teacher's recent_segments deque
    noise: float = 0.0  # synth: probability of a random answer
    cant_tell: str = "equal"  # tree: how "can't tell" places a clip (fdt.preferences.tree)
    terminate: bool = False  # False: rl-teacher's NeverDone (fdt.online.tasks)
    clip_length: int | None = None  # None: rl-teacher's 1.5 s for the task
    episode_steps: int = 27_000  # Atari: an episode's cap in agent steps (108k frames)
    eval_every: int = 5_000
    eval_episodes: int = 5
    checkpoint_every: int = 10_000
    human_wait_seconds: float = 2.0  # human pretraining: how often to look for answers
    # the agent: SAC (MuJoCo) or DQN (Atari)
    hidden: int = 256
    start_steps: int = 5_000
    batch_size: int = 256
    learning_rate: float = 0.0003
    seed: int = 0

    @property
    def pretrain(self) -> int:
        return self.pretrain_labels if self.pretrain_labels is not None else self.labels // 4

    def check(self) -> None:
        if self.mode not in MODES:
            raise OnlineInputError(f"online.mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.comparisons not in ("pairs", "tree"):
            raise OnlineInputError(f"online.comparisons {self.comparisons!r}: expected pairs or tree")
        if self.loss == "ordinal" and self.comparisons != "tree":
            raise OnlineInputError("online.loss ordinal regresses on the sort tree's order: use "
                                   "online.comparisons: tree")
        if self.mode != "rl" and not 0 < self.pretrain <= self.labels:
            raise OnlineInputError(f"online.pretrain_labels {self.pretrain} must be within 1.."
                                   f"labels ({self.labels})")


class OnlineLoopStopped(RuntimeError):
    """The loop cannot go on (a diverged reward model); the message says what is kept."""


@dataclass
class LoopState:
    """Everything a resumed run needs besides the agent, the model and the clip store."""

    step: int = 0
    episode: int = 0
    comparisons: list[Comparison] = field(default_factory=list)  # answered
    queued: list[tuple[int, int]] = field(default_factory=list)  # human pairs asked
    offered: list[int] = field(default_factory=list)  # human tree: clips offered to the app
    recent: list[int] = field(default_factory=list)
    tree: dict[str, Any] | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    training_returns: list[dict[str, float]] = field(default_factory=list)
    true_rewards: list[float] = field(default_factory=list)  # per replay row, for correlations
    seconds: float = 0.0  # time spent before the last resume
    pretrained: bool = False


def run_digest(params: OnlineParams) -> str:
    """Names this run's clips and answers in the app's store (bundle column)."""
    payload = json.dumps({"env": params.env, "mode": params.mode, "seed": params.seed,
                          "labels": params.labels, "comparisons": params.comparisons},
                         sort_keys=True)
    return "online-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


class OnlineLoop:
    def __init__(self, params: OnlineParams, out_dir: str | Path, db: str | Path | None = None) -> None:
        params.check()
        self.params = params
        self.task: Task = resolve_task(params.env, params.clip_length)
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.db = Path(db) if db is not None else None
        if params.mode == "human" and self.db is None:
            raise OnlineInputError("human mode needs the app's answers database (--db)")
        self.digest = run_digest(params)
        self.rng = np.random.default_rng(params.seed)
        self.env = make_training_env(self.task, params.terminate, params.seed, params.episode_steps)
        self.eval_env = make_eval_env(self.task, params.seed + 10_000, params.episode_steps)
        self.agent = self._agent()
        self.model = self._model()
        self.schedule = LabelSchedule(max(params.labels, 1), params.pretrain, params.steps)
        store_path = self.out / STORE
        self.store = ClipStore.load(store_path, self.task.env_id, self.task.clip_length) \
            if store_path.is_file() else ClipStore(self.task.env_id, self.task.clip_length)
        self.state = LoopState()
        self.labeller = synthetic_labeller(self.store.returns_view(), params.noise, self.rng) \
            if params.mode == "synth" else None
        self.tree = SortTree(params.cant_tell)
        self.started = time.perf_counter()
        self._trace: dict[str, list] = {}
        self._resumed = self._restore()
        self._stop = threading.Event()  # stop(): end at the next step, writing what is done

    # --- construction ---
    def _agent(self) -> SACAgent | DQNAgent:
        p = self.params
        if self.task.kind == "atari":
            return DQNAgent(self.env.num_actions,
                            DQNAgentParams(start_steps=min(p.start_steps, p.steps), seed=p.seed),
                            capacity=min(p.steps, 100_000))
        sac = SACParams(steps=p.steps, start_steps=p.start_steps, batch_size=p.batch_size,
                        hidden=p.hidden, learning_rate=p.learning_rate, seed=p.seed)
        return SACAgent(self.env, sac, capacity=p.steps)

    def _model(self) -> OnlineRewardModel | None:
        p = self.params
        if p.mode == "rl":
            return None
        reward = RewardParams(seed=p.seed, loss=p.loss, ensemble=p.ensemble,
                              batch_size=p.reward_batch, learning_rate=p.reward_learning_rate,
                              device="cpu")
        if self.task.kind == "atari":
            return OnlineRewardModel(reward, kind="atari", num_actions=self.env.num_actions)
        return OnlineRewardModel(reward, kind="mujoco",
                                 observation_size=self.agent.observation_size,
                                 action_size=self.agent.action_size)

    # --- running ---
    def stop(self) -> None:
        """Ask a loop running in another thread to end after its current step."""
        self._stop.set()

    def run(self) -> dict[str, Any]:
        p = self.params
        if self.model is not None and not self.state.pretrained:
            self._pretrain()
        if self._resumed:  # the episode under way at the checkpoint starts afresh
            self.state.episode += 1
        observation, _ = self.env.reset(seed=p.seed + self.state.episode)
        self._new_trace()
        episode_return, last_saved = 0.0, self.state.step
        while self.state.step < p.steps and not self._stop.is_set():
            action = self.agent.act(observation)
            physics = self._physics()
            next_observation, reward, terminated, truncated, _ = self.env.step(action)
            self._record(observation, action, reward, physics, terminated or truncated)
            learnt = reward if self.model is None else \
                float(self.model.reward(np.asarray(observation)[None], np.asarray(action)[None])[0])
            self.agent.add(observation, action, learnt, next_observation, terminated)
            self.state.true_rewards.append(float(reward))
            self.agent.update()
            episode_return += reward
            observation = next_observation
            self.state.step += 1
            step = self.state.step
            episode_over = terminated or truncated
            if episode_over:
                self.state.training_returns.append({"step": step, "return": episode_return})
                self.state.episode += 1
                episode_return = 0.0
                observation, _ = self.env.reset(seed=p.seed + self.state.episode)
            if self.model is not None and step % p.retrain_every == 0:
                self._retrain(step)
            if step % p.eval_every == 0 or step == p.steps:
                self._evaluate(step)
            if step - last_saved >= p.checkpoint_every and step < p.steps:
                # after the retraining of this step, so no play is traced but not yet cut
                self._save_checkpoint()
                last_saved = step
        return self._finish()

    def _physics(self) -> np.ndarray:
        if self.task.kind == "atari":
            return np.zeros(0)
        data = self.env.unwrapped.data
        return np.concatenate([data.qpos, data.qvel])

    def _new_trace(self) -> None:
        self._trace = {"observations": [], "actions": [], "rewards": [], "physics": [],
                       "starts": []}

    def _record(self, observation: Any, action: Any, reward: float, physics: np.ndarray,
                episode_over: bool) -> None:
        if self.model is None:
            return
        t = self._trace
        t["observations"].append(np.asarray(observation))
        t["actions"].append(np.asarray(action))
        t["rewards"].append(float(reward))
        t["physics"].append(physics)
        if episode_over:
            t["starts"].append(len(t["actions"]))  # the next step starts an episode

    # --- clips and comparisons ---
    def _cut(self, count: int, source: str) -> list[int]:
        """Cut up to `count` clips from the play traced since the last cut into the store."""
        t = self._trace
        if not t["actions"] or count <= 0:
            return []
        arrays = [np.asarray(t[k]) for k in ("observations", "actions", "rewards", "physics")]
        windows = cut_clips(*arrays, t["starts"], self.task.clip_length, count, self.rng)
        return [self.store.add(*(a[s:e] for a in arrays), source, self.state.step)
                for s, e in windows]

    def _requested(self) -> int:
        if self.params.mode == "human":
            return len(self.state.queued) if self.params.comparisons == "pairs" else \
                max(len(self.state.comparisons), len(self.state.offered))
        return len(self.state.comparisons)

    def _ask(self, new_clips: list[int], wanted: int) -> None:
        """Add comparisons up to `wanted`: pairs of recent clips, or insertions into the tree."""
        p, state = self.params, self.state
        state.recent = [*state.recent, *new_clips][-p.recent_clips:]
        if p.comparisons == "pairs":
            while self._requested() < wanted and len(state.recent) >= 2:
                i, j = self.rng.choice(len(state.recent), size=2, replace=False)
                pair = (state.recent[int(i)], state.recent[int(j)])
                if p.mode == "synth":
                    assert self.labeller is not None
                    state.comparisons.append(Comparison(*pair, self.labeller(*pair), LABELLER))
                else:
                    state.queued.append(pair)
        else:
            for clip in new_clips:
                if self._requested() >= wanted:
                    break
                if p.mode == "synth":
                    assert self.labeller is not None
                    self.tree.insert(clip, self.labeller, LABELLER)
                    state.comparisons = list(self.tree.comparisons)
                else:
                    state.offered.append(clip)
        if p.mode == "human":
            self._publish_queries()

    def _publish_queries(self) -> None:
        """The clips first, then what to ask of them, so the app never names a missing clip."""
        self.store.save(self.out / STORE)
        write_json(self.out / QUERIES, {"bundle": self.digest, "env_id": self.task.env_id,
                                        "pairs": self.state.queued, "tree_clips": self.state.offered})

    def _collect(self) -> None:
        """Human mode: every answer so far, from the app's SQLite."""
        if self.params.mode != "human":
            return
        from fdt.online.human import read_answers

        comparisons, tree = read_answers(self.db, self.digest, self.params.comparisons)
        self.state.comparisons = comparisons
        if tree is not None:
            self.tree = tree

    # --- the reward model ---
    def _fit(self, updates: int) -> dict[str, Any] | None:
        assert self.model is not None
        self._collect()
        usable = informative(self.state.comparisons)
        if not usable:
            log.info("no informative comparison yet: the reward model waits")
            return None
        tree = self.tree if self.params.comparisons == "tree" else None
        states, actions = self.store.arrays()
        try:
            fit = self.model.fit(self.store.bundle(self.digest), states, actions,
                                 self.state.comparisons, tree, updates)
        except RewardModelDiverged as err:
            raise OnlineLoopStopped(f"{err}; {self.out / 'reward_model.pt'} holds the last good "
                                    f"model (step {self.state.step})") from None
        predicted = self.model.clip_returns(states, actions)
        fit["clip_rank_accuracy"] = rank_accuracy(predicted, self.store.returns)
        fit["labels"] = len(self.state.comparisons)
        fit["step"] = self.state.step
        self._save_model()
        return fit

    def _relabel(self) -> None:
        assert self.model is not None
        observations, actions = self.agent.replay()
        if len(actions) == 0:
            return
        self.model.normalise_on(observations, actions)
        self.agent.relabel(self.model.reward(observations, actions))

    def _pretrain(self) -> None:
        """rl-teacher's pretraining: clips of random play, `pretrain` comparisons of them, then
        `pretrain_iters` reward-model updates."""
        p = self.params
        wanted = p.pretrain
        if len(self.store) < 2 * wanted:
            self._random_clips(2 * wanted - len(self.store))
        ids = list(range(len(self.store)))
        if p.comparisons == "pairs":
            half = len(ids) // 2
            for left, right in zip(ids[:half], ids[half:2 * half]):
                if self._requested() >= wanted:
                    break
                if p.mode == "synth":
                    assert self.labeller is not None
                    self.state.comparisons.append(
                        Comparison(left, right, self.labeller(left, right), LABELLER))
                else:
                    self.state.queued.append((left, right))
            if p.mode == "human":
                self._publish_queries()
        else:
            self._ask(ids, wanted)
        if p.mode == "human":  # rl-teacher waits for 75% of the pretraining labels
            while len(self.state.comparisons) < int(0.75 * wanted):
                self._collect()
                log.info("%d/%d pretraining comparisons answered; waiting for the app",
                         len(self.state.comparisons), wanted)
                time.sleep(p.human_wait_seconds)
        fit = self._fit(p.pretrain_iters)
        if fit is not None:
            log.info("reward model pretrained on %d comparisons: loss %.3f, clip rank accuracy %.3f",
                     fit["labels"], fit["loss"], fit["clip_rank_accuracy"])
        self.state.pretrained = True

    def _random_clips(self, count: int) -> None:
        """Random play until `count` clips (rl-teacher: max(1, 0.25 len / L) per episode)."""
        env = make_training_env(self.task, self.params.terminate, self.params.seed + 20_000,
                                 self.params.episode_steps)
        space_rng = np.random.default_rng(self.params.seed + 20_000)
        episode = 0
        added = 0
        while added < count:
            self._new_trace()
            observation, _ = env.reset(seed=self.params.seed + 20_000 + episode)
            done = False
            saved_env, self.env = self.env, env
            while not done:
                action = self._random_action(space_rng)
                physics = self._physics()
                next_observation, reward, terminated, truncated, _ = env.step(action)
                self._record(observation, action, reward, physics, False)
                observation = next_observation
                done = terminated or truncated
            self.env = saved_env
            length = len(self._trace["actions"])
            per_episode = max(1, int(0.25 * length / self.task.clip_length))
            added += len(self._cut(min(per_episode, count - added), "random"))
            episode += 1
            if episode > 10 * count + 10:
                raise OnlineInputError(f"random play of {self.task.env_id} gives no episode of "
                                       f"{self.task.clip_length} steps to cut a clip from")
        self._new_trace()

    def _random_action(self, rng: np.random.Generator) -> Any:
        if self.task.kind == "atari":
            return int(rng.integers(self.env.num_actions))
        space = self.env.action_space
        return rng.uniform(space.low, space.high).astype(space.dtype)

    def _retrain(self, step: int) -> None:
        wanted = self.schedule.wanted(step)
        need = max(0, wanted - self._requested())
        count = need if self.params.comparisons == "tree" else min(need, self.params.recent_clips)
        new = self._cut(max(count, 1), "agent")
        self._new_trace()
        self._ask(new, wanted)
        fit = self._fit(self.params.retrain_updates)
        if fit is not None:
            self._relabel()

    # --- scoring, saving ---
    def _evaluate(self, step: int) -> None:
        score = self.agent.score(self.eval_env, self.params.eval_episodes, 10_000 + step)
        row: dict[str, float] = {"step": step, "true_return": score,
                                 "labels": len(self.state.comparisons),
                                 "seconds": self.state.seconds + time.perf_counter() - self.started}
        if self.model is not None and self.model.rounds:
            observations, actions = self.agent.replay()
            predicted = self.model.predict(observations, actions)
            true = np.asarray(self.state.true_rewards[-len(predicted):])
            row["reward_correlation"] = float(np.corrcoef(predicted, true)[0, 1]) \
                if len(true) > 1 and true.std() > 0 and predicted.std() > 0 else float("nan")
        self.state.curve.append(row)
        log.info("step %d: true return %.1f, %d labels", step, score, row["labels"])

    def _save_model(self) -> None:
        assert self.model is not None
        with atomic_path(self.out / "reward_model.pt") as tmp:
            torch.save({**self.model.state_dict(), "env_id": self.task.env_id,
                        "params": asdict(self.params)}, tmp)

    def _save_checkpoint(self) -> None:
        self.store.save(self.out / STORE)
        state = asdict(self.state)
        state["comparisons"] = [c.to_dict() for c in self.state.comparisons]
        state["tree"] = self.tree.to_dict()
        state["seconds"] = self.state.seconds + time.perf_counter() - self.started
        payload = {"env_id": self.task.env_id, "params": asdict(self.params),
                   "state": json.dumps(state), "agent": self.agent.state_dict(),
                   "model": self.model.state_dict() if self.model is not None else None,
                   "rng": json.dumps(self.rng.bit_generator.state),
                   "torch_rng": torch.get_rng_state()}
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(payload, tmp)
        log.info("checkpoint at step %d", self.state.step)

    def _restore(self) -> bool:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return False
        payload = load_torch_file(path)
        if payload["env_id"] != self.task.env_id:
            raise OnlineInputError(f"{path}: a checkpoint of {payload['env_id']!r}, but this run "
                                   f"is on {self.task.env_id!r}")
        if payload["params"] != asdict(self.params):
            raise OnlineInputError(f"{path}: a checkpoint of other settings; remove the folder "
                                   f"{self.out} to start afresh")
        state = json.loads(payload["state"])
        state["comparisons"] = [Comparison.from_dict(c) for c in state["comparisons"]]
        state["queued"] = [tuple(q) for q in state["queued"]]
        tree = state.pop("tree")
        self.state = LoopState(**state)
        self.tree = SortTree.from_dict(tree)
        self.agent.load_state_dict(payload["agent"])
        if self.model is not None:
            self.model.load_state_dict(payload["model"])
        self.rng.bit_generator.state = json.loads(payload["rng"])
        torch.set_rng_state(payload["torch_rng"])
        log.info("resumed from %s at step %d of %d", path, self.state.step, self.params.steps)
        return True

    def _finish(self) -> dict[str, Any]:
        seconds = self.state.seconds + time.perf_counter() - self.started
        with atomic_path(self.out / "curve.csv") as tmp, open(tmp, "w", newline="") as handle:
            fields = ["step", "true_return", "labels", "seconds", "reward_correlation"]
            writer = csv.DictWriter(handle, fields, restval="")
            writer.writeheader()
            writer.writerows(self.state.curve)
        if self.model is not None:
            self.store.save(self.out / STORE)
            write_comparisons(self.out / "comparisons.json", self.digest, self.state.comparisons, [])
            if self.params.comparisons == "tree":
                write_json(self.out / "tree.json", self.tree.to_dict())
        summary = {"env": self.task.env_id, "mode": self.params.mode, "seed": self.params.seed,
                   "labels_budget": self.params.labels if self.model is not None else 0,
                   "labels": len(self.state.comparisons), "clips": len(self.store),
                   "steps": self.state.step, "seconds": seconds,
                   "steps_per_second": self.state.step / max(seconds, 1e-9),
                   "final_true_return": self.state.curve[-1]["true_return"] if self.state.curve else None,
                   "retrainings": self.model.rounds if self.model is not None else 0,
                   "resumed": self._resumed, "clip_length": self.task.clip_length,
                   "params": asdict(self.params)}
        write_json(self.out / "summary.json", summary)
        (self.out / CHECKPOINT).unlink(missing_ok=True)
        return summary


def run_online(params: OnlineParams, out_dir: str | Path, db: str | Path | None = None) -> dict[str, Any]:
    return OnlineLoop(params, out_dir, db).run()


def answer_counts(comparisons: list[Comparison]) -> dict[str, int]:
    return {str(a): sum(c.answer is a for c in comparisons) for a in Answer}


def params_from(settings: dict[str, Any], **overrides: Any) -> OnlineParams:
    """OnlineParams from a config section (unknown keys are one clear error)."""
    known = set(OnlineParams.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise OnlineInputError(f"online settings {unknown} are not known (known: {sorted(known)})")
    return replace(OnlineParams(**settings), **overrides)
