"""The game registry: one entry per game, complete for the games the pipeline supports."""

from __future__ import annotations

import pytest

from fdt.config import ConfigError, validate_config
from fdt.evaluation.protocols import PROTOCOLS
from fdt.evaluation.scores import normalized
from fdt.games import DQN_REPLAY_GAMES, GAMES, game_facts, mining_games
from fdt.mining.detectors import GAME_CHECKS
from fdt.replay.demo import CONTROLLERS
from tests.test_config_keys import BASE

PAPER_GAMES = ("Breakout", "Qbert", "Pong", "Seaquest")


def test_every_dataset_game_has_an_entry_and_no_other() -> None:
    assert tuple(GAMES) == DQN_REPLAY_GAMES and len(GAMES) == 60
    assert all(name == game.name for name, game in GAMES.items())


def test_the_paper_games_are_complete() -> None:
    for name in PAPER_GAMES:
        game = game_facts(name)
        assert game.reference_scores and game.gamer_scores and game.legacy_rom_md5, name
        assert game.detector and (game.cell_mask.top or game.cell_mask.zero), name


def test_the_registry_names_exactly_the_code_that_exists() -> None:
    """A detector or a demo policy is code; the registry says which games have one."""
    assert set(mining_games()) == set(GAME_CHECKS)
    assert {name for name, game in GAMES.items() if game.demo_policy} == set(CONTROLLERS)


def test_every_game_has_a_detector_or_is_refused_at_planning() -> None:
    for name in DQN_REPLAY_GAMES:
        config = {**BASE, "games": [name], "models": ["dt", "fdt"],
                  "evaluation": {"targets": {name: [1]}}}
        if game_facts(name).detector:
            validate_config(config)
        else:
            with pytest.raises(ConfigError, match=f"no allowed-step detector for {name}"):
                validate_config(config)


def test_protocol_rules_come_from_the_registry() -> None:
    fdt, dopamine = PROTOCOLS["fdt"], PROTOCOLS["dopamine"]
    assert [fdt.cap(g) for g in PAPER_GAMES] == [27_000, 27_000, 27_000, 5_000]
    assert dopamine.cap("Seaquest") == 27_000
    assert fdt.fire_after("Pong", 1.0) and fdt.fire_after("Pong", -1.0)
    assert not fdt.fire_after("Pong", 0.0) and not fdt.fire_after("Breakout", 1.0)
    assert not dopamine.fire_after("Pong", 1.0)


def test_scores_are_normalized_with_the_registry() -> None:
    assert normalized(30.0, "Breakout") == pytest.approx(100.0)
    assert normalized(30.5, "Breakout", "human") == pytest.approx(100.0)
    assert normalized(10.0, "Alien") is None  # no gamer score outside the paper's games
    assert normalized(10.0, "AirRaid", "human") is None  # no published reference at all
