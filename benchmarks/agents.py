"""batch_rl's agents: updates per second at batch 32 and the sampler's rate, side by side in one
run with the offline C51 oracle trainer's update (fdt.oracle.training.train_oracle) as baseline.

    python benchmarks/agents.py                      # CPU (torch's default threads)
    python benchmarks/agents.py --device cuda        # a GPU

A synthetic run (random frames, 300-step episodes; speed does not depend on the values) is written
in Dopamine's format and converted to the Parquet store under a temporary folder. The sampler is
batch_rl's regime (`fdt.agents.replay.BatchRLData`: checkpoints loaded, a batch of 32 stacked
transitions gathered from memory); an agent's update is its loss, backward, optimizer step and
target copy, with the defaults of the schema (batch_rl's gin values: 200 quantiles, 200 heads).
The sampler must be at least 20x faster than an update, so that it is never the bottleneck.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fdt.agents.registry import AGENTS, agent_for_data
from fdt.agents.replay import BatchRLData, Sampler
from fdt.oracle.training import OracleParams, train_oracle
from fdt.replay.dopamine import FRAME_SHAPE, CircularReplayWriter
from fdt.replay.store import convert_checkpoint


def write_store(folder: Path, capacity: int, checkpoints: int, episode: int = 300) -> list[Path]:
    """A run of random frames in Dopamine's format, converted; returns the Parquet files."""
    rng = np.random.default_rng(0)
    logs = folder / "replay_logs"
    writer = CircularReplayWriter(logs, capacity, compresslevel=1)
    rows = capacity * checkpoints
    step = 0
    while writer.add_count < rows:
        end = step % episode == episode - 1
        writer.add(rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8), int(rng.integers(4)),
                   float(rng.integers(-1, 2)), end)
        step += 1
    writer.close()
    paths = []
    for n in range(checkpoints):
        path = folder / f"buffer{n}.parquet"
        convert_checkpoint(logs, n, path, with_previous=n > 0, with_following=True,
                           progress=False)
        paths.append(path)
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sampler_seconds(sampler: Sampler, device: torch.device, batches: int) -> float:
    """Seconds to draw and gather one batch of stacked transitions onto the device."""
    rng = np.random.default_rng(1)
    sampler.batch(sampler.rows(rng), device)
    sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        sampler.batch(sampler.rows(rng), device)
    sync(device)
    return (time.perf_counter() - started) / batches


def update_seconds(name: str, sampler: Sampler, device: torch.device, updates: int) -> float:
    """Seconds per update of an agent (sampling included, as in training)."""
    agent = agent_for_data(name, {}, "training_set")  # CQL at its 1% weight
    torch.manual_seed(0)
    online, target = agent.network(4).to(device), agent.network(4).to(device)
    target.load_state_dict(online.state_dict())
    optimizer = agent.optimizer(online.parameters())
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(2)

    def update() -> None:
        loss = agent.loss(online, target, sampler.batch(sampler.rows(rng), device), generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):  # warm up
        update()
    sync(device)
    started = time.perf_counter()
    for _ in range(updates):
        update()
    target.load_state_dict(online.state_dict())
    sync(device)
    return (time.perf_counter() - started) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--updates", type=int, default=20, help="timed updates per agent")
    parser.add_argument("--capacity", type=int, default=4000, help="rows per checkpoint")
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.updates, args.capacity, args.checkpoints, args.batch_size = 1, 400, 2, 4
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        paths = write_store(Path(tmp), args.capacity, args.checkpoints)
        data = BatchRLData(dict(enumerate(paths)), args.checkpoints)
        pool = data.pool(1)
        print(f"store: {args.checkpoints} checkpoints of {args.capacity} rows written, converted "
              f"and loaded ({len(pool)} transitions, {len(pool.frames)} frames) in "
              f"{time.perf_counter() - started:.1f} s")
        sampler = Sampler(pool, args.batch_size)
        sample = sampler_seconds(sampler, device, 10 if args.quick else 200)
        print(f"sampler: {sample * 1e3:.3f} ms per batch of {args.batch_size} stacked transitions "
              f"(state and next state), {1 / sample:,.0f} batches/s")
        print(f"{'update':<28} {'ms/update':>10} {'updates/s':>10} {'update/sample':>14}")
        fastest = None
        for name in AGENTS:
            seconds = update_seconds(name, sampler, device, args.updates)
            fastest = seconds if fastest is None else min(fastest, seconds)
            print(f"{name:<28} {seconds * 1e3:>10.1f} {1 / seconds:>10.2f} {seconds / sample:>14.0f}")
        oracle = train_oracle(paths, 4, Path(tmp) / "oracle",
                              OracleParams(updates=args.updates, batch_size=args.batch_size,
                                           checkpoint_every=args.updates, device=args.device),
                              progress=False)
        seconds = oracle["seconds_this_run"] / oracle["updates"]
        print(f"{'oracle trainer (train_oracle)':<28} {seconds * 1e3:>10.1f} {1 / seconds:>10.2f} "
              f"{seconds / sample:>14.0f}")
        ratio = fastest / sample
        verdict = "ok" if ratio >= 20 else "TOO SLOW"
        print(f"sampler vs the fastest update: {ratio:.0f}x faster (needs 20x): {verdict}")


if __name__ == "__main__":
    main()
