"""The agents' table and learning curves from their metrics, beside the published numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fdt.report.build import build_agents_report
from tests.conftest import REPO

PAPER = REPO / "workflow" / "data" / "paper_results.csv"


def _run(folder: Path, game: str, agent: str, seed: int, scores: list[float | None]) -> Path:
    """metrics.json and params.json of a finished agent whose iteration i scored scores[i-1]."""
    folder.mkdir(parents=True)
    history = [{"iteration": i, "updates": 10 * i, "loss": 1.0 / i, "q_mean": 0.1 * i,
                **({"eval_mean": s} if s is not None else {})} for i, s in enumerate(scores, 1)]
    last = max(i for i, s in enumerate(scores, 1) if s is not None)
    metrics = {"agent": agent, "game": game, "seed": seed, "history": history,
               "final_evaluation": {"iteration": last, "mean_return": scores[last - 1],
                                    "std_return": 0.0, "episodes": 2}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "params.json").write_text(json.dumps({"params": {"data": "training_set"}}))
    return folder / "metrics.json"


def test_agents_table_and_curves(tmp_path: Path) -> None:
    files = [_run(tmp_path / "a", "Breakout", "cql", 1, [3.0, None, 30.0]),
             _run(tmp_path / "b", "Breakout", "cql", 2, [5.0, None, 16.0]),
             _run(tmp_path / "c", "Breakout", "dqn", 1, [None, 9.0])]
    summary = build_agents_report(files, PAPER, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "agents.csv")
    cql = table[table["agent"] == "cql"].iloc[0]
    assert cql["mean"] == 23.0 and cql["std"] == 7.0 and cql["seeds"] == 2
    assert cql["iteration"] == 3 and cql["data"] == "training_set"
    assert cql["gamer_normalized"] == pytest.approx(100 * (23.0 - 2.0) / (30.0 - 2.0))
    assert cql["dt_paper_1pct"] == 61.1 and cql["dt_paper_1pct_gamer_normalized"] == 211.1
    dqn = table[table["agent"] == "dqn"].iloc[0]
    assert dqn["mean"] == 9.0 and pd.isna(dqn["dt_paper_1pct_gamer_normalized"])
    assert summary["published_columns"] == ["dt_paper_1pct", "dt_paper_1pct_gamer_normalized"]
    curves = pd.read_csv(tmp_path / "report" / "agents_curves.csv")
    assert len(curves) == 3 + 3 + 2 and curves["eval_mean"].notna().sum() == 5
    assert (tmp_path / "report" / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_published_cql_rows_agree_with_the_raw_scores() -> None:
    """The DT paper's normalized CQL scores are its raw ones normalized (a transcription check)."""
    from fdt.evaluation.scores import normalized

    paper = pd.read_csv(PAPER)
    cql = paper[paper["model"] == "CQL"].pivot(index="game", columns="source", values="mean")
    for game, row in cql.iterrows():
        assert normalized(row["dt_paper_1pct"], game) == pytest.approx(
            row["dt_paper_1pct_gamer_normalized"], abs=0.05)
