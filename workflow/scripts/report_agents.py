"""Gather the agents' scores and learning curves into the agents table and its plot."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.report.build import build_agents_report

p = snakemake.params
out_dir = Path(snakemake.output.table).parent
summary = build_agents_report(snakemake.input.metrics, snakemake.input.paper, out_dir)
record_stage(out_dir, "agents_report", p.report, p.input_keys, p.code, snakemake.wildcards.key)
print(summary, flush=True)
