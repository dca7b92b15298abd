"""The workflow end to end on a tiny demo config: simulate -> fetch -> convert, then nothing to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO

TINY = {
    "games": ["Breakout"], "runs": [1], "buffers": [0, 1, 2, 3],
    # the grid-world system has its own end-to-end test (test_incontext_workflow.py); the SLURM
    # test's tiny run has every system, this one included
    "incontext": {"envs": []},
    "demo": {"capacity": 1500, "checkpoints": 3, "final_rows": 300, "max_episode_steps": 800},
    "seeds": [7],
    "dataset": {"num_buffers": 3, "buffers_end": 3, "capacity": 1500, "transitions": 600},
    "train": {"context_length": 5, "batch_size": 16, "epochs": 1, "n_layer": 1, "n_head": 2,
              "n_embd": 16, "warmup_tokens": 80},
    "mining": {"transitions": 3000, "trajectories_per_visit": 3, "images": 4},
    "models": ["dt", "bc", "fdt"],
    "oracle": {"kind": "offline", "offline": {"updates": 20, "batch_size": 8, "checkpoint_every": 10,
                                              "target_update_period": 10},
               "evaluation": {"episodes": 1, "max_steps": 30}},
    "labels": {"all_transitions": True, "batch_size": 64},
    "fdt": {"budget": 3, "lambda": 0.1},
    "teacher": {"queries": 0},  # the labelling app's bundles: tests/test_teacher_workflow.py
    "evaluation": {"setups": ["argmax", "sample+noop"], "test_seeds": [0, 1], "episodes": 1,
                   "targets": {"Breakout": [90, 120]}, "max_steps": 30, "envs": 4},
    # merged over config.yaml's agents (dqn and cql, 2 iterations of 2 checkpoints)
    "agents": {"steps_per_iteration": 3, "evaluation": {"steps": 30, "max_steps": 30}},
    "continuous": {"datasets": []},  # off here: tests/test_continuous_workflow.py runs it
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "tiny.yaml"),
               "--cores", "2", *args]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the default store
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny workflow, run once to the end for the tests of this module."""
    workdir = tmp_path_factory.mktemp("tiny")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = snakemake(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tiny_run: Path) -> None:
    tmp_path = tiny_run
    run = tmp_path / "results" / "Breakout" / "replay" / "run1"
    summary = json.loads((run / "summary.json").read_text())
    # Rows 0 .. 3*1500-1+300-1: every row counted once, as padding or as a transition.
    assert summary["totals"]["rows_new"] == 3 * 1500 - 1 + 300
    assert summary["totals"]["rows_new"] == summary["totals"]["transitions"] + summary["totals"]["padding_rows"]
    rows = sum(pq.ParquetFile(run / f"buffer{n}.parquet").metadata.num_rows for n in range(4))
    assert rows == summary["totals"]["transitions"]
    params = json.loads((run / "params.json").read_text())
    assert params["params"]["buffers"] == [0, 1, 2, 3] and params["params"]["episode_cap"] == 800
    manifest = json.loads((tmp_path / "resources/replay/Breakout/1/manifest.json").read_text())
    assert manifest["checkpoints"] == [0, 1, 2, 3] and len(manifest["files"]) == 24
    assert manifest["source"]["kind"] == "demo"

    datasets = list((tmp_path / "results/Breakout/dataset").glob("*/seed7/manifest.json"))
    assert len(datasets) == 1
    training_set = json.loads(datasets[0].read_text())
    assert training_set["counts"]["transitions"] >= 600 and training_set["num_actions"] == 4
    assert training_set["sampling"]["capacity"] == 1500 and training_set["sampling"]["seed"] == 7
    for model in ("dt", "bc", "fdt"):
        found = list((tmp_path / f"results/Breakout/models/{model}").glob("*/seed7/metrics.json"))
        assert len(found) == 1
        metrics = json.loads(found[0].read_text())
        assert metrics["epochs"] == 1 and metrics["model"] == model
        assert metrics["samples_per_epoch"] == training_set["counts"]["transitions"] - 15
        assert (found[0].parent / "model.pt").is_file()
        params = json.loads((found[0].parent / "params.json").read_text())
        assert params["key"] == found[0].parent.parent.name
        if model != "fdt":
            assert params["inputs"] == [datasets[0].parent.parent.name]
    _check_mined_states(tmp_path, datasets[0].parent)
    _check_labels_and_fdt(tmp_path, datasets[0].parent)
    _check_report(tmp_path)
    _check_agents(tmp_path)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fdt").experiment_id])
    stages = sorted(r.data.tags["stage"] for r in runs)
    assert stages == sorted(["train"] * 3 + ["evaluate"] * 3 + ["mine_states", "label_states",
                                                                "train_oracle", "evaluate_oracle"])
    assert all(r.info.status == "FINISHED" for r in runs)
    trained = {r.data.tags["key"]: r for r in runs if r.data.tags["stage"] == "train"}
    assert sorted(r.data.tags["model"] for r in trained.values()) == ["bc", "dt", "fdt"]
    assert all(r.data.tags["seed"] == "7" for r in trained.values())
    for run in (r for r in runs if r.data.tags["stage"] == "evaluate"):
        model_run = trained[run.data.tags["model_key"]]  # an evaluation names its model's run
        assert model_run.data.tags["model"] == run.data.tags["model"]
        assert any(name.startswith("scores.") for name in run.data.metrics)

    html = tmp_path / "report.html"
    made = snakemake(tmp_path, "--report", str(html))
    assert made.returncode == 0, made.stderr[-2000:]
    page = html.read_text(errors="replace")
    for name in ("scores.csv", "comparison.csv", "ttest.csv", "returns_per_setup.png"):
        assert name in page, name

    again = snakemake(tmp_path, "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def planned_jobs(workdir: Path, change: dict | None = None,
                 repo: Path = REPO) -> dict[str, int]:
    """The jobs a dry run schedules, per rule, with `change` merged over the tiny config, the
    workflow and library taken from `repo`."""
    config = json.loads(json.dumps(TINY))
    for section, values in (change or {}).items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "changed.yaml"),
               "--cores", "2", "--dry-run", "--quiet", "rules"]
    env = {**os.environ, "PYTHONPATH": str(repo)}  # `import fdt` finds this copy first
    # (run from the working directory: from the repository, `-m` would put it first on the path)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                          cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout + done.stderr
    if "Nothing to be done" in text:
        return {}
    counts = {}
    table = text.split("Job stats:", 1)[1].splitlines()
    for line in table[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            if counts:
                break
            continue
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.slow
def test_only_stale_stages_rerun(tiny_run: Path) -> None:
    """Keys decide folders: a changed value schedules exactly the stages it feeds."""
    assert planned_jobs(tiny_run) == {}
    downstream_of_fdt = {"train": 1, "evaluate": 1, "report": 1, "report_html": 1, "all": 1}
    assert planned_jobs(tiny_run, {"fdt": {"lambda": 0.5}}) == downstream_of_fdt
    assert planned_jobs(tiny_run, {"mining": {"gamma": 0.95}}) == {
        "mine_states": 1, "label_states": 1, **downstream_of_fdt}
    assert planned_jobs(tiny_run, {"evaluation": {"episodes": 2}}) == {
        "evaluate": 3, "evaluate_random": 1, "report": 1, "report_html": 1, "all": 1}
    assert planned_jobs(tiny_run, {"fdt": {"lambda": 0.1}}) == {}  # changed back: found again
    # Deleting one result reruns its job and what reads that job's outputs, nothing upstream or
    # beside it. (Snakemake regenerates a missing file only when something still needs it.)
    states = next((tiny_run / "results/Breakout/states").glob("*/seed7/counts.json"))
    kept = states.read_bytes()
    states.unlink()
    try:
        assert planned_jobs(tiny_run) == {"mine_states": 1, "label_states": 1,
                                          **downstream_of_fdt}
    finally:
        states.write_bytes(kept)


@pytest.mark.slow
def test_editing_a_module_reruns_only_its_stages(tiny_run: Path, tmp_path: Path) -> None:
    """A copy of the workflow whose fdt/models/trainer.py has one more line: training (which runs
    it) and evaluation (which loads models with it) are stale, nothing upstream; then one whose
    fdt/mining/images.py, which the mining script imports only through fdt.mining.stage, has one
    more: mining and what reads the mined states are stale."""
    import shutil

    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    for folder in ("workflow", "fdt", "config", "profiles"):
        shutil.copytree(REPO / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    # only their data path moved (and the HTML report gathers them)
    reports = {"report": 1, "report_agents": 1, "report_html": 1, "all": 1}
    assert planned_jobs(tiny_run, repo=copy) == reports
    with open(copy / "fdt" / "models" / "trainer.py", "a") as f:
        f.write("\n# an edit\n")
    assert planned_jobs(tiny_run, repo=copy) == {"train": 3, "evaluate": 3, **reports}
    with open(copy / "fdt" / "mining" / "images.py", "a") as f:
        f.write("\n# an edit\n")
    assert planned_jobs(tiny_run, repo=copy) == {"train": 3, "evaluate": 3, "mine_states": 1,
                                                 "label_states": 1, **reports}
    with open(copy / "fdt" / "agents" / "rem.py", "a") as f:  # the agents' code: their jobs only
        f.write("\n# an edit\n")
    assert planned_jobs(tiny_run, repo=copy) == {"train": 3, "evaluate": 3, "mine_states": 1,
                                                 "label_states": 1, "train_agent": 2, **reports}


def _check_mined_states(workdir: Path, training_set: Path) -> None:
    """The mined states line up with the training set the states were mined for."""
    from fdt.dataset.training_set import TrainingSet

    found = list((workdir / "results/Breakout/states").glob("*/seed7/counts.json"))
    assert len(found) == 1
    counts = json.loads(found[0].read_text())["counts"]
    assert counts["transitions"] >= 3000 and counts["important_states"] > 0 and 0 < counts["allowed_states"] < counts["transitions"]
    states = pq.read_table(found[0].parent / "states.parquet").to_pandas()
    assert len(states) == counts["important_states"]
    params = json.loads((found[0].parent / "params.json").read_text())
    assert params["inputs"] == [training_set.parent.name]
    data = TrainingSet(training_set)
    positions = states["position"].to_numpy()
    assert (data.replay_index[positions] == states["replay_index"].to_numpy()).all()
    assert (data.actions[positions] == states["action"].to_numpy()).all()
    assert not data.padding[positions].any() and states["allowed"].all()
    assert (states["gap"].diff().dropna() <= 0).all()  # ranked by gap
    images = sorted(p.name for p in (found[0].parent / "images").glob("*.png"))
    assert "contact_sheet.png" in images and len(images) == min(4, len(states)) + 1


def _check_labels_and_fdt(workdir: Path, training_set: Path) -> None:
    """The oracle labels the mined states; FDT trains on the first `budget` of them."""
    from fdt.dataset.training_set import TrainingSet

    oracle = list((workdir / "results/Breakout/oracle").glob("*/evaluation.json"))
    assert len(oracle) == 1
    evaluation = json.loads(oracle[0].read_text())
    assert len(evaluation["episodes"]) == 1 and evaluation["episodes"][0]["steps"] <= 30
    assert json.loads((oracle[0].parent / "metrics.json").read_text())["updates"] == 20
    found = list((workdir / "results/Breakout/labels").glob("*/seed7/agreement.json"))
    assert len(found) == 1
    agreement = json.loads(found[0].read_text())
    labels = pq.read_table(found[0].parent / "labels.parquet").to_pandas()
    states = pq.read_table(next((workdir / "results/Breakout/states").glob(
        "*/seed7/states.parquet"))).to_pandas()
    assert labels["position"].tolist() == states["position"].tolist()
    assert agreement["states"]["count"] == len(labels)
    assert agreement["states"]["positives"] == int(labels["feedback"].sum())
    assert (labels["feedback"] == (labels["oracle_action"] == labels["action"])).all()
    data = TrainingSet(training_set)
    assert agreement["transitions"]["count"] == int((~data.padding).sum())
    assert len(labels["q_values"].iloc[0]) == 4
    fdt = json.loads(next((workdir / "results/Breakout/models/fdt").glob(
        "*/seed7/metrics.json")).read_text())
    first = labels.head(3)
    assert fdt["feedback"]["feedback_states"] == len(first)
    assert fdt["feedback"]["positives"] == int(first["feedback"].sum())


def _check_report(workdir: Path) -> None:
    """Each model played 2 setups x 2 targets x 2 test seeds x 1 episode; the report has them."""
    import pandas as pd

    for model in ("dt", "bc", "fdt"):
        found = list((workdir / f"results/Breakout/eval/{model}").glob("*/seed7/episodes.parquet"))
        assert len(found) == 1
        episodes = pd.read_parquet(found[0])
        assert len(episodes) == 8 and (episodes["steps"] <= 30).all()
        assert sorted(episodes["target"].unique()) == [90.0, 120.0]
    reports = list((workdir / "results/report").glob("*/scores.csv"))
    assert len(reports) == 1
    report = reports[0].parent
    assert json.loads((report / "params.json").read_text())["key"] == report.name
    scores = pd.read_csv(report / "scores.csv")
    assert len(scores) == 3 * 2 * 2 and (scores["seeds"] == 2).all()
    assert set(scores["model"]) == {"dt", "bc", "fdt"}
    comparison = pd.read_csv(report / "comparison.csv")
    published = comparison[(comparison["target"] == 90) & (comparison["setup"] == "argmax")]
    assert sorted(published["paper_mean"]) == [133.9, 144.7, 174.9]  # DT, BC, FDT in Table 5
    assert len(pd.read_csv(report / "ttest.csv")) == 4
    assert len(pd.read_csv(report / "oracle.csv")) == 1
    for plot in ("returns_per_setup.png", "return_vs_target.png", "behaviour.png",
                 "training_curves.png", "contact_sheet_Breakout.png"):
        assert (report / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    random = pd.read_csv(report / "random.csv")  # 2 test seeds x 1 episode, 30-step cap
    assert random.loc[0, "episodes"] == 2 and random.loc[0, "mean_steps"] <= 30
    behaviour = pd.read_csv(report / "behaviour.csv")
    assert behaviour["checkpoint"].tolist() == [0, 1, 2]  # the training set's checkpoints
    assert pd.read_csv(report / "oracle.csv").loc[0, "labelled_states"] > 0
    pages = list((workdir / "results/report/html").glob("*/index.html"))
    assert len(pages) == 1
    page = pages[0].read_text()
    assert "Decision Transformer, BC and FDT" in page and "batch_rl&#x27;s offline agents" in page


def _check_agents(workdir: Path) -> None:
    """batch_rl's agents: 2 iterations of 3 updates each, scored after each, and their table."""
    import pandas as pd

    for agent in ("dqn", "cql"):
        found = list((workdir / f"results/Breakout/agents/{agent}").glob("*/seed7/metrics.json"))
        assert len(found) == 1
        metrics = json.loads(found[0].read_text())
        assert metrics["iterations"] == 2 and metrics["updates"] == 6
        assert [e["iteration"] for e in metrics["evaluations"]] == [1, 2]
        assert all(len(e["episodes"]) == 1 and e["episodes"][0]["steps"] <= 30
                   for e in metrics["evaluations"])
        assert all(len(h["checkpoints"]) == 2 for h in metrics["history"])
        params = json.loads((found[0].parent / "params.json").read_text())
        assert params["key"] == found[0].parent.parent.name and params["params"]["agent"] == agent
    tables = list((workdir / "results/report/agents").glob("*/agents.csv"))
    assert len(tables) == 1
    table = pd.read_csv(tables[0])
    assert sorted(table["agent"]) == ["cql", "dqn"] and (table["seeds"] == 1).all()
    assert table.set_index("agent").loc["cql", "dt_paper_1pct"] == 61.1
    assert (tables[0].parent / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("agents").experiment_id])
    assert sorted(r.data.tags["agent"] for r in runs) == ["cql", "dqn"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_bad_config_stops_before_any_job(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "games": ["Breakot"]}))
    done = snakemake(tmp_path, "--dry-run")
    assert done.returncode != 0
    assert "config error in the workflow config at games: unknown game 'Breakot'" in done.stdout + done.stderr
