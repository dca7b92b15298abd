"""The stage plan, without Snakemake: which keys a change of config or code moves."""

from __future__ import annotations

import copy

import pytest
import yaml

from fdt.config import validate_config
from fdt.keys import KeyMismatchError, artifact_key, record_stage
from fdt.plan import STAGE_SCRIPTS, StagePlan, code_versions
from tests.conftest import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CODE = code_versions()


def keys(change: dict | None = None, code: dict | None = None) -> dict[str, str]:
    """Every stage's key for Breakout under the default config with `change` merged in."""
    raw = copy.deepcopy(DEFAULT)
    for section, values in (change or {}).items():
        raw[section] = {**raw[section], **values} if isinstance(values, dict) else values
    plan = StagePlan(validate_config(raw), {**CODE, **(code or {})})
    game = "Breakout"
    found = {"replay": plan.replay().key, "dataset": plan.dataset(game).key,
             "mining": plan.mining(game).key, "oracle": plan.oracle(game).key,
             "labels": plan.labels(game).key, "report": plan.report().key}
    for model in ("dt", "bc", "fdt"):
        found[model] = plan.model(game, model).key
        found[f"eval_{model}"] = plan.evaluation(game, model).key
    return found


BASE = keys()


def moved(after: dict[str, str]) -> set[str]:
    return {stage for stage, key in after.items() if key != BASE[stage]}


@pytest.mark.parametrize("change, stale", [
    ({"fdt": {"lambda": 0.5}}, {"fdt", "eval_fdt", "report"}),
    ({"mining": {"gamma": 0.95}}, {"mining", "labels", "fdt", "eval_fdt", "report"}),
    ({"evaluation": {"episodes": 5}}, {"eval_dt", "eval_bc", "eval_fdt", "report"}),
    ({"evaluation": {"envs": 3, "workers": 1}}, set()),  # how to run, not what is measured
    ({"train": {"device": "cpu", "threads": 1}}, set()),
    ({"train": {"epochs": 3}}, {"dt", "bc", "fdt", "eval_dt", "eval_bc", "eval_fdt", "report"}),
    ({"dataset": {"transitions": 2500}},
     {"dataset", "mining", "labels", "dt", "bc", "fdt", "eval_dt", "eval_bc", "eval_fdt", "report"}),
    ({"labels": {"device": "cpu"}}, set()),
    ({"replay": {"max_episode_steps": 1000}}, set()),  # the demo's own cap decides its data
])
def test_a_config_change_moves_exactly_the_keys_it_feeds(change: dict, stale: set[str]) -> None:
    assert moved(keys(change)) == stale


def test_a_code_change_moves_its_stages_and_what_reads_them() -> None:
    assert moved(keys(code={"mine": "edited"})) == {"mining", "labels", "fdt", "eval_fdt", "report"}
    assert moved(keys(code={"evaluate": "edited"})) == {"eval_dt", "eval_bc", "eval_fdt", "report"}
    assert moved(keys(code={"convert": "edited"})) == set(BASE) - {"oracle"} | (
        {"oracle"} if DEFAULT["oracle"]["kind"] == "offline" else set())


def test_changing_a_value_back_finds_the_old_keys() -> None:
    assert keys({"fdt": {"lambda": 0.5}}) != BASE
    assert keys({"fdt": {"lambda": DEFAULT["fdt"]["lambda"]}}) == BASE


def test_every_stage_has_scripts_and_a_code_version() -> None:
    scripts = REPO / "workflow" / "scripts"
    for stage, names in STAGE_SCRIPTS.items():
        assert all((scripts / name).is_file() for name in names), stage
    assert set(CODE) == set(STAGE_SCRIPTS) and all(len(v) == 10 for v in CODE.values())


def test_record_stage_refuses_a_folder_keyed_otherwise(tmp_path) -> None:
    key = artifact_key({"a": 1}, ["k"], "c")
    record_stage(tmp_path, "s", {"a": 1}, ["k"], "c", key)
    assert (tmp_path / "params.json").is_file()
    with pytest.raises(KeyMismatchError, match=rf"params.json gives key {key}, but the folder is keyed 0000000000"):
        record_stage(tmp_path, "s", {"a": 1}, ["k"], "c", "0000000000")
