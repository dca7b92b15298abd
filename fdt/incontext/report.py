"""The in-context section: return against in-context episode, per method, with 95% bootstrap
intervals over (goal, seed) pairs, and the table at episodes 1, 10 and 40."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fdt.io import atomic_path

LABELS = {"ad": "AD", "dt": "DT", "radt": "RA-DT", "radt_lm": "RA-DT (domain-agnostic)"}
TABLE_EPISODES = (1, 10, 40)


def bootstrap_ci(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling the (goal, seed) returns."""
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def curves(episodes: pd.DataFrame) -> pd.DataFrame:
    """Mean return per (env, method, episode index) over goals and seeds, with its interval."""
    rows = []
    for (env, method, episode), group in episodes.groupby(["env", "method", "episode"]):
        values = group["return"].to_numpy(float)
        low, high = bootstrap_ci(values)
        rows.append({"env": env, "method": method, "episode": int(episode),
                     "mean": float(values.mean()), "ci_low": low, "ci_high": high,
                     "n": len(values)})
    return pd.DataFrame(rows)


def table(curve: pd.DataFrame) -> pd.DataFrame:
    """Mean [95% CI] at episodes 1, 10 and 40 (or the last episode run, when fewer)."""
    last = int(curve["episode"].max())
    wanted = sorted({min(e, last) for e in TABLE_EPISODES})
    rows = []
    for (env, method), group in curve.groupby(["env", "method"]):
        row = {"env": env, "method": LABELS.get(method, method)}
        for e in wanted:
            hit = group[group["episode"] == e].iloc[0]
            row[f"episode {e}"] = f"{hit['mean']:.1f} [{hit['ci_low']:.1f}, {hit['ci_high']:.1f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def plot(curve: pd.DataFrame, path: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(curve["env"].unique())
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for method in LABELS:
            part = curve[(curve["env"] == env) & (curve["method"] == method)]
            if part.empty:
                continue
            ax.plot(part["episode"], part["mean"], label=LABELS[method])
            ax.fill_between(part["episode"], part["ci_low"], part["ci_high"], alpha=0.2)
        ax.set(title=f"{env}: unseen goals", xlabel="in-context episode", ylabel="return")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
