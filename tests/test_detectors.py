"""Allowed-step and life-loss detectors on frames built to pass and to fail."""

from __future__ import annotations

import numpy as np

from fdt.mining.detectors import (
    breakout_ball_row,
    breakout_features,
    breakout_scan,
    moving_down,
    oxygen_left,
    pong_features,
    pong_scan,
    qbert_features,
    qbert_landed,
    qbert_scan,
    seaquest_features,
    seaquest_scan,
    toward_agent,
)


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


def _pong_frame(ball_col: int | None, score_col: int = 10, start_screen: bool = False,
                blank: bool = False) -> np.ndarray:
    if blank:
        return np.zeros((84, 84), dtype=np.uint8)
    frame = np.full((84, 84), 107 if start_screen else 87, dtype=np.uint8)
    frame[0:9, 5:30] = 0
    frame[4, score_col] = 150  # a score digit
    if not start_screen:
        frame[30:36, 9] = 147  # the opponent's paddle
    if ball_col is not None:
        frame[40, ball_col] = 236
    return frame


def test_pong_scan_by_hand() -> None:
    balls = [30, 30, None, None, 20, 25, 25, 22, 30, 35, None, 40, 41]
    frames = np.stack([_pong_frame(b, score_col=12 if i >= 9 else 10, start_screen=i == 3,
                                   blank=i == 2) for i, b in enumerate(balls)])
    features = pong_features(frames)
    # A blank frame passes the reference's ball test (its maximum is neither 87 nor 107).
    assert features["ball_shown"].tolist()[:5] == [True, True, True, False, True]
    assert features["ball_col"][4] == 20 and not features["opponent_shown"][3]
    rewards = np.zeros(len(balls))
    rewards[8] = 1.0
    terminals = np.zeros(len(balls), dtype=bool)
    terminals[1] = True
    allowed, life_loss = pong_scan(features, np.arange(len(balls)), np.zeros(len(balls), bool),
                                   rewards, terminals)
    # Aligned only after the terminal at 1; 4 and 11 have no previous column; 7 moves away;
    # 8 has a reward; 10 has no ball. The score changes at 9.
    assert np.flatnonzero(allowed).tolist() == [5, 6, 9, 12]
    assert np.flatnonzero(life_loss).tolist() == [1, 9]
    assert toward_agent(20, 20) and not toward_agent(20, 19) and not toward_agent(None, 3)


def _seaquest_frame(oxygen: str, blank: bool = False) -> np.ndarray:
    frame = np.zeros((84, 84), dtype=np.uint8)
    if blank:
        return frame
    frame[30:40, 20:30] = 90  # the sea
    level = {"full": 214, "empty": 85}.get(oxygen, 214)
    frame[68:70, 26:58] = level
    if oxygen == "partial":
        frame[68:70, 40:58] = 85
    frame[68:70, 58] = 200 if oxygen == "full" else 0
    return frame


def test_seaquest_scan_by_hand() -> None:
    oxygen = ["full", "full", "", "partial", "full", "partial", "partial", "empty", "partial",
              "full"]
    frames = np.stack([_seaquest_frame(o, blank=o == "") for o in oxygen])
    features = seaquest_features(frames)
    assert features["oxygen_full"].tolist()[:5] == [True, True, False, False, True]
    assert np.flatnonzero(features["oxygen_empty"]).tolist() == [7]
    rewards = np.zeros(len(oxygen))
    rewards[6] = 1.0
    terminals = np.zeros(len(oxygen), dtype=bool)
    terminals[1] = True
    allowed, life_loss = seaquest_scan(features, np.arange(len(oxygen)),
                                       np.zeros(len(oxygen), bool), rewards, terminals)
    # Aligned after the terminal at 1; 3 is before the game starts (a full bar, at 4);
    # 6 has a reward; 7 runs out of oxygen (a life), and the 45 steps after it wait.
    assert np.flatnonzero(allowed).tolist() == [4, 5]
    assert np.flatnonzero(life_loss).tolist() == [1, 7]
    assert oxygen_left(False, 0) and not oxygen_left(True, 0) and not oxygen_left(False, 3)


def _play(game: str, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (as the dataset preprocesses them), rewards and lives of random play in ALE."""
    from fdt.atari import AtariEnvironment

    env = AtariEnvironment(game, seed=1, sticky_actions=0.0)
    rng = np.random.default_rng(0)
    frames, rewards, lives = [env.reset()], [], [env.lives()]
    for _ in range(steps):
        frame, reward, over = env.step(int(rng.integers(env.num_actions)))
        frames.append(frame)
        rewards.append(reward)
        lives.append(env.lives())
        if over:
            break
    return np.stack(frames[:-1]), np.array(rewards), np.array(lives[:-1])


def _aligned_scan(scan, features, n: int, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    terminals = np.zeros(n, dtype=bool)
    terminals[0] = True  # a terminal first, so that the detector is aligned
    return scan(features, np.arange(n), np.zeros(n, bool), rewards, terminals)


def test_pong_detector_on_real_frames() -> None:
    frames, rewards, _ = _play("Pong", 800)
    allowed, life_loss = _aligned_scan(pong_scan, pong_features(frames), len(frames), rewards)
    points = np.flatnonzero(rewards)
    losses = np.flatnonzero(life_loss)[1:]
    assert len(points) >= 5
    # The score on screen changes a step or two after each point.
    assert all(np.any((loss - points >= 1) & (loss - points <= 3)) for loss in losses)
    assert len(losses) >= 0.8 * len(points)
    assert 0.2 < allowed.mean() < 0.7 and not np.any(allowed & (rewards != 0))


def test_seaquest_detector_on_real_frames() -> None:
    frames, rewards, lives = _play("Seaquest", 1500)
    allowed, life_loss = _aligned_scan(seaquest_scan, seaquest_features(frames), len(frames),
                                       rewards)
    deaths = np.flatnonzero(np.diff(lives) < 0) + 1
    losses = np.flatnonzero(life_loss)[1:]
    assert len(deaths) >= 2
    # The bar reads empty while the dying submarine sinks, before ALE takes the life.
    assert all(np.any((death - losses > 0) & (death - losses <= 20)) for death in deaths)
    assert allowed.any() and not np.any(allowed & (rewards != 0))


def test_qbert_frame_features_and_landing() -> None:
    frame = np.zeros((84, 84), dtype=np.uint8)
    frame[2:6, 20] = 80  # the score shows
    frame[9, 19] = frame[9, 24] = 90  # two lives left
    frame[48:50, 7:12] = 107  # Q*bert on the left disc (10 body pixels, a disc below)
    frame[54, 8] = 60
    frame[14, 40] = 150  # the top cube's colour
    frame[8:14, 40] = [0, 107, 107, 107, 100, 120]  # Q*bert's body just above it
    features = qbert_features(frame[None])
    assert features["lives"][0] == 2 and features["score_shown"][0] and features["on_disc"][0]
    assert features["cubes"][0, 0] == 150 and features["above"][0, 0].tolist() == [0, 107, 107,
                                                                                   107, 100, 120]
    above = features["above"][0]
    # Landing needs a change of action (the jump's input ends) and the body colours above a cube.
    assert qbert_landed(above, action=3, next_action=0)
    assert not qbert_landed(above, action=3, next_action=3)
    moved = above.copy()
    moved[0, -1] = 200  # too bright for the cube's top edge
    assert not qbert_landed(moved, action=3, next_action=0)


def test_qbert_detector_on_real_frames() -> None:
    from fdt.atari import AtariEnvironment

    env = AtariEnvironment("Qbert", seed=3, sticky_actions=0.0)
    rng = np.random.default_rng(0)
    frames, rewards, terminals, lives, actions = [], [], [], [], []
    for _ in range(2):  # two episodes: the detector aligns at the first one's end
        frame, depth = env.reset(), 0
        for t in range(3000):
            # Stay on the pyramid: down (3, 5) for a while, then up (2, 4).
            action = int(rng.choice([3, 5] if depth < 4 else [2, 4]))
            frames.append(frame)
            actions.append(action)
            lives.append(env.lives())
            frame, reward, over = env.step(action)
            rewards.append(reward)
            terminals.append(over)
            depth = (depth + 1) % 8 if t % 12 == 11 else depth
            if over:
                break
        for _ in range(3):  # the padding rows before the next episode
            frames.append(np.zeros((84, 84), np.uint8))
            actions.append(0)
            rewards.append(0.0)
            terminals.append(False)
            lives.append(0)
    n = len(frames)
    slots = np.arange(n)
    following = np.minimum(slots + 1, n - 1)
    allowed, life_loss = qbert_scan(qbert_features(np.stack(frames)), slots, np.zeros(n, bool),
                                    np.array(rewards), np.array(terminals), next_slots=following,
                                    actions=np.array(actions),
                                    next_actions=np.array(actions)[following])
    first_end = int(np.flatnonzero(terminals)[0])
    assert not allowed[:first_end].any() and allowed[first_end:].any()
    assert not np.any(allowed & (np.array(rewards) != 0))
    drops = np.flatnonzero(np.diff(lives) < 0) + 1
    for loss in np.flatnonzero(life_loss):  # each detected loss is near one ALE counts
        assert np.min(np.abs(drops - loss)) <= 10
