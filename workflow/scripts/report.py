"""Gather every evaluated episode into the results tables and plots."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.report import build_report

oracle = snakemake.input.get("oracle", [])
summary = build_report(snakemake.input.episodes, snakemake.input.paper,
                       Path(snakemake.output.scores).parent, oracle_files=oracle,
                       setups=snakemake.params.setups)
print(summary, flush=True)
