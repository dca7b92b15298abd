"""Mining statistics over a long synthetic sequence: rate and memory per transition.

    python benchmarks/mining_statistics.py [--transitions 2000000]

Builds the per-transition arrays mining keeps (cell digests, actions, rewards, allowed, life loss,
replay index), then runs returns, dense cell ids, the collection of returns per (cell, action),
ranking and sampling, and prints each phase's rate and the peak memory added per transition,
with the projection to 50M transitions.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from fdt.mining.ranking import (
    collect_returns,
    dense_cells,
    discounted_returns,
    important_states,
    rank_cells,
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=2_000_000)
    parser.add_argument("--cells", type=int, default=400_000)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.transitions, args.cells = 20_000, 4_000
    n = args.transitions
    before = rss_mb()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.cells, n)
    digests = np.stack([ids.astype(np.uint64) * np.uint64(2654435761), ids.astype(np.uint64)], 1)
    actions = rng.integers(0, 4, n).astype(np.int32)
    rewards = (rng.random(n) < 0.02).astype(np.float32)
    allowed = rng.random(n) < 0.4
    life_loss = rng.random(n) < 0.002
    trajectory_ends = np.unique(np.append(np.cumsum(rng.integers(200, 2000, n // 200)), n))
    trajectory_ends = trajectory_ends[trajectory_ends <= n]
    choosable = np.arange(n) < min(500_000, n // 4)

    timings = {}
    started = time.perf_counter()
    returns = discounted_returns(rewards, trajectory_ends, 0.9, life_loss=life_loss,
                                 penalty=-14, horizon=10)
    timings["returns"] = time.perf_counter() - started
    started = time.perf_counter()
    cells = dense_cells(digests)
    timings["dense_cells"] = time.perf_counter() - started
    started = time.perf_counter()
    stats = collect_returns(cells, actions, returns, allowed, choosable, trajectory_ends)
    timings["collect_returns"] = time.perf_counter() - started
    started = time.perf_counter()
    ranked = rank_cells(stats)
    chosen, _ = important_states(ranked, stats)
    timings["rank_and_sample"] = time.perf_counter() - started
    added = rss_mb() - before
    print(json.dumps({
        "transitions": n,
        "per_second": {k: round(n / v) for k, v in timings.items()},
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "candidate_cells": len(stats.pairs), "ranked_cells": len(ranked),
        "important_states": len(chosen),
        "peak_added_mb": round(added, 1),
        "bytes_per_transition": round(added * 2**20 / n, 1),
        "projected_gb_for_50M": round(added * 2**20 / n * 50e6 / 1e9, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
