"""Evaluation protocols and setups (docs/method.md §6): what an episode is and how it is played.

- `fdt` (the paper's): no sticky actions; FIRE is the first action of an episode and the first
  after every life loss (life loss is not terminal); in Pong the action after a point is FIRE;
  caps of 27,000 agent steps (Seaquest 5,000); setups with 0-29 random raw no-op frames at reset.
- `dopamine` (how the oracle was scored): sticky actions 0.25, epsilon-greedy 0.001, no no-ops,
  no forced FIRE, cap 27,000 agent steps (108,000 frames).

Setups (the appendix's names): {argmax, sample, eps} x {no no-ops, +noop}. Each episode is a job
(setup, target, test seed, episode) with its own seed, from which its no-op count, its sampling
and its epsilon draws come, so a result does not depend on how many environments run at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from fdt.games import game_facts

MAX_NOOPS = 30  # no-ops drawn from 0..29, as the reference's randrange(30)


class EvaluationError(ValueError):
    pass


@dataclass(frozen=True)
class Protocol:
    name: str
    sticky_actions: float
    fire_on_reset: bool
    fire_after_life_loss: bool
    fire_after_point: bool  # in games that ask for it (fdt.games), a point forces FIRE next
    step_cap: int = 27_000
    game_step_caps: bool = False  # a game's own cap (fdt.games) replaces step_cap

    def cap(self, game: str) -> int:
        own = game_facts(game).fdt_step_cap if self.game_step_caps else None
        return own or self.step_cap

    def fire_after(self, game: str, reward: float) -> bool:
        """Whether the action after this reward is forced to FIRE (Pong's serve)."""
        return self.fire_after_point and game_facts(game).fire_after_point and reward != 0


PROTOCOLS = {
    "fdt": Protocol("fdt", sticky_actions=0.0, fire_on_reset=True, fire_after_life_loss=True,
                    fire_after_point=True, game_step_caps=True),
    "dopamine": Protocol("dopamine", sticky_actions=0.25, fire_on_reset=False,
                         fire_after_life_loss=False, fire_after_point=False),
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
