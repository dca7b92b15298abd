"""The results table: every evaluated episode gathered into scores, FDT vs DT, the paper beside
ours, and plots (returns per setup, return against target); and the agents' table (batch_rl's
agents per game beside the published numbers) with their learning curves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fdt.evaluation.scores import normalized, paired_ttest, paper_comparison, score_table
from fdt.io import atomic_path, write_json
from fdt.report.plots import plot_learning_curves, plot_return_vs_target, plot_returns_per_setup


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def build_report(episode_files: Sequence[str | Path], paper_csv: str | Path, out_dir: str | Path,
                 *, oracle_files: Sequence[str | Path] = (),
                 setups: Sequence[str] | None = None) -> dict[str, Any]:
    """Write scores.csv, ttest.csv, comparison.csv, oracle.csv, the two plots and summary.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    episodes = pd.concat([pd.read_parquet(p) for p in episode_files], ignore_index=True)
    table = score_table(episodes)
    ttest = paired_ttest(episodes)
    if ttest.empty:
        ttest = pd.DataFrame(columns=["game", "setup", "target", "pairs", "fdt_mean", "dt_mean",
                                      "difference", "t", "p_value"])
    comparison = paper_comparison(table, paper_csv)
    _write_csv(table, out_dir / "scores.csv")
    _write_csv(ttest, out_dir / "ttest.csv")
    _write_csv(comparison, out_dir / "comparison.csv")
    oracle_rows = []
    for path in oracle_files:
        record = pd.read_json(path, typ="series")
        oracle_rows.append({"game": record["game"], "kind": record["oracle"]["kind"],
                            "episodes": len(record["episodes"]),
                            "mean_return": record["mean_return"],
                            "std_return": record["std_return"]})
    _write_csv(pd.DataFrame(oracle_rows, columns=["game", "kind", "episodes", "mean_return",
                                                  "std_return"]), out_dir / "oracle.csv")
    with atomic_path(out_dir / "returns_per_setup.png") as tmp:
        plot_returns_per_setup(table, tmp, setups)
    with atomic_path(out_dir / "return_vs_target.png") as tmp:
        plot_return_vs_target(table, tmp)
    summary = {"episodes": len(episodes), "rows": len(table),
               "games": sorted(episodes["game"].unique()),
               "models": sorted(episodes["model"].unique()),
               "compared_with_paper": int(comparison["paper_mean"].notna().sum())}
    write_json(out_dir / "summary.json", summary)
    return summary


# --- batch_rl's agents -------------------------------------------------------------------------

# How the papers name the agents (the `model` column of workflow/data/paper_results.csv).
AGENT_PAPER_NAMES = {"dqn": "DQN", "c51": "C51", "qr_dqn": "QR-DQN", "rem": "REM",
                     "ensemble_dqn": "Ensemble-DQN", "cql": "CQL"}
CURVE_COLUMNS = ["game", "agent", "seed", "iteration", "updates", "loss", "q_mean", "eval_mean"]


def agent_scores(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per (game, agent): the mean and std over seeds of each seed's last score (the mean return
    of its final evaluation under the Dopamine protocol), with the normalized scores."""
    rows = [{"game": r["game"], "agent": r["agent"], "seed": r["seed"], "data": r["data"],
             "iteration": r["final_evaluation"]["iteration"],
             "episodes": r["final_evaluation"]["episodes"],
             "return": r["final_evaluation"]["mean_return"]} for r in runs]
    columns = ["game", "agent", "data", "iteration", "seeds", "episodes", "mean", "std",
               "gamer_normalized", "human_normalized"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows).groupby(["game", "agent", "data"], as_index=False).agg(
        iteration=("iteration", "max"), seeds=("seed", "size"), episodes=("episodes", "sum"),
        mean=("return", "mean"), std=("return", lambda x: float(x.std(ddof=0))))
    table["gamer_normalized"] = [normalized(m, g, "gamer") for m, g in zip(table["mean"], table["game"])]
    table["human_normalized"] = [normalized(m, g, "human") for m, g in zip(table["mean"], table["game"])]
    return table[columns].sort_values(["game", "agent"]).reset_index(drop=True)


def published_agents(table: pd.DataFrame, paper_csv: str | Path) -> pd.DataFrame:
    """The agents' table with one column per published source (raw scores, or gamer-normalized
    where the source's name says so), matched by game and the paper's name of the agent."""
    paper = pd.read_csv(paper_csv)
    paper = paper[paper["setup"].isna() & paper["model"].isin(AGENT_PAPER_NAMES.values())]
    out = table.copy()
    out["paper_name"] = out["agent"].map(AGENT_PAPER_NAMES)
    for source, rows in paper.groupby("source", sort=True):
        values = rows.set_index(["game", "model"])["mean"]
        out[source] = [values.get((g, m)) for g, m in zip(out["game"], out["paper_name"])]
    return out.drop(columns="paper_name")


def build_agents_report(metrics_files: Sequence[str | Path], paper_csv: str | Path,
                        out_dir: str | Path) -> dict[str, Any]:
    """Write agents.csv (agent x game beside the published numbers), agents_curves.csv, the
    learning curves and summary.json from the agents' metrics.json files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for path in metrics_files:
        record = json.loads(Path(path).read_text())
        params = json.loads((Path(path).parent / "params.json").read_text())["params"]
        runs.append({**record, "data": params["data"]})
    scored = [r for r in runs if r["final_evaluation"] is not None]
    table = published_agents(agent_scores(scored), paper_csv)
    curves = pd.DataFrame([{"game": r["game"], "agent": r["agent"], "seed": r["seed"], **h}
                           for r in runs for h in r["history"]])
    curves = curves.reindex(columns=CURVE_COLUMNS)
    _write_csv(table, out_dir / "agents.csv")
    _write_csv(curves, out_dir / "agents_curves.csv")
    with atomic_path(out_dir / "learning_curves.png") as tmp:
        plot_learning_curves(curves, tmp)
    summary = {"runs": len(runs), "rows": len(table),
               "games": sorted({r["game"] for r in runs}),
               "agents": sorted({r["agent"] for r in runs}),
               "published_columns": [c for c in table.columns if c not in
                                     ("game", "agent", "data", "iteration", "seeds", "episodes",
                                      "mean", "std", "gamer_normalized", "human_normalized")]}
    write_json(out_dir / "summary.json", summary)
    return summary
