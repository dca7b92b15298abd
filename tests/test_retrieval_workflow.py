"""RA-DT in the workflow: what moves its keys, bad settings, and its targets end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fdt.config import ConfigError, validate_config
from fdt.keys import imported_modules
from fdt.plan import SCRIPTS, STAGE_SCRIPTS, StagePlan, code_versions
from tests.conftest import REPO
from tests.test_workflow import TINY, snakemake

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CODE = code_versions()
ON = {"models": ["dt", "radt"]}


def merged(base: dict, change: dict) -> dict:
    """`change` merged over `base`, mapping by mapping (as Snakemake merges config files)."""
    out = dict(base)
    for key, value in change.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def plan(change: dict | None = None, code: dict | None = None) -> StagePlan:
    config = validate_config(merged(merged(DEFAULT, ON), change or {}))
    return StagePlan(config, {**CODE, **(code or {})})


def keys(p: StagePlan) -> dict[str, str]:
    g = "Breakout"
    return {"dt": p.model(g, "dt").key, "memory": p.memory(g).key, "radt": p.model(g, "radt").key,
            "eval_radt": p.evaluation(g, "radt").key, "eval_dt": p.evaluation(g, "dt").key,
            "section": p.retrieval_report().key}


BASE = keys(plan())


def moved(change: dict | None = None, code: dict | None = None) -> set[str]:
    return {k for k, v in keys(plan(change, code)).items() if v != BASE[k]}


def test_radt_key_covers_its_memory_and_the_memory_its_data_and_embedder() -> None:
    p = plan()
    assert p.memory("Breakout").inputs == (p.dataset("Breakout").key, p.model("Breakout", "dt").key)
    assert p.model("Breakout", "radt").inputs == (p.dataset("Breakout").key,
                                                  p.memory("Breakout").key)
    assert p.memory("Breakout").params["subtrajectory_length"] == 10  # null: the context length
    # training DT differently moves DT, its memory and everything after it
    assert moved({"train": {"dropout": 0.2}}) == set(BASE)
    # retrieval settings: the memory's are the memory's, the search's are radt's only
    assert moved({"retrieval": {"top_k": 20}}) == {"radt", "eval_radt", "section"}
    assert moved({"retrieval": {"subtrajectory_length": 5}}) == {"memory", "radt", "eval_radt",
                                                                 "section"}
    assert moved({"retrieval": {"eval_cache": "separate"}}) == {"eval_radt", "section"}
    # evaluation's retrieval settings travel with the weights (RA-DT's agent holds both caches')
    assert moved({"retrieval": {"eval_return_weight": 0.5}}) == {"radt", "eval_radt", "section"}
    assert moved({"retrieval": {"eval_sim_cutoff": 0.99}}) == {"radt", "eval_radt", "section"}
    assert moved({"retrieval": {"embed_batch_size": 7, "device": "cpu"}}) == set()


def test_retrieval_code_moves_radt_and_not_the_other_models() -> None:
    assert moved(code={"train_radt": "x"}) == {"radt", "eval_radt", "section"}
    assert moved(code={"memory": "x"}) == {"memory", "radt", "eval_radt", "section"}
    assert moved(code={"evaluate_radt": "x"}) == {"eval_radt", "section"}
    # DT's training and evaluation do not import the retrieval package: editing it leaves them
    for stage in ("train", "evaluate"):
        modules = imported_modules([SCRIPTS / n for n in STAGE_SCRIPTS[stage]])
        assert "models.trainer" in modules  # names relative to the package
        assert not [m for m in modules if m.startswith("retrieval")], stage


def test_bad_retrieval_settings_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match="retrieval.reweight_top_k: keeps 60 of "
                                          "retrieval.top_k = 50"):
        plan({"retrieval": {"reweight_top_k": 60}})
    with pytest.raises(ConfigError, match="retrieval.reweight_top_k: keeps 5 of "
                                          "retrieval.eval_top_k = 4"):
        plan({"retrieval": {"reweight_top_k": 5, "eval_top_k": 4}})
    with pytest.raises(ConfigError, match="retrieval.eval_cache"):
        plan({"retrieval": {"eval_cache": "shared"}})
    with pytest.raises(ConfigError, match="retrieval.subtrajectory_length: 11-step "
                                          "sub-trajectories do not fit Breakout's context "
                                          "length 10"):
        plan({"retrieval": {"subtrajectory_length": 11}})
    with pytest.raises(ConfigError, match="retrieval.index.kind"):
        plan({"retrieval": {"index": {"kind": "lsh"}}})


RADT_TINY = merged(TINY, {"models": ["dt", "radt"], "agents": {"names": []},
                          "evaluation": {"targets": {"Breakout": [90]}},
                          "retrieval": {"top_k": 8, "reweight_top_k": 2}})


@pytest.mark.slow
def test_the_workflow_trains_and_evaluates_radt(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(RADT_TINY))
    p = StagePlan(validate_config(merged(DEFAULT, RADT_TINY)))
    section = f"results/report/retrieval/{p.retrieval_report().key}/section.json"
    done = snakemake(tmp_path, section)
    assert done.returncode == 0, done.stderr[-3000:]
    g, seed = "Breakout", 7
    memory = json.loads((tmp_path / f"results/{g}/memory/{p.memory(g).key}/seed{seed}/"
                                     "manifest.json").read_text())
    assert memory["embedding_model"] == p.model(g, "dt").key and memory["width"] == 16
    assert memory["counts"]["kept"] == memory["counts"]["subtrajectories"] > 0
    model_dir = tmp_path / f"results/{g}/models/radt/{p.model(g, 'radt').key}/seed{seed}"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["model"] == "radt" and metrics["epochs"] == 1
    assert json.loads((model_dir / "params.json").read_text())["key"] == p.model(g, "radt").key
    episodes = pd.read_parquet(tmp_path / f"results/{g}/eval/radt/{p.evaluation(g, 'radt').key}"
                                          f"/seed{seed}/episodes.parquet")
    # argmax plays 1 episode per test seed, sample+noop `episodes` (1): 2 setups x 2 seeds
    assert len(episodes) == 4 and set(episodes["model"]) == {"radt"}
    assert (episodes["steps"] <= 30).all()
    folder = tmp_path / Path(section).parent
    described = json.loads((tmp_path / section).read_text())
    for item in described["tables"]:
        assert (folder / item["csv"]).is_file()
    for item in described["figures"]:
        assert (folder / item["png"]).stat().st_size > 0
    ttest = pd.read_csv(folder / "ttest.csv")
    assert sorted(ttest["setup"]) == ["argmax", "sample+noop"] and (ttest["pairs"] == 2).all()
    # nothing left to do on a second run
    again = snakemake(tmp_path, section, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr
