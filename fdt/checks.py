"""Which steps may receive feedback, and where lives are lost, read from the frames (SPEC §3).

A step is allowed when its reward is 0, it is not terminal, the game has started and the game's
own check on the frame holds. The checks replay the reference's per-game detectors row by row
over every row a visit reads (kept or not), from small per-frame features computed once per file
slot (`*_features`), so they stay cheap over millions of rows. Each detector starts unaligned at
a visit's first row and aligns at the first episode start it sees (three blank frames, then one
that is not), as the reference's does.

Breakout: the ball is the brightest pixel of rows 38-74 x cols 5-78 of the newest frame; a step is
allowed while the ball is moving down (its row grows); a life is lost when the lives digit
(rows 0-6 x cols 50-60) changes, or at a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fdt.cells import hash_words

BALL_ROWS, BALL_COLS = slice(38, 75), slice(5, 79)
LIVES_ROWS, LIVES_COLS = slice(0, 7), slice(50, 61)


@dataclass
class FrameFeatures:
    """Per file slot: what the detectors read of each frame."""

    blank: np.ndarray  # bool: the frame is all zeros (padding, or never written)
    ball_row: np.ndarray  # int16: Breakout's ball row, -1 when no ball is visible
    lives_id: np.ndarray  # int64: id of the lives area's pixels (equal pixels, equal id)
    lives_shown: np.ndarray  # bool: the lives area is not blank


def breakout_ball_row(frames: np.ndarray) -> np.ndarray:
    """Row of the ball (first brightest pixel, row-major) in rows 38-74, or -1 (no ball)."""
    area = frames[:, BALL_ROWS, BALL_COLS].reshape(len(frames), -1)
    brightest = area.max(axis=1)
    first = np.argmax(area == brightest[:, None], axis=1)
    rows = first // (BALL_COLS.stop - BALL_COLS.start) + BALL_ROWS.start
    return np.where(brightest > 0, rows, -1).astype(np.int16)


def area_id(area: np.ndarray) -> np.ndarray:
    """A 64-bit id of each (n, ...) uint8 area's pixels: equal pixels, equal id, in any chunk."""
    flat = area.reshape(len(area), -1)
    pad = (-flat.shape[1]) % 8
    flat = np.concatenate([flat, np.zeros((len(flat), pad), np.uint8)], axis=1)
    return hash_words(np.ascontiguousarray(flat).view("<u8"))[:, 0].view(np.int64)


def breakout_features(frames: np.ndarray) -> FrameFeatures:
    lives = frames[:, LIVES_ROWS, LIVES_COLS]
    return FrameFeatures(
        blank=~frames.reshape(len(frames), -1).any(axis=1),
        ball_row=breakout_ball_row(frames),
        lives_id=area_id(lives),
        lives_shown=lives.reshape(len(frames), -1).any(axis=1),
    )


def take(features: FrameFeatures, where: np.ndarray | slice) -> FrameFeatures:
    return FrameFeatures(*(getattr(features, f)[where] for f in FrameFeatures.__dataclass_fields__))


def empty_features(n: int, compute: Callable[[np.ndarray], FrameFeatures]) -> FrameFeatures:
    """Features of n blank frames (padding slots, slots never written)."""
    blank = compute(np.zeros((1, 84, 84), dtype=np.uint8))
    return FrameFeatures(*(np.repeat(getattr(blank, f), n)
                           for f in FrameFeatures.__dataclass_fields__))


def moving_down(previous_row: int | None, row: int | None) -> bool:
    """Breakout's check: the ball is lower than a step before."""
    return previous_row is not None and row is not None and row > previous_row


def breakout_scan(features: FrameFeatures, slots: np.ndarray, older_blank: np.ndarray,
                  rewards: np.ndarray, terminals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Allowed steps and life losses of the rows one visit reads, in order.

    `slots` are the rows' file slots (their newest frame); `older_blank` says whether the three
    older frames of each row's state are blank. Life loss includes terminals.
    """
    n = len(slots)
    allowed = np.zeros(n, dtype=bool)
    life_loss = np.zeros(n, dtype=bool)
    aligned = False
    state: int | None = None  # the slot of the last state taken in (the reference's self.state)
    last_reward, last_terminal = 0.0, False
    ball: int | None = None
    previous_ball: int | None = None
    lives: tuple[int, bool] | None = None  # the last lives area seen: (pixels id, not blank)
    for i in range(n):
        slot, terminal = int(slots[i]), bool(terminals[i])
        newest_blank = bool(features.blank[slot])
        if older_blank[i] and not newest_blank:
            aligned = True  # an episode's first state
        if aligned and not newest_blank:
            state, last_reward, last_terminal = slot, float(rewards[i]), terminal
        started = state is not None and features.ball_row[state] > 0
        if terminal or not started:
            ball = previous_ball = None
        else:
            previous_ball, ball = ball, int(features.ball_row[state])
        if terminal:
            life_loss[i] = True
            lives, state = None, None
        elif state is not None:
            before, lives = lives, (int(features.lives_id[state]), bool(features.lives_shown[state]))
            if before is not None and before[0] != lives[0] and before[1] and lives[1]:
                life_loss[i] = True
                lives = None
        allowed[i] = (started and last_reward == 0 and not last_terminal and aligned
                      and moving_down(previous_ball, ball))
    return allowed, life_loss
