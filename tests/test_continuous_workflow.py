"""The continuous-control rules end to end on a tiny InvertedPendulum config: behaviour agent,
a generated dataset with its own hyperparameters, DT for two seeds, the report section; then
nothing left to do."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from fdt.config import validate_config
from fdt.continuous.episodes import read_episodes
from fdt.plan import StagePlan
from tests.conftest import REPO
from tests.test_workflow import snakemake

TINY_CONTINUOUS = {"continuous": {
    "seeds": [1, 2],
    "datasets": ["InvertedPendulum-v5/medium"],
    "behaviour": {"steps": 200, "start_steps": 100, "batch_size": 16, "hidden": 16, "eval_every": 100,
                  "eval_episodes": 1, "dataset_steps": 150, "reference_episodes": 2},
    "dt": {"embedding_dim": 16, "num_layers": 1, "batch_size": 8, "update_steps": 20, "warmup_steps": 5,
           "eval_every": 10, "eval_episodes": 2, "target_returns": [500.0]},
    "hyperparameters": {"InvertedPendulum-v5/medium": {"target_returns": [500.0, 50.0]},
                        "InvertedPendulum-v5/expert": {"target_returns": [1.0]}},  # not run: ignored
    "run": {"envs": 4, "checkpoint_every": 10, "log_every": 5},
}}


@pytest.mark.slow
def test_continuous_workflow_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONTINUOUS))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, TINY_CONTINUOUS)
    plan = StagePlan(validate_config(config))
    target = f"results/report/continuous/{plan.continuous_report().key}/section.json"
    report = (tmp_path / target).parent
    done = snakemake(tmp_path, target)
    assert done.returncode == 0, done.stderr[-3000:]

    section = json.loads((report / "section.json").read_text())
    assert [t["csv"] for t in section["tables"]] == ["scores.csv", "datasets.csv"]
    assert [f["png"] for f in section["figures"]] == ["score_per_target.png", "learning_curves.png",
                                                      "behaviour.png"]
    for name in ("scores.csv", "datasets.csv", "score_per_target.png", "learning_curves.png", "behaviour.png"):
        assert (report / name).stat().st_size > 0, name
    assert "InvertedPendulum-v5/medium" in section["summary"]

    behaviour = tmp_path / f"results/continuous/behaviour/InvertedPendulum-v5/{plan.continuous_behaviour('InvertedPendulum-v5').key}"
    refs = json.loads((behaviour / "references.json").read_text())
    replay = read_episodes(behaviour / "replay.parquet")
    assert len(replay) == 200
    scores = pd.read_csv(report / "scores.csv")
    # one row per target of the dataset's own hyperparameters, both seeds in each
    assert sorted(zip(scores["dataset"], scores["target"])) == [
        ("InvertedPendulum-v5/medium", 50.0), ("InvertedPendulum-v5/medium", 500.0)]
    assert (scores["seeds"] == 2).all() and (scores["episodes_per_seed"] == 2).all()
    assert (scores["reference_random"] == refs["random"]).all()

    for name in TINY_CONTINUOUS["continuous"]["datasets"]:
        slug = name.replace("/", "-")
        data = tmp_path / f"results/continuous/data/{slug}/{plan.continuous_dataset(name).key}"
        info = json.loads((data / "info.json").read_text())
        episodes = read_episodes(data / "episodes.parquet")
        assert info["transitions"] == len(episodes) and info["episodes"] == len(episodes.lengths())
        assert json.loads((data / "params.json").read_text())["key"] == data.name
        per_seed = []
        for seed in (1, 2):
            run = tmp_path / f"results/continuous/dt/{slug}/{plan.continuous_model(name).key}/seed{seed}"
            evaluation = pd.read_csv(run / "evaluation.csv")
            assert sorted(evaluation["step"].unique()) == [10, 20]
            # the normalized score by hand, from the run's own references
            expected = 100 * (evaluation["score"] - refs["random"]) / (refs["expert"] - refs["random"])
            assert ((evaluation["normalized"] - expected).abs() <= 1e-5 * expected.abs()).all()  # 6 digits
            last = evaluation[evaluation["step"] == 20]
            per_seed.append(last.groupby("target")["normalized"].mean())
            assert pd.read_csv(run / "curve.csv")["step"].tolist() == [5, 10, 15, 20]
            assert not (run / "checkpoint.pt").exists()
        mean = (per_seed[0] + per_seed[1]) / 2
        rows = scores[scores["dataset"] == name].set_index("target")["normalized_mean"]
        assert ((rows - mean).abs() <= 1e-5 * mean.abs()).all()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("continuous").experiment_id])
    assert sorted(r.data.tags["stage"] for r in runs) == ["continuous_behaviour"] + ["continuous_train"] * 2
    assert all(r.info.status == "FINISHED" for r in runs)

    again = snakemake(tmp_path, "--dry-run", target)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
