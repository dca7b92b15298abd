"""The GPU suite: one script for whichever session is lent a GPU, one table at the end.

    python benchmarks/gpu_suite.py            # on the GPU: paper sizes, then the showcase
    python benchmarks/gpu_suite.py --dry      # tiny sizes on the CPU (CI runs it, so it cannot rot)
    python benchmarks/gpu_suite.py --showcase-only   # the larger showcase alone

It runs, in order: the CUDA tests; training throughput at the paper's config (DT, batch 128,
context 30, bf16, frames on the device) without and with torch.compile, projected to the full
run (5 epochs of 500,000 samples); the full evaluation protocol of one model (6 setups x 10 test
seeds x 10 episodes; argmax without no-ops once per seed) played for a time budget and projected
from its env-steps/s; and the oracle's labelling rate (C51 greedy actions per second). Each line
says the paper target it checks: 5 epochs in at most 5 minutes, the protocol in at most 10.

Last, a larger version of the showcase (config/showcase.yaml with config/showcase_gpu.yaml over
it: DT, BC and FDT at three feedback budgets with the demo oracle, 10 seeds) is run through the
workflow in one call within a time budget, and its IQM per model and P(FDT > DT) are printed. The
dry mode only plans it (`snakemake -n`), so the configs and the plan cannot rot either.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import synthetic_training_set  # noqa: E402  (the benchmark beside us)

from fdt.evaluation.environments import make_pool  # noqa: E402
from fdt.evaluation.policies import ModelPolicy  # noqa: E402
from fdt.evaluation.protocols import PROTOCOLS, SETUPS, protocol_jobs  # noqa: E402
from fdt.evaluation.rollout import rollout  # noqa: E402
from fdt.models.trainer import MODEL, TrainParams, load_model, train  # noqa: E402
from fdt.oracle.c51 import C51Network, greedy_actions  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PAPER_SAMPLES, PAPER_EPOCHS = 500_000, 5
TRAIN_TARGET_S, PROTOCOL_TARGET_S = 300.0, 600.0
SHOWCASE_CONFIGS = (REPO / "config" / "showcase.yaml", REPO / "config" / "showcase_gpu.yaml")
SHOWCASE_BUDGET_S = 480  # what is left of a lent GPU's 15 minutes after the rows above


def cuda_tests(dry: bool) -> tuple[str, str]:
    """The tests that need a device (skipped without one)."""
    if dry:
        return "cuda tests", "skipped (dry run)"
    # -n 0: one process, so two workers never share the device
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-k", "cuda", "tests"],
                          cwd=REPO, capture_output=True, text=True)
    return "cuda tests", (done.stdout.strip().splitlines() or ["no output"])[-1]


def training(folder: Path, device: str, compile_model: bool, epochs: int, batch: int,
             context: int, **sizes: int) -> dict[str, float]:
    params = TrainParams(model="dt", seed=0, context_length=context, batch_size=batch,
                         epochs=epochs, device=device, compile=compile_model, log_every=1000,
                         **sizes)
    out = Path(tempfile.mkdtemp(prefix="model-", dir=folder.parent))
    started = time.perf_counter()
    metrics = train(folder, out, params, progress=False, verify=False)
    wall = time.perf_counter() - started
    rate = metrics["history"][-1]["samples_per_s"]  # the last epoch: compile and warm-up done
    return {"samples_per_s": rate, "wall_s": wall, "model": str(out / MODEL),
            "projected_s": PAPER_EPOCHS * PAPER_SAMPLES / rate,
            "frames_on_device": float(metrics["frames_on_device"])}


def protocol(model_path: str, device: str, budget_s: float, envs: int, max_steps: int | None,
             test_seeds: int, episodes: int, backend: str = "processes",
             workers: int = 0) -> dict[str, Any]:
    """Play each setup's episodes until its share of the budget is spent; project the full
    protocol's length. The environments step in `workers` processes, or ale-py's vector
    environment's threads (`backend`, fdt.evaluation.environments.make_pool), made once for
    every round; env-steps/s are reported per setup (their episodes differ in length and in how
    often the policy samples)."""
    model = load_model(model_path, device)
    full = len(protocol_jobs(tuple(SETUPS), [90.0], range(10), 10))
    policy = ModelPolicy(model, device, slots=envs)
    pool = make_pool("Breakout", PROTOCOLS["fdt"], backend=backend, envs=envs, workers=workers)
    played: list[dict] = []
    by_setup: dict[str, float] = {}
    seconds = 0.0
    try:
        for setup in SETUPS:
            jobs = protocol_jobs((setup,), [90.0], range(test_seeds), episodes)
            started, rows = time.perf_counter(), []
            for first in range(0, len(jobs), envs):
                rows += rollout(policy, "Breakout", jobs[first:first + envs], PROTOCOLS["fdt"],
                                envs=envs, max_steps=max_steps, pool=pool)
                if time.perf_counter() - started > budget_s / len(SETUPS):
                    break
            spent = time.perf_counter() - started
            by_setup[setup] = sum(r["steps"] for r in rows) / spent
            seconds += spent
            played += rows
    finally:
        pool.close()
    steps = sum(r["steps"] for r in played)
    per_episode = seconds / len(played)
    return {"episodes": len(played), "env_steps_per_s": steps / seconds, "by_setup": by_setup,
            "projected_s": per_episode * full, "full_episodes": full}


def labelling(device: str, states: int) -> float:
    net = C51Network(4)
    stacks = np.random.default_rng(0).integers(0, 256, (states, 4, 84, 84), dtype=np.uint8)
    greedy_actions(net, stacks[:64], device=device)  # warm up
    started = time.perf_counter()
    greedy_actions(net, stacks, device=device, batch_size=1024)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return states / (time.perf_counter() - started)


def showcase(workdir: Path, dry: bool, budget_s: float) -> list[tuple[str, str]]:
    """The larger showcase through the workflow in `workdir` (planned only when dry): its wall
    time, then each model's IQM and each P(X > DT) from the report's rliable tables."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--workflow-profile", str(REPO / "profiles" / "default"),
               "--configfile", *map(str, SHOWCASE_CONFIGS), "--cores", "all"]
    if dry:
        command.append("-n")
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=budget_s)
    except subprocess.TimeoutExpired:
        return [("showcase (larger)", f"not finished within {budget_s:.0f} s; what ran is kept "
                 f"in {workdir} (rerun to resume)")]
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [("showcase (larger)", f"failed after {wall:.0f} s: {tail}")]
    if dry:
        jobs = next((line.split()[-1] for line in done.stdout.splitlines()
                     if line.startswith("total")), "?")
        return [("showcase (planned)", f"{jobs} jobs planned in {wall:.0f} s (dry: not run)")]
    rows = [("showcase (larger)", f"finished in {wall / 60:.1f} min")]
    reports = sorted((workdir / "results" / "report").glob("*/aggregates.csv"),
                     key=lambda p: p.stat().st_mtime)
    if not reports:
        return rows + [("showcase statistics", "no aggregates.csv (fewer than 2 seeds?)")]
    aggregates = pd.read_csv(reports[-1])
    iqm = aggregates[aggregates["metric"] == "IQM"]
    rows.append(("showcase IQM [95% CI]", "; ".join(
        f"{r.algorithm} {r.estimate:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in iqm.itertuples())))
    improvement = reports[-1].parent / "improvement.csv"
    if improvement.is_file():
        rows.append(("showcase P(X > DT)", "; ".join(
            f"{r.x} {r.probability:.2f} [{r.low:.2f}, {r.high:.2f}]"
            for r in pd.read_csv(improvement).itertuples())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry", "--quick", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--showcase-only", action="store_true",
                        help="only the larger showcase (its time budget: --showcase-budget)")
    parser.add_argument("--showcase-budget", type=float, default=SHOWCASE_BUDGET_S,
                        help="seconds the larger showcase may run (default %(default)s)")
    args = parser.parse_args()
    dry = args.dry
    device = "cpu" if dry else "cuda"
    if not dry and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --dry for the CPU check")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fdt-gpu-suite-"))
    if args.showcase_only:
        report(showcase(workdir / "showcase", dry, args.showcase_budget), dry)
        return
    folder = workdir / "training_set"
    transitions, epochs, batch, context = (200, 1, 8, 10) if dry else (65_536, 2, 128, 30)
    synthetic_training_set(folder, transitions)

    rows = [cuda_tests(dry)]
    sizes = {"n_layer": 1, "n_head": 2, "n_embd": 32} if dry else {}  # dry: the paths, not speed
    plain = training(folder, device, False, epochs, batch, context, **sizes)
    rows.append(("train, bf16, frames on device" if not dry else "train (dry)",
                 f"{plain['samples_per_s']:.0f} samples/s; 5 epochs x 500k: "
                 f"{plain['projected_s'] / 60:.1f} min (target <= {TRAIN_TARGET_S / 60:.0f})"))
    if not dry:
        compiled = training(folder, device, True, epochs, batch, context)
        rows.append(("train, bf16 + torch.compile",
                     f"{compiled['samples_per_s']:.0f} samples/s; 5 epochs x 500k: "
                     f"{compiled['projected_s'] / 60:.1f} min; compile and first epoch "
                     f"{compiled['wall_s']:.0f} s in all"))
    # Both environment backends on the same model and cores: worker processes, then ale-py's
    # vector environment with as many threads per group of slots (evaluation.backend).
    workers = 1 if dry else max(1, (os.cpu_count() or 2) - 1)
    for backend, name in (("processes", "evaluation protocol"),
                          ("vector", "evaluation protocol, vector env")):
        play = protocol(plain["model"], device, budget_s=2 if dry else 90,
                        envs=4 if dry else 128, max_steps=10 if dry else None,
                        test_seeds=1 if dry else 10, episodes=1 if dry else 10,
                        backend=backend, workers=workers)
        setups = ", ".join(f"{k} {v:.0f}" for k, v in play["by_setup"].items())
        rows.append((name, f"{play['env_steps_per_s']:.0f} env-steps/s over "
                     f"{play['episodes']} episodes ({workers} {backend}/threads; by setup: "
                     f"{setups}); all {play['full_episodes']}: {play['projected_s'] / 60:.1f} "
                     f"min (target <= {PROTOCOL_TARGET_S / 60:.0f})"))
    rows.append(("oracle labelling", f"{labelling(device, 256 if dry else 65_536):.0f} states/s"))
    rows += showcase(workdir / "showcase", dry, args.showcase_budget)
    report(rows, dry)


def report(rows: list[tuple[str, str]], dry: bool) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"GPU suite on {torch.cuda.get_device_name() if not dry else 'the CPU (dry run)'}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
