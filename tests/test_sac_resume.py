"""A behaviour run resumed from its checkpoint says so, and saves policies.pt byte for byte as a
run never stopped does (issue 28 item 10f)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fdt.continuous.environments import make_env
from fdt.continuous.generate import load_actor, save_policies
from fdt.continuous.sac import SACParams, train_behaviour

ENV = "InvertedPendulum-v5"
PARAMS = SACParams(steps=120, start_steps=50, batch_size=8, hidden=8, eval_every=40,
                   eval_episodes=1, seed=4)


class Killed(Exception):
    pass


def kill_at_80(step: int, _point: dict) -> None:
    if step == 80:
        raise Killed


def test_a_resumed_run_logs_it_and_saves_the_same_policies_bytes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    whole = train_behaviour(make_env(ENV), make_env(ENV), PARAMS)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Killed):
        train_behaviour(make_env(ENV), make_env(ENV), PARAMS, kill_at_80, checkpoint, checkpoint_every=30)
    with caplog.at_level(logging.INFO, logger="fdt.continuous.sac"):
        resumed = train_behaviour(make_env(ENV), make_env(ENV), PARAMS, None, checkpoint, checkpoint_every=30)
    assert [r.getMessage() for r in caplog.records if r.name == "fdt.continuous.sac"] == [
        f"resumed from {checkpoint} at step 68 of 120 (episode 12)"]
    for run, folder in ((whole, "whole"), (resumed, "resumed")):  # the workflow's one file name
        (tmp_path / folder).mkdir()
        save_policies(tmp_path / folder / "policies.pt", make_env(ENV), run, PARAMS, 1 / 3)
    saved = (tmp_path / "whole" / "policies.pt").read_bytes()
    assert (tmp_path / "resumed" / "policies.pt").read_bytes() == saved
    assert load_actor(tmp_path / "resumed" / "policies.pt", "expert").net[0].weight.shape == (8, 4)
