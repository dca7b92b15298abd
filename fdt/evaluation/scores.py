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

# Standard Atari reference scores: (random, human).
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3), "Asteroids": (719.1, 47388.7), "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1), "BattleZone": (2360.0, 37187.5), "BeamRider": (363.9, 16926.5),
    "Berzerk": (123.7, 2630.4), "Bowling": (23.1, 160.7), "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5), "Centipede": (2090.9, 12017.0), "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4), "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4), "Enduro": (0.0, 860.5), "FishingDerby": (-91.7, -38.7),
    "Freeway": (0.0, 29.6), "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5),
    "Gravitar": (173.0, 3351.4), "Hero": (1027.0, 30826.4), "IceHockey": (-11.2, 0.9),
    "Jamesbond": (29.0, 302.8), "Kangaroo": (52.0, 3035.0), "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3), "MontezumaRevenge": (0.0, 4753.3),
    "MsPacman": (307.3, 6951.6), "NameThisGame": (2292.3, 8049.0), "Phoenix": (761.4, 7242.6),
    "Pitfall": (-229.4, 6463.7), "Pong": (-20.7, 14.6), "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0), "Riverraid": (1338.5, 17118.0), "RoadRunner": (11.5, 7845.0),
    "Robotank": (2.2, 11.9), "Seaquest": (68.4, 42054.7), "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7), "SpaceInvaders": (148.0, 1668.7),
    "StarGunner": (664.0, 10250.0), "Tennis": (-23.8, -8.3), "TimePilot": (3568.0, 5229.2),
    "Tutankham": (11.4, 167.6), "UpNDown": (533.4, 11693.2), "Venture": (0.0, 1187.5),
    "VideoPinball": (16256.9, 17667.9), "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9), "Zaxxon": (32.5, 9173.3),
}

# The DT and FDT papers' gamer normalization: (random, gamer).
GAMER_SCORES: dict[str, tuple[float, float]] = {
    "Breakout": (2.0, 30.0), "Qbert": (164.0, 13455.0), "Pong": (-21.0, 15.0),
    "Seaquest": (68.0, 42055.0),
}

GROUP = ["game", "model", "setup", "target"]


def normalized(score: float, game: str, kind: str = "gamer") -> float | None:
    """100 * (score - random) / (reference - random); None where the game has no reference."""
    table = GAMER_SCORES if kind == "gamer" else REFERENCE_SCORES
    if game not in table:
        return None
    random, reference = table[game]
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
