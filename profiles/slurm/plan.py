"""What a run asks of a SLURM cluster, planned through profiles/slurm without submitting anything.

    .venv/bin/python profiles/slurm/plan.py                          # config/paper.yaml
    .venv/bin/python profiles/slurm/plan.py --configfile my.yaml     # any config
    make slurm-plan                                                  # the first

A dry run of the whole workflow (in an empty folder, so every job is planned) through the slurm
profile, exactly as `snakemake --profile profiles/slurm --configfile ... --dry-run` plans it; each
job's memory, runtime, threads and GPUs are read as the SLURM plugin would submit them. Prints
one line per rule (jobs, memory, runtime, threads, GPUs) and, per system of
workflow/resources.yaml, the GPU-hours and CPU-hours requested (runtime x GPUs, runtime x
threads: what the cluster reserves, not what the jobs end up using). Needs the plugin:
pip install -e '.[slurm]'.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: fdt is the checkout's

from fdt.resources import JobSize, load_table  # noqa: E402


@dataclass(frozen=True)
class PlannedJob:
    """One job as the slurm profile would submit it."""

    rule: str
    mem_mb: int
    runtime: int  # minutes
    threads: int
    gpu: int


def plan(configfile: Path, profile: Path = REPO / "profiles/slurm",
         extra: tuple[str, ...] = ()) -> list[PlannedJob]:
    """Every job of a fresh run of `configfile` through `profile`, by a dry run in-process: the
    dry run's executor is wrapped to note each job's resources as it passes."""
    import snakemake.cli
    from snakemake.executors import dryrun

    planned: list[PlannedJob] = []
    run_job = dryrun.Executor.run_job

    def note(self: dryrun.Executor, job) -> None:  # type: ignore[no-untyped-def]
        resources = job.resources
        planned.append(PlannedJob(job.rule.name, int(resources.get("mem_mb", 0)),
                                  int(resources.get("runtime", 0)), int(job.threads),
                                  int(resources.get("gpu", 0) or 0)))
        run_job(self, job)

    with tempfile.TemporaryDirectory(prefix="fdt-plan-") as workdir:
        argv = ["--snakefile", str(REPO / "Snakefile"), "--directory", workdir,
                "--configfile", str(Path(configfile).resolve()), "--profile", str(profile),
                "--dry-run", *extra, "--quiet", "all",  # quiet: the table is the output
                # a dry run executes locally, where Snakemake caps each job's threads at
                # --cores (this machine's, by profiles/default): a node's are the rule's own
                "--cores", "100000"]
        dryrun.Executor.run_job = note  # type: ignore[method-assign]
        try:
            snakemake.cli.main(argv)
        except SystemExit as done:
            if done.code not in (0, None):
                raise SystemExit(f"planning failed (exit {done.code}); see the error above")
        finally:
            dryrun.Executor.run_job = run_job  # type: ignore[method-assign]
    return [job for job in planned if job.rule != "all"]


def _range(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def summary(jobs: list[PlannedJob], table: dict[str, JobSize]) -> str:
    """The per-rule lines, then per system the GPU-hours and CPU-hours requested."""
    by_rule: dict[str, list[PlannedJob]] = defaultdict(list)
    for job in jobs:
        by_rule[job.rule].append(job)
    order = list(table)  # the table's order: by system, then by stage
    lines = [f"{'system':<12} {'rule':<24} {'jobs':>6} {'mem_mb':>11} {'runtime':>10} "
             f"{'threads':>7} {'gpus':>4}"]
    hours: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for rule in sorted(by_rule, key=lambda name: order.index(name) if name in order else len(order)):
        group = by_rule[rule]
        system = table[rule].system if rule in table else "?"
        lines.append(f"{system:<12} {rule:<24} {len(group):>6} "
                     f"{_range([j.mem_mb for j in group]):>11} "
                     f"{_range([j.runtime for j in group]):>10} "
                     f"{_range([j.threads for j in group]):>7} {_range([j.gpu for j in group]):>4}")
        total = hours[system]
        total[0] += sum(j.runtime * j.gpu for j in group) / 60
        total[1] += sum(j.runtime * j.threads for j in group) / 60
        total[2] += len(group)
    lines += ["", f"{'system':<12} {'jobs':>6} {'GPU-hours':>10} {'CPU-hours':>10}"]
    for system, (gpu_hours, cpu_hours, count) in hours.items():
        lines.append(f"{system:<12} {count:>6} {gpu_hours:>10.0f} {cpu_hours:>10.0f}")
    lines.append(f"{'total':<12} {len(jobs):>6} {sum(h[0] for h in hours.values()):>10.0f} "
                 f"{sum(h[1] for h in hours.values()):>10.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config/paper.yaml")
    parser.add_argument("--profile", type=Path, default=REPO / "profiles/slurm")
    parser.add_argument("--json", action="store_true", help="one object per job, for scripts")
    args = parser.parse_args()
    jobs = plan(args.configfile, args.profile)
    if args.json:
        print(json.dumps([asdict(job) for job in jobs]))
        return
    print(f"{args.configfile} through {args.profile} (dry run; runtime in minutes)\n")
    print(summary(jobs, load_table(REPO / "workflow/resources.yaml")))


if __name__ == "__main__":
    main()
