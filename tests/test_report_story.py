"""The report that tells the story: the behaviour and random policies beside the scores, the
sections, and the HTML page checked in a real browser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fdt.evaluation.policies import UniformPolicy
from fdt.evaluation.play import EvalParams, evaluate_random
from fdt.mining.images import write_png
from fdt.report.aggregate import (
    aggregate_table,
    improvement_pairs,
    improvement_table,
    profile_table,
    rliable,
    too_few_seeds,
)
from fdt.report.build import build_report, has_target_sweep
from fdt.report.context import behaviour_returns, random_scores
from fdt.report.html import build_html
from fdt.report.plots import plot_return_vs_target, plot_returns_per_setup
from fdt.report.section import Figure, SectionError, Table, read_section, write_section
from tests.browser import open_page
from tests.conftest import REPO, convert_run
from tests.report_pages import default_like_page, page_height

PAPER = REPO / "workflow" / "data" / "paper_results.csv"


def test_behaviour_returns_count_complete_episodes_where_they_start(episode_run: Path,
                                                                     tmp_path: Path) -> None:
    # conftest's run: A (return 1) starts in checkpoint 0; B (0) and D (2, crossing into 2) in
    # checkpoint 1; E (0) in 2; F, still open, in 3.
    paths = convert_run(episode_run, tmp_path)
    table = behaviour_returns("Breakout", 1, paths)
    assert table["checkpoint"].tolist() == [0, 1, 2, 3]
    assert table["episodes"].tolist() == [1, 2, 1, 0]
    assert table["mean_return"].tolist()[:3] == [1.0, 1.0, 0.0]
    assert table.loc[1, "std_return"] == 1.0
    assert (table.loc[1, "min_return"], table.loc[1, "max_return"]) == (0.0, 2.0)
    assert table.loc[1, "mean_length"] == 5.0  # B 4 and D 6
    assert pd.isna(table.loc[3, "mean_return"])


def test_random_scores_per_game(tmp_path: Path) -> None:
    path = tmp_path / "episodes.parquet"
    pd.DataFrame({"game": ["Pong"] * 3, "return": [-21.0, -20.0, -19.0],
                  "steps": [800, 900, 1000]}).to_parquet(path)
    table = random_scores([path])
    assert table.to_dict(orient="records") == [{
        "game": "Pong", "episodes": 3, "mean_return": -20.0,
        "std_return": pytest.approx(np.sqrt(2 / 3)), "mean_steps": 900.0}]


def test_uniform_policy_gives_equal_logits() -> None:
    policy = UniformPolicy(4, slots=8)
    logits = policy.logits([0, 3, 5])
    assert logits.shape == (3, 4) and not logits.any()


def test_random_policy_is_played_under_the_protocol(tmp_path: Path) -> None:
    params = EvalParams(test_seeds=(0, 1), episodes=2, max_steps=40, envs=4, workers=0)
    summary = evaluate_random("Breakout", params, tmp_path)
    episodes = pd.read_parquet(tmp_path / "episodes.parquet")
    assert len(episodes) == summary["episodes"] == 4
    assert set(episodes["setup"]) == {"sample"} and set(episodes["model"]) == {"random"}
    assert (episodes["steps"] <= 40).all() and summary["env_steps"] == episodes["steps"].sum()


def _scores(targets: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"game": "Breakout", "model": "dt", "setup": "argmax",
                         "target": targets, "mean": 1.0})


def test_a_sweep_is_two_targets_of_one_setup() -> None:
    assert not has_target_sweep(_scores([90.0]))
    assert has_target_sweep(_scores([30.0, 90.0]))
    assert not has_target_sweep(pd.DataFrame(columns=["game", "model", "setup", "target"]))


def test_a_section_must_name_files_it_has(tmp_path: Path) -> None:
    with pytest.raises(SectionError, match="missing.csv"):
        write_section(tmp_path, "T", "S", [Table("t", "missing.csv")])
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "t.csv", index=False)
    path = write_section(tmp_path, "T", "S", [Table("t", "t.csv")])
    assert read_section(path).tables == (Table("t", "t.csv"),)
    (tmp_path / "t.csv").unlink()
    with pytest.raises(SectionError, match="t.csv"):
        read_section(path)
    (tmp_path / "bad.json").write_text('{"summary": "no title"}')
    with pytest.raises(SectionError, match="not a report section"):
        read_section(tmp_path / "bad.json")


def _episodes(tmp_path: Path, targets: list[float]) -> Path:
    rows = [{"game": "Breakout", "model": model, "setup": "argmax", "target": target,
             "train_seed": seed, "test_seed": 0, "episode": 0, "return": float(seed + i),
             "steps": 100}
            for i, model in enumerate(["dt", "fdt"]) for target in targets for seed in (1, 2)]
    path = tmp_path / "episodes.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_report_without_a_sweep_has_no_target_plot(tmp_path: Path) -> None:
    build_report([_episodes(tmp_path, [90.0])], PAPER, tmp_path / "out")
    section = read_section(tmp_path / "out" / "section.json")
    assert "return_vs_target.png" not in [f.png for f in section.figures]
    assert not (tmp_path / "out" / "return_vs_target.png").exists()
    build_report([_episodes(tmp_path, [30.0, 90.0])], PAPER, tmp_path / "swept")
    assert (tmp_path / "swept" / "return_vs_target.png").is_file()


@pytest.fixture
def story(episode_run: Path, tmp_path: Path) -> Path:
    """A report with its context, and a second section, laid out in one HTML page."""
    buffers = convert_run(episode_run, tmp_path / "store")
    random = tmp_path / "random.parquet"
    pd.DataFrame({"game": ["Breakout"] * 2, "return": [1.0, 2.0], "steps": [50, 60]}).to_parquet(
        random)
    curve = tmp_path / "curve.csv"
    curve.write_text("epoch,step,tokens,loss,lr,seconds,samples_per_s\n"
                     "0,10,100,1.5,0.1,1,10\n1,20,200,1.2,0.1,2,10\n")
    images = tmp_path / "images"
    write_png(images / "contact_sheet.png", np.full((20, 30), 128, dtype=np.uint8))
    agreement = tmp_path / "agreement.json"
    agreement.write_text(json.dumps({  # as fdt.oracle.labels writes it
        "oracle": {"kind": "offline"}, "states": {"count": 4, "agreement": 0.75},
        "transitions": {"count": 100, "agreement": 0.5}}))
    context = {"Breakout": {"behaviour": buffers, "random": random,
                            "curves": {"dt/1": curve, "fdt/1": curve},
                            "images": [images], "agreement": [agreement]}}
    report = tmp_path / "report"
    summary = build_report([_episodes(tmp_path, [30.0, 90.0])], PAPER, report, context=context)
    assert summary["random"] == {"Breakout": 1.5} and summary["contact_sheets"] == ["Breakout"]
    oracle = pd.read_csv(report / "oracle.csv")
    assert oracle.loc[0, "agreement"] == 0.75 and oracle.loc[0, "labelled_states"] == 4
    assert oracle.loc[0, "agreement_all_transitions"] == 0.5
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"agent": ["dqn"], "mean": [3.5]}).to_csv(other / "agents.csv", index=False)
    write_png(other / "curve.png", np.zeros((10, 10), dtype=np.uint8))
    write_section(other, "Agents <&>", "Text with <b>markup</b> shown as text.",
                  [Table("Agents", "agents.csv")], [Figure("Curve", "curve.png", "A caption")])
    return build_html([report / "section.json", other / "section.json"],
                      {"games": ["Breakout"], "models": ["dt", "fdt"]}, tmp_path / "html")


def test_html_report_holds_every_section_and_copies_its_files(story: Path) -> None:
    page = story.read_text()
    assert page.count("<h2 id=") == 3  # what was run, and the two sections
    assert "Agents &lt;&amp;&gt;" in page and "&lt;b&gt;markup&lt;/b&gt;" in page
    folder = story.parent
    for name in ["behaviour.png", "training_curves.png", "contact_sheet_Breakout.png",
                 "return_vs_target.png", "returns_per_setup.png", "random.csv"]:
        assert (folder / "decision-transformer-bc-and-fdt" / name).is_file(), name
    assert (folder / "agents" / "curve.png").is_file()
    assert "<td>3.5</td>" in page


def test_html_report_opens_in_chromium_with_every_image_loaded(story: Path) -> None:
    with open_page(story.as_uri()) as page:
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth])")
        # aggregates, setups, P(FDT > DT), behaviour, training curves, contact sheet, target
        # sweep; the agents' curve
        assert len(images) == 8
        assert all(width > 0 for _, width in images), images
        assert page.title() == "FDT workflow report"
        assert page.locator("table").count() == 9  # 8 of the scores section, 1 of the agents
        assert page.locator("text=A caption").count() == 1
        (story.parent / "agents" / "curve.png").unlink()  # the check sees a broken image
        page.reload(wait_until="load")
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        assert widths[-1] == 0 and all(widths[:-1])


# --- the page read at a glance, and the statistics across seeds (issue 30) ----------------------

def _hand_made_matrices() -> dict[str, np.ndarray]:
    """3 algorithms x (5 runs x 3 games) of human-normalized scores, DT the weakest."""
    rng = np.random.default_rng(7)
    return {name: rng.normal(loc, 0.3, size=(5, 3))
            for name, loc in [("dt", 0.2), ("fdt", 0.5), ("radt", 0.4)]}


def test_aggregates_equal_rliables_own_functions() -> None:
    matrices = _hand_made_matrices()
    library, metrics = rliable()
    table = aggregate_table(matrices, reps=300, seed=3).set_index(["algorithm", "metric"])
    functions = {"IQM": metrics.aggregate_iqm, "Mean": metrics.aggregate_mean,
                 "Median": metrics.aggregate_median,
                 "Optimality gap": metrics.aggregate_optimality_gap}
    for metric, function in functions.items():
        np.random.seed(3)  # rliable's bootstrap draws from numpy's global state
        points, intervals = library.get_interval_estimates(
            matrices, lambda s, f=function: np.array([f(s)]), reps=300)
        for name in matrices:
            row = table.loc[(name, metric)]
            assert row["estimate"] == pytest.approx(points[name][0], abs=1e-12)
            # the same bootstrap draws: every metric's interval comes from one resample set
            assert (row["low"], row["high"]) == pytest.approx(
                (intervals[name][0, 0], intervals[name][1, 0]), abs=1e-12)
    assert table.loc[("fdt", "IQM"), "estimate"] > table.loc[("dt", "IQM"), "estimate"]


def test_probability_of_improvement_and_profiles_equal_rliables() -> None:
    matrices = _hand_made_matrices()
    library, metrics = rliable()
    pairs = improvement_pairs(sorted(matrices), "dt")
    assert pairs == [("fdt", "dt"), ("radt", "dt")]
    table = improvement_table(matrices, pairs, reps=300, seed=5)
    np.random.seed(5)
    points, intervals = library.get_interval_estimates(
        {f"{x},{y}": (matrices[x], matrices[y]) for x, y in pairs},
        metrics.probability_of_improvement, reps=300)
    for row in table.itertuples():
        assert row.probability == pytest.approx(points[f"{row.x},{row.y}"])
        assert (row.low, row.high) == pytest.approx(tuple(intervals[f"{row.x},{row.y}"][:, 0]))
    assert table.set_index("x").loc["fdt", "probability"] > 0.5
    taus = np.linspace(-0.5, 1.5, 9)
    profiles = profile_table(matrices, taus, reps=100)
    expected, _ = library.create_performance_profile(matrices, taus)
    for name in matrices:
        mine = profiles[profiles["algorithm"] == name]
        assert mine["fraction"].to_numpy() == pytest.approx(expected[name])
        assert (mine["low"] <= mine["fraction"]).all() and (mine["fraction"] <= mine["high"]).all()


def test_one_seed_gives_a_sentence_not_aggregates(tmp_path: Path) -> None:
    one_seed = pd.read_parquet(_episodes(tmp_path, [90.0]))
    one_seed = one_seed[one_seed["train_seed"] == 1]
    one_seed.to_parquet(tmp_path / "one.parquet")
    summary = build_report([tmp_path / "one.parquet"], PAPER, tmp_path / "out")
    assert "need at least 2 training seeds per model; this run has dt 1, fdt 1" in \
        summary["aggregates"]
    section = read_section(tmp_path / "out" / "section.json")
    assert summary["aggregates"] in section.summary
    assert section.figures[0].png == "returns_per_setup.png"  # the headline without aggregates
    assert not (tmp_path / "out" / "aggregates.csv").exists()
    assert too_few_seeds({}, "model") is not None  # no game with a human reference: a sentence


def test_aggregates_pool_the_headline_setup_and_target_per_seed(tmp_path: Path) -> None:
    # _episodes: model i's return is seed + i, at every setup and target
    build_report([_episodes(tmp_path, [30.0, 90.0])], PAPER, tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "scores_per_seed.csv")
    assert sorted(zip(runs["algorithm"], runs["seed"], runs["return"])) == [
        ("dt", 1, 1.0), ("dt", 2, 2.0), ("fdt", 1, 2.0), ("fdt", 2, 3.0)]
    assert runs["score"].iloc[0] == pytest.approx((runs["return"].iloc[0] - 1.7) / (30.5 - 1.7),
                                                  rel=1e-5)  # the CSV keeps 6 digits
    improvement = pd.read_csv(tmp_path / "out" / "improvement.csv")
    assert improvement[["x", "y"]].values.tolist() == [["fdt", "dt"]]
    # of the 4 (fdt, dt) seed pairs 3 are above and 1 ties, which counts half
    assert improvement["probability"].iloc[0] == pytest.approx(0.875)


@pytest.mark.parametrize("seeds", [(1, 2, 3), (123,)], ids=["3 seeds", "the default's 1 seed"])
def test_page_is_read_at_a_glance_in_chromium(episode_run: Path, tmp_path: Path,
                                              seeds: tuple[int, ...]) -> None:
    default_page = default_like_page(episode_run, tmp_path, seeds)  # tests/report_pages.py
    with open_page(default_page.as_uri(), viewport={"width": 1280, "height": 720}) as page:
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        # folded figures load too; one seed has no aggregates (4 figures fewer)
        assert len(widths) == (11 if len(seeds) > 1 else 7) and all(widths), widths
        if len(seeds) == 1:
            assert page.locator("text=need at least 2 training seeds").count() == 2
        # each section: its headline figure comes before its first table
        order = page.eval_on_selector_all("h2[id] ~ *", """els => els.map(e =>
            e.tagName === 'H2' ? 'section' : e.querySelector('img') && e.tagName === 'FIGURE'
            ? 'figure' : e.querySelector('table') ? 'table' : '')""")
        sections = " ".join(order).split("section")[2:]  # after "what was run" and contents
        assert len(sections) == 3
        for parts in sections:
            assert parts.split()[0] == "figure", parts
        assert page.locator("details[open]").count() == 0
        assert page.locator("details table").count() == page.locator("table").count()
        assert page.locator("table").first.is_visible() is False  # folded
        # the page before issue 30, built from the same data, was 9,301 px tall (one seed)
        assert page_height(page) < 3500


def test_figures_keep_their_legends_off_the_data(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    table = pd.DataFrame([{"game": "Breakout", "model": m, "setup": s, "target": t,
                           "mean": 5.0, "std": 1.0} for m in ["dt", "fdt"]
                          for s in ["argmax", "eps"] for t in [30.0, 90.0]])
    plt.close("all")
    monkeypatch.setattr(plt, "close", lambda *args: None)  # keep the figures to measure them
    plot_return_vs_target(table, tmp_path / "t.png")
    plot_returns_per_setup(table, tmp_path / "s.png")
    figures = [plt.figure(n) for n in plt.get_fignums()]
    monkeypatch.undo()
    assert len(figures) == 2 and len(figures[0].axes) == 2  # one panel per model
    for fig in figures:
        renderer = fig.canvas.get_renderer()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert len(legends) == 1
        box = legends[0].get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer))
        plt.close(fig)
