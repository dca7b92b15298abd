"""Converting one full-size replay checkpoint: time against plain decompression, memory, size.

Builds a checkpoint of --rows rows (1,000,000 like the real files) with the writer, from real
Breakout frames played by the demo policy (episodes of realistic length with their padding), then
measures, side by side in one run (--repeat times, alternating; medians reported, as the machine
is shared):
  - Python's gzip module merely decompressing the six .gz files (the reference of the target);
  - our reader inflating them (fdt.replay.dopamine.INFLATER: isal, else zlib), the floor;
  - convert_checkpoint to Parquet (in a child process, to read its peak memory);
  - with --compare-with DIR, also the conversion of another copy of the code (e.g. an earlier
    commit exported by `git archive`), in the same rounds.
Usage: python benchmarks/convert_buffer.py [--rows 1000000] [--repeat 3] [--workdir resources/bench]
           [--compare-with /tmp/old-checkout]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fdt.replay.dopamine import (
    FILE_KINDS,
    INFLATER,
    FRAME_SHAPE,
    PADDING_ROWS,
    GzipReader,
    file_name,
    read_npy_header,
    verify_npy_gz,
    write_checkpoint,
)


def real_frames(count: int, seed: int = 0) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    """Frames, episode lengths, actions and rewards from Breakout under the demo policy."""
    from fdt.atari import AtariEnvironment
    from fdt.replay.demo import breakout_controller

    env = AtariEnvironment("Breakout", seed=seed)
    rng = np.random.default_rng(seed)
    frames = np.empty((count, *FRAME_SHAPE), np.uint8)
    actions = np.empty(count, np.int32)
    rewards = np.empty(count, np.float32)
    lengths: list[int] = []
    t = 0
    while t < count:
        frame, steps, over = env.reset(), 0, False
        epsilon = rng.uniform(0.05, 1.0)  # a mixture of checkpoints' competence
        while not over and t < count and steps < 27_000:
            action = int(rng.integers(4)) if rng.random() < epsilon else breakout_controller(env.ram())
            frames[t], actions[t] = frame, action
            frame, reward, over = env.step(action)
            rewards[t] = np.clip(reward, -1, 1)
            t, steps = t + 1, steps + 1
        lengths.append(steps)
    return frames, lengths, actions, rewards


def build_checkpoint(folder: Path, rows: int, source_frames: np.ndarray, lengths: list[int],
                     actions: np.ndarray, rewards: np.ndarray, compresslevel: int) -> None:
    """Checkpoint 1 of a run (add_count = 2C - 1): episodes cycled from the played ones."""
    terminal = np.zeros(rows, np.uint8)
    action = np.zeros(rows, np.int32)
    reward = np.zeros(rows, np.float32)
    order = np.full(rows, -1, np.int64)  # which played frame each slot holds, -1 for padding
    e = 0
    # Chronological rows: slot C-1 first, then 0..C-2; lay episodes over that sequence.
    chronological = np.concatenate([[rows - 1], np.arange(rows - 1)])
    position = 0
    while position < rows:
        length = lengths[e % len(lengths)]
        source_start = sum(lengths[: e % len(lengths)])
        position += PADDING_ROWS
        take = min(length, rows - max(position, 0))
        if take <= 0:
            break
        slots = chronological[position:position + take]
        order[slots] = source_start + np.arange(take)
        action[slots] = actions[source_start:source_start + take]
        reward[slots] = rewards[source_start:source_start + take]
        if take == length:
            terminal[slots[-1]] = 1
        position += take
        e += 1

    def blocks():
        for first in range(0, rows, 4096):
            idx = order[first:first + 4096]
            block = np.zeros((len(idx), *FRAME_SHAPE), np.uint8)
            block[idx >= 0] = source_frames[idx[idx >= 0]]
            yield block

    write_checkpoint(folder, 1, observation=blocks(), action=action, reward=reward, terminal=terminal,
                     add_count=2 * rows - 1, compresslevel=compresslevel)


def inflate_only(folder: Path) -> float:
    start = time.perf_counter()
    for kind in FILE_KINDS:
        verify_npy_gz(folder / file_name(kind, 1), block_bytes=4096 * 84 * 84)
    return time.perf_counter() - start


def decompress_gzip_module(folder: Path) -> float:
    start = time.perf_counter()
    for kind in FILE_KINDS:
        with gzip.open(folder / file_name(kind, 1), "rb") as f:
            while f.read(4096 * 84 * 84):
                pass
    return time.perf_counter() - start


CHILD = """
import json, resource, sys, time
import fdt
from fdt.replay.store import convert_checkpoint
start = time.perf_counter()
convert_checkpoint(sys.argv[1], 1, sys.argv[2], episode_cap=27000, progress=False,
                   zstd_level=int(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - start, "code": fdt.__file__,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def convert(folder: Path, out: Path, code: Path | None = None, zstd_level: int = 1) -> dict[str, float]:
    """convert_checkpoint in a child process; `code` is a copy of the repository to import."""
    env = dict(os.environ, PYTHONPATH=str(code)) if code else None
    child = subprocess.run([sys.executable, "-c", CHILD, str(folder.resolve()), str(out.resolve()),
                            str(zstd_level)],
                           check=True, capture_output=True, text=True, env=env, cwd=code)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    if code and not Path(result["code"]).is_relative_to(code):
        raise SystemExit(f"--compare-with {code}: the child imported fdt from {result['code']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--real-frames", type=int, default=30_000)
    parser.add_argument("--compresslevel", type=int, default=9, help="Dopamine's GzipFile default is 9")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the three measurements")
    parser.add_argument("--workdir", type=Path, default=Path("resources/bench"))
    parser.add_argument("--compare-with", type=Path, help="another copy of the code to time too")
    parser.add_argument("--zstd-levels", default="1",
                        help="comma-separated replay.zstd_level values to convert with, side by "
                             "side (the first is the reported `convert`; write --zstd-levels=-1,3 "
                             "when it is negative)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:  # a checkpoint of 5,000 rows from 500 real frames, once, in a fresh folder
        args.rows, args.real_frames, args.repeat = 5000, 500, 1
        args.workdir = Path(tempfile.mkdtemp(prefix="fdt-bench-convert-"))
    folder = args.workdir / f"rows{args.rows}_gz{args.compresslevel}"
    if not (folder / file_name("observation", 1)).exists():
        t = time.perf_counter()
        frames, lengths, actions, rewards = real_frames(args.real_frames)
        print(f"played {len(frames)} real frames in {time.perf_counter() - t:.0f} s", flush=True)
        t = time.perf_counter()
        build_checkpoint(folder, args.rows, frames, lengths, actions, rewards, args.compresslevel)
        print(f"wrote the checkpoint in {time.perf_counter() - t:.0f} s", flush=True)
    with GzipReader(folder / file_name("observation", 1)) as reader:
        assert read_npy_header(reader).shape == (args.rows, *FRAME_SHAPE)
    gz_bytes = sum((folder / file_name(k, 1)).stat().st_size for k in FILE_KINDS)
    out = args.workdir / f"rows{args.rows}.parquet"

    levels = [int(v) for v in args.zstd_levels.split(",")]
    runs: dict[str, list[float]] = {"gzip_module_s": [], "inflate_s": [], "convert_s": [],
                                    "convert_peak_rss_mb": []}
    runs.update({f"convert_zstd{level}_s": [] for level in levels[1:]})
    if args.compare_with:
        runs.update(compared_convert_s=[], compared_convert_peak_rss_mb=[])
    sizes: dict[int, int] = {}
    for _ in range(args.repeat):
        runs["gzip_module_s"].append(decompress_gzip_module(folder))
        runs["inflate_s"].append(inflate_only(folder))
        ours = convert(folder, out, zstd_level=levels[0])
        runs["convert_s"].append(ours["seconds"])
        runs["convert_peak_rss_mb"].append(ours["peak_rss_mb"])
        sizes[levels[0]] = out.stat().st_size
        for level in levels[1:]:
            other = args.workdir / f"rows{args.rows}.zstd{level}.parquet"
            runs[f"convert_zstd{level}_s"].append(convert(folder, other, zstd_level=level)["seconds"])
            sizes[level] = other.stat().st_size
        if args.compare_with:
            theirs = convert(folder, args.workdir / f"rows{args.rows}.compared.parquet",
                             args.compare_with.resolve())
            runs["compared_convert_s"].append(theirs["seconds"])
            runs["compared_convert_peak_rss_mb"].append(theirs["peak_rss_mb"])
    median = {name: statistics.median(values) for name, values in runs.items()}
    result = {
        "rows": args.rows,
        "gz_bytes": gz_bytes,
        "zstd_level": levels[0],
        "parquet_bytes": out.stat().st_size,
        "size_ratio_parquet_over_gz": round(out.stat().st_size / gz_bytes, 3),
        "inflater": INFLATER.__name__,
        **{name: [round(v, 2) for v in values] for name, values in runs.items()},
        "time_ratio_convert_over_gzip_module": round(median["convert_s"] / median["gzip_module_s"], 3),
        "time_ratio_convert_over_inflate": round(median["convert_s"] / median["inflate_s"], 3),
    }
    for level in levels[1:]:
        result[f"zstd{level}_time_ratio_over_gzip_module"] = round(
            median[f"convert_zstd{level}_s"] / median["gzip_module_s"], 3)
        result[f"zstd{level}_size_ratio_over_gz"] = round(sizes[level] / gz_bytes, 3)
    if args.compare_with:
        result["compared_time_ratio_over_gzip_module"] = round(
            median["compared_convert_s"] / median["gzip_module_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
