"""Which steps may receive feedback, and where lives are lost, read from the frames (method.md §3).

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
- Qbert: the reference's heuristics on cube colours, Q*bert's body above a cube, the lives shown,
  the discs and the level's end (see `_QbertDetector`); allowed just after landing on a cube.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fdt.mining.cells import hash_words

Features = dict[str, np.ndarray]  # per file slot, one array per named feature
# scan(features, slots, older_blank, rewards, terminals, *, next_slots, actions, next_actions)
# -> (allowed, life_loss) over the rows one visit reads; the keyword arguments (the next row's
# slot and the actions) are for the detectors that look one step ahead (Qbert).
Scan = Callable[..., tuple[np.ndarray, np.ndarray]]


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
                  rewards: np.ndarray, terminals: np.ndarray, **_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
              rewards: np.ndarray, terminals: np.ndarray, **_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
                  rewards: np.ndarray, terminals: np.ndarray, **_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


# --- Qbert ---------------------------------------------------------------------------------------

QBERT_CUBES = ((14, 40), (25, 34), (25, 49), (37, 28), (37, 40), (37, 55), (48, 21), (48, 34),
               (48, 49), (48, 61), (60, 15), (60, 28), (60, 40), (60, 55), (60, 68), (72, 9),
               (72, 21), (72, 34), (72, 49), (72, 61), (72, 74))
QBERT_SCORE_SHOWN = (slice(2, 6), slice(17, 30))
QBERT_SCORE = (slice(2, 6), slice(17, 38))
QBERT_LIVES = ((9, 19), (9, 24), (9, 28))
QBERT_BODY = 107  # Q*bert's colour above a cube and on a disc
WAIT_LEVEL, WAIT_DEATH, WAIT_DISC = 40, 75, 43


def qbert_features(frames: np.ndarray) -> Features:
    rows = np.array([r for r, _ in QBERT_CUBES])
    cols = np.array([c for _, c in QBERT_CUBES])
    above = np.stack([frames[:, r - 6:r, c] for r, c in QBERT_CUBES], axis=1)  # (n, 21, 6)
    left = (frames[:, 48:53, 7:12] == QBERT_BODY).reshape(len(frames), -1).sum(axis=1)
    right = (frames[:, 48:53, 72:77] == QBERT_BODY).reshape(len(frames), -1).sum(axis=1)
    return {
        "blank": blank_frames(frames),
        "cubes": frames[:, rows, cols],
        "cubes_below": frames[:, rows + 1, cols],
        "above": above,
        "score_shown": frames[:, QBERT_SCORE_SHOWN[0], QBERT_SCORE_SHOWN[1]]
        .reshape(len(frames), -1).max(axis=1) != 0,
        "score_id": area_id(frames[:, QBERT_SCORE[0], QBERT_SCORE[1]]),
        "lives": np.stack([frames[:, r, c] > 0 for r, c in QBERT_LIVES], axis=1).sum(axis=1),
        "on_disc": ((left >= 6) & (frames[:, 54, 7:12].max(axis=1) != 0))
        | ((right >= 6) & (frames[:, 54, 72:77].max(axis=1) != 0)),
    }


def qbert_landed(above: np.ndarray, action: int, next_action: int) -> bool:
    """Q*bert's body just above a cube's top, seen as the reference does (its colour thresholds)."""
    if action == next_action:
        return False
    for values in above:
        body = int(np.count_nonzero(values == QBERT_BODY))
        last, second = int(values[-1]), int(values[-2])
        if body >= 3 and 90 < last < 150 and 70 < second < 130:
            return True
        if next_action <= 1 and body >= 3 and 90 < last < 170 and 50 < second < 130:
            return True
    return False


class _QbertDetector:
    """The reference's Q*bert detector, state for state (Python truthiness kept: a colour 0
    counts as unset, as there)."""

    def __init__(self, features: Features) -> None:
        self.f = features
        self.aligned = False
        self.reset()

    def reset(self) -> None:
        self.death_wait = self.level_wait = self.disc_wait = 0
        self.before: int | None = None
        self.after: int | None = None
        self.prev_cubes: list[int] | None = None
        self.cubes: list[int] | None = None
        self.prev_below: list[int] | None = None
        self.below: list[int] | None = None
        self.lives = 3
        self.position: int | None = None
        self.prev_position: int | None = None
        self.same_cube = 0
        self.started = False
        self.flag = False  # the score showed when the level ended or the life was lost
        self.was_on_cube = -1
        self.levels = 0
        self.on_cube = False

    def waiting(self) -> bool:
        return self.death_wait > 0 or self.level_wait > 0 or self.disc_wait > 0

    def _cubes(self, slot: int) -> list[int]:
        return [int(v) for v in self.f["cubes"][slot]]

    def _landed(self, slot: int, next_slot: int, action: int, next_action: int) -> bool:
        f, cubes = self.f, self.cubes
        assert cubes is not None
        if not self.after or self.was_on_cube > 0 or self.levels > 3:
            return False
        if self.prev_cubes:
            changed = [i for i, (c, p) in enumerate(zip(cubes, self.prev_cubes)) if c != p]
            if len(changed) == 1:
                i = changed[0]
                if cubes[i] == self.after and self.prev_cubes[i] == self.before:
                    return True
        if all(c == self.before or (self.after and c == self.after) for c in cubes):
            return qbert_landed(f["above"][slot], action, next_action)
        if f["blank"][next_slot]:
            return False
        upcoming = self._cubes(next_slot)
        changed = [i for i, (c, n) in enumerate(zip(cubes, upcoming)) if c != n]
        if not changed:
            return True
        if len(changed) > 1:
            return False
        i = changed[0]
        if action > 1 and upcoming[i] != self.after and abs(upcoming[i] - cubes[i]) <= 10:
            return True
        if f["score_shown"][slot] and f["score_shown"][next_slot]:
            if f["score_id"][slot] != f["score_id"][next_slot]:
                return bool(self.prev_below and self.prev_below[i] != self.below[i])
        if i == 0 and upcoming[i] != self.before and upcoming[i] != self.after:
            return False
        return upcoming[i] == self.after

    def _cube_position(self) -> int | None:
        if not self.on_cube:
            return None
        for i, colour in enumerate(self.cubes or []):
            if colour != self.before and (not self.after or colour != self.after):
                return i
        return None

    def step(self, slot: int, next_slot: int, action: int, next_action: int, terminal: bool
             ) -> bool:
        """Take in one row; return whether a life was lost."""
        f = self.f
        if f["blank"][slot]:
            self.reset()
            return False
        self.prev_cubes, self.cubes = self.cubes, self._cubes(slot)
        self.prev_below, self.below = self.below, [int(v) for v in f["cubes_below"][slot]]
        cubes = self.cubes
        if (self.prev_cubes and self.waiting() and self.flag and not f["score_shown"][slot]):
            self.level_wait = self.death_wait = self.disc_wait = 0
            self.flag = False
        if self.waiting() and self.prev_cubes is not None and len(
                [1 for c, p in zip(cubes, self.prev_cubes) if c != p]) == 1:
            self.death_wait = self.level_wait = 0
            self.flag = False
        if not self.before and not self.waiting():
            self.before = max(set(cubes), key=cubes.count)
        if self.before and not self.after and not self.waiting():
            others = [c for c in cubes if c != self.before]
            if others:
                common = max(others, key=others.count)
                if others.count(common) >= 2:
                    self.after = common
        if not self.started and (len(set(cubes[1:])) == 1 and cubes[1] == self.before
                                 and cubes[0] != self.before):
            self.started = True
            self.after = None
        if not self.started:
            return False
        if terminal:
            self.aligned = True
            self.reset()
            return True
        life_lost = False
        if not self.waiting() and self._landed(slot, next_slot, action, next_action):
            self.on_cube = True
            self.prev_position, self.position = self.position, self._cube_position()
            if self.prev_position is not None and self.position is not None:
                if action > 1 and self.position == self.prev_position and not self.waiting():
                    self.same_cube += 1
                elif self.position != self.prev_position:
                    self.same_cube = 0
            self.was_on_cube = 3
        else:
            self.was_on_cube -= 1
            self.on_cube = False
        if self.waiting():
            self.level_wait = max(self.level_wait - 1, 0)
            self.death_wait = max(self.death_wait - 1, 0)
            self.disc_wait = max(self.disc_wait - 1, 0)
        else:
            self.flag = False
        if f["on_disc"][slot] and not self.disc_wait > 0:
            self.disc_wait = WAIT_DISC
            self.position = self.prev_position = None
            self.same_cube = 0
        if (f["score_shown"][slot] and int(f["lives"][slot]) < self.lives
                and not self.death_wait > 0):
            self.lives = int(f["lives"][slot])
            life_lost = True
            self.death_wait = WAIT_DEATH
            self.flag = bool(f["score_shown"][slot])
            self.position = self.prev_position = None
            self.same_cube = 0
            self.disc_wait = 0
        if (self.started and not self.waiting() and self.same_cube >= 2
                and not self.death_wait > 0):
            self.lives -= 1
            life_lost = True
            self.same_cube = 0
            self.death_wait = WAIT_DEATH
            self.position = self.prev_position = None
            self.disc_wait = 0
        if not f["blank"][next_slot] and not self.level_wait > 0 and len(
                [1 for c, n in zip(cubes, self._cubes(next_slot)) if c != n]) > 10:
            self.level_wait = WAIT_LEVEL
            self.flag = bool(f["score_shown"][slot])
            self.before = self.after = None
            self.same_cube = 0
            self.levels += 1
        return life_lost

    def allowed(self, reward: float, terminal: bool) -> bool:
        return (self.started and reward == 0 and not terminal and self.aligned
                and not self.waiting() and self.levels <= 3 and self.on_cube)


def qbert_scan(features: Features, slots: np.ndarray, older_blank: np.ndarray,
               rewards: np.ndarray, terminals: np.ndarray, *, next_slots: np.ndarray,
               actions: np.ndarray, next_actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q*bert: allowed just after landing on a cube (not while waiting after a death, a level or
    a disc ride, and only in the first 4 levels); lives lost from the lives shown or from
    standing on one cube too long."""
    n = len(slots)
    allowed, life_loss = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    detector = _QbertDetector(features)
    last_reward, last_terminal = 0.0, False
    for i in range(n):
        slot, terminal = int(slots[i]), bool(terminals[i])
        if not features["blank"][slot]:
            last_reward, last_terminal = float(rewards[i]), terminal
        life_loss[i] = detector.step(slot, int(next_slots[i]), int(actions[i]),
                                     int(next_actions[i]), terminal) or terminal
        allowed[i] = detector.allowed(last_reward, last_terminal)
    return allowed, life_loss


GAME_CHECKS: dict[str, tuple[Callable[[np.ndarray], Features], Scan]] = {
    "Breakout": (breakout_features, breakout_scan),
    "Pong": (pong_features, pong_scan),
    "Seaquest": (seaquest_features, seaquest_scan),
    "Qbert": (qbert_features, qbert_scan),
}
