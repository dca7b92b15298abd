"""The games: one registry entry per game with everything the pipeline needs to know of it.

Per game (`Game`): its reference scores (random and human, the Atari 57 table; the DT and FDT
papers' gamer scores), the md5 of the ROM the dataset was recorded with, what a mining cell
ignores of its frame (`CellMask`), whether mining has its allowed-step detector
(fdt.mining.detectors, by the game's name) and the lag of that detector's life losses, its
rules under the FDT evaluation protocol (FIRE after a point, a step cap of its own), and whether
the demo source can play it (fdt.replay.demo). The four games of the paper are written out in
full below; the other games of the DQN Replay Dataset only have what is known of them.

Only data lives here (no detector or policy code), so this module stays light: the config check
and the workflow's planning read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# The 60 games of the DQN Replay Dataset, spelled as in its bucket paths (CamelCase).
DQN_REPLAY_GAMES: tuple[str, ...] = (
    "AirRaid", "Alien", "Amidar", "Assault", "Asterix", "Asteroids", "Atlantis", "BankHeist",
    "BattleZone", "BeamRider", "Berzerk", "Bowling", "Boxing", "Breakout", "Carnival", "Centipede",
    "ChopperCommand", "CrazyClimber", "DemonAttack", "DoubleDunk", "ElevatorAction", "Enduro",
    "FishingDerby", "Freeway", "Frostbite", "Gopher", "Gravitar", "Hero", "IceHockey", "Jamesbond",
    "JourneyEscape", "Kangaroo", "Krull", "KungFuMaster", "MontezumaRevenge", "MsPacman",
    "NameThisGame", "Phoenix", "Pitfall", "Pong", "Pooyan", "PrivateEye", "Qbert", "Riverraid",
    "RoadRunner", "Robotank", "Seaquest", "Skiing", "Solaris", "SpaceInvaders", "StarGunner",
    "Tennis", "TimePilot", "Tutankham", "UpNDown", "Venture", "VideoPinball", "WizardOfWor",
    "YarsRevenge", "Zaxxon",
)

# Standard Atari reference scores: (random, human), as in the DQN, Dueling and Rainbow papers.
# AirRaid, Carnival, ElevatorAction, JourneyEscape and Pooyan have none published.
ATARI57_SCORES: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3), "Asteroids": (719.1, 47388.7), "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1), "BattleZone": (2360.0, 37187.5), "BeamRider": (363.9, 16926.5),
    "Berzerk": (123.7, 2630.4), "Bowling": (23.1, 160.7), "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5), "Centipede": (2090.9, 12017.0), "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4), "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4), "Enduro": (0.0, 860.5), "FishingDerby": (-91.7, -38.7),
    "Freeway": (0.0, 29.6), "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5),
    "Gravitar": (173.0, 3351.4), "Hero": (1027.0, 30826.4), "IceHockey": (-11.2, 0.9),
    "Jamesbond": (29.0, 302.8), "Kangaroo": (52.0, 3035.0), "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3), "MontezumaRevenge": (0.0, 4753.3),
    "MsPacman": (307.3, 6951.6), "NameThisGame": (2292.3, 8049.0), "Phoenix": (761.4, 7242.6),
    "Pitfall": (-229.4, 6463.7), "Pong": (-20.7, 14.6), "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0), "Riverraid": (1338.5, 17118.0), "RoadRunner": (11.5, 7845.0),
    "Robotank": (2.2, 11.9), "Seaquest": (68.4, 42054.7), "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7), "SpaceInvaders": (148.0, 1668.7),
    "StarGunner": (664.0, 10250.0), "Tennis": (-23.8, -8.3), "TimePilot": (3568.0, 5229.2),
    "Tutankham": (11.4, 167.6), "UpNDown": (533.4, 11693.2), "Venture": (0.0, 1187.5),
    "VideoPinball": (16256.9, 17667.9), "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9), "Zaxxon": (32.5, 9173.3),
}


@dataclass(frozen=True)
class CellMask:
    """A game's mask as the compiled kernel applies it: crop, zeroed rectangles, one LUT row."""

    top: int = 0  # rows cropped away
    zero: tuple[tuple[int, int, int, int], ...] = ()  # (row0, row1, col0, col1), frame coordinates
    lut_row: int = -1  # a row whose values go through `lut` (Seaquest's ship band)
    lut_threshold: int = 0  # lut: below -> 0, from it on -> lut_value
    lut_value: int = 0

    def keep(self) -> np.ndarray:
        """255 where a pixel counts, 0 where it is masked (ANDed with the frame)."""
        keep = np.full((84, 84), 255, dtype=np.uint8)
        for r0, r1, c0, c1 in self.zero:
            keep[r0:r1, c0:c1] = 0
        return keep

    def lut(self) -> np.ndarray:
        """The LUT row's mapping of raw values (Seaquest: the ship band's threshold)."""
        values = np.arange(256)
        return np.where(values >= self.lut_threshold, self.lut_value, 0).astype(np.uint8)



@dataclass(frozen=True)
class Game:
    """What the pipeline knows of one game."""

    name: str
    reference_scores: tuple[float, float] | None = None  # (random, human), Atari 57
    gamer_scores: tuple[float, float] | None = None  # (random, gamer), the DT/FDT papers
    legacy_rom_md5: str | None = None  # atari-py <= 0.2.5's ROM (docs/method.md §1)
    cell_mask: CellMask = CellMask()  # mining: the score/HUD a cell ignores (docs/method.md §3)
    detector: bool = False  # mining: fdt.mining.detectors has its allowed-step detector
    life_loss_lag: int = 0  # mining: steps the detector's life losses lag the reference's window
    fire_after_point: bool = False  # FDT protocol: the action after a point (reward != 0) is FIRE
    fdt_step_cap: int | None = None  # FDT protocol: its own cap in agent steps (else 27,000)
    demo_policy: bool = False  # the demo source has a behaviour policy for it


# The paper's four games, each in one place (docs/method.md §3, §6).
_PAPER_GAMES = (
    Game("Breakout", ATARI57_SCORES["Breakout"], gamer_scores=(2.0, 30.0),
         legacy_rom_md5="f34f08e5eb96e500e851a80be3277a56",
         cell_mask=CellMask(zero=((0, 6, 0, 48),)), detector=True, demo_policy=True),
    Game("Qbert", ATARI57_SCORES["Qbert"], gamer_scores=(164.0, 13455.0),
         legacy_rom_md5="484b0076816a104875e00467d431c2d2",
         cell_mask=CellMask(zero=((2, 12, 17, 38),)), detector=True),
    Game("Pong", ATARI57_SCORES["Pong"], gamer_scores=(-21.0, 15.0),
         legacy_rom_md5="60e0ea3cbe0913d39803477945e9e5ec",
         cell_mask=CellMask(top=11), detector=True, life_loss_lag=6, fire_after_point=True),
    Game("Seaquest", ATARI57_SCORES["Seaquest"], gamer_scores=(68.0, 42055.0),
         legacy_rom_md5="240bfbac5163af4df5ae713985386f92",
         cell_mask=CellMask(top=18, zero=((18, 20, 0, 84), (21, 22, 0, 84), (61, 70, 0, 84)),
                            lut_row=20, lut_threshold=100, lut_value=172),
         detector=True, life_loss_lag=9, fdt_step_cap=5_000),
)

GAMES: dict[str, Game] = {
    **{name: Game(name, ATARI57_SCORES.get(name)) for name in DQN_REPLAY_GAMES},
    **{game.name: game for game in _PAPER_GAMES},
}


class UnknownGameError(ValueError):
    pass


def check_game(game: str) -> str:
    """Return `game` if the DQN Replay Dataset has it; otherwise say which names exist."""
    if game not in GAMES:
        close = [g for g in DQN_REPLAY_GAMES if g.lower() == game.lower().replace("_", "")]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownGameError(
            f"unknown game {game!r}: the DQN Replay Dataset has {len(DQN_REPLAY_GAMES)} games "
            f"spelled in CamelCase ({', '.join(DQN_REPLAY_GAMES[:6])}, ...).{hint}")
    return game


def game_facts(game: str) -> Game:
    """The registry's entry for a game (an error naming the known games if there is none)."""
    return GAMES[check_game(game)]


def mining_games() -> list[str]:
    """The games FDT can mine: those with an allowed-step detector."""
    return [name for name, game in GAMES.items() if game.detector]


def rom_id(game: str) -> str:
    """ale-py's ROM id for a dataset game name: 'MsPacman' -> 'ms_pacman'."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", check_game(game)).lower()
