"""The continuous-control section of the report: normalized score per dataset and target, the
datasets themselves, score-per-target and learning-curve plots, and section.json describing them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fdt.continuous.environments import d4rl_reference, normalized_score
from fdt.continuous.episodes import write_csv
from fdt.io import read_json, write_json

D4RL_LABEL = "D4RL references (MuJoCo v2 environments: another version than our v5)"


@dataclass(frozen=True)
class TrainedRun:
    """One trained model's folder, with the dataset it learnt from."""

    dataset: str
    seed: int
    folder: Path
    data_info: Path


def final_scores(runs: Sequence[TrainedRun]) -> pd.DataFrame:
    """Per dataset and target: the mean and std over seeds of each seed's mean final score."""
    per_seed = []
    for run in runs:
        episodes = pd.read_csv(run.folder / "evaluation.csv")
        last = episodes[episodes["step"] == episodes["step"].max()]
        info = read_json(run.data_info)
        for target, rows in last.groupby("target"):
            per_seed.append({"dataset": run.dataset, "env_id": info["env_id"], "seed": run.seed,
                             "target": target, "score": rows["score"].mean(),
                             "normalized": rows["normalized"].mean(), "episodes": len(rows),
                             "reference_random": info["references"]["random"],
                             "reference_expert": info["references"]["expert"]})
    frame = pd.DataFrame(per_seed)
    table = (frame.groupby(["dataset", "env_id", "target"], sort=False)
             .agg(seeds=("seed", "nunique"), episodes_per_seed=("episodes", "first"),
                  score_mean=("score", "mean"), score_std=("score", "std"),
                  normalized_mean=("normalized", "mean"), normalized_std=("normalized", "std"),
                  reference_random=("reference_random", "first"),
                  reference_expert=("reference_expert", "first"))
             .reset_index())
    table[["score_std", "normalized_std"]] = table[["score_std", "normalized_std"]].fillna(0.0)
    d4rl = [d4rl_reference(env_id) for env_id in table["env_id"]]
    table["d4rl_normalized_mean"] = [float(normalized_score(s, *ref)) if ref else float("nan")
                                     for s, ref in zip(table["score_mean"], d4rl)]
    return table


def learning_curves(runs: Sequence[TrainedRun]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training loss and the normalized score per target along the updates, all seeds."""
    losses, scores = [], []
    for run in runs:
        curve = pd.read_csv(run.folder / "curve.csv").assign(dataset=run.dataset, seed=run.seed)
        losses.append(curve)
        episodes = pd.read_csv(run.folder / "evaluation.csv")
        scored = episodes.groupby(["step", "target"])["normalized"].mean().reset_index()
        scores.append(scored.assign(dataset=run.dataset, seed=run.seed))
    return pd.concat(losses, ignore_index=True), pd.concat(scores, ignore_index=True)


def plot_score_per_target(table: pd.DataFrame, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for dataset, rows in table.groupby("dataset", sort=False):
        ax.errorbar(rows["target"], rows["normalized_mean"], yerr=rows["normalized_std"],
                    marker="o", capsize=3, label=dataset)
    ax.set_xlabel("target return (prompt)")
    ax.set_ylabel("normalized score (ours: random 0, expert 100)")
    ax.set_title("DT score per target return")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_learning_curves(losses: pd.DataFrame, scores: pd.DataFrame, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for dataset, rows in losses.groupby("dataset", sort=False):
        mean = rows.groupby("step")["loss"].mean()
        loss_ax.plot(mean.index, mean.values, label=dataset)
    for (dataset, target), rows in scores.groupby(["dataset", "target"], sort=False):
        mean = rows.groupby("step")["normalized"].mean()
        score_ax.plot(mean.index, mean.values, marker="o", label=f"{dataset} @ {target:g}")
    loss_ax.set(xlabel="update", ylabel="action MSE (training)", title="training loss")
    score_ax.set(xlabel="update", ylabel="normalized score", title="evaluation during training")
    loss_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    score_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_behaviour_curves(curves: dict[str, pd.DataFrame], path: str | Path) -> None:
    """The SAC behaviour agents' training-episode returns and snapshot scores, one per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(5.5 * max(1, len(curves)), 3.6),
                             squeeze=False)
    for ax, (env_id, curve) in zip(axes[0], curves.items()):
        episodes = curve.dropna(subset=["episode_return"]) if "episode_return" in curve else curve[:0]
        snapshots = curve.dropna(subset=["evaluation_return"])
        ax.plot(episodes["step"], episodes["episode_return"], alpha=0.4, label="training episodes")
        ax.plot(snapshots["step"], snapshots["evaluation_return"], marker="o", label="snapshots (deterministic)")
        ax.set(xlabel="environment step", ylabel="return", title=f"{env_id}: SAC behaviour agent")
    if curves:  # one legend, beside the last panel, covering no data
        axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                           frameon=False)
    else:
        axes[0, 0].set_title("no behaviour agent (Minari datasets)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def summary_text(table: pd.DataFrame, datasets: pd.DataFrame, source: str) -> str:
    best = table.loc[table.groupby("dataset", sort=False)["normalized_mean"].idxmax()]
    scores = "; ".join(f"{r.dataset}: {r.normalized_mean:.1f} at target {r.target:g}"
                       for r in best.itertuples())
    made = ("generated here with MuJoCo (gymnasium v5) from our own SAC behaviour agent"
            if source == "generated" else "read from a local Minari copy")
    return (f"CORL's Decision Transformer for continuous actions trained on {len(datasets)} "
            f"dataset(s) {made}, and evaluated with several target returns "
            f"({int(table['seeds'].max())} seed(s), {int(table['episodes_per_seed'].max())} episodes "
            "per target). Normalized score = 100 * (score - random) / (expert - random), with "
            "the random and expert references measured on our own environments; D4RL's "
            f"references are shown beside for another environment version. Best per dataset: {scores}.")


def build_continuous_report(runs: Sequence[TrainedRun], out_dir: str | Path, source: str,
                            behaviour_curves: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """Write the section's tables, figures and section.json; `behaviour_curves`: each generated
    task's SAC curve.csv."""
    out = Path(out_dir)
    table = final_scores(runs)
    write_csv(table, out / "scores.csv")
    infos = {r.dataset: read_json(r.data_info) for r in runs}
    datasets = pd.DataFrame([{"dataset": name, **{k: v for k, v in info.items()
                                                 if k not in ("references", "policies")},
                              "reference_random": info["references"]["random"],
                              "reference_expert": info["references"]["expert"]}
                             for name, info in infos.items()])
    write_csv(datasets, out / "datasets.csv")
    losses, scores = learning_curves(runs)
    write_csv(losses, out / "learning_curves.csv")
    plot_score_per_target(table, out / "score_per_target.png")
    plot_learning_curves(losses, scores, out / "learning_curves.png")
    behaviour = {env_id: pd.read_csv(path) for env_id, path in (behaviour_curves or {}).items()}
    plot_behaviour_curves(behaviour, out / "behaviour.png")
    section = {
        "title": "Continuous control: Decision Transformer (CORL) on MuJoCo datasets",
        "summary": summary_text(table, datasets, source),
        "tables": [{"title": "Normalized score per dataset and target return "
                             f"(d4rl_normalized_mean: {D4RL_LABEL})", "csv": "scores.csv"},
                   {"title": "The datasets", "csv": "datasets.csv"}],
        "figures": [{"title": "Score per target", "png": "score_per_target.png",
                     "caption": "Final normalized score (mean and std over seeds) against the "
                                "target return the model was prompted with."},
                    {"title": "Learning curves", "png": "learning_curves.png",
                     "caption": "Training loss (action MSE) and the normalized score per target "
                                "at each evaluation during training, mean over seeds."}]
                   + ([{"title": "Behaviour agents", "png": "behaviour.png",
                        "caption": "The SAC agents whose replay, snapshots and final policy made the "
                                   "datasets: training-episode returns and snapshot scores."}]
                      if behaviour else []),
    }
    write_json(out / "section.json", section)
    return section
