"""Statistics across seeds and games as the field reports them: rliable (Agarwal et al., "Deep
RL at the Edge of the Statistical Precipice", NeurIPS 2021).

Scores are human-normalized fractions, (score - random) / (human - random), so 1.0 is the human
reference and scores of several games can be pooled. One algorithm's scores form a matrix of
runs (training seeds) x tasks (games). From it rliable gives the interquartile mean (IQM), mean,
median and optimality gap with stratified-bootstrap 95% intervals (resampling runs within each
game), the probability that one algorithm beats another on a game, and performance profiles
(the fraction of runs above each score). Every figure and table here is drawn from what rliable
returns; nothing is re-derived by hand.

Two or more seeds per algorithm are needed for an interval; with fewer, `too_few_seeds` says so
in one sentence for the report instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from fdt.evaluation.scores import normalized
from fdt.io import atomic_path

MIN_SEEDS = 2  # a stratified bootstrap over runs needs two runs of each game
REPS = 2000  # bootstrap replications (rliable's default for performance profiles)
CONFIDENCE = 0.95
SEED = 0  # numpy's global seed for the bootstrap, so a rebuilt report prints the same intervals
METRICS = ("IQM", "Mean", "Median", "Optimality gap")
AGGREGATE_COLUMNS = ["algorithm", "metric", "estimate", "low", "high", "runs", "games"]
IMPROVEMENT_COLUMNS = ["x", "y", "probability", "low", "high", "runs_x", "runs_y", "games"]
PROFILE_COLUMNS = ["algorithm", "tau", "fraction", "low", "high"]
SCORE_COLUMNS = ["algorithm", "seed", "game", "return", "score"]


def rliable() -> tuple[ModuleType, ModuleType]:
    """rliable's `library` and `metrics` modules.

    rliable 1.2 requires arch < 8 (arch 8 dropped the `random_state` rliable passes), and
    arch 7.2 calls pandas' private `deprecate_kwarg(old, new)`, which pandas 3 turned into
    `deprecate_kwarg(warning, old, new)`: arch fails on import. The old call form is accepted
    while arch is first imported, and pandas is put back as it was right after.
    """
    import pandas.util._decorators as decorators

    original = decorators.deprecate_kwarg

    def old_call_form(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str):  # (old_arg_name, new_arg_name): pandas < 3
            return original(FutureWarning, *args, **kwargs)
        return original(*args, **kwargs)

    decorators.deprecate_kwarg = old_call_form
    try:
        from rliable import library, metrics
    finally:
        decorators.deprecate_kwarg = original
    return library, metrics


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """numpy's global random state seeded for the block, and put back after it: rliable's
    StratifiedBootstrap draws its resamples from `np.random.choice`, not from the `random_state`
    it is given, so only the global seed makes its intervals repeatable."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def human_normalized_scores(raw: pd.DataFrame) -> pd.DataFrame:
    """`raw` with columns algorithm, seed, game, return (one row per run and game) plus `score`,
    the human-normalized fraction; games without a human reference score are left out."""
    scores = raw.assign(score=[None if (v := normalized(r, g, "human")) is None else v / 100.0
                               for r, g in zip(raw["return"], raw["game"])])
    return scores.dropna(subset=["score"]).reindex(columns=SCORE_COLUMNS).reset_index(drop=True)


def score_matrices(scores: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each algorithm's runs x games matrix of `score`, games in sorted order. A seed counts only
    where it has every game (rliable's bootstrap resamples whole rows)."""
    games = sorted(scores["game"].unique())
    matrices = {}
    for algorithm, mine in scores.groupby("algorithm", sort=True):
        grid = mine.pivot_table(index="seed", columns="game", values="score", aggfunc="mean")
        matrices[str(algorithm)] = grid.reindex(columns=games).dropna().to_numpy(dtype=float)
    return matrices


def too_few_seeds(matrices: Mapping[str, np.ndarray], what: str) -> str | None:
    """One sentence for the report where some algorithm has fewer runs than the statistics need
    (None when every one has enough)."""
    if not matrices:
        return (f"No {what} has a human-normalized score (no scored runs, or only games "
                "without a human reference score), so there are no aggregates across seeds.")
    runs = {name: matrix.shape[0] for name, matrix in matrices.items()}
    short = {name: n for name, n in runs.items() if n < MIN_SEEDS}
    if not short:
        return None
    told = ", ".join(f"{name} {n}" for name, n in sorted(short.items()))
    return (f"IQM, mean, median, optimality gap and probability of improvement with "
            f"stratified-bootstrap intervals (rliable) need at least {MIN_SEEDS} training seeds "
            f"per {what}; this run has {told}, so they are not computed.")


def aggregate_table(matrices: Mapping[str, np.ndarray], reps: int = REPS,
                    seed: int = SEED) -> pd.DataFrame:
    """IQM, mean, median and optimality gap of each algorithm, with 95% stratified-bootstrap
    intervals."""
    library, metrics = rliable()

    def aggregates(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores),
                         metrics.aggregate_median(scores),
                         metrics.aggregate_optimality_gap(scores)])

    with seeded(seed):
        points, intervals = library.get_interval_estimates(
            dict(matrices), aggregates, reps=reps, confidence_interval_size=CONFIDENCE)
    rows = [{"algorithm": name, "metric": metric, "estimate": float(points[name][i]),
             "low": float(intervals[name][0, i]), "high": float(intervals[name][1, i]),
             "runs": matrices[name].shape[0], "games": matrices[name].shape[1]}
            for name in matrices for i, metric in enumerate(METRICS)]
    return pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)


def improvement_pairs(algorithms: Sequence[str], against: str) -> list[tuple[str, str]]:
    """(x, against) for every other algorithm present, when `against` is."""
    if against not in algorithms:
        return []
    return [(name, against) for name in algorithms if name != against]


def improvement_table(matrices: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str]],
                      reps: int = REPS, seed: int = SEED) -> pd.DataFrame:
    """P(X > Y): the probability that a run of X scores above a run of Y on a game, averaged over
    games, with a 95% stratified-bootstrap interval (runs of X and Y resampled independently)."""
    library, metrics = rliable()
    pairs = [(x, y) for x, y in pairs if x in matrices and y in matrices]
    if not pairs:
        return pd.DataFrame(columns=IMPROVEMENT_COLUMNS)
    scores = {f"{x},{y}": (matrices[x], matrices[y]) for x, y in pairs}
    with seeded(seed):
        points, intervals = library.get_interval_estimates(
            scores, metrics.probability_of_improvement, reps=reps,
            confidence_interval_size=CONFIDENCE)
    rows = [{"x": x, "y": y, "probability": float(points[f"{x},{y}"]),
             "low": float(intervals[f"{x},{y}"][0, 0]), "high": float(intervals[f"{x},{y}"][1, 0]),
             "runs_x": matrices[x].shape[0], "runs_y": matrices[y].shape[0],
             "games": matrices[x].shape[1]} for x, y in pairs]
    return pd.DataFrame(rows, columns=IMPROVEMENT_COLUMNS)


def profile_taus(matrices: Mapping[str, np.ndarray], points: int = 41) -> np.ndarray:
    """Thresholds spanning every score seen (and 0 and 1, the random and human references)."""
    values = np.concatenate([m.ravel() for m in matrices.values()] + [np.array([0.0, 1.0])])
    return np.linspace(values.min(), values.max(), points)


def profile_table(matrices: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = REPS,
                  seed: int = SEED) -> pd.DataFrame:
    """Performance profiles: the fraction of runs (over all games) scoring above each tau, as
    rliable's `create_performance_profile` computes them, with 95% stratified-bootstrap
    intervals from `get_interval_estimates` under a fixed seed (that function takes none)."""
    library, _ = rliable()
    profiles, _ = library.create_performance_profile(dict(matrices), taus)

    def fractions(scores: np.ndarray) -> np.ndarray:
        return np.array([library.run_score_deviation(scores, tau) for tau in taus])

    with seeded(seed):
        _, intervals = library.get_interval_estimates(
            dict(matrices), fractions, reps=reps, confidence_interval_size=CONFIDENCE)
    rows = [{"algorithm": name, "tau": float(tau), "fraction": float(profiles[name][i]),
             "low": float(intervals[name][0, i]), "high": float(intervals[name][1, i])}
            for name in matrices for i, tau in enumerate(taus)]
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS)


# --- figures, drawn from the tables above ------------------------------------------------------

def plot_aggregates(table: pd.DataFrame, path: str | Path) -> None:
    """One panel per metric, one row per algorithm: the estimate and its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algorithms = sorted(table["algorithm"].unique())
    fig, axes = plt.subplots(1, len(METRICS), figsize=(2.6 * len(METRICS),
                                                       0.9 + 0.35 * len(algorithms)),
                             sharey=True, squeeze=False)
    rows = np.arange(len(algorithms))
    for ax, metric in zip(axes[0], METRICS):
        mine = table[table["metric"] == metric].set_index("algorithm").reindex(algorithms)
        ax.barh(rows, mine["high"] - mine["low"], left=mine["low"], height=0.6, alpha=0.6)
        ax.vlines(mine["estimate"], rows - 0.3, rows + 0.3, color="black")
        ax.set_title(metric + (" (lower is better)" if metric == "Optimality gap" else ""),
                     fontsize=9)
        ax.set_xlabel("human-normalized score", fontsize=8)
    axes[0, 0].set_yticks(rows)
    axes[0, 0].set_yticklabels([a.upper() for a in algorithms])
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_improvement(table: pd.DataFrame, path: str | Path) -> None:
    """One row per pair: P(X > Y) and its 95% interval; 0.5 is a tie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.35 * len(table)))
    rows = np.arange(len(table))
    ax.barh(rows, table["high"] - table["low"], left=table["low"], height=0.6, alpha=0.6)
    ax.vlines(table["probability"], rows - 0.3, rows + 0.3, color="black")
    ax.axvline(0.5, linestyle=":", color="grey")
    ax.set_yticks(rows)
    ax.set_yticklabels([f"{x.upper()} > {y.upper()}" for x, y in zip(table["x"], table["y"])])
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of improvement P(X > Y)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_profiles(table: pd.DataFrame, path: str | Path) -> None:
    """Each algorithm's performance profile with its 95% band; the legend sits beside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for name, line in table.groupby("algorithm", sort=True):
        ax.plot(line["tau"], line["fraction"], label=str(name).upper())
        ax.fill_between(line["tau"], line["low"], line["high"], alpha=0.15)
    ax.set_xlabel("human-normalized score (tau)")
    ax.set_ylabel("fraction of runs > tau")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


# --- a section's aggregates: files, figures and what the text says of them ---------------------

def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def _save(plot: Any, table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        plot(table, tmp)


def write_aggregates(raw: pd.DataFrame, against: str, out_dir: str | Path,
                     what: str) -> dict[str, Any]:
    """From `raw` (algorithm, seed, game, return: one row per run and game) write
    scores_per_seed.csv and, with enough seeds, aggregates.csv/.png, improvement.csv/.png (each
    algorithm against `against`) and, with several games, profiles.csv/.png. Returns the files
    written ({"tables": [(title, csv)], "figures": [(title, png, caption)]}) and one sentence
    for the section's text (the estimates, or why there are none)."""
    out_dir = Path(out_dir)
    scores = human_normalized_scores(raw)
    _write_csv(scores, out_dir / "scores_per_seed.csv")
    written: dict[str, Any] = {
        "tables": [(f"Human-normalized score of each {what}, seed and game",
                    "scores_per_seed.csv")],
        "figures": []}
    matrices = score_matrices(scores)
    note = too_few_seeds(matrices, what)
    if note is not None:
        return {**written, "sentence": note}
    aggregates = aggregate_table(matrices)
    _write_csv(aggregates, out_dir / "aggregates.csv")
    _save(plot_aggregates, aggregates, out_dir / "aggregates.png")
    written["tables"].append(("IQM, mean, median and optimality gap (rliable, 95% "
                              "stratified-bootstrap intervals)", "aggregates.csv"))
    written["figures"].append(("Aggregate scores across seeds and games", "aggregates.png",
                               "IQM, mean, median and optimality gap of the human-normalized "
                               "scores (rliable); bars are 95% stratified-bootstrap intervals, "
                               "ticks the estimates."))
    improvement = improvement_table(matrices, improvement_pairs(sorted(matrices), against))
    if len(improvement):
        _write_csv(improvement, out_dir / "improvement.csv")
        _save(plot_improvement, improvement, out_dir / "improvement.png")
        written["tables"].append((f"Probability of improvement over {against.upper()} (rliable)",
                                  "improvement.csv"))
        written["figures"].append((f"Probability of improvement over {against.upper()}",
                                   "improvement.png",
                                   "P(X > Y): how likely a run of X beats a run of Y on a game, "
                                   "with 95% stratified-bootstrap intervals; 0.5 is a tie."))
    if scores["game"].nunique() > 1:
        profiles = profile_table(matrices, profile_taus(matrices))
        _write_csv(profiles, out_dir / "profiles.csv")
        _save(plot_profiles, profiles, out_dir / "profiles.png")
        written["tables"].append(("Performance profiles (rliable)", "profiles.csv"))
        written["figures"].append(("Performance profiles", "profiles.png",
                                   "Fraction of runs, over all games, scoring above each "
                                   "human-normalized score, with 95% bands."))
    return {**written, "sentence": _estimates_sentence(aggregates, improvement)}


def _estimates_sentence(aggregates: pd.DataFrame, improvement: pd.DataFrame) -> str:
    """The IQM of each algorithm and each probability of improvement, with their intervals."""
    iqm = aggregates[aggregates["metric"] == "IQM"]
    told = "; ".join(f"{r.algorithm.upper()} {r.estimate:.2f} [{r.low:.2f}, {r.high:.2f}]"
                     for r in iqm.itertuples())
    text = (f"Human-normalized IQM over {int(iqm['runs'].min())}+ seeds and "
            f"{int(iqm['games'].max())} game(s), 95% intervals: {told}.")
    if len(improvement):
        text += " " + "; ".join(
            f"P({r.x.upper()} > {r.y.upper()}) = {r.probability:.2f} [{r.low:.2f}, {r.high:.2f}]"
            for r in improvement.itertuples()) + "."
    return text
