"""Dopamine preprocessing (checked against OpenCV) and the demo source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fdt.atari import AtariEnvironment, area_table, resize_area
from fdt.replay.demo import epsilon_at, simulate_run
from fdt.replay.dopamine import (
    checkpoint_numbers,
    episode_transitions,
    file_name,
    load_checkpoint,
    read_npy_gz,
)


def test_area_resize_by_hand() -> None:
    # 5 -> 2: each output covers 2.5 source pixels: weights (0.4, 0.4, 0.2) and (0.2, 0.4, 0.4).
    index, weight = area_table(5, 2)
    assert index.tolist() == [[0, 1, 2], [2, 3, 4]]
    assert np.allclose(weight, [[0.4, 0.4, 0.2], [0.2, 0.4, 0.4]])
    image = np.array([[10, 20, 30, 40, 50]] * 5, dtype=np.uint8)
    # Row: 0.4*10 + 0.4*20 + 0.2*30 = 18; 0.2*30 + 0.4*40 + 0.4*50 = 42; columns are constant.
    assert resize_area(image, (2, 2)).tolist() == [[18, 42], [18, 42]]


def test_area_resize_equals_opencv_on_atari_screens() -> None:
    cv2 = pytest.importorskip("cv2")
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    rng = np.random.default_rng(0)
    screen = np.empty((210, 160), np.uint8)
    compared = 0
    for game in ("breakout", "pong", "seaquest"):
        ale.loadROM(ale_py.roms.get_rom_path(game))
        actions = ale.getMinimalActionSet()
        for t in range(600):
            ale.act(actions[rng.integers(len(actions))])
            if ale.game_over():
                ale.reset_game()
            if t % 10 == 0:
                ale.getScreenGrayscale(screen)
                expected = cv2.resize(screen, (84, 84), interpolation=cv2.INTER_AREA)
                assert np.array_equal(resize_area(screen), expected)
                compared += 1
    noise = rng.integers(0, 256, (210, 160), dtype=np.uint8)
    assert np.array_equal(resize_area(noise), cv2.resize(noise, (84, 84), interpolation=cv2.INTER_AREA))
    assert compared == 180


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
