"""Gather every evaluated episode into the results tables and plots."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.report.build import build_report

p = snakemake.params
oracle = snakemake.input.get("oracle", [])
out_dir = Path(snakemake.output.scores).parent
summary = build_report(snakemake.input.episodes, snakemake.input.paper, out_dir,
                       oracle_files=oracle, setups=p.report["setups"], context=p.context,
                       behaviour_run=p.report["behaviour"]["run"])
record_stage(out_dir, "report", p.report, p.input_keys, p.code, snakemake.wildcards.key)
print(summary, flush=True)
