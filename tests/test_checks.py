"""Allowed-step and life-loss detectors on frames built to pass and to fail."""

from __future__ import annotations

import numpy as np

from fdt.checks import breakout_ball_row, breakout_features, breakout_scan, moving_down


def _breakout_frame(ball_row: int | None, lives_col: int = 55, blank: bool = False) -> np.ndarray:
    frame = np.zeros((84, 84), dtype=np.uint8)
    if blank:
        return frame
    frame[20, 10:70] = 100  # bricks, above the ball area
    frame[3, lives_col] = 150  # the lives digit
    if ball_row is not None:
        frame[ball_row, 40] = 200
        frame[ball_row + 1, 40] = 120  # a dimmer pixel below: the brightest one counts
    return frame


def test_ball_row_and_direction() -> None:
    frames = np.stack([_breakout_frame(40), _breakout_frame(74), _breakout_frame(None),
                       _breakout_frame(30)])
    # Row 30 is above the ball area (rows 38-74): no ball there.
    assert breakout_ball_row(frames).tolist() == [40, 74, -1, -1]
    assert moving_down(40, 45) and not moving_down(45, 40) and not moving_down(45, 45)
    assert not moving_down(None, 45)


def test_breakout_scan_by_hand() -> None:
    balls = [60, 70, None, None, None, 40, 45, 50, 44, 47, None, 50, 52]
    frames = np.stack([_breakout_frame(b, lives_col=52 if i >= 9 else 55, blank=i in (2, 3, 4))
                       for i, b in enumerate(balls)])
    features = breakout_features(frames)
    slots = np.arange(len(balls))
    older_blank = np.zeros(len(balls), dtype=bool)
    older_blank[5] = True  # the episode's first state: three blank frames before it
    rewards = np.zeros(len(balls))
    rewards[7] = 1.0
    terminals = np.zeros(len(balls), dtype=bool)
    terminals[1] = True
    allowed, life_loss = breakout_scan(features, slots, older_blank, rewards, terminals)
    # 0-1: the visit starts mid-episode (not aligned); 5: no previous ball row; 6: down;
    # 7: reward; 8: up; 9: down (and the lives digit changed); 10: no ball; 11: no previous.
    assert np.flatnonzero(allowed).tolist() == [6, 9, 12]
    assert np.flatnonzero(life_loss).tolist() == [1, 9]
