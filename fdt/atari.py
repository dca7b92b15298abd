"""Atari through ale-py, preprocessed exactly as the DQN Replay Dataset was (docs/method.md §1).

Dopamine's preprocessing: 4-frame action repeat with summed reward; the grayscale screens of the
last two repeats max-pooled; resized to 84x84 with OpenCV's INTER_AREA, by OpenCV itself.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import cv2
import numpy as np

from fdt.games import game_facts, rom_id
from fdt.replay.dopamine import FRAME_SHAPE

SCREEN_SHAPE = (210, 160)
FRAME_SKIP = 4


def rom_md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def resolve_rom(game: str, rom_dir: str | Path | None = None) -> Path:
    """The ROM to play `game` with: the user's legacy ROM folder first, else ale-py's own.

    Warns when the ROM differs from the one the dataset was recorded with (docs/method.md §1).
    """
    from ale_py import roms

    name = rom_id(game)
    path = Path(rom_dir) / f"{name}.bin" if rom_dir else Path(roms.get_rom_path(name))
    if not path.is_file():
        raise FileNotFoundError(f"no ROM for {game}: expected {path}")
    legacy = game_facts(game).legacy_rom_md5
    actual = rom_md5(path)
    if legacy is None:
        warnings.warn(f"{game}: the md5 of the ROM the dataset was recorded with is not known here; "
                      f"playing {path} (md5 {actual}) may not match the replay data", stacklevel=2)
    elif actual != legacy:
        warnings.warn(f"{game}: ROM {path} has md5 {actual}, but the dataset was recorded with "
                      f"{legacy}; point rom_dir at the legacy atari-py ROM", stacklevel=2)
    return path


@functools.lru_cache(maxsize=None)
def minimal_action_count(game: str, rom_dir: str | None = None) -> int:
    """Size of the game's minimal action set, which the dataset's actions index."""
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(str(resolve_rom(game, rom_dir)))
    return len(ale.getMinimalActionSet())


class AtariEnvironment:
    """One ALE game with Dopamine's preprocessing; actions index the minimal action set.

    Life loss is not terminal; the episode ends at game over (a step cap is the caller's).
    """

    def __init__(self, game: str, *, seed: int, sticky_actions: float = 0.25,
                 rom_dir: str | Path | None = None) -> None:
        import ale_py

        self.game = game
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", sticky_actions)
        self.ale.setInt("frame_skip", 1)
        self.ale.loadROM(str(resolve_rom(game, rom_dir)))
        self.action_set = list(self.ale.getMinimalActionSet())
        self._screens = np.zeros((2, *SCREEN_SHAPE), dtype=np.uint8)

    @property
    def num_actions(self) -> int:
        return len(self.action_set)

    def lives(self) -> int:
        return int(self.ale.lives())

    def ram(self) -> np.ndarray:
        return self.ale.getRAM()

    def game_over(self) -> bool:
        return bool(self.ale.game_over())

    def _observation(self) -> np.ndarray:
        np.maximum(self._screens[0], self._screens[1], out=self._screens[0])
        return cv2.resize(self._screens[0], FRAME_SHAPE[::-1], interpolation=cv2.INTER_AREA)

    @property
    def fire_action(self) -> int | None:
        """Index of FIRE in the minimal action set (None if the game has no FIRE)."""
        import ale_py

        fire = ale_py.Action.FIRE
        return self.action_set.index(fire) if fire in self.action_set else None

    def reset(self, noops: int = 0) -> np.ndarray:
        """Start a game; `noops` raw NOOP frames (not agent steps) first, as the evaluation
        protocol's random no-op starts do (a game that ends during them is started again)."""
        self.ale.reset_game()
        noop = self.action_set[0]
        for _ in range(noops):
            self.ale.act(noop)
            if self.ale.game_over():
                self.ale.reset_game()
        self.ale.getScreenGrayscale(self._screens[0])
        self._screens[1].fill(0)
        return self._observation()

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        """Repeat `action` 4 frames; return the pooled frame, summed raw reward and game over."""
        total = 0.0
        game_over = False
        for repeat in range(FRAME_SKIP):
            total += self.ale.act(self.action_set[action])
            game_over = self.ale.game_over()
            if game_over:
                break  # as Dopamine: the screens of an unfinished repeat are not fetched
            if repeat >= FRAME_SKIP - 2:
                self.ale.getScreenGrayscale(self._screens[repeat - (FRAME_SKIP - 2)])
        return self._observation(), total, game_over
