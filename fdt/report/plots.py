"""The report's plots: returns per setup, return against target, the agents' learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def legend_beside(ax: object, **kwargs: object) -> None:
    """The legend to the right of the axes, where it covers no data (tight_layout keeps room)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0),  # type: ignore[attr-defined]
              frameon=False, **kwargs)


def plot_returns_per_setup(table: pd.DataFrame, path: str | Path,
                           setups: Sequence[str] | None = None) -> None:
    """Grouped bars: mean return (std as error bar) per setup and model, one panel per game."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = sorted(table["game"].unique())
    fig, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 4), squeeze=False)
    for ax, game in zip(axes[0], games):
        rows = table[table["game"] == game]
        first_target = rows.groupby("model")["target"].transform("min")
        rows = rows[rows["target"] == first_target]
        order = [s for s in (setups or sorted(rows["setup"].unique())) if s in set(rows["setup"])]
        models = sorted(rows["model"].unique())
        width = 0.8 / max(1, len(models))
        for i, model in enumerate(models):
            mine = rows[rows["model"] == model].set_index("setup").reindex(order)
            ax.bar(np.arange(len(order)) + i * width, mine["mean"], width, yerr=mine["std"],
                   label=model.upper(), capsize=2)
        ax.set_xticks(np.arange(len(order)) + width * (len(models) - 1) / 2)
        ax.set_xticklabels(order, rotation=30)
        ax.set_title(f"{game} (target {rows['target'].min():g})")
        ax.set_ylabel("raw return")
    legend_beside(axes[0, -1])
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_return_vs_target(table: pd.DataFrame, path: str | Path) -> None:
    """Mean return against the target return-to-go: one row per game, one panel per model, one
    line per setup (a panel holds a handful of lines; the one legend sits beside the last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games, models = sorted(table["game"].unique()), sorted(table["model"].unique())
    fig, axes = plt.subplots(len(games), len(models), figsize=(2.6 * len(models) + 1.5,
                                                              2.6 * len(games)),
                             sharey="row", squeeze=False)
    for row, game in enumerate(games):
        rows = table[table["game"] == game]
        targets = sorted(rows["target"].unique())
        for column, model in enumerate(models):
            ax = axes[row, column]
            for setup, line in rows[rows["model"] == model].groupby("setup"):
                line = line.sort_values("target")
                ax.errorbar(line["target"], line["mean"], yerr=line["std"], marker="o",
                            capsize=2, label=setup)
            ax.plot(targets, targets, linestyle=":", color="grey", label="return = target")
            ax.set_title(f"{game}: {model.upper()}", fontsize=9)
            ax.set_xlabel("target return-to-go", fontsize=8)
        axes[row, 0].set_ylabel("raw return")
    legend_beside(axes[0, -1], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_learning_curves(curves: pd.DataFrame, path: str | Path) -> None:
    """batch_rl's agents: score (the mean over seeds of each evaluation's mean return, Dopamine
    protocol) and training loss against the iteration, per agent, one column per game."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = sorted(curves["game"].unique()) or ["(no agents)"]
    fig, axes = plt.subplots(2, len(games), figsize=(6 * len(games), 7), squeeze=False)
    for column, game in enumerate(games):
        rows = curves[curves["game"] == game]
        for agent, line in rows.groupby("agent"):
            mean = line.groupby("iteration")[["eval_mean", "loss"]].mean()
            scored = mean["eval_mean"].dropna()
            axes[0, column].plot(scored.index, scored.values, marker="o", label=agent)
            axes[1, column].plot(mean.index, mean["loss"], label=agent)
        axes[0, column].set_title(f"{game}: score (Dopamine protocol)")
        axes[0, column].set_ylabel("mean return")
        axes[1, column].set_ylabel("training loss")
        if len(rows) and (rows["loss"] > 0).all():
            axes[1, column].set_yscale("log")
        for ax in axes[:, column]:
            ax.set_xlabel("iteration")
    if len(curves):
        legend_beside(axes[0, -1], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_training_curves(curves: pd.DataFrame, path: str | Path) -> None:
    """DT/BC/FDT training loss against the step, per model (mean over seeds), one panel per game."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = sorted(curves["game"].unique()) or ["(no models)"]
    fig, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 4), squeeze=False)
    for ax, game in zip(axes[0], games):
        rows = curves[curves["game"] == game]
        for model, line in rows.groupby("model"):
            mean = line.groupby("step")["loss"].mean()
            ax.plot(mean.index, mean.values, marker=".", label=model.upper())
        ax.set_title(f"{game}: training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (FDT: with its feedback term)")
    if len(curves):
        legend_beside(axes[0, -1], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_behaviour(behaviour: pd.DataFrame, path: str | Path) -> None:
    """The behaviour policy's mean clipped return (std as error bar) in each checkpoint the
    training set draws from, one panel per game: how good the data is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = sorted(behaviour["game"].unique()) or ["(no data)"]
    fig, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 3.5), squeeze=False)
    for ax, game in zip(axes[0], games):
        rows = behaviour[behaviour["game"] == game].dropna(subset=["mean_return"])
        ax.errorbar(rows["checkpoint"], rows["mean_return"], yerr=rows["std_return"],
                    marker="o", capsize=2)
        ax.set_title(f"{game}: behaviour policy per checkpoint")
        ax.set_xlabel("checkpoint")
        ax.set_ylabel("mean clipped return")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
