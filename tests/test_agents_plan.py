"""The agents' stages in the plan: what moves their keys, and what does not."""

from __future__ import annotations

import copy

import yaml

from fdt.config import validate_config
from fdt.plan import StagePlan, code_versions
from tests.conftest import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CODE = code_versions()


def merged(base: dict, change: dict) -> dict:
    """`change` merged over `base`, mapping by mapping (as Snakemake merges config files)."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def plan(change: dict | None = None, code: dict | None = None) -> StagePlan:
    return StagePlan(validate_config(merged(DEFAULT, change or {})), {**CODE, **(code or {})})


BASE = plan()


def keys(p: StagePlan) -> dict[str, str]:
    found = {a: p.agent("Breakout", a).key for a in ("dqn", "cql", "rem")}
    found["agents_report"] = p.agents_report().key
    found["report"] = p.report().key
    found["dt"] = p.model("Breakout", "dt").key
    return found


def moved(change: dict | None = None, code: dict | None = None) -> set[str]:
    before, after = keys(BASE), keys(plan(change, code))
    return {k for k in before if before[k] != after[k]}


def test_an_agents_key_follows_its_own_settings() -> None:
    assert moved({"agents": {"rem": {"num_heads": 10}}}) == {"rem"}  # not in the report's names
    assert moved({"agents": {"cql": {"alpha": 1.0}}}) == {"cql", "agents_report"}
    everyone = {"dqn", "cql", "rem", "agents_report"}
    assert moved({"agents": {"iterations": 3}}) == everyone
    assert moved({"agents": {"evaluation": {"episodes": 3}}}) == everyone
    assert moved({"agents": {"data_fraction": 0.5}}) == everyone


def test_run_settings_move_nothing() -> None:
    assert moved({"agents": {"device": "cpu", "log_every": 7,
                             "evaluation": {"envs": 1, "backend": "vector"}}}) == set()


def test_agents_move_no_other_stage() -> None:
    assert moved({"agents": {"names": ["rem"]}}) == {"agents_report"}
    assert moved(code={"agent": "edited"}) == {"dqn", "cql", "rem", "agents_report"}
    assert moved({"train": {"epochs": 3}}) == {"dt", "report"}


def test_inputs_by_data_regime() -> None:
    batch_rl = BASE.agent("Breakout", "dqn")
    assert batch_rl.inputs == (BASE.replay().key,)
    assert batch_rl.params["checkpoints"] == [0, 1, 2, 3, 4] and batch_rl.params["run"] == 1
    training_set = plan({"agents": {"data": "training_set"}})
    stage = training_set.agent("Breakout", "dqn")
    assert stage.inputs == (training_set.dataset("Breakout").key,)
    assert "checkpoints" not in stage.params
    assert training_set.agent_checkpoints() == [0, 1, 2, 3]
    assert BASE.agent_seeds() == [123]
    assert plan({"agents": {"seeds": [1, 2]}}).agent_seeds() == [1, 2]
