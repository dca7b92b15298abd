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
from fdt.report.build import build_report, has_target_sweep
from fdt.report.context import behaviour_returns, random_scores
from fdt.report.html import build_html
from fdt.report.section import Figure, SectionError, Table, read_section, write_section
from tests.browser import open_page
from tests.conftest import REPO, convert_run

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
        # setups, behaviour, training curves, contact sheet, target sweep; the agents' curve
        assert len(images) == 6
        assert all(width > 0 for _, width in images), images
        assert page.title() == "FDT workflow report"
        assert page.locator("table").count() == 7  # 6 of the scores section, 1 of the agents
        assert page.locator("text=A caption").count() == 1
        (story.parent / "agents" / "curve.png").unlink()  # the check sees a broken image
        page.reload(wait_until="load")
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        assert widths[-1] == 0 and all(widths[:-1])
