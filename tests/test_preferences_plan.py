"""dt_pref's stages in the plan (what moves their keys) and the config's checks of them."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import yaml

from fdt.config import ConfigError, validate_config
from fdt.plan import StagePlan, code_versions
from tests.conftest import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CODE = code_versions()
GAME = "Breakout"


def plan(**preferences: object) -> StagePlan:
    raw = copy.deepcopy(DEFAULT)
    raw["models"] = ["dt", "dt_pref"]
    base = raw.get("preferences", {})
    raw["preferences"] = {**base, **preferences,
                          "reward_model": {**base.get("reward_model", {}),
                                           **preferences.get("reward_model", {})}}  # type: ignore[dict-item]
    return StagePlan(validate_config(raw), CODE)


def pref_keys(p: StagePlan, budget: int) -> dict[str, str]:
    return {"clips": p.preference_clips(GAME).key,
            "comparisons": p.preference_comparisons(GAME, budget).key,
            "reward": p.preference_reward(GAME, budget).key,
            "relabel": p.preference_relabel(GAME, budget).key,
            "model": p.preference_model(GAME, budget).key,
            "evaluation": p.preference_evaluation(GAME, budget).key}


def test_dt_pref_is_the_trainers_dt_on_the_relabelled_set() -> None:
    p = plan(budget=50, sweep=[20, 80])
    assert p.preference_budgets() == [20, 50, 80]
    stage = p.model(GAME, "dt_pref")
    assert stage == p.preference_model(GAME, 50)
    assert stage.params["model"] == "dt" and stage.params["rewards"] == "preferences"
    assert stage.inputs == (p.preference_relabel(GAME, 50).key,)
    assert p.evaluation(GAME, "dt_pref").key == p.preference_evaluation(GAME, 50).key
    assert p.preference_relabel(GAME, 50).inputs == (p.dataset(GAME).key,
                                                     p.preference_reward(GAME, 50).key)
    assert len({p.preference_model(GAME, b).key for b in (20, 50, 80)} | {p.model(GAME, "dt").key}) == 4


@pytest.mark.parametrize("change, stale", [
    ({"budget": 60}, {"comparisons", "reward", "relabel", "model", "evaluation"}),
    ({"noise": 0.1}, {"comparisons", "reward", "relabel", "model", "evaluation"}),
    ({"cant_tell": "set_aside"}, {"comparisons", "reward", "relabel", "model", "evaluation"}),
    ({"presort_every": 20}, {"comparisons", "reward", "relabel", "model", "evaluation"}),
    ({"clips": 100}, {"clips", "comparisons", "reward", "relabel", "model", "evaluation"}),
    ({"reward_model": {"loss": "bradley_terry"}}, {"reward", "relabel", "model", "evaluation"}),
    ({"reward_model": {"device": "cpu"}}, set()),  # how to run, not what is learnt
    ({"sweep": [30]}, set()),  # another budget's folders, not this one's
])
def test_a_preferences_change_moves_exactly_the_keys_it_feeds(change: dict, stale: set[str]) -> None:
    budget = DEFAULT["preferences"]["budget"]
    before = pref_keys(plan(), budget)
    after = pref_keys(plan(**change), change.get("budget", budget))
    assert {k for k in before if before[k] != after[k]} == stale


def test_presorting_keys_the_comparisons_by_the_reward_model_it_refits() -> None:
    budget = DEFAULT["preferences"]["budget"]
    presorting = plan(presort_every=20)
    params = presorting.preference_comparisons(GAME, budget).params
    assert params["presort_every"] == 20 and params["presort_reward"] == {
        k: v for k, v in presorting.config["preferences"]["reward_model"].items() if k != "device"}
    updates = plan(presort_every=20, reward_model={"updates": 7})
    assert updates.preference_comparisons(GAME, budget).key != presorting.preference_comparisons(GAME, budget).key
    # without pre-sorting the reward model's settings do not reach the comparisons
    assert plan(reward_model={"updates": 7}).preference_comparisons(GAME, budget).key == \
        plan().preference_comparisons(GAME, budget).key


def test_an_imported_file_keys_the_comparisons_by_its_bytes(tmp_path: Path) -> None:
    export = tmp_path / "comparisons.json"
    export.write_text('{"bundle": "x", "comparisons": []}')
    first = plan(source="file", file=str(export), mode="pairs",
                 reward_model={"loss": "bradley_terry"})
    key = first.preference_comparisons(GAME, 150).key
    digest = hashlib.sha256(b'{"bundle": "x", "comparisons": []}').hexdigest()
    assert first.preference_comparisons(GAME, 150).params["file_sha256"] == digest
    export.write_text('{"bundle": "x", "comparisons": [], "note": "more"}')
    again = plan(source="file", file=str(export), mode="pairs",
                 reward_model={"loss": "bradley_terry"})
    assert again.preference_comparisons(GAME, 150).key != key


@pytest.mark.parametrize("change, message", [
    ({"mode": "pairs"}, (r"preferences\.reward_model\.loss: the ordinal loss regresses on the sort "
                        r"tree's order, but preferences\.mode is 'pairs'")),
    ({"source": "file", "file": "/nonexistent/export.json"},
     (r"preferences\.file: source 'file' needs the comparisons JSON the feedback app exported; "
     r"'/nonexistent/export\.json' is not a file")),
    ({"budget": 5}, (r"preferences\.budget: budgets \[5\] are below preferences\.min_comparisons "
                    r"\(10\): too few comparisons")),
    ({"sweep": [3]}, r"budgets \[3\] are below"),
    ({"clips": 4, "heldout_fraction": 0.9}, r"preferences\.clips: 4 clips leave 0 to learn from"),
])
def test_config_errors_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(**change)


def test_settings_are_not_checked_when_dt_pref_is_off() -> None:
    raw = copy.deepcopy(DEFAULT)
    raw["models"] = ["dt"]
    raw["preferences"] = {**raw.get("preferences", {}), "mode": "pairs"}
    validate_config(raw)
