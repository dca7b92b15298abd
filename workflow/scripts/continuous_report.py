"""Gather the continuous DT runs into the report section: normalized score per dataset and
target, the datasets, score-per-target and learning-curve plots, section.json."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.continuous.report import TrainedRun, build_continuous_report
from fdt.keys import record_stage

p = snakemake.params
runs = [TrainedRun(name, seed, Path(metrics).parent, Path(info))
        for (name, seed), metrics, info in zip(p.runs, snakemake.input.metrics, snakemake.input.infos)]
out_dir = Path(snakemake.output.section).parent
section = build_continuous_report(runs, out_dir, p.report["source"],
                                  dict(zip(p.envs, snakemake.input.behaviour)))
record_stage(out_dir, "continuous_report", p.report, p.input_keys, p.code, snakemake.wildcards.key)
print(section["summary"], flush=True)
