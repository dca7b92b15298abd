"""Lay every system's report section out in one HTML page, after what was run."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.report.html import build_html

p = snakemake.params
out_dir = Path(snakemake.output.page).parent
page = build_html(snakemake.input.sections, p.site["description"], out_dir)
record_stage(out_dir, "site", p.site, p.input_keys, p.code, snakemake.wildcards.key)
print(f"report: {page}", flush=True)
