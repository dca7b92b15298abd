"""The results table: every evaluated episode gathered into scores, FDT vs DT, the paper beside
ours, and plots (returns per setup, return against target); and the agents' table (batch_rl's
agents per game beside the published numbers) with their learning curves."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fdt.evaluation.scores import (
    normalized,
    paired_ttest,
    paper_comparison,
    score_table,
)
from fdt.io import atomic_path, write_json
from fdt.report.aggregate import write_aggregates
from fdt.report.context import behaviour_returns, random_scores
from fdt.report.plots import (
    plot_behaviour,
    plot_learning_curves,
    plot_return_vs_target,
    plot_returns_per_setup,
    plot_training_curves,
)
from fdt.report.section import Figure, Table, write_section


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def build_report(episode_files: Sequence[str | Path], paper_csv: str | Path, out_dir: str | Path,
                 *, oracle_files: Sequence[str | Path] = (),
                 setups: Sequence[str] | None = None,
                 context: Mapping[str, Mapping[str, Any]] | None = None,
                 behaviour_run: int = 1) -> dict[str, Any]:
    """Write scores.csv, ttest.csv, comparison.csv, oracle.csv, the plots, summary.json and the
    section for the HTML report. `context` gives, per game, what makes the scores readable (see
    workflow/rules/common.smk report_context): the behaviour checkpoints, the random policy's
    episodes, the training curves, the mined states' images and the labels' agreement."""
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
    oracle = _oracle_table(oracle_files, context or {})
    _write_csv(oracle, out_dir / "oracle.csv")
    with atomic_path(out_dir / "returns_per_setup.png") as tmp:
        plot_returns_per_setup(table, tmp, setups)
    swept = has_target_sweep(table)
    if swept:
        with atomic_path(out_dir / "return_vs_target.png") as tmp:
            plot_return_vs_target(table, tmp)
    summary = {"episodes": len(episodes), "rows": len(table),
               "games": sorted(episodes["game"].unique()),
               "models": sorted(episodes["model"].unique()),
               "compared_with_paper": int(comparison["paper_mean"].notna().sum()),
               "target_sweep": swept}
    if context:
        summary.update(_write_context(context, behaviour_run, out_dir))
    setup, targets = headline_cell(table, setups)
    aggregates = write_aggregates(per_seed_returns(episodes, setup, targets), "dt", out_dir,
                                  "model")
    summary.update(headline_setup=setup, headline_targets=targets,
                   aggregates=aggregates["sentence"])
    write_json(out_dir / "summary.json", summary)
    _write_scores_section(out_dir, table, summary, aggregates, bool(context), swept)
    return summary


def headline_cell(table: pd.DataFrame,
                  setups: Sequence[str] | None) -> tuple[str, dict[str, float]]:
    """The setup and, per game, the target the headline statistics compare models at: the
    first configured setup played, and each game's highest target (the paper's, in the default
    sweep 30/90)."""
    played = list(dict.fromkeys(table["setup"]))
    setup = next((s for s in (setups or []) if s in played), sorted(played)[0] if played else "")
    rows = table[table["setup"] == setup]
    return setup, {str(g): float(t) for g, t in rows.groupby("game")["target"].max().items()}


def per_seed_returns(episodes: pd.DataFrame, setup: str,
                     targets: Mapping[str, float]) -> pd.DataFrame:
    """Each (model, training seed, game)'s mean return over its test seeds and episodes at the
    headline setup and the game's target: one run of one task, as rliable counts them."""
    mine = episodes[(episodes["setup"] == setup)
                    & (episodes["target"] == episodes["game"].map(targets))]
    runs = mine.groupby(["model", "train_seed", "game"], as_index=False)["return"].mean()
    return runs.rename(columns={"model": "algorithm", "train_seed": "seed"})


def has_target_sweep(table: pd.DataFrame) -> bool:
    """Whether some model was evaluated at two or more targets of one setup (a sweep to plot)."""
    if table.empty:
        return False
    return bool((table.groupby(["game", "model", "setup"])["target"].nunique() > 1).any())


def _oracle_table(oracle_files: Sequence[str | Path],
                  context: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The oracle's own score per game, and its labels' agreement with the dataset's actions
    (mean over seeds) where FDT ran."""
    rows = {}
    for path in oracle_files:
        record = pd.read_json(path, typ="series")
        rows[record["game"]] = {"game": record["game"], "kind": record["oracle"]["kind"],
                                "episodes": len(record["episodes"]),
                                "mean_return": record["mean_return"],
                                "std_return": record["std_return"]}
    for game, parts in context.items():
        # agreement.json (fdt.oracle.labels): on the mined states, and on every transition
        agreements = [json.loads(Path(p).read_text()) for p in parts.get("agreement", [])]
        if agreements:
            row = rows.setdefault(game, {"game": game})
            states = [a["states"] for a in agreements]
            row["labelled_states"] = sum(s["count"] for s in states) / len(states)
            row["agreement"] = _mean([s["agreement"] for s in states])
            every = [a["transitions"]["agreement"] for a in agreements if a.get("transitions")]
            row["agreement_all_transitions"] = _mean(every)
    columns = ["game", "kind", "episodes", "mean_return", "std_return", "labelled_states",
               "agreement", "agreement_all_transitions"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _write_context(context: Mapping[str, Mapping[str, Any]], run: int,
                   out_dir: Path) -> dict[str, Any]:
    """behaviour.csv, random.csv, training_curves.csv and their plots, and each game's contact
    sheet of mined states; returns what the summary says of them."""
    behaviour = pd.concat([behaviour_returns(game, run, parts["behaviour"])
                           for game, parts in context.items()], ignore_index=True)
    random = random_scores([parts["random"] for parts in context.values()])
    curves = pd.concat([_curve(game, name, path) for game, parts in context.items()
                        for name, path in parts.get("curves", {}).items()],
                       ignore_index=True) if any(p.get("curves") for p in context.values()) \
        else pd.DataFrame(columns=["game", "model", "seed", "step", "loss"])
    _write_csv(behaviour, out_dir / "behaviour.csv")
    _write_csv(random, out_dir / "random.csv")
    _write_csv(curves, out_dir / "training_curves.csv")
    with atomic_path(out_dir / "behaviour.png") as tmp:
        plot_behaviour(behaviour, tmp)
    with atomic_path(out_dir / "training_curves.png") as tmp:
        plot_training_curves(curves, tmp)
    sheets = []
    for game, parts in context.items():
        folders = parts.get("images", [])
        if folders and (Path(folders[0]) / "contact_sheet.png").is_file():
            shutil.copyfile(Path(folders[0]) / "contact_sheet.png",
                            out_dir / f"contact_sheet_{game}.png")
            sheets.append(game)
    return {"random": random.set_index("game")["mean_return"].to_dict(),
            "behaviour_episodes": int(behaviour["episodes"].sum()),
            "contact_sheets": sheets}


def _curve(game: str, name: str, path: str | Path) -> pd.DataFrame:
    """One model's training curve (`model/seed` names it)."""
    model, seed = name.split("/")
    curve = pd.read_csv(path)
    return curve.assign(game=game, model=model, seed=int(seed))


def _write_scores_section(out_dir: Path, table: pd.DataFrame, summary: Mapping[str, Any],
                          aggregates: Mapping[str, Any], with_context: bool, swept: bool) -> None:
    """The section of the HTML report: the aggregates across seeds as its headline where there
    are enough seeds (else the returns per setup), then the scores told against their floor."""
    targets = ", ".join(f"{g} {t:g}" for g, t in summary["headline_targets"].items())
    text = (f"{summary['episodes']} evaluation episodes of {', '.join(summary['models'])} on "
            f"{', '.join(summary['games'])}; statistics across seeds use setup "
            f"{summary['headline_setup']} at target {targets or 'none'}. "
            f"{aggregates['sentence']}")
    if with_context:
        floor = "; ".join(f"{g} {v:.1f}" for g, v in summary["random"].items())
        text += f" A uniformly random policy under the same protocol scores {floor}."
    per_setup = Figure("Returns per setup", "returns_per_setup.png",
                       "Mean raw return over seeds and episodes, std as error bars, at each "
                       "game's first target.")
    figures = [Figure(*f) for f in aggregates["figures"]]
    figures.insert(1 if figures else 0, per_setup)
    tables = [Table(*t) for t in aggregates["tables"]]
    tables += [Table("Scores per model, setup and target (raw returns)", "scores.csv"),
               Table("Ours beside the paper", "comparison.csv")]
    if with_context:
        tables += [Table("Random policy under the protocol", "random.csv"),
                   Table("Behaviour policy per checkpoint (clipped returns)", "behaviour.csv")]
        figures += [Figure("The data", "behaviour.png", "Mean clipped return of the complete "
                           "episodes that start in each checkpoint the training set draws from "
                           "(sums of clipped rewards, not game scores)."),
                    Figure("Training curves", "training_curves.png",
                           "Training loss per logged step, mean over seeds.")]
        figures += [Figure(f"Mined important states: {g}", f"contact_sheet_{g}.png",
                           "The top-ranked states' 4-frame stacks, as FDT's feedback sees them.")
                    for g in summary["contact_sheets"]]
    tables.append(Table("The oracle: its score and its labels' agreement", "oracle.csv"))
    if swept:
        figures.append(Figure("Return against target", "return_vs_target.png",
                              "Mean raw return at each target return-to-go of the sweep, one "
                              "panel per model."))
    write_section(out_dir, "Decision Transformer, BC and FDT", text, tables, figures)


# --- batch_rl's agents -------------------------------------------------------------------------

# How the papers name the agents (the `model` column of workflow/data/paper_results.csv).
AGENT_PAPER_NAMES = {"dqn": "DQN", "c51": "C51", "qr_dqn": "QR-DQN", "rem": "REM",
                     "ensemble_dqn": "Ensemble-DQN", "cql": "CQL"}
CURVE_COLUMNS = ["game", "agent", "seed", "iteration", "updates", "loss", "q_mean", "eval_mean"]


def evaluation_budget(final_evaluation: Mapping[str, Any]) -> str:
    """What an agent's evaluation played: its budget ('125,000 steps', '10 episodes'); metrics
    written before budgets were recorded played a number of episodes."""
    return final_evaluation.get("budget") or f"{final_evaluation['episodes']:,} episodes"


def agent_scores(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per (game, agent): the mean and std over seeds of each seed's last score (the mean return
    of its final evaluation under the Dopamine protocol, with the budget it played), with the
    normalized scores."""
    rows = [{"game": r["game"], "agent": r["agent"], "seed": r["seed"], "data": r["data"],
             "evaluation": evaluation_budget(r["final_evaluation"]),
             "iteration": r["final_evaluation"]["iteration"],
             "episodes": r["final_evaluation"]["episodes"],
             "return": r["final_evaluation"]["mean_return"]} for r in runs]
    columns = ["game", "agent", "data", "evaluation", "iteration", "seeds", "episodes", "mean",
               "std", "gamer_normalized", "human_normalized"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows).groupby(["game", "agent", "data", "evaluation"], as_index=False).agg(
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
                                     ("game", "agent", "data", "evaluation", "iteration",
                                      "seeds", "episodes", "mean", "std", "gamer_normalized",
                                      "human_normalized")]}
    final = pd.DataFrame([{"algorithm": r["agent"], "seed": r["seed"], "game": r["game"],
                           "return": r["final_evaluation"]["mean_return"]} for r in scored],
                         columns=["algorithm", "seed", "game", "return"])
    aggregates = write_aggregates(final, "dqn", out_dir, "agent")
    summary["aggregates"] = aggregates["sentence"]
    write_json(out_dir / "summary.json", summary)
    _write_agents_section(out_dir, table, summary, aggregates)
    return summary


def _write_agents_section(out_dir: Path, table: pd.DataFrame, summary: Mapping[str, Any],
                          aggregates: Mapping[str, Any]) -> None:
    """The agents' aggregates across seeds as the headline where there are enough seeds (else
    their learning curves), then the table beside the published numbers."""
    budgets = ", ".join(sorted(set(table["evaluation"]))) or "none"
    text = (f"batch_rl's offline agents ({', '.join(summary['agents'])}) trained on the same "
            f"replay store, {summary['runs']} runs, scored by their last evaluation under the "
            f"Dopamine protocol (sticky actions, epsilon 0.001), each evaluation playing {budgets} "
            f"(batch_rl: 125,000 steps of whole episodes). {aggregates['sentence']}")
    curves = Figure("Learning curves", "learning_curves.png",
                    "Score after each evaluated iteration, and training loss.")
    figures = [Figure(*f) for f in aggregates["figures"]]
    figures.insert(1 if figures else 0, curves)
    tables = [Table(*t) for t in aggregates["tables"]]
    tables.insert(0, Table("Agent x game, beside the published numbers", "agents.csv"))
    write_section(out_dir, "batch_rl's offline agents", text, tables, figures)
