"""The feedback section of the report (`results/report/teacher/{key}/`): the query bundles, the
labellers' answers and agreement where an answers file exists, and FDT's score against label
noise and budget where runs with synthetic labels exist.

Noise/budget runs are found in the results folder, not planned: each synthetic labels folder
(params.json of stage teacher_labels, kind synthetic) leads to the FDT models trained on it (its
key among their inputs) and to their evaluations (the model's key among theirs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fdt.io import atomic_path, write_json
from fdt.teacher.bundle import load_bundle
from fdt.teacher.export import (
    check_answers_bundle,
    labeller_table,
    load_answers,
    majority,
)

STUDY_COLUMNS = ["game", "epsilon", "budget", "schedule", "labels_key", "train_seeds",
                 "episodes", "mean_return", "std_return"]


def _params(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "params.json").read_text())


def noise_budget_runs(results: str | Path, games: Sequence[str]) -> list[dict[str, Any]]:
    """The evaluated FDT runs trained on synthetic labels: one row per evaluation folder."""
    rows = []
    for game in games:
        root = Path(results) / game
        synthetic = {}
        for path in root.glob("teacher/labels/*/seed*/params.json"):
            record = json.loads(path.read_text())
            if record["stage"] == "teacher_labels" and record["params"]["kind"] == "synthetic":
                synthetic[record["key"]] = record["params"]
        models = {}
        for path in root.glob("models/fdt/*/seed*/params.json"):
            record = json.loads(path.read_text())
            found = [k for k in record["inputs"] if k in synthetic]
            if found:
                models[record["key"]] = found[0]
        for path in root.glob("eval/fdt/*/seed*/episodes.parquet"):
            record = _params(path.parent)
            found = [k for k in record["inputs"] if k in models]
            if found:
                labels = synthetic[models[found[0]]]
                rows.append({"game": game, "epsilon": labels["epsilon"],
                             "budget": labels["budget"], "schedule": labels["schedule"],
                             "labels_key": models[found[0]], "episodes_file": str(path)})
    return rows


def study_table(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """FDT's mean episode return per (game, epsilon, budget, schedule), over its seeds."""
    if not runs:
        return pd.DataFrame(columns=STUDY_COLUMNS)
    episodes = []
    for run in runs:
        table = pd.read_parquet(run["episodes_file"], columns=["return", "train_seed"])
        episodes.append(table.assign(**{k: run[k] for k in ("game", "epsilon", "schedule",
                                                             "labels_key")},
                                     budget=-1 if run["budget"] is None else run["budget"]))
    data = pd.concat(episodes, ignore_index=True)
    keys = ["game", "epsilon", "budget", "schedule", "labels_key"]
    out = data.groupby(keys).agg(train_seeds=("train_seed", "nunique"),
                                 episodes=("return", "size"), mean_return=("return", "mean"),
                                 std_return=("return", "std")).reset_index()
    out["budget"] = out["budget"].astype(object).where(out["budget"] >= 0, "all")
    return out.sort_values(["game", "schedule", "budget", "epsilon"], key=lambda c: c.astype(str)
                           )[STUDY_COLUMNS].reset_index(drop=True)


def plot_study(table: pd.DataFrame, path: str | Path) -> None:
    """Mean return against epsilon, one line per (game, budget, schedule)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (game, budget, schedule), rows in table.groupby(["game", "budget", "schedule"]):
        rows = rows.sort_values("epsilon")
        ax.errorbar(rows["epsilon"], rows["mean_return"], yerr=rows["std_return"].fillna(0),
                    marker="o", capsize=3, label=f"{game}, budget {budget} ({schedule})")
    ax.set_xlabel("label flip noise epsilon")
    ax.set_ylabel("FDT mean episode return")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


LABELLING_COUNTS = ["queries", "gold", "answers", "labelled"]


def plot_labelling(queries: pd.DataFrame, path: str | Path) -> None:
    """How far labelling has come: queries, gold queries, answers and decided states, grouped
    per training set (game and seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{g} seed {s}" for g, s in zip(queries["game"], queries["seed"])]
    fig, ax = plt.subplots(figsize=(3 + 1.2 * len(names), 2.8))
    width = 0.8 / len(LABELLING_COUNTS)
    for i, column in enumerate(LABELLING_COUNTS):
        ax.bar([n + i * width for n in range(len(names))], queries[column], width, label=column)
    ax.set_xticks([n + width * (len(LABELLING_COUNTS) - 1) / 2 for n in range(len(names))])
    ax.set_xticklabels(names)
    ax.set_ylabel("count")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def build_teacher_report(bundles: Sequence[tuple[str, int, str | Path]],
                         answers: Sequence[str | Path | None], results: str | Path,
                         out_dir: str | Path, kind: str) -> dict[str, Any]:
    """Write queries.csv, labellers.csv, noise_budget.csv (+ .png when runs exist) and
    section.json. `bundles` are (game, seed, bundle folder); `answers` the answers file of each
    (None or a missing path where nobody has answered)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    query_rows, labeller_rows = [], []
    for (game, seed, folder), answers_path in zip(bundles, answers, strict=True):
        bundle = load_bundle(folder)
        gold = sum(q["gold"] is not None for q in bundle["queries"])
        row = {"game": game, "seed": seed, "bundle_id": bundle["bundle_id"],
               "queries": len(bundle["queries"]) - gold, "gold": gold, "answers": 0,
               "labelled": 0, "ties_dropped": 0, "majority_agreement": None}
        if answers_path is not None and Path(answers_path).is_file():
            meta, given = load_answers(answers_path)
            check_answers_bundle(meta, bundle, str(answers_path))
            decision = majority(bundle, given)
            row.update(answers=len(given), labelled=len(decision["decided"]),
                       ties_dropped=decision["ties"],
                       majority_agreement=decision["majority_agreement"])
            labeller_rows += [{"game": game, "seed": seed, **r}
                              for r in labeller_table(bundle, given)]
        query_rows.append(row)
    queries = pd.DataFrame(query_rows)
    labellers = pd.DataFrame(labeller_rows, columns=[
        "game", "seed", "labeller", "answers", "good", "bad", "unsure", "gold_answers",
        "gold_agreement", "gold_best_action_agreement", "seconds_per_answer"])
    study = study_table(noise_budget_runs(results, sorted({b[0] for b in bundles})))
    tables = [("Query bundles and their answers", "queries.csv", queries),
              ("Labellers: answers and agreement with the gold (oracle) queries",
               "labellers.csv", labellers)]
    figures = []
    if len(study):
        tables.append(("FDT's score against label noise and budget (synthetic labeller)",
                       "noise_budget.csv", study))
        with atomic_path(out_dir / "noise_budget.png") as tmp:
            plot_study(study, tmp)
        figures.append({"title": "FDT's score against label noise", "png": "noise_budget.png",
                        "caption": "Mean episode return (std over episodes and seeds) of FDT "
                                   "trained on the synthetic labeller's labels, per flip noise "
                                   "epsilon, one line per label budget and schedule."})
    with atomic_path(out_dir / "labelling.png") as tmp:
        plot_labelling(queries, tmp)
    figures.append({"title": "Labelling so far", "png": "labelling.png",
                    "caption": "Per training set: its labelling and gold queries, the answers "
                               "given and the states decided by majority."})
    for _, name, frame in tables:
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False)
    summary = (f"Query bundles of the first important states of {len(bundles)} training set(s) "
               f"({int(queries['queries'].sum())} labelling and {int(queries['gold'].sum())} gold "
               f"queries); {int(queries['answers'].sum())} answers from {len(labellers)} "
               f"labeller(s) so far, {int(queries['labelled'].sum())} states decided. FDT's labels "
               f"come from oracle kind '{kind}'.")
    if len(study):
        summary += (f" {len(study)} FDT configuration(s) trained on synthetic labels show the "
                    "score against flip noise and budget.")
    section = {"title": "Feedback from people", "summary": summary,
               "tables": [{"title": title, "csv": name} for title, name, _ in tables],
               "figures": figures}
    write_json(out_dir / "section.json", section)
    return section
