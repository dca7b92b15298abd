"""Which steps may receive feedback, and where lives are lost, read from the frames (SPEC §3).

A step is allowed when its reward is 0, it is not terminal, the game has started and the game's
own check on the frame holds. The detectors replay the reference's, row by row over every row a
visit reads (kept or not), from small per-frame features computed once per file slot, so they
stay cheap over millions of rows. A detector is made afresh for each visit and starts unaligned:
Breakout's aligns at the first episode start it sees (three blank frames, then one that is not);
Pong's and Seaquest's only after the first terminal, as the reference's do. Life loss always
includes terminals.

- Breakout: the ball is the brightest pixel of rows 38-74 x cols 5-78; allowed while it moves
  down (its row grows); a life is lost when the lives digit (rows 0-6 x cols 50-60) changes.
- Pong: in play when the opponent's paddle (col 9) and the ball (rows 14-76 x cols 11-72, brighter
  than the background 87 and the start screen's 107) are shown; allowed while the ball moves
  toward the agent (its column does not shrink); a point is lost when the score (rows 0-8 x cols
  5-29) changes.
- Seaquest: the game starts on a full oxygen bar (rows 68-69 x cols 26-57 at 214, col 58 at 200);
  allowed while oxygen is left (the bar is not all 85) and not within 45 steps of running out,
  which is a life loss. (The reference also counts the lives shown, which decides nothing.)
- Qbert: not yet (mining refuses it with a clear error).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fdt.cells import hash_words

Features = dict[str, np.ndarray]  # per file slot, one array per named feature
Scan = Callable[[Features, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                tuple[np.ndarray, np.ndarray]]


def blank_frames(frames: np.ndarray) -> np.ndarray:
    return ~frames.reshape(len(frames), -1).any(axis=1)


def area_id(area: np.ndarray) -> np.ndarray:
    """A 64-bit id of each (n, ...) uint8 area's pixels: equal pixels, equal id, in any chunk."""
    flat = area.reshape(len(area), -1)
    pad = (-flat.shape[1]) % 8
    flat = np.concatenate([flat, np.zeros((len(flat), pad), np.uint8)], axis=1)
    return hash_words(np.ascontiguousarray(flat).view("<u8"))[:, 0].view(np.int64)


def brightest_at(frames: np.ndarray, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """Per frame: the area's largest value and the (row, col) of its first occurrence."""
    area = frames[:, rows, cols].reshape(len(frames), -1)
    brightest = area.max(axis=1)
    first = np.argmax(area == brightest[:, None], axis=1)
    width = cols.stop - cols.start
    return brightest, first // width + rows.start, first % width + cols.start


def empty_features(n: int, compute: Callable[[np.ndarray], Features]) -> Features:
    """Features of n blank frames (padding slots, slots never written)."""
    blank = compute(np.zeros((1, 84, 84), dtype=np.uint8))
    return {name: np.repeat(values, n) for name, values in blank.items()}


class _ScoreWatch:
    """The reference's score/lives watcher: a change between two shown areas is a loss."""

    def __init__(self) -> None:
        self.last: tuple[int, bool] | None = None

    def reset(self) -> None:
        self.last = None

    def changed(self, area: int, shown: bool) -> bool:
        before, self.last = self.last, (area, shown)
        if before is not None and before[0] != area and before[1] and shown:
            self.last = None
            return True
        return False


# --- Breakout ------------------------------------------------------------------------------------

BREAKOUT_BALL = (slice(38, 75), slice(5, 79))
BREAKOUT_LIVES = (slice(0, 7), slice(50, 61))


def breakout_ball_row(frames: np.ndarray) -> np.ndarray:
    """Row of the ball (first brightest pixel, row-major) in rows 38-74, or -1 (no ball)."""
    brightest, row, _ = brightest_at(frames, *BREAKOUT_BALL)
    return np.where(brightest > 0, row, -1).astype(np.int16)


def breakout_features(frames: np.ndarray) -> Features:
    lives = frames[:, BREAKOUT_LIVES[0], BREAKOUT_LIVES[1]]
    return {"blank": blank_frames(frames), "ball_row": breakout_ball_row(frames),
            "lives_id": area_id(lives), "lives_shown": lives.reshape(len(frames), -1).any(axis=1)}


def moving_down(previous_row: int | None, row: int | None) -> bool:
    """Breakout's check: the ball is lower than a step before."""
    return previous_row is not None and row is not None and row > previous_row


def breakout_scan(features: Features, slots: np.ndarray, older_blank: np.ndarray,
                  rewards: np.ndarray, terminals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Allowed steps and life losses of the rows one visit reads, in order.

    `slots` are the rows' file slots (their newest frame); `older_blank` says whether the three
    older frames of each row's state are blank.
    """
    n = len(slots)
    allowed, life_loss = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    aligned = False
    state: int | None = None  # the slot of the last state taken in (the reference's self.state)
    last_reward, last_terminal = 0.0, False
    ball: int | None = None
    previous_ball: int | None = None
    lives = _ScoreWatch()
    for i in range(n):
        slot, terminal = int(slots[i]), bool(terminals[i])
        newest_blank = bool(features["blank"][slot])
        if older_blank[i] and not newest_blank:
            aligned = True  # an episode's first state
        if aligned and not newest_blank:
            state, last_reward, last_terminal = slot, float(rewards[i]), terminal
        started = state is not None and features["ball_row"][state] > 0
        if terminal or not started:
            ball = previous_ball = None
        else:
            previous_ball, ball = ball, int(features["ball_row"][state])
        if terminal:
            life_loss[i] = True
            lives.reset()
            state = None
        elif state is not None:
            life_loss[i] = lives.changed(int(features["lives_id"][state]),
                                         bool(features["lives_shown"][state]))
        allowed[i] = (started and last_reward == 0 and not last_terminal and aligned
                      and moving_down(previous_ball, ball))
    return allowed, life_loss


# --- Pong ----------------------------------------------------------------------------------------

PONG_BALL = (slice(14, 77), slice(11, 73))
PONG_OPPONENT = (slice(14, 77), slice(9, 10))
PONG_SCORE = (slice(0, 9), slice(5, 30))
PONG_BACKGROUND, PONG_START_SCREEN = 87, 107


def pong_features(frames: np.ndarray) -> Features:
    brightest, _, col = brightest_at(frames, *PONG_BALL)
    opponent = frames[:, PONG_OPPONENT[0], PONG_OPPONENT[1]].reshape(len(frames), -1).max(axis=1)
    score = frames[:, PONG_SCORE[0], PONG_SCORE[1]]
    return {
        "blank": blank_frames(frames),
        "ball_shown": (brightest != PONG_BACKGROUND) & (brightest != PONG_START_SCREEN),
        "ball_col": col.astype(np.int16),
        "opponent_shown": (opponent != 0) & (opponent != PONG_START_SCREEN),
        "score_id": area_id(score),
        "score_shown": score.reshape(len(frames), -1).any(axis=1),
    }


def toward_agent(previous_col: int | None, col: int | None) -> bool:
    """Pong's check: the ball is not moving away from the agent's paddle (on the right)."""
    return previous_col is not None and col is not None and col >= previous_col


def pong_scan(features: Features, slots: np.ndarray, older_blank: np.ndarray,
              rewards: np.ndarray, terminals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(slots)
    allowed, life_loss = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    aligned = False
    ball: int | None = None
    previous_ball: int | None = None
    score = _ScoreWatch()
    for i in range(n):
        slot, terminal = int(slots[i]), bool(terminals[i])
        in_play = bool(not features["blank"][slot] and features["opponent_shown"][slot]
                       and features["ball_shown"][slot])
        if terminal:
            aligned = True
        if terminal or not in_play:
            ball = previous_ball = None
        else:
            previous_ball, ball = ball, int(features["ball_col"][slot])
        if terminal:
            life_loss[i] = True
            score.reset()
        elif features["opponent_shown"][slot]:
            changed = score.changed(int(features["score_id"][slot]),
                                    bool(features["score_shown"][slot]))
            life_loss[i] = changed and aligned
        allowed[i] = (in_play and rewards[i] == 0 and not terminal and aligned
                      and toward_agent(previous_ball, ball))
    return allowed, life_loss


# --- Seaquest ------------------------------------------------------------------------------------

SEAQUEST_OXYGEN = (slice(68, 70), slice(26, 58))
SEAQUEST_OXYGEN_END = (slice(68, 70), slice(58, 59))
OXYGEN_EMPTY, OXYGEN_FULL, OXYGEN_END = 85, 214, 200
WAIT_AFTER_OXYGEN = 45


def seaquest_features(frames: np.ndarray) -> Features:
    bar = frames[:, SEAQUEST_OXYGEN[0], SEAQUEST_OXYGEN[1]].reshape(len(frames), -1)
    end = frames[:, SEAQUEST_OXYGEN_END[0], SEAQUEST_OXYGEN_END[1]].reshape(len(frames), -1)
    return {
        "blank": blank_frames(frames),
        "oxygen_empty": (bar == OXYGEN_EMPTY).all(axis=1),
        "oxygen_full": (bar == OXYGEN_FULL).all(axis=1) & (end == OXYGEN_END).all(axis=1),
    }


def oxygen_left(empty: bool, wait: int) -> bool:
    """Seaquest's check: the bar is not empty, nor was it in the last 45 steps."""
    return not empty and wait == 0


def seaquest_scan(features: Features, slots: np.ndarray, older_blank: np.ndarray,
                  rewards: np.ndarray, terminals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(slots)
    allowed, life_loss = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    aligned = started = False
    wait = 0
    state: int | None = None
    last_reward, last_terminal = 0.0, False
    for i in range(n):
        slot, terminal = int(slots[i]), bool(terminals[i])
        if features["blank"][slot]:
            started, wait = False, 0
            life_loss[i] = terminal
            continue
        if not started and features["oxygen_full"][slot]:
            started = True
        state, last_reward, last_terminal = slot, float(rewards[i]), terminal
        if terminal:
            aligned = True
            started, wait = False, 0
            life_loss[i] = True
        else:
            if wait > 0:
                wait -= 1
            if started and features["oxygen_empty"][slot] and wait == 0:
                wait = WAIT_AFTER_OXYGEN
                life_loss[i] = aligned
        allowed[i] = (started and last_reward == 0 and not last_terminal and aligned
                      and oxygen_left(bool(features["oxygen_empty"][state]), wait))
    return allowed, life_loss


GAME_CHECKS: dict[str, tuple[Callable[[np.ndarray], Features], Scan]] = {
    "Breakout": (breakout_features, breakout_scan),
    "Pong": (pong_features, pong_scan),
    "Seaquest": (seaquest_features, seaquest_scan),
}
