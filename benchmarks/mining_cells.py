"""Cells for mining: masking + 7x7 max-pooling + 128-bit hashing rate, one core, and memory.

Times the plain-numpy form of masking, pooling and frame hashing phase by phase, then the
compiled kernel the library uses, and the (compiled) stack digests; kernels are called once
before timing, so compilation is not counted; both paths must give the same cells.

    python benchmarks/mining_cells.py [--transitions 500000] [--game Breakout] [--repeats 5]

Frames are random (pooling and hashing cost does not depend on content); as in a replay file,
each transition adds one frame and its stack reuses the 3 before. Prints transitions per second
of each phase and of the whole, and the bytes per transition that the cell statistics keep. The
compiled path runs `--repeats` times over all transitions (this shared machine's speed varies by
up to 2x from one second to the next): its median and best rates are printed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fdt.mining.cells import (
    DIGEST_WORDS,
    cell_view,
    frame_digests,
    pool_frames,
    pooled_frame_digests,
    stack_digests,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=500_000)
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.transitions, args.repeats = 2000, 1
    n = args.transitions
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, 84, 84), dtype=np.uint8)
    row = np.arange(n)
    stacks = np.clip(row[:, None] - np.arange(3, -1, -1)[None, :], 0, None)

    # Compile (or load the cached) kernels first, so that compilation is not timed.
    pooled_frame_digests(args.game, frames[:8])
    stack_digests(np.zeros((1, DIGEST_WORDS), np.uint64), np.zeros((1, 4), np.int64))
    view_s = pool_s = hash_s = 0.0
    digest = np.empty((n, DIGEST_WORDS), dtype=np.uint64)
    buffer = np.empty((args.chunk, 84, 84), dtype=np.uint8)
    for first in range(0, n, args.chunk):
        block = frames[first:first + args.chunk]
        t0 = time.perf_counter()
        view = cell_view(args.game, block, out=buffer)
        t1 = time.perf_counter()
        pooled = pool_frames(view)
        t2 = time.perf_counter()
        digest[first:first + len(block)] = frame_digests(pooled)
        t3 = time.perf_counter()
        view_s, pool_s, hash_s = view_s + t1 - t0, pool_s + t2 - t1, hash_s + t3 - t2
    t0 = time.perf_counter()
    cells = stack_digests(digest, stacks)
    stack_s = time.perf_counter() - t0
    total = view_s + pool_s + hash_s + stack_s
    t0 = time.perf_counter()
    frames.max()  # the ceiling: one read of every byte
    read_s = time.perf_counter() - t0
    kernel_s, library_s = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        compiled = pooled_frame_digests(args.game, frames)
        kernel_s.append(time.perf_counter() - t0)
        end_to_end = stack_digests(compiled, stacks)
        library_s.append(time.perf_counter() - t0)
        assert np.array_equal(end_to_end, cells)
    # What mining keeps per transition: cell digest, action, discounted return, replay index,
    # trajectory id, allowed flag (the frames are streamed and dropped).
    kept = cells.itemsize * DIGEST_WORDS + 4 + 8 + 8 + 4 + 1
    print(json.dumps({
        "game": args.game, "transitions": n,
        "per_second": {"mask": round(n / view_s), "pool": round(n / pool_s),
                       "hash_frames": round(n / hash_s), "hash_stacks": round(n / stack_s),
                       "numpy_phases_summed": round(n / total),
                       "compiled_mask_pool_hash": _rates(n, kernel_s),
                       "compiled_end_to_end": _rates(n, library_s),
                       "memory_read_ceiling": round(n / read_s)},
        "end_to_end_vs_ceiling": round(read_s / float(np.median(library_s)), 2),
        "distinct_cells": int(len(np.unique(cells, axis=0))),
        "bytes_per_transition_kept": kept,
        "projected_gb_for_50M": round(kept * 50e6 / 1e9, 2),
    }, indent=2))


def _rates(n: int, seconds: list[float]) -> dict[str, int]:
    """Median and best transitions per second over repeated runs."""
    return {"median": round(n / float(np.median(seconds))), "best": round(n / min(seconds))}


if __name__ == "__main__":
    main()
