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
