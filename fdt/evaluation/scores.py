"""Scores: per-setup means over test seeds, normalized scores, FDT vs DT, the paper side by side.

The reference reports, per setup, the mean and standard deviation over test seeds of each seed's
mean episode return, the per-seed mean truncated to an integer (method.md §6); with several training
seeds we pool every (training seed, test seed) mean. Normalized scores:
- gamer-normalized, 100 * (score - random) / (gamer - random), with the DT/FDT papers' gamer
  scores (docs/method.md §6; known for Breakout, Qbert, Pong, Seaquest);
- human-normalized, with the standard random and human reference scores of the Atari 57 table
  (as in the DQN, Dueling and Rainbow papers). The dataset's AirRaid, Carnival, ElevatorAction,
  JourneyEscape and Pooyan have no published reference scores: their normalized scores are empty.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from fdt.games import GAMES

GROUP = ["game", "model", "setup", "target"]


def normalized(score: float, game: str, kind: str = "gamer") -> float | None:
    """100 * (score - random) / (reference - random); None where the game has no reference."""
    facts = GAMES.get(game)
    scores = None if facts is None else (
        facts.gamer_scores if kind == "gamer" else facts.reference_scores)
    if scores is None:
        return None
    random, reference = scores
    return 100.0 * (score - random) / (reference - random)


def seed_means(episodes: pd.DataFrame) -> pd.DataFrame:
    """Each (training seed, test seed)'s mean episode return, truncated to an integer."""
    keys = GROUP + ["train_seed", "test_seed"]
    means = episodes.groupby(keys, as_index=False)["return"].mean()
    means["seed_mean"] = np.trunc(means["return"]).astype(np.int64)
    return means.drop(columns="return")


def score_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per (game, model, setup, target): mean and std over seeds, episodes, normalized scores."""
    means = seed_means(episodes)
    table = means.groupby(GROUP, as_index=False).agg(
        mean=("seed_mean", "mean"), std=("seed_mean", lambda x: float(np.std(x))),
        seeds=("seed_mean", "size"))
    counts = episodes.groupby(GROUP, as_index=False).agg(episodes=("return", "size"))
    table = table.merge(counts, on=GROUP)
    table["gamer_normalized"] = [normalized(m, g, "gamer") for m, g in zip(table["mean"], table["game"])]
    table["human_normalized"] = [normalized(m, g, "human") for m, g in zip(table["mean"], table["game"])]
    return table.sort_values(GROUP).reset_index(drop=True)


def paired_ttest(episodes: pd.DataFrame, first: str = "fdt", second: str = "dt") -> pd.DataFrame:
    """FDT vs DT per (game, setup, target), paired by (training seed, test seed)."""
    from scipy import stats

    means = seed_means(episodes)
    rows = []
    for (game, setup, target), group in means.groupby(["game", "setup", "target"]):
        a = group[group["model"] == first].set_index(["train_seed", "test_seed"])["seed_mean"]
        b = group[group["model"] == second].set_index(["train_seed", "test_seed"])["seed_mean"]
        common = a.index.intersection(b.index)
        if len(common) == 0:
            continue
        x, y = a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
        if len(common) >= 2 and np.any(x - y != x[0] - y[0]):
            result = stats.ttest_rel(x, y)
            t, p = float(result.statistic), float(result.pvalue)
        else:  # one pair, or identical differences: no spread to test against
            t = p = math.nan
        rows.append({"game": game, "setup": setup, "target": target, "pairs": len(common),
                     f"{first}_mean": x.mean(), f"{second}_mean": y.mean(),
                     "difference": float((x - y).mean()), "t": t, "p_value": p})
    return pd.DataFrame(rows)


def paper_comparison(table: pd.DataFrame, paper_csv: str | Path) -> pd.DataFrame:
    """Our scores beside the published ones (same game, model, setup and target)."""
    paper = pd.read_csv(paper_csv)
    paper = paper[paper["setup"].notna() & paper["target_rtg"].notna()].copy()
    paper["model"] = paper["model"].str.lower()
    paper = paper.rename(columns={"target_rtg": "target", "mean": "paper_mean",
                                  "std": "paper_std", "source": "paper_source"})
    ours = table[["game", "model", "setup", "target", "mean", "std", "seeds"]].copy()
    ours["target"] = ours["target"].astype(float)
    paper["target"] = paper["target"].astype(float)
    merged = ours.merge(paper, on=["game", "model", "setup", "target"], how="left")
    merged["ratio_to_paper"] = merged["mean"] / merged["paper_mean"]
    return merged
