"""The games of the DQN Replay Dataset, their ale-py ROM ids and the legacy ROM checksums."""

from __future__ import annotations

import re

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

# md5 of the atari-py <= 0.2.5 ROMs the dataset was recorded with, where known (docs/method.md §1).
LEGACY_ROM_MD5: dict[str, str] = {
    "Breakout": "f34f08e5eb96e500e851a80be3277a56",
    "Pong": "60e0ea3cbe0913d39803477945e9e5ec",
    "Seaquest": "240bfbac5163af4df5ae713985386f92",
    "Qbert": "484b0076816a104875e00467d431c2d2",
}


class UnknownGameError(ValueError):
    pass


def check_game(game: str) -> str:
    """Return `game` if the DQN Replay Dataset has it; otherwise say which names exist."""
    if game not in DQN_REPLAY_GAMES:
        close = [g for g in DQN_REPLAY_GAMES if g.lower() == game.lower().replace("_", "")]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownGameError(
            f"unknown game {game!r}: the DQN Replay Dataset has {len(DQN_REPLAY_GAMES)} games "
            f"spelled in CamelCase ({', '.join(DQN_REPLAY_GAMES[:6])}, ...).{hint}")
    return game


def rom_id(game: str) -> str:
    """ale-py's ROM id for a dataset game name: 'MsPacman' -> 'ms_pacman'."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", check_game(game)).lower()
