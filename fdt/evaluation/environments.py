"""Atari environments for evaluation: slots in this process or spread over worker processes.

Observations are the dataset's (fdt.atari: 4-frame repeat, max of the last two grayscale frames,
INTER_AREA to 84x84). Environments step in-process or in worker processes (`workers`), since ALE
holds the GIL; commands are submitted and collected later, so environments step while the model
works on other slots.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from typing import Any

import numpy as np

from fdt.atari import AtariEnvironment
from fdt.evaluation.protocols import Protocol

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


# --- ALE's vector environment -------------------------------------------------------------------

# ale-py's vector environment draws a reset's raw no-op count from its own std::mt19937, seeded
# with the seed a reset is given (libstdc++'s uniform_int_distribution over 0..29). Without
# sticky actions the seed changes nothing else, so a reset seeded with NOOP_SEEDS[n] plays
# exactly n no-op frames: the count the episode's own seed chose (fdt.evaluation.rollout).
# The smallest such seed per count; tests/test_vector_env.py checks them against the binary.
NOOP_SEEDS = (9, 21, 7, 43, 12, 11, 5, 33, 17, 26, 58, 38, 1, 2, 50, 14, 0, 20, 85, 18, 51, 28,
              138, 10, 52, 15, 6, 59, 24, 4)
BACKENDS = ("processes", "vector")


class NoopDraws:
    """The no-op counts ale-py's vector environment will draw at a slot's unseeded resets:
    std::mt19937 (numpy's MT19937 holds the same state) seeded as the reset seeded it, and
    libstdc++'s uniform_int_distribution over 0..29 (Lemire's method). Knowing them, the
    rollout can give a slot an episode that needs that count, with no reload of the ROM."""

    def __init__(self, seed: int) -> None:
        key = [seed & 0xFFFFFFFF]
        for i in range(1, 624):  # std::mt19937's seeding (init_genrand)
            key.append((1812433253 * (key[-1] ^ (key[-1] >> 30)) + i) & 0xFFFFFFFF)
        self.generator = np.random.MT19937()
        self.generator.state = {"bit_generator": "MT19937",
                                "state": {"key": np.array(key, np.uint32), "pos": 624}}
        self.coming: deque[int] = deque()
        self.advance()  # the seeded reset's own draw

    def ahead(self, count: int) -> list[int]:
        """The next `count` draws, the next reset's first."""
        while len(self.coming) < count:
            draws = len(NOOP_SEEDS)
            product = int(self.generator.random_raw()) * draws
            if product & 0xFFFFFFFF >= 2**32 % draws:  # else rejected, drawn again
                self.coming.append(product >> 32)
        return list(self.coming)[:count]

    def advance(self) -> None:
        """A reset has drawn."""
        self.ahead(1)
        self.coming.popleft()


# Unseeded resets a start may spend to reach the draw it needs: one costs a reset's ~70 frames,
# a reload (ROM, console, a reset) costs about 15 times that.
LOOK_AHEAD = 10


class VectorPool:
    """Slots in ale-py's C++ vector environment (`ale_py.ALEVectorInterface`): frame skip,
    max-pool, grayscale, OpenCV's INTER_AREA and no-ops in C++ threads, the GIL released, so
    environments step while the model works. Same commands and results as `EnvPool`.

    The two groups of slots (slot % 2) are two vector environments, since ALE steps a whole
    vector at once; slots without an episode step NOOP, their results unread. Every start is a
    seeded reset, which reloads the ROM as a fresh `AtariEnvironment` does, where the Dopamine
    protocol's sticky actions draw from the episode's seed. Without sticky actions the seed
    only picks the no-op count (NOOP_SEEDS), and a start whose count is among the next draws
    of the slot's unseeded resets (`coming_noops`, which the rollout matches episodes to)
    spends the draws before it on resets and plays without a reload. Sticky actions with
    no-ops cannot both follow one seed: refused.
    """

    def __init__(self, game: str, protocol: Protocol, envs: int, threads: int = 0,
                 rom_dir: str | None = None) -> None:
        import ale_py

        from fdt.atari import FRAME_SKIP, resolve_rom

        self.sticky = protocol.sticky_actions > 0
        self.size = (envs + 1) // 2  # slots per group
        rom = str(resolve_rom(game, rom_dir))
        self.vectors = []
        for _ in range(2):
            vector = ale_py.ALEVectorInterface(
                rom, self.size, FRAME_SKIP, 1, 84, 84, True, True,
                0 if self.sticky else len(NOOP_SEEDS),  # noop_max: draws 0..noop_max-1
                False, False, False, False,  # no fire reset, episodic life, life info, clipping
                10**9, protocol.sticky_actions, False,  # frames per episode: our caps decide
                self.size, threads, -1, "NextStep")
            # A partial reset needs a full one first; its seeds start each slot's no-op draws.
            vector.reset(np.arange(self.size), self._first_seeds(len(self.vectors)))
            self.vectors.append(vector)
        # Without sticky actions: each slot's coming no-op draws, and which environments have
        # ended a game (the next step resets them, drawing once).
        self.draws = ([[NoopDraws(int(s)) for s in self._first_seeds(g)] for g in (0, 1)]
                      if not self.sticky else None)
        self.over = [np.zeros(self.size, bool), np.zeros(self.size, bool)]
        self.reloads = 0  # starts that reloaded the ROM to draw their no-op count
        self.in_flight: list[list[int] | None] = [None, None]  # per group: the slots stepped
        self.pending_group: dict[int, int] = {}  # ticket of a step submission -> its group
        self.received: dict[int, list[tuple]] = {}
        self.tickets = 0

    def _first_seeds(self, group: int) -> np.ndarray:
        return np.arange(self.size) + group * self.size  # distinct: different draws per slot

    def coming_noops(self, slot: int) -> list[int] | None:
        """The no-op counts a start in `slot` can play without reloading the ROM, soonest
        first (None: every start reloads, as the episode's seed drives sticky actions)."""
        return None if self.draws is None else self.draws[slot % 2][slot // 2].ahead(LOOK_AHEAD)

    def _start(self, commands: list[tuple]) -> list[tuple]:
        out: list[Any] = [None] * len(commands)
        for g in (0, 1):
            mine = [i for i, c in enumerate(commands) if c[1] % 2 == g]
            if not mine:
                continue
            seeds, burns = [], []
            for i in mine:
                _, _, seed, noops = commands[i]
                if self.sticky and noops:
                    raise ValueError("the vector backend cannot draw sticky actions and no-ops "
                                     "from one seed; use evaluation.backend: processes")
                if self.draws is None:
                    seeds.append(seed)
                    continue
                draws = self.draws[g][commands[i][1] // 2]
                coming = draws.ahead(LOOK_AHEAD)
                if noops in coming:  # unseeded resets draw it: no reload
                    burns.append((commands[i][1] // 2, coming.index(noops)))
                    for _ in range(coming.index(noops) + 1):
                        draws.advance()
                    seeds.append(-1)
                else:
                    self.reloads += 1
                    seeds.append(NOOP_SEEDS[noops])
                    self.draws[g][commands[i][1] // 2] = NoopDraws(NOOP_SEEDS[noops])
            # Resets that only spend a draw (their game is reset again below).
            for burn in range(max((b for _, b in burns), default=0)):
                spent = np.array(sorted(e for e, b in burns if b > burn))
                self.vectors[g].reset(spent, np.full(len(spent), -1))
            mask = np.zeros(self.size, bool)
            index = [commands[i][1] // 2 for i in mine]
            mask[index] = True
            self.over[g][index] = False
            # The seeds follow the reset environments in index order.
            order = np.argsort(index)
            frames, info = self.vectors[g].reset(np.flatnonzero(mask),
                                                 np.array(seeds, np.int64)[order])
            at = {int(e): k for k, e in enumerate(info["env_id"])}
            for i, e in zip(mine, index):
                # A reset's frame count is its no-ops: proof that the draws were followed.
                played = int(info["episode_frame_number"][at[e]])
                if played != commands[i][3]:
                    raise RuntimeError(f"ale-py's vector environment played {played} no-ops "
                                       f"where {commands[i][3]} were asked (its generator is "
                                       "not the one NoopDraws follows); use evaluation.backend: "
                                       "processes")
                out[i] = (frames[at[e], -1].copy(), int(info["lives"][at[e]]))
        return out

    def submit(self, commands: list[tuple]) -> int:
        """Starts run at once; the steps of one submission must be of one group."""
        self.tickets += 1
        starts = [c for c in commands if c[0] == "start"]
        if starts:
            if len(starts) != len(commands):
                raise ValueError("a submission is either starts or steps")
            self.received[self.tickets] = self._start(commands)
            return self.tickets
        group = commands[0][1] % 2
        if any(c[1] % 2 != group for c in commands) or self.in_flight[group] is not None:
            raise ValueError("steps of one group at a time, each collected before the next")
        actions = np.zeros(self.size, np.int32)  # idle slots: NOOP
        for _, slot, action in commands:
            actions[slot // 2] = action
        if self.draws is not None:  # an environment whose game ended resets, drawing once
            for index in np.flatnonzero(self.over[group]):
                self.draws[group][index].advance()
        self.over[group][:] = False
        self.vectors[group].send(actions, np.ones(self.size, np.float32))
        self.in_flight[group] = [c[1] for c in commands]
        self.pending_group[self.tickets] = group
        return self.tickets

    def collect(self, ticket: int) -> list[tuple]:
        if ticket in self.received:
            return self.received.pop(ticket)
        group = self.pending_group.pop(ticket)
        slots, self.in_flight[group] = self.in_flight[group], None
        frames, rewards, terminated, _, info = self.vectors[group].recv()
        at = {int(e): k for k, e in enumerate(info["env_id"])}
        self.over[group][info["env_id"]] = terminated
        lives = info["lives"]
        return [(frames[at[s // 2], -1].copy(), float(rewards[at[s // 2]]),
                 bool(terminated[at[s // 2]]), int(lives[at[s // 2]])) for s in slots]

    def run(self, commands: list[tuple]) -> list[tuple]:
        return self.collect(self.submit(commands))

    def close(self) -> None:
        self.vectors = []  # the C++ threads stop when the vectors are freed


def make_pool(game: str, protocol: Protocol, *, backend: str = "processes", envs: int = 32,
              workers: int = 0, rom_dir: str | None = None) -> EnvPool | VectorPool:
    """The environments of a rollout: our worker processes (`workers`, 0: this process) or
    ale-py's vector environment (`workers` C++ threads, 0: one per core)."""
    if backend == "processes":
        return EnvPool(game, protocol, workers, rom_dir)
    if backend == "vector":
        return VectorPool(game, protocol, envs, workers, rom_dir)
    raise ValueError(f"unknown environment backend {backend!r}; expected one of "
                     f"{', '.join(BACKENDS)}")
