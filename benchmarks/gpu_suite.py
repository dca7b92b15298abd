"""The GPU suite: one script for whichever session is lent a GPU, one table at the end.

    python benchmarks/gpu_suite.py            # on the GPU: paper sizes, at most ~8 minutes
    python benchmarks/gpu_suite.py --dry      # tiny sizes on the CPU (CI runs it, so it cannot rot)

It runs, in order: the CUDA tests; training throughput at the paper's config (DT, batch 128,
context 30, bf16, frames on the device) without and with torch.compile, projected to the full
run (5 epochs of 500,000 samples); the full evaluation protocol of one model (6 setups x 10 test
seeds x 10 episodes; argmax without no-ops once per seed) played for a time budget and projected
from its env-steps/s; and the oracle's labelling rate (C51 greedy actions per second). Each line
says the paper target it checks: 5 epochs in at most 5 minutes, the protocol in at most 10.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import synthetic_training_set  # noqa: E402  (the benchmark beside us)

from fdt.evaluation.policies import ModelPolicy  # noqa: E402
from fdt.evaluation.protocols import PROTOCOLS, SETUPS, protocol_jobs  # noqa: E402
from fdt.evaluation.rollout import rollout  # noqa: E402
from fdt.models.trainer import MODEL, TrainParams, load_model, train  # noqa: E402
from fdt.oracle.c51 import C51Network, greedy_actions  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PAPER_SAMPLES, PAPER_EPOCHS = 500_000, 5
TRAIN_TARGET_S, PROTOCOL_TARGET_S = 300.0, 600.0


def cuda_tests(dry: bool) -> tuple[str, str]:
    """The tests that need a device (skipped without one)."""
    if dry:
        return "cuda tests", "skipped (dry run)"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests"],
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
             test_seeds: int, episodes: int) -> dict[str, float]:
    """Play the protocol's episodes until the budget is spent; project its full length."""
    model = load_model(model_path, device)
    jobs = protocol_jobs(tuple(SETUPS), [90.0], range(test_seeds), episodes)
    full = len(protocol_jobs(tuple(SETUPS), [90.0], range(10), 10))
    played: list[dict] = []
    started = time.perf_counter()
    policy = ModelPolicy(model, device, slots=envs)
    for first in range(0, len(jobs), envs):
        played += rollout(policy, "Breakout", jobs[first:first + envs], PROTOCOLS["fdt"],
                          envs=envs, max_steps=max_steps)
        if time.perf_counter() - started > budget_s:
            break
    seconds = time.perf_counter() - started
    steps = sum(r["steps"] for r in played)
    per_episode = seconds / len(played)
    return {"episodes": len(played), "env_steps_per_s": steps / seconds,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry", "--quick", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    dry = args.dry
    device = "cpu" if dry else "cuda"
    if not dry and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --dry for the CPU check")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fdt-gpu-suite-"))
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
    play = protocol(plain["model"], device, budget_s=2 if dry else 180, envs=4 if dry else 128,
                    max_steps=10 if dry else None, test_seeds=1 if dry else 10,
                    episodes=1 if dry else 10)
    rows.append(("evaluation protocol", f"{play['env_steps_per_s']:.0f} env-steps/s over "
                 f"{play['episodes']} episodes; all {play['full_episodes']}: "
                 f"{play['projected_s'] / 60:.1f} min (target <= {PROTOCOL_TARGET_S / 60:.0f})"))
    rows.append(("oracle labelling", f"{labelling(device, 256 if dry else 65_536):.0f} states/s"))

    width = max(len(name) for name, _ in rows)
    print(f"GPU suite on {torch.cuda.get_device_name() if not dry else 'the CPU (dry run)'}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
