"""Snakemake's own overhead: building the paper-scale job graph, and a rerun that has nothing to do.

    python benchmarks/workflow_overhead.py                       # the paper-scale dry run
    python benchmarks/workflow_overhead.py --finished DIR        # also a no-op rerun in DIR

DIR is a working directory where the workflow has run to the end with the config in
DIR/tiny.yaml (for example the tests' tiny run). Each command is timed whole (Python start,
parsing, validation, the job graph), best of --repeat.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(command: list[str], repeat: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        best = min(best, time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        out = done.stdout + done.stderr
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:  # the default config's plan, once: the paper's takes half a minute here
        args.repeat = 1
    config = REPO / ("config/config.yaml" if args.quick else "config/paper.yaml")
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    seconds, out = timed(snakemake + ["--directory", str(REPO), "--configfile", str(config),
                                      "--dry-run", "--quiet", "rules"], args.repeat)
    jobs = next((line.split()[-1] for line in out.splitlines() if line.startswith("total")), "?")
    scale = "default-config" if args.quick else "paper-scale"
    print(f"{scale} dry run: {jobs} jobs planned in {seconds:.2f} s (target 10 s)")
    if args.finished:
        seconds, out = timed(snakemake + ["--directory", str(args.finished), "--configfile",
                                          str(args.finished / "tiny.yaml"), "--cores", "2"],
                             args.repeat)
        assert "Nothing to be done" in out, out[-1000:]
        print(f"no-op rerun of the finished tiny workflow: {seconds:.2f} s (target 5 s)")


if __name__ == "__main__":
    main()
