"""The in-context report section: return vs in-context episode per method, 95% bootstrap
intervals, the table at episodes 1, 10 and 40, section.json."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.incontext.stages import run_report
from fdt.keys import record_stage

p = snakemake.params
out_dir = Path(snakemake.output.section).parent
section = run_report(list(snakemake.input.episodes), out_dir)
record_stage(out_dir, "incontext_report", p.stage, p.input_keys, p.code,
             snakemake.wildcards.key)
print(section["summary"], flush=True)
