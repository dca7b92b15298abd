"""The results table: every evaluated episode gathered into scores, FDT vs DT, the paper beside
ours, and plots (returns per setup, return against target)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fdt.evaluation.scores import paired_ttest, paper_comparison, score_table
from fdt.io import atomic_path, write_json
from fdt.report.plots import plot_return_vs_target, plot_returns_per_setup


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
