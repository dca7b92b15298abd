"""The in-context rules end to end on a tiny Dark-Room config (2 training goals, 2 unseen goals;
AD, and RA-DT on the DT it needs as embedder), then nothing left to do; and a missing LM folder
refused at planning, naming the folder, with nothing written. radt_lm on a random TorchScript LM
is trained and evaluated in tests/test_incontext.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from fdt.config import validate_config
from fdt.incontext.lm import save_tiny_lm
from fdt.incontext.plan import InContextPlan
from tests.conftest import REPO
from tests.test_workflow import snakemake


def tiny(lm_path: Path) -> dict:
    return {"incontext": {
        "envs": ["dark_room"], "train_tasks": 2, "eval_tasks": 2, "steps_per_task": 300,
        "methods": ["ad", "radt"], "lm_path": str(lm_path), "seeds": [0],
        "model": {"context": 40, "n_layer": 1, "n_head": 2, "n_embd": 16},
        "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2},
        "memory": {"length": 20, "stride": 20, "top_k": 4},
        "evaluation": {"episodes": 2}}}


def target(overlay: dict) -> str:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, overlay)
    return f"results/report/incontext/{InContextPlan(validate_config(config)).report().key}/section.json"


@pytest.mark.slow
def test_incontext_workflow_end_to_end(tmp_path: Path) -> None:
    overlay = tiny(save_tiny_lm(tmp_path / "lm"))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(overlay))
    goal = target(overlay)
    done = snakemake(tmp_path, goal)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / goal).parent
    section = json.loads((report / "section.json").read_text())
    assert section["figures"][0]["png"] == "returns_per_episode.png"
    assert (report / "returns_per_episode.png").stat().st_size > 0
    table = pd.read_csv(report / "table.csv")
    assert sorted(table["method"]) == ["AD", "RA-DT"]
    dt = list((tmp_path / "results" / "incontext" / "dark_room" / "models" / "dt").rglob("model.pt"))
    assert len(dt) == 1  # RA-DT's embedder, trained though DT is not among the methods
    assert list(table.columns[-2:]) == ["episode 1", "episode 2"]
    again = snakemake(tmp_path, goal, "--dry-run", "--quiet")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_missing_lm_folder_is_refused(tmp_path: Path) -> None:
    overlay = tiny(tmp_path / "no-such-lm")
    overlay["incontext"]["methods"] = ["radt_lm"]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(overlay))
    done = snakemake(tmp_path, target(overlay))
    assert done.returncode != 0
    assert "no-such-lm: no such folder" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()

