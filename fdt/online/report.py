"""rl-teacher's result from the online runs: true return against environment steps, per mode
and label budget, mean over seeds with a 95% bootstrap interval (the seeds resampled), as a
table (the last evaluation, and the wall time per run) and a figure."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdt.io import atomic_path, write_json

# rl-teacher's claim (Christiano et al. 2017, Fig. 1 and section 3.1.1; the rl-teacher README):
# on MuJoCo, synthetic labels reach nearly the true reward's return with a few hundred labels
# (700 for the simulated-robotics tasks) and sometimes exceed it.
CLAIM = ("rl-teacher (Christiano et al. 2017): with 700 synthetic labels over 1M+ steps the "
         "learnt reward trains agents nearly as well as the true reward on MuJoCo tasks, "
         "Hopper among them.")


def bootstrap_interval(values: Sequence[float], seed: int = 0, resamples: int = 10_000,
                       level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the percentile bootstrap interval of the mean (the seeds resampled)."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(data.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def read_curve(path: str | Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def label(mode: str, budget: int) -> str:
    return "rl (true reward)" if mode == "rl" else f"{mode}, {budget} labels"


def mean_or_nan(values: Sequence[float]) -> float:
    """The mean of the values that are numbers (NaN when none is: rl has no reward model)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def online_table(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (env, mode, budget): each evaluation step's mean true return and interval over the
    seeds; `runs` name env, mode, budget, seed and the run's curve and summary files."""
    groups: dict[tuple[str, str, int], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["env"], run["mode"], int(run["budget"])), []).append(run)
    rows = []
    for (env, mode, budget), members in sorted(groups.items()):
        curves = [read_curve(m["curve"]) for m in members]
        summaries = [json.loads(Path(m["summary"]).read_text()) for m in members]
        steps = sorted({row["step"] for curve in curves for row in curve})
        for step in steps:
            values = [row["true_return"] for curve in curves for row in curve if row["step"] == step]
            mean, low, high = bootstrap_interval(values)
            rows.append({"env": env, "mode": mode, "budget": budget, "step": int(step),
                         "seeds": len(values), "true_return": mean, "ci_low": low, "ci_high": high,
                         "labels": float(np.mean([row.get("labels", 0) for curve in curves
                                                  for row in curve if row["step"] == step])),
                         "reward_correlation": mean_or_nan(
                             [row.get("reward_correlation", float("nan")) for curve in curves
                              for row in curve if row["step"] == step]),
                         "seconds_per_run": float(np.mean([s["seconds"] for s in summaries]))})
    return rows


def write_table(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    fields = ["env", "mode", "budget", "step", "seeds", "true_return", "ci_low", "ci_high",
              "labels", "reward_correlation", "seconds_per_run"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)


def write_figure(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r["env"] for r in rows})
    figure, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs) + 2.5, 3.6), squeeze=False)
    for axis, env in zip(axes[0], envs):
        keys = sorted({(r["mode"], r["budget"]) for r in rows if r["env"] == env},
                      key=lambda k: (k[0] != "rl", k[1]))
        for mode, budget in keys:
            part = [r for r in rows if (r["env"], r["mode"], r["budget"]) == (env, mode, budget)]
            steps = [r["step"] for r in part]
            line, = axis.plot(steps, [r["true_return"] for r in part], marker="o",
                              label=label(mode, budget), linestyle="--" if mode == "rl" else "-")
            axis.fill_between(steps, [r["ci_low"] for r in part], [r["ci_high"] for r in part],
                              alpha=0.2, color=line.get_color())
        axis.set_title(env)
        axis.set_xlabel("environment steps")
        axis.set_ylabel("true return (mean, 95% bootstrap CI over seeds)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(0.72, 0.5), frameon=False)
    figure.tight_layout(rect=(0, 0, 0.71, 1))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def final_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each group's last evaluation."""
    last: dict[tuple, Mapping[str, Any]] = {}
    for row in rows:
        key = (row["env"], row["mode"], row["budget"])
        if key not in last or row["step"] > last[key]["step"]:
            last[key] = row
    return list(last.values())


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| env | mode | labels | steps | seeds | true return (mean) | 95% CI | "
             "learnt-true reward correlation | minutes per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in final_rows(rows):
        correlation = r.get("reward_correlation", float("nan"))
        lines.append(f"| {r['env']} | {r['mode']} | {r['budget'] if r['mode'] != 'rl' else '-'} | "
                     f"{r['step']} | {r['seeds']} | {r['true_return']:.1f} | "
                     f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}] | "
                     f"{'-' if not np.isfinite(correlation) else f'{correlation:.2f}'} | "
                     f"{r['seconds_per_run'] / 60:.1f} |")
    return "\n".join(lines)


def summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """Two sentences for the page: what ran and where each mode ended, beside the claim."""
    ends = "; ".join(
        f"{r['env']} {r['mode']}{'' if r['mode'] == 'rl' else ' with ' + str(r['budget']) + ' labels'} "
        f"{r['true_return']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
        for r in final_rows(rows))
    return (f"True return of the agent after its last evaluation, per mode and label budget "
            f"(mean over seeds, 95% bootstrap interval): {ends}. {CLAIM}")


def write_report(folder: str | Path, runs: Sequence[Mapping[str, Any]],
                 settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    folder = Path(folder)
    rows = online_table(runs)
    write_table(folder / "online.csv", rows)
    write_figure(folder / "return_vs_steps.png", rows)
    write_json(folder / "section.json", {
        "title": "Online preferences: rl-teacher's loop",
        "summary": summary(rows),
        # the HTML page's fields (fdt.report.section): the headline figure, then the table
        "figures": [{"title": "True return against environment steps",
                     "png": "return_vs_steps.png",
                     "caption": "Mean over seeds with 95% bootstrap intervals; rl trains on the "
                                "true reward, synth on the reward learnt from its labels."}],
        "tables": [{"title": "True return per evaluation", "csv": "online.csv"}],
        "claim": CLAIM, "table": markdown(rows), "final": final_rows(rows),
        "settings": dict(settings), "figure": "return_vs_steps.png", "table_file": "online.csv"})
    return rows
