"""Rollouts: play many episodes at once, one batched policy call per step (docs/method.md §6).

States are stacked 4 deep with zeros at reset. Slots form two groups that alternate: while one
group's environments step, the policy chooses the other group's actions.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fdt.atari import AtariEnvironment
from fdt.evaluation.environments import EnvPool, VectorPool, make_pool
from fdt.evaluation.policies import Policy, choose
from fdt.evaluation.protocols import MAX_NOOPS, SETUPS, EvaluationError, Job, Protocol
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE

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


def rollout(policy: Policy, game: str, jobs: Iterable[Job], protocol: Protocol, *,
            envs: int = 32, workers: int = 0, max_steps: int | None = None,
            rom_dir: str | None = None, progress: Callable[[int], None] | None = None,
            record_fires: bool = False, pool: EnvPool | VectorPool | None = None,
            backend: str = "processes") -> list[dict[str, Any]]:
    """Play every job; one row per episode (its raw return, steps, how it ended).

    Slots form two groups that alternate: while one group's environments step (in worker
    processes), the model chooses the other group's actions. A `pool` from an earlier call
    (same game and protocol) keeps its environments; otherwise one is made and closed here,
    with `backend` (fdt.evaluation.environments.make_pool).
    """
    own = pool is None
    pool = pool or make_pool(game, protocol, backend=backend, envs=envs, workers=workers,
                             rom_dir=rom_dir)
    run = _Rollout(policy, game, protocol, envs, pool, max_steps, rom_dir, progress,
                   record_fires)
    try:
        return run.play(deque(jobs))
    finally:
        if own:
            pool.close()


class _Rollout:
    def __init__(self, policy: Policy, game: str, protocol: Protocol, envs: int,
                 pool: EnvPool | VectorPool, max_steps: int | None, rom_dir: str | None,
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
            slot = free.pop()
            job = queue.popleft()
            coming = getattr(self.pool, "coming_noops", lambda _: None)(slot)
            if coming is not None and _noops(job) not in coming:
                # ALE's vector environment resets without reloading the ROM when the episode
                # needs a no-op count among its next draws: take an episode needing the soonest
                # one there is. Each episode's result depends on its own seed alone, so the
                # order is free.
                queue.appendleft(job)
                for count in coming:
                    found = next((i for i, j in enumerate(queue) if _noops(j) == count), None)
                    if found is not None:
                        break
                job = queue[found or 0]
                del queue[found or 0]
            rng = np.random.default_rng(job.seed())
            noops = int(rng.integers(MAX_NOOPS)) if SETUPS[job.setup].noops else 0
            starting.append((slot, job, rng, noops))
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
        observed = []
        for slot, action, (frame, reward, over, lives) in zip(slots, actions, results):
            episode = self.live[slot]
            episode.total += reward
            episode.steps += 1
            lost_life = lives < episode.lives and not over
            episode.force_fire = self.fire is not None and (
                (self.protocol.fire_after_life_loss and lost_life)
                or self.protocol.fire_after(self.game, reward))
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


@functools.lru_cache(maxsize=65536)
def _noops(job: Job) -> int:
    """The raw no-op frames the episode starts with: the first draw of its own generator."""
    rng = np.random.default_rng(job.seed())
    return int(rng.integers(MAX_NOOPS)) if SETUPS[job.setup].noops else 0


def _episode_row(episode: Live, game_over: bool, record_fires: bool) -> dict[str, Any]:
    row = {**asdict(episode.job), "return": episode.total, "steps": episode.steps,
           "game_over": game_over, "truncated": not game_over, "noops": episode.noops}
    if record_fires:
        row["fire_steps"] = list(episode.fires)
    return row
