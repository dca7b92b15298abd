"""The preferences report: DT's true game score against the number of comparisons its reward was
learnt from, beside the reward models' held-out accuracy and plain DT on the true reward."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fdt.io import atomic_path, read_json, write_json
from fdt.preferences.drawing import tree_svg
from fdt.preferences.tree import SortTree

TABLE = "preferences.csv"
FIGURE = "score_vs_comparisons.png"
TREE_FIGURE = "sort_tree.svg"
COLUMNS = ["game", "budget", "seeds", "comparisons", "heldout_accuracy", "heldout_rank_accuracy",
           "reward_correlation", "dt_pref_return", "dt_pref_return_std", "dt_return"]


def seed_returns(episode_files: Sequence[str | Path]) -> pd.Series:
    """Mean return of each training seed's episodes (every setup, target and test seed)."""
    episodes = pd.concat([pd.read_parquet(path, columns=["train_seed", "return"])
                          for path in episode_files], ignore_index=True)
    return episodes.groupby("train_seed")["return"].mean()


def preferences_table(runs: Sequence[Mapping[str, Any]],
                      baseline: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """One row per (game, budget): means over seeds. `runs` gives, per (game, budget, seed), the
    paths of its comparisons, reward metrics, relabelled manifest and evaluation episodes;
    `baseline` each game's plain-DT episode files (empty when dt is not run)."""
    rows = []
    for (game, budget), group in pd.DataFrame(runs).groupby(["game", "budget"]):
        comparisons = [read_json(p)["summary"]["comparisons"] for p in group["comparisons"]]
        metrics = [read_json(p) for p in group["metrics"]]
        correlations = [read_json(p)["relabelled"]["reward_correlation"] for p in group["manifest"]]
        returns = seed_returns(list(group["episodes"]))
        dt = seed_returns(baseline[game]).mean() if baseline.get(game) else np.nan
        rows.append({
            "game": game, "budget": int(budget), "seeds": len(group),
            "comparisons": float(np.mean(comparisons)),
            "heldout_accuracy": _mean(m["heldout_accuracy"] for m in metrics),
            "heldout_rank_accuracy": _mean(m["heldout_rank_accuracy"] for m in metrics),
            "reward_correlation": _mean(correlations),
            "dt_pref_return": float(returns.mean()), "dt_pref_return_std": float(returns.std(ddof=0)),
            "dt_return": float(dt),
        })
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["game", "budget"]).reset_index(drop=True)


def _mean(values: Any) -> float:
    found = [float(v) for v in values if v is not None]
    return float(np.nanmean(found)) if found and not np.isnan(found).all() else float("nan")


def plot_score_vs_comparisons(table: pd.DataFrame, path: str | Path) -> None:
    """Per game: dt_pref's return against comparisons (DT on the true reward dashed), and the
    reward model's held-out accuracy (chance dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = sorted(table["game"].unique())
    fig, axes = plt.subplots(2, len(games), figsize=(5 * len(games), 6), squeeze=False)
    for column, game in enumerate(games):
        rows = table[table["game"] == game].sort_values("comparisons")
        score, accuracy = axes[0][column], axes[1][column]
        score.errorbar(rows["comparisons"], rows["dt_pref_return"], yerr=rows["dt_pref_return_std"],
                       marker="o", capsize=3, label="DT on the learnt reward")
        if rows["dt_return"].notna().any():
            score.axhline(rows["dt_return"].iloc[0], linestyle="--", color="grey",
                          label="DT on the true reward")
        score.set_title(game)
        score.set_ylabel("true game return")
        if column == len(games) - 1:  # one legend, beside the last column, covering no data
            score.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                         frameon=False)
        accuracy.plot(rows["comparisons"], rows["heldout_accuracy"], marker="o",
                      label="held-out comparisons")
        accuracy.plot(rows["comparisons"], rows["heldout_rank_accuracy"], marker="s",
                      label="held-out clips' true order")
        accuracy.axhline(0.5, linestyle=":", color="grey", label="chance")
        accuracy.set_ylim(0, 1.05)
        accuracy.set_xlabel("comparisons")
        accuracy.set_ylabel("reward model accuracy")
        if column == len(games) - 1:
            accuracy.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                            frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def drawn_run(runs: Sequence[Mapping[str, Any]], budget: int) -> Mapping[str, Any] | None:
    """The run whose sort tree the report draws: dt_pref's budget (else the largest), the first
    game and the lowest seed, if its comparisons folder holds a tree (tree mode)."""
    if not runs:
        return None
    budgets = {int(r["budget"]) for r in runs}
    chosen = budget if budget in budgets else max(budgets)
    run = min((r for r in runs if int(r["budget"]) == chosen),
              key=lambda r: (str(r["game"]), int(r.get("seed", 0))))
    return run if (Path(run["comparisons"]).parent / "tree.json").is_file() else None


def write_tree_figure(run: Mapping[str, Any], path: str | Path) -> dict[str, str]:
    """Draw one run's sort tree as SVG; return its figure entry for section.json."""
    tree = SortTree.from_dict(read_json(Path(run["comparisons"]).parent / "tree.json"))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(tree_svg(tree))
    return {"title": f"The sort tree of {run['game']}, {run['budget']} comparisons, seed "
                     f"{run.get('seed', '')}", "png": Path(path).name,
            "caption": f"{tree.clip_count} clips in {tree.size} nodes, depth {tree.depth()}, "
                       f"{len(tree.set_aside)} set aside. Each box is a node in its red-black "
                       "colour, in the column of its place in the order (worst clips left) and "
                       "the row of its depth; it names its clips (equal ones share a node)."}


def write_section(folder: str | Path, table: pd.DataFrame, settings: Mapping[str, Any],
                  runs: Sequence[Mapping[str, Any]] = ()) -> None:
    """The CSV, the figures and `section.json` for the project's HTML report; with `runs` (the
    report's per-run files), the sort tree of one of them is drawn too."""
    folder = Path(folder)
    with atomic_path(folder / TABLE) as tmp:
        table.to_csv(tmp, index=False)
    plot_score_vs_comparisons(table, folder / FIGURE)
    figures = [{"title": "Score against the number of comparisons", "png": FIGURE,
                "caption": "Top: the true game return of DT trained on the training set "
                           "relabelled by the learnt reward (mean over training seeds, std as "
                           "error bar), with DT on the true reward dashed. Bottom: the reward "
                           "model's accuracy on held-out comparisons and on the held-out "
                           "clips' true order; 0.5 is chance."}]
    drawn = drawn_run(runs, int(settings.get("budget", 0)))
    if drawn is not None:
        figures.append(write_tree_figure(drawn, folder / TREE_FIGURE))
    write_json(folder / "section.json", {
        "title": "Learning a reward from preferences (rl-teacher)",
        "summary": summary_text(table, settings),
        "tables": [{"title": "DT on a reward learnt from comparisons, per budget", "csv": TABLE}],
        "figures": figures,
    })


def summary_text(table: pd.DataFrame, settings: Mapping[str, Any]) -> str:
    p, r = settings, settings["reward_model"]
    labeller = (f"the synthetic labeller (true clipped returns, noise {p['noise']:g})"
                if p["source"] == "synthetic" else "people's comparisons from the feedback app")
    query = "sorted into a red-black sort tree" if p["mode"] == "tree" else "compared in random pairs"
    lines = [(f"{p['clips']} clips of {p['clip_length']} steps from each seed's training set "
              f"were {query} by {labeller}; the reward model ({r['loss'].replace('_', '-')} loss, "
              f"ensemble of {r['ensemble']}) learnt from them relabelled the training set, and "
              "DT trained on it (dt_pref) was scored by the true game score under the usual "
              "protocol.")]
    for row in table.itertuples():
        versus = f" (DT on the true reward: {row.dt_return:.1f})" if not np.isnan(row.dt_return) else ""
        lines.append(f"{row.game}, {row.comparisons:.0f} comparisons: held-out accuracy "
                     f"{row.heldout_accuracy:.2f}, return {row.dt_pref_return:.1f}{versus}.")
    return " ".join(lines)
