"""Dopamine preprocessing (OpenCV's INTER_AREA of pooled screens) and the demo source."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fdt.atari import AtariEnvironment, resolve_rom
from fdt.replay.demo import epsilon_at, simulate_run
from fdt.replay.dopamine import (
    checkpoint_numbers,
    episode_transitions,
    file_name,
    load_checkpoint,
    read_npy_gz,
)


def test_frames_are_opencv_inter_area_of_the_pooled_screens() -> None:
    """The environment's frame is cv2's INTER_AREA of the max of the last two screens of a step,
    replayed here on a second emulator with the same seed."""
    import ale_py

    env = AtariEnvironment("Breakout", seed=3, sticky_actions=0.0)
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", 3)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.loadROM(str(resolve_rom("Breakout")))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(0)
    env.reset()
    ale.reset_game()
    for _ in range(40):
        action = int(rng.integers(len(actions)))
        frame, _, over = env.step(action)
        screens = []
        for _ in range(4):
            ale.act(actions[action])
            screens.append(ale.getScreenGrayscale())
        expected = cv2.resize(np.maximum(screens[-2], screens[-1]), (84, 84),
                              interpolation=cv2.INTER_AREA)
        assert not over and np.array_equal(frame, expected)


def test_environment_pools_the_last_two_screens() -> None:
    env = AtariEnvironment("Breakout", seed=0, sticky_actions=0.0)
    assert env.num_actions == 4
    first = env.reset()
    assert first.shape == (84, 84) and first.dtype == np.uint8
    frame, reward, over = env.step(1)
    assert frame.shape == (84, 84) and reward == 0.0 and not over
    assert env.lives() == 5


def test_epsilon_schedule() -> None:
    assert epsilon_at(0, start=1.0, end=0.05, anneal_rows=100) == 1.0
    assert epsilon_at(50, start=1.0, end=0.05, anneal_rows=100) == pytest.approx(0.525)
    assert epsilon_at(500, start=1.0, end=0.05, anneal_rows=100) == pytest.approx(0.05)


def test_demo_writes_a_dopamine_run(tmp_path: Path) -> None:
    summary = simulate_run(tmp_path, "Breakout", seed=1, capacity=700, checkpoints=3, final_rows=200,
                           max_episode_steps=600, progress=False)
    assert summary["snapshots"] == [0, 1, 2, 3]
    assert checkpoint_numbers(tmp_path) == [0, 1, 2, 3]
    ckpt = [load_checkpoint(tmp_path, n) for n in range(4)]
    assert [c.add_count for c in ckpt] == [699, 1399, 2099, 199]  # the last: its cursor
    assert ckpt[3].is_partial and ckpt[3].cursor == 199
    t = episode_transitions(ckpt[1], ckpt[0], ckpt[2], episode_cap=600)
    assert set(np.unique(t.action)) <= {0, 1, 2, 3}
    assert set(np.unique(t.reward)) <= {0.0, 1.0}  # Breakout's bricks give 1..7, clipped to 1
    assert t.episode_length.max() <= 600
    observation = read_npy_gz(tmp_path / file_name("observation", 1))
    assert observation[t.slot].reshape(len(t.slot), -1).any(axis=1).all()  # real frames, never blank
    with pytest.raises(ValueError, match="behaviour policy for \\['Breakout'\\], not 'Pong'"):
        simulate_run(tmp_path / "x", "Pong", progress=False)
