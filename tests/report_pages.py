"""A report page shaped like the default run's, from generated data: the scores section (five
models, six setups, two targets, the behaviour, random, training curves and a contact sheet),
batch_rl's agents and RA-DT, laid out by fdt.report.html. The browser tests measure it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fdt.mining.images import write_png
from fdt.report.build import build_agents_report, build_report
from fdt.report.html import build_html
from fdt.retrieval.report import build_retrieval_report
from tests.conftest import REPO, convert_run

PAPER = REPO / "workflow" / "data" / "paper_results.csv"
MODELS = ["dt", "bc", "fdt", "dt_pref", "radt"]
SETUPS = ["argmax", "argmax+noop", "sample", "sample+noop", "eps", "eps+noop"]
TARGETS = [30.0, 90.0]
AGENTS = ["dqn", "cql"]


def episodes(path: Path, seeds: Sequence[int], games: Sequence[str] = ("Breakout",)) -> Path:
    """Every model's episodes: 2 test seeds x 2 episodes per setup, target and training seed;
    returns differ by model and seed so the statistics have something to find."""
    rng = np.random.default_rng(0)
    rows = [{"game": game, "model": model, "setup": setup, "target": target, "train_seed": seed,
             "test_seed": test_seed, "episode": episode,
             "return": float(rng.poisson(2 + 3 * m + seed % 5)), "steps": 300}
            for game in games for m, model in enumerate(MODELS) for setup in SETUPS
            for target in TARGETS for seed in seeds for test_seed in (0, 1) for episode in (0, 1)]
    pd.DataFrame(rows).to_parquet(path)
    return path


def _context(run: Path, tmp: Path, seeds: Sequence[int]) -> dict[str, dict[str, object]]:
    """What makes the scores readable, as workflow/rules/common.smk report_context gives it."""
    random = tmp / "random.parquet"
    pd.DataFrame({"game": ["Breakout"] * 2, "return": [1.0, 3.0], "steps": [50, 60]}).to_parquet(
        random)
    curve = tmp / "curve.csv"
    curve.write_text("epoch,step,tokens,loss,lr,seconds,samples_per_s\n"
                     "0,10,100,1.5,0.1,1,10\n1,20,200,1.2,0.1,2,10\n")
    images = tmp / "images"
    write_png(images / "contact_sheet.png", np.full((168, 840), 128, dtype=np.uint8))
    agreement = tmp / "agreement.json"
    agreement.write_text(json.dumps({"oracle": {"kind": "offline"},
                                     "states": {"count": 4, "agreement": 0.75},
                                     "transitions": {"count": 100, "agreement": 0.5}}))
    return {"Breakout": {"behaviour": convert_run(run, tmp / "store"), "random": random,
                         "curves": {f"{m}/{s}": curve for m in MODELS for s in seeds},
                         "images": [images], "agreement": [agreement]}}


def _agent_runs(folder: Path, seeds: Sequence[int]) -> list[Path]:
    """metrics.json and params.json of each agent and seed, as workflow/scripts/train_agent.py
    writes them."""
    paths = []
    for a, agent in enumerate(AGENTS):
        for seed in seeds:
            run = folder / agent / str(seed)
            run.mkdir(parents=True)
            history = [{"iteration": i, "updates": 20 * (i + 1), "loss": 1.0 / (i + 1),
                        "q_mean": 0.1 * i, "eval_mean": 1.0 + a + i + seed % 3}
                       for i in range(2)]
            (run / "metrics.json").write_text(json.dumps({
                "game": "Breakout", "agent": agent, "seed": seed, "history": history,
                "final_evaluation": {"iteration": 1, "episodes": 2,
                                     "mean_return": 2.0 + a + seed % 3}}))
            (run / "params.json").write_text(json.dumps({"params": {"data": "batch_rl"}}))
            paths.append(run / "metrics.json")
    return paths


def _memories(folder: Path, seeds: Sequence[int]) -> list[Path]:
    paths = []
    for seed in seeds:
        path = folder / f"memory{seed}.json"
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"game": "Breakout", "seed": seed, "key": "k",
                                    "params": {"subtrajectory_length": 10}, "width": 64,
                                    "counts": {"cuts": 200, "kept": 180, "dropped": 20}}))
        paths.append(path)
    return paths


def default_like_page(run: Path, tmp: Path, seeds: Sequence[int] = (123,)) -> Path:
    """The page: scores, agents and RA-DT sections built by their own builders."""
    played = episodes(tmp / "episodes.parquet", seeds)
    build_report([played], PAPER, tmp / "scores", setups=SETUPS,
                 context=_context(run, tmp, seeds))
    build_agents_report(_agent_runs(tmp / "agents_runs", seeds), PAPER, tmp / "agents")
    build_retrieval_report([played], _memories(tmp / "memories", seeds), tmp / "retrieval",
                           setups=SETUPS)
    sections = [tmp / name / "section.json" for name in ("scores", "agents", "retrieval")]
    description = {"games": ["Breakout"], "models": MODELS, "seeds": list(seeds),
                   "setups": SETUPS, "targets": {"Breakout": TARGETS}}
    return build_html(sections, description, tmp / "html")


def page_height(page: object) -> int:
    """The rendered page's full height in CSS pixels."""
    return int(page.evaluate("document.documentElement.scrollHeight"))  # type: ignore[attr-defined]
