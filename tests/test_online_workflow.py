"""The online loop's rules end to end: a tiny `online` section (Hopper-v5, rl and synth at one
budget, one seed, 200 steps) planned and run by Snakemake to the report's table and figure."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_workflow import snakemake

pytest.importorskip("mujoco")

TINY_ONLINE = {"online": {
    "scale": "tiny", "envs": ["Hopper-v5"], "modes": ["rl", "synth"], "budgets": [8], "seeds": [0],
    "defaults": {"comparisons": "pairs"},
    "scales": {"tiny": {"steps": 200, "pretrain_iters": 10, "retrain_every": 100,
                        "retrain_updates": 2, "eval_every": 100, "eval_episodes": 1,
                        "start_steps": 150, "hidden": 16, "batch_size": 16,
                        "checkpoint_every": 100, "reward_batch": 8}},
}}

TARGET = "results/report/online/tiny/section.json"


@pytest.mark.slow
def test_online_rules_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_ONLINE))
    done = snakemake(tmp_path, TARGET)
    assert done.returncode == 0, done.stderr[-3000:]
    sections = [tmp_path / TARGET]
    section = json.loads(sections[0].read_text())
    assert "rl-teacher" in section["claim"] and "| Hopper-v5 | synth | 8 |" in section["table"]
    rows = list(csv.DictReader(open(sections[0].parent / "online.csv")))
    assert {(r["mode"], r["budget"], r["step"]) for r in rows} == {
        ("rl", "0", "100"), ("rl", "0", "200"), ("synth", "8", "100"), ("synth", "8", "200")}
    assert (sections[0].parent / "return_vs_steps.png").stat().st_size > 1000
    again = snakemake(tmp_path, "--dry-run", TARGET)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_scales_own_budgets_and_seeds_replace_the_sections(tmp_path: Path) -> None:
    """config/online.yaml's `full` scale names its own budgets (and `atari_cpu` its game and
    seeds): the plan has exactly those runs (rl has no budget), not the section's."""
    section = json.loads(json.dumps(TINY_ONLINE))
    section["online"]["scales"]["tiny"].update(budgets=[3, 5], seeds=[0, 1])
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(section))
    dry = snakemake(tmp_path, "--dry-run", TARGET)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = set(re.findall(r"online: (\w+) on Hopper-v5 \((\d+) labels\), seed (\d)",
                             dry.stdout + dry.stderr))
    assert planned == {(mode, budget, seed) for mode, budget in
                       [("rl", "0"), ("synth", "3"), ("synth", "5")] for seed in "01"}


@pytest.mark.parametrize("scale", ["reduced", "full", "atari_cpu", "atari_gpu"])
def test_every_scale_of_the_committed_config_plans(tmp_path: Path, scale: str) -> None:
    """config/online.yaml as the README runs it: each scale plans its runs and the report."""
    committed = yaml.safe_load((REPO / "config" / "online.yaml").read_text())
    committed["online"]["scale"] = scale
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(committed))
    dry = snakemake(tmp_path, "--dry-run", f"results/report/online/{scale}/section.json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    plan = {**committed["online"], **committed["online"]["scales"][scale]}
    runs = len(plan["envs"]) * len(plan["seeds"]) * \
        sum(1 if mode == "rl" else len(plan["budgets"]) for mode in plan["modes"])
    assert len(re.findall(r"online: (?:rl|synth) on ", dry.stdout + dry.stderr)) == runs
