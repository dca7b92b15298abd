"""dt_pref through the workflow on the tiny demo config: clips, synthetic comparisons at two
budgets, reward models, relabelled training sets, dt_pref trained and scored, the report section."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from fdt.config import validate_config
from fdt.plan import StagePlan
from tests.conftest import REPO
from tests.test_workflow import TINY, snakemake

PREFERENCES = {"clips": 16, "clip_length": 4, "heldout_fraction": 0.25, "heldout_comparisons": 10,
               "budget": 15, "sweep": [8], "min_comparisons": 5, "presort_every": 4,
               "reward_model": {"loss": "ordinal", "updates": 10, "batch_size": 4}}


@pytest.mark.slow
def test_dt_pref_end_to_end(tmp_path: Path) -> None:
    tiny = {**copy.deepcopy(TINY), "models": ["dt_pref"], "preferences": PREFERENCES}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, tiny)
    plan = StagePlan(validate_config(config))
    section = f"results/report/preferences/{plan.preferences_report().key}/section.json"
    done = snakemake(tmp_path, section)
    assert done.returncode == 0, done.stderr[-3000:]

    folder = (tmp_path / section).parent
    described = json.loads((tmp_path / section).read_text())
    assert described["title"].startswith("Learning a reward from preferences")
    assert [t["csv"] for t in described["tables"]] == ["preferences.csv"]
    assert (folder / described["figures"][0]["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert described["figures"][1]["png"] == "sort_tree.svg"  # dt_pref's tree, drawn
    assert (folder / "sort_tree.svg").read_text().count("class='node'") > 0
    table = pd.read_csv(folder / "preferences.csv")
    assert table["budget"].tolist() == [8, 15] and (table["seeds"] == 1).all()
    assert table["dt_return"].isna().all()  # plain DT is not among the models here
    for budget, made, accuracy in zip(table["budget"], table["comparisons"],
                                      table["heldout_accuracy"]):
        comparisons = json.loads((tmp_path / "results/Breakout/preferences/comparisons/"
                                  f"{plan.preference_comparisons('Breakout', budget).key}/seed7/"
                                  "comparisons.json").read_text())
        summary = comparisons["summary"]
        assert summary["comparisons"] == made and len(comparisons["heldout"]) == 10
        # pre-sorted: the reward model refitted every 4 insertions placed the later clips
        assert summary["comparisons_per_clip"] == pytest.approx(
            made / (summary["sorted_clips"] + summary["set_aside"]))
        strict = sum(c["answer"] in ("left", "right") for c in comparisons["heldout"])
        metrics = json.loads((tmp_path / "results/Breakout/preferences/reward/"
                              f"{plan.preference_reward('Breakout', budget).key}/seed7/"
                              "metrics.json").read_text())
        assert metrics["heldout_strict_comparisons"] == strict and metrics["updates"] == 10
        # no strict held-out answer (the tiny demo's short clips mostly score 0): no accuracy
        assert (0 <= accuracy <= 1) if strict else math.isnan(accuracy)
        # tree mode finishes its last insertion, or stops early with every training clip sorted
        assert made >= budget or summary["sorted_clips"] + summary["set_aside"] == 12

    for budget in (8, 15):
        dataset = tmp_path / f"results/Breakout/preferences/dataset/" \
                             f"{plan.preference_relabel('Breakout', budget).key}/seed7"
        relabelled = json.loads((dataset / "manifest.json").read_text())
        original = json.loads((tmp_path / f"results/Breakout/dataset/{plan.dataset('Breakout').key}"
                                          "/seed7/manifest.json").read_text())
        assert relabelled["max_return"] == pytest.approx(original["max_return"], rel=1e-5)
        assert relabelled["arrays"]["frames"] == original["arrays"]["frames"]
        model = tmp_path / f"results/Breakout/models/dt_pref/" \
                           f"{plan.preference_model('Breakout', budget).key}/seed7"
        assert json.loads((model / "params.json").read_text())["inputs"] == [
            plan.preference_relabel("Breakout", budget).key]
    comparisons = json.loads((tmp_path / "results/Breakout/preferences/comparisons/"
                              f"{plan.preference_comparisons('Breakout', 15).key}/seed7/"
                              "params.json").read_text())
    assert len(comparisons["details"]["digest"]) == 16

    again = snakemake(tmp_path, "--dry-run", section)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
