"""The preferences report: score against comparisons, the reward models' accuracy, section.json."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.preferences.report import preferences_table, write_section

p = snakemake.params
folder = Path(snakemake.output.section).parent
table = preferences_table(p.runs, p.baseline)
write_section(folder, table, p.settings, p.runs)
record_stage(folder, "preferences_report", p.report, p.input_keys, p.code, snakemake.wildcards.key)
print(table.to_string(index=False), flush=True)
