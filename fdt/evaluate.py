"""Evaluation in Atari: many episodes at once, one batched model forward per step (SPEC §6).

Protocols:
- `fdt` (the paper's): no sticky actions; FIRE is the first action of an episode and the first
  after every life loss (life loss is not terminal); in Pong the action after a point is FIRE;
  caps of 27,000 agent steps (Seaquest 5,000); setups with 0-29 random raw no-op frames at reset.
- `dopamine` (how the oracle was scored): sticky actions 0.25, epsilon-greedy 0.001, no no-ops,
  no forced FIRE, cap 27,000 agent steps (108,000 frames).
Observations are the dataset's (fdt.atari: 4-frame repeat, max of the last two grayscale frames,
INTER_AREA to 84x84), stacked 4 deep with zeros at reset.

Setups (the appendix's names): {argmax, sample, eps} x {no no-ops, +noop}. Each episode is a job
(setup, target, test seed, episode) with its own seed, from which its no-op count, its sampling
and its epsilon draws come, so a result does not depend on how many environments run at once.

The model sees the last K steps: its states, the K-1 actions between them and the returns-to-go
(target minus the raw rewards so far). Two reference details: the global position embedding is
given the current step (clamped to the largest training timestep), as the reference's evaluation
does (`timestep: reference`; `window` gives the window's first step, as in training); and the
reference's misalignment of actions once its context is full (it pairs each state with the action
before it) is a bug we do not copy.

State tokens are encoded once per new state and kept (the encoder sees one stack at a time), so a
step costs one encoder pass on the new states and one transformer pass over all live windows.
Environments step in-process or in worker processes (`workers`), since ALE holds the GIL.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from fdt.atari import AtariEnvironment, minimal_action_count
from fdt.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.games import check_game
from fdt.model import DecisionTransformer

MAX_NOOPS = 30  # no-ops drawn from 0..29, as the reference's randrange(30)


class EvaluationError(ValueError):
    pass


@dataclass(frozen=True)
class Protocol:
    name: str
    sticky_actions: float
    fire_on_reset: bool
    fire_after_life_loss: bool
    fire_after_point: tuple[str, ...]  # games whose point (reward != 0) forces FIRE next
    step_cap: int = 27_000
    step_caps: tuple[tuple[str, int], ...] = ()

    def cap(self, game: str) -> int:
        return dict(self.step_caps).get(game, self.step_cap)


PROTOCOLS = {
    "fdt": Protocol("fdt", sticky_actions=0.0, fire_on_reset=True, fire_after_life_loss=True,
                    fire_after_point=("Pong",), step_caps=(("Seaquest", 5_000),)),
    "dopamine": Protocol("dopamine", sticky_actions=0.25, fire_on_reset=False,
                         fire_after_life_loss=False, fire_after_point=()),
}


@dataclass(frozen=True)
class Setup:
    name: str
    policy: str  # argmax | sample | eps
    noops: bool
    epsilon: float = 0.001


SETUPS = {name: Setup(name, name.split("+")[0], name.endswith("+noop"))
          for name in ("argmax", "argmax+noop", "sample", "sample+noop", "eps", "eps+noop")}


@dataclass(frozen=True)
class Job:
    """One episode to play."""

    setup: str
    target: float
    test_seed: int
    episode: int

    def seed(self) -> int:
        text = f"{self.setup}|{self.target}|{self.test_seed}|{self.episode}"
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def protocol_jobs(setups: Sequence[str], targets: Sequence[float], test_seeds: Sequence[int],
                  episodes: int) -> list[Job]:
    """The episodes of the protocol: argmax without no-ops is deterministic, so 1 per seed."""
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        raise EvaluationError(f"unknown setup {unknown[0]!r}; expected one of {', '.join(SETUPS)}")
    return [Job(setup, float(target), seed, e)
            for setup in setups for target in targets for seed in test_seeds
            for e in range(1 if setup == "argmax" else episodes)]


# --- environments -----------------------------------------------------------------------------


class EnvSlots:
    """Environment slots of one process: start an episode in a slot, step slots."""

    def __init__(self, game: str, protocol: Protocol, rom_dir: str | None = None) -> None:
        self.game, self.protocol, self.rom_dir = game, protocol, rom_dir
        self.envs: dict[int, AtariEnvironment] = {}

    def start(self, slot: int, seed: int, noops: int) -> tuple[np.ndarray, int]:
        env = self.envs.get(slot)
        # Without sticky actions ALE is deterministic: one environment per slot, reset per
        # episode. With them, the episode's seed must drive the sticky draws: a fresh one.
        if env is None or self.protocol.sticky_actions > 0:
            env = AtariEnvironment(self.game, seed=seed, sticky_actions=self.protocol.sticky_actions,
                                   rom_dir=self.rom_dir)
            self.envs[slot] = env
        return env.reset(noops), env.lives()

    def step(self, slot: int, action: int) -> tuple[np.ndarray, float, bool, int]:
        env = self.envs[slot]
        frame, reward, over = env.step(action)
        return frame, reward, over, env.lives()

    def run(self, commands: list[tuple]) -> list[tuple]:
        return [self.start(*c[1:]) if c[0] == "start" else self.step(*c[1:]) for c in commands]


def _worker(connection: Any, game: str, protocol: Protocol, rom_dir: str | None) -> None:
    slots = EnvSlots(game, protocol, rom_dir)
    while True:
        commands = connection.recv()
        if commands is None:
            return
        connection.send(slots.run(commands))


class EnvPool:
    """Slots spread over `workers` processes (0: all in this process). Commands are submitted
    and collected later, so environments step while the model works on other slots."""

    def __init__(self, game: str, protocol: Protocol, workers: int = 0,
                 rom_dir: str | None = None) -> None:
        self.workers = workers
        self.pending: deque = deque()  # (ticket, what to receive), oldest first
        self.received: dict[int, list[tuple]] = {}
        self.tickets = 0
        if workers == 0:
            self.local = EnvSlots(game, protocol, rom_dir)
            return
        context = mp.get_context("spawn")
        self.connections, self.processes = [], []
        for _ in range(workers):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, game, protocol, rom_dir),
                                      daemon=True)
            process.start()
            self.connections.append(parent)
            self.processes.append(process)

    def worker_of(self, slot: int) -> int:
        # Slots alternate between the two pipelined groups (slot % 2): spread each group.
        return (slot // 2) % self.workers

    def submit(self, commands: list[tuple]) -> int:
        """Commands ("start", slot, seed, noops) or ("step", slot, action); returns a ticket."""
        self.tickets += 1
        if self.workers == 0:
            self.received[self.tickets] = self.local.run(commands)
            return self.tickets
        per_worker: list[list[int]] = [[] for _ in range(self.workers)]
        for i, command in enumerate(commands):
            per_worker[self.worker_of(command[1])].append(i)
        for w, indices in enumerate(per_worker):
            if indices:
                self.connections[w].send([commands[i] for i in indices])
        self.pending.append((self.tickets, len(commands), per_worker))
        return self.tickets

    def collect(self, ticket: int) -> list[tuple]:
        """Results of a submission, in its commands' order (workers answer in order, so
        older submissions are received first and kept)."""
        while ticket not in self.received:
            older, count, per_worker = self.pending.popleft()
            out: list[Any] = [None] * count
            for w, indices in enumerate(per_worker):
                if indices:
                    for i, result in zip(indices, self.connections[w].recv()):
                        out[i] = result
            self.received[older] = out
        return self.received.pop(ticket)

    def run(self, commands: list[tuple]) -> list[tuple]:
        return self.collect(self.submit(commands))

    def close(self) -> None:
        if self.workers:
            for connection in self.connections:
                connection.send(None)
            for process in self.processes:
                process.join(timeout=10)


# --- the model as a policy --------------------------------------------------------------------


class ModelPolicy:
    """Action logits for many live episodes at once from a DT/BC/FDT model.

    Each slot's window of the last K steps lives in preallocated tensors (state tokens, or the
    stacks themselves when `cache_states` is off, the reference's way; actions; returns-to-go),
    shifted by one when a new state arrives at a full window.
    """

    def __init__(self, model: DecisionTransformer, device: str | torch.device = "cpu", *,
                 cache_states: bool = True, timestep: str = "reference", slots: int = 64) -> None:
        if timestep not in ("reference", "window"):
            raise EvaluationError(f"timestep must be 'reference' or 'window', not {timestep!r}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.k = model.config.context_length
        self.cache_states, self.timestep, self.slots = cache_states, timestep, slots
        item = (model.config.n_embd,) if cache_states else (STACK_SIZE, *FRAME_SHAPE)
        dtype = torch.float32 if cache_states else torch.uint8
        self.states = torch.zeros((slots, self.k, *item), dtype=dtype, device=self.device)
        self.actions = torch.zeros((slots, self.k), dtype=torch.long, device=self.device)
        self.returns = torch.zeros((slots, self.k), device=self.device)
        self.length = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.step = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.next_return = torch.zeros(slots, device=self.device)

    @property
    def num_actions(self) -> int:
        return self.model.config.num_actions

    def begin(self, slot: int, target: float) -> None:
        self.length[slot] = 0
        self.step[slot] = 0
        self.next_return[slot] = float(target)

    def end(self, slot: int) -> None:
        self.length[slot] = 0

    def record(self, slot: int, action: int, reward: float) -> None:
        """The action taken at the slot's current state and the reward it brought."""
        last = int(self.length[slot]) - 1
        self.actions[slot, last] = action
        self.next_return[slot] = self.returns[slot, last] - reward
        self.step[slot] += 1

    @torch.inference_mode()
    def observe(self, slots: Sequence[int], stacks: np.ndarray) -> None:
        """The new states (n, 4, 84, 84) of the given episodes."""
        index = torch.tensor(list(slots), device=self.device)
        states = torch.from_numpy(stacks).to(self.device)
        items = self.model.encode_states(states) if self.cache_states else states
        full = index[self.length[index] == self.k]
        if len(full):  # drop the oldest step of full windows
            for window in (self.states, self.actions, self.returns):
                window[full, :-1] = window[full, 1:].clone()
        self.length[index] = torch.clamp(self.length[index] + 1, max=self.k)
        last = self.length[index] - 1
        self.states[index, last] = items.to(self.states.dtype)
        self.returns[index, last] = self.next_return[index]

    @torch.inference_mode()
    def logits(self, slots: Sequence[int]) -> np.ndarray:
        """(n, A) logits at each episode's current state; windows are right-padded to the
        longest, which causal attention makes exact for the shorter ones."""
        index = torch.tensor(list(slots), device=self.device)
        lengths = self.length[index]
        t = int(lengths.max())
        last = lengths - 1
        step = self.step[index]
        timesteps = step if self.timestep == "reference" else step - last
        args = (self.actions[index, :t], self.returns[index, :t], timesteps)
        if self.cache_states:
            out = self.model.forward_tokens(self.states[index, :t], *args, at_step=last)
        else:  # the reference's way: every state of the window encoded at every step
            out = self.model(self.states[index, :t], *args)
            out = out[torch.arange(len(index), device=self.device), last]
        return out.float().cpu().numpy()


def choose(logits: np.ndarray, setup: Setup, rng: np.random.Generator) -> int:
    if setup.policy == "argmax":
        return int(np.argmax(logits))
    if setup.policy == "eps":
        if rng.random() < setup.epsilon:
            return int(rng.integers(len(logits)))
        return int(np.argmax(logits))
    p = np.exp(logits - logits.max())
    return int(rng.choice(len(p), p=p / p.sum()))


# --- rollouts ----------------------------------------------------------------------------------


@dataclass
class Live:
    job: Job
    rng: np.random.Generator
    stack: np.ndarray
    lives: int
    noops: int
    total: float = 0.0
    steps: int = 0
    force_fire: bool = False
    fires: list[int] = field(default_factory=list)


def check_model_fits(model: DecisionTransformer, game: str, model_game: str | None,
                     rom_dir: str | None = None) -> int:
    """A clear error before any episode when the model is not for this game."""
    check_game(game)
    if model_game is not None and model_game != game:
        raise EvaluationError(f"the model was trained on {model_game}, not {game}")
    actions = minimal_action_count(game, rom_dir)
    if model.config.num_actions != actions:
        raise EvaluationError(f"the model has {model.config.num_actions} actions, but {game}'s "
                              f"minimal action set has {actions}")
    return actions


def rollout(policy: ModelPolicy, game: str, jobs: Iterable[Job], protocol: Protocol, *,
            envs: int = 32, workers: int = 0, max_steps: int | None = None,
            rom_dir: str | None = None, progress: Callable[[int], None] | None = None,
            record_fires: bool = False, pool: EnvPool | None = None) -> list[dict[str, Any]]:
    """Play every job; one row per episode (its raw return, steps, how it ended).

    Slots form two groups that alternate: while one group's environments step (in worker
    processes), the model chooses the other group's actions. A `pool` from an earlier call
    (same game and protocol) keeps its environments; otherwise one is made and closed here.
    """
    own = pool is None
    pool = pool or EnvPool(game, protocol, workers, rom_dir)
    run = _Rollout(policy, game, protocol, envs, pool, max_steps, rom_dir, progress,
                   record_fires)
    try:
        return run.play(deque(jobs))
    finally:
        if own:
            pool.close()


class _Rollout:
    def __init__(self, policy: ModelPolicy, game: str, protocol: Protocol, envs: int,
                 pool: EnvPool, max_steps: int | None, rom_dir: str | None,
                 progress: Callable[[int], None] | None, record_fires: bool) -> None:
        self.policy, self.game, self.protocol = policy, game, protocol
        self.cap = min(protocol.cap(game), max_steps) if max_steps else protocol.cap(game)
        if policy.slots < envs:
            raise EvaluationError(f"the policy holds {policy.slots} windows, fewer than the "
                                  f"{envs} environments")
        self.pool = pool
        self.fire = AtariEnvironment(game, seed=0, sticky_actions=0.0, rom_dir=rom_dir).fire_action
        self.groups = [list(range(g, envs, 2))[::-1] for g in (0, 1)]  # free slots per group
        self.live: dict[int, Live] = {}
        self.progress, self.record_fires = progress, record_fires
        self.rows: list[dict[str, Any]] = []
        self.env_steps = 0

    def play(self, queue: deque) -> list[dict[str, Any]]:
        in_flight = [None, None]  # per group: the slots and actions whose step is submitted
        while queue or self.live:
            for g in (0, 1):
                if in_flight[g] is not None:
                    slots, actions, ticket = in_flight[g]
                    self._finish_step(slots, actions, self.pool.collect(ticket))
                    in_flight[g] = None
                self._start_episodes(g, queue)
                slots = [s for s in self.live if s % 2 == g]
                if slots:
                    actions = self._actions(slots)
                    ticket = self.pool.submit([("step", s, a) for s, a in zip(slots, actions)])
                    in_flight[g] = (slots, actions, ticket)
        return self.rows

    def _start_episodes(self, group: int, queue: deque) -> None:
        free = self.groups[group]
        starting = []
        while queue and free:
            job = queue.popleft()
            rng = np.random.default_rng(job.seed())
            noops = int(rng.integers(MAX_NOOPS)) if SETUPS[job.setup].noops else 0
            starting.append((free.pop(), job, rng, noops))
        if not starting:
            return
        results = self.pool.run([("start", slot, job.seed(), noops)
                                 for slot, job, _, noops in starting])
        for (slot, job, rng, noops), (frame, lives) in zip(starting, results):
            stack = np.zeros((STACK_SIZE, *FRAME_SHAPE), np.uint8)
            stack[-1] = frame
            self.live[slot] = Live(job, rng, stack, lives, noops,
                                   force_fire=self.protocol.fire_on_reset and self.fire is not None)
            self.policy.begin(slot, job.target)
        slots = [slot for slot, *_ in starting]
        self.policy.observe(slots, np.stack([self.live[s].stack for s in slots]))

    def _actions(self, slots: list[int]) -> list[int]:
        actions = []
        for slot, row in zip(slots, self.policy.logits(slots)):
            episode = self.live[slot]
            action = choose(row, SETUPS[episode.job.setup], episode.rng)
            if episode.force_fire:
                action = self.fire
                if self.record_fires:
                    episode.fires.append(episode.steps)
            actions.append(action)
        return actions

    def _finish_step(self, slots: list[int], actions: list[int], results: list[tuple]) -> None:
        self.env_steps += len(slots)
        observed = []
        for slot, action, (frame, reward, over, lives) in zip(slots, actions, results):
            episode = self.live[slot]
            episode.total += reward
            episode.steps += 1
            lost_life = lives < episode.lives and not over
            episode.force_fire = self.fire is not None and (
                (self.protocol.fire_after_life_loss and lost_life)
                or (self.game in self.protocol.fire_after_point and reward != 0))
            episode.lives = lives
            self.policy.record(slot, action, reward)
            if over or episode.steps >= self.cap:
                self.rows.append(_episode_row(episode, over, self.record_fires))
                self.policy.end(slot)
                del self.live[slot]
                self.groups[slot % 2].append(slot)
                if self.progress is not None:
                    self.progress(1)
            else:
                episode.stack = np.concatenate([episode.stack[1:], frame[None]])
                observed.append(slot)
        if observed:
            self.policy.observe(observed, np.stack([self.live[s].stack for s in observed]))


def _episode_row(episode: Live, game_over: bool, record_fires: bool) -> dict[str, Any]:
    row = {**asdict(episode.job), "return": episode.total, "steps": episode.steps,
           "game_over": game_over, "truncated": not game_over, "noops": episode.noops}
    if record_fires:
        row["fire_steps"] = list(episode.fires)
    return row


# --- the stage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalParams:
    protocol: str = "fdt"
    setups: tuple[str, ...] = tuple(SETUPS)
    test_seeds: tuple[int, ...] = tuple(range(10))
    episodes: int = 10
    targets: tuple[float, ...] = ()
    max_steps: int | None = None  # below the protocol's cap, for quick runs
    envs: int = 64
    workers: int = 0
    device: str = "cpu"
    timestep: str = "reference"
    rom_dir: str | None = None


def evaluate_model(model_path: str | Path, game: str, params: EvalParams, out_dir: str | Path, *,
                   model_name: str, train_seed: int, progress: bool = True) -> dict[str, Any]:
    """Play the protocol with one trained model; write `episodes.parquet` and `summary.json`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from fdt.io import atomic_path, write_json
    from fdt.scores import score_table
    from fdt.torchfile import load_torch_file
    from fdt.train import load_model

    if params.protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {params.protocol!r}; expected one of "
                              f"{', '.join(PROTOCOLS)}")
    if not params.targets:
        raise EvaluationError(f"no target return-to-go given for {game}")
    payload_game = load_torch_file(model_path).get("game")
    model = load_model(model_path, params.device)
    check_model_fits(model, game, payload_game, params.rom_dir)
    jobs = protocol_jobs(params.setups, params.targets, params.test_seeds, params.episodes)
    policy = ModelPolicy(model, params.device, timestep=params.timestep, slots=params.envs)
    bar = tqdm(total=len(jobs), desc=f"evaluate {model_name} on {game}", unit="episode",
               disable=not progress)
    started = time.perf_counter()
    try:
        rows = rollout(policy, game, jobs, PROTOCOLS[params.protocol], envs=params.envs,
                       workers=params.workers, max_steps=params.max_steps,
                       rom_dir=params.rom_dir, progress=bar.update)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    for row in rows:
        row.update(game=game, model=model_name, train_seed=train_seed, protocol=params.protocol)
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: (r["setup"], r["target"],
                                                              r["test_seed"], r["episode"])))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "episodes.parquet") as tmp:
        pq.write_table(table, tmp)
    scores = score_table(table.to_pandas())
    steps = int(sum(r["steps"] for r in rows))
    summary = {"game": game, "model": model_name, "train_seed": train_seed,
               "params": asdict(params), "episodes": len(rows), "env_steps": steps,
               "seconds": seconds, "env_steps_per_s": steps / seconds if seconds else None,
               "scores": scores.to_dict(orient="records")}
    write_json(out_dir / "summary.json", summary)
    return summary
