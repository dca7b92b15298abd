"""People's labels train FDT end to end: the workflow builds the query bundle, a labeller's answers
go into the app's database, and with oracle.kind human the workflow makes labels.parquet from
them, trains FDT on it and evaluates it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from fdt.config import validate_config
from fdt.plan import StagePlan
from fdt.teacher.store import Store
from tests.conftest import REPO
from tests.test_workflow import TINY, snakemake

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
ANSWERS = "feedback/Breakout/seed7/answers.sqlite"


def merged(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def tiny_config(kind: str) -> dict:
    # no gold queries: the oracle is not trained, the run stays short
    return merged(TINY, {"models": ["fdt"], "teacher": {"queries": 6, "gold_rate": 0.0},
                         "evaluation": {"setups": ["argmax"], "test_seeds": [0],
                                        "targets": {"Breakout": [90]}},
                         "oracle": {"kind": kind, "human": {"answers": ANSWERS.replace(
                             "Breakout", "{game}").replace("seed7", "seed{seed}")}}})


def plan_in(workdir: Path, config: dict, monkeypatch: pytest.MonkeyPatch) -> StagePlan:
    """The plan Snakemake makes in `workdir` (the answers' path is relative to it)."""
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(workdir)
    return StagePlan(validate_config(merged(DEFAULT, config)))


@pytest.mark.slow
def test_human_answers_train_fdt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_in(tmp_path, tiny_config("offline"), monkeypatch)
    folder = f"results/Breakout/teacher/queries/{plan.queries('Breakout').key}/seed7"
    built = snakemake(tmp_path, f"{folder}/bundle.json")
    assert built.returncode == 0, built.stderr[-3000:]
    bundle = json.loads((tmp_path / folder / "bundle.json").read_text())
    real = [q for q in bundle["queries"] if q["gold"] is None]
    assert 0 < len(real) <= 6 and len(real) == len(bundle["queries"]) and all((tmp_path / folder / q["clip"]).is_file() for q in real)

    # a labeller answers: yes to the first, no (with another action) to the others
    store = Store(tmp_path / ANSWERS, bundle)
    for k, query in enumerate(real):
        store.hand("ann", query["id"])
        if k == 0:
            store.answer("ann", query["id"], "good")
        else:
            store.answer("ann", query["id"], "bad", (query["action"] + 1) % 4)

    human = plan_in(tmp_path, tiny_config("human"), monkeypatch)
    model = f"results/Breakout/models/fdt/{human.model('Breakout', 'fdt').key}/seed7"
    evaluation = f"results/Breakout/eval/fdt/{human.evaluation('Breakout', 'fdt').key}/seed7"
    section = f"results/report/teacher/{human.teacher_report().key}/section.json"
    done = snakemake(tmp_path, f"{model}/metrics.json", f"{evaluation}/summary.json", section)
    assert done.returncode == 0, done.stderr[-3000:]

    labels_dir = tmp_path / f"results/Breakout/teacher/labels/{human.teacher_labels('Breakout').key}"
    labels = pq.read_table(labels_dir / "seed7" / "labels.parquet")
    assert labels["order"].to_pylist() == [q["order"] for q in real]
    assert labels["feedback"].to_pylist() == [1] + [0] * (len(real) - 1)
    assert labels["best_action"].to_pylist()[1:] == [(q["action"] + 1) % 4 for q in real[1:]]
    params = json.loads((tmp_path / model / "params.json").read_text())
    assert human.teacher_labels("Breakout").key in params["inputs"]
    metrics = json.loads((tmp_path / model / "metrics.json").read_text())
    assert metrics["model"] == "fdt" and metrics["epochs"] == 1
    scores = json.loads((tmp_path / evaluation / "summary.json").read_text())
    assert scores["episodes"] == 1  # 1 setup x 1 target x 1 test seed x 1 episode
    report = json.loads((tmp_path / section).read_text())
    assert [t["csv"] for t in report["tables"]] == ["queries.csv", "labellers.csv"]
    assert f"{len(real)} answers from 1 labeller(s)" in report["summary"]

    # another answer is another digest: new labels and a new FDT, the old ones kept
    before = human.model("Breakout", "fdt").key  # (the plan reads the answers when asked)
    two = Store(tmp_path / ANSWERS, bundle, answers_per_query=2)
    two.hand("bob", real[0]["id"])
    two.answer("bob", real[0]["id"], "good")
    again = plan_in(tmp_path, tiny_config("human"), monkeypatch)
    assert again.model("Breakout", "fdt").key != before
