"""The online loop's report: true return against environment steps, table and figure."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.online.report import markdown, write_report

rows = write_report(Path(snakemake.output.section).parent, snakemake.params.runs,
                    snakemake.params.settings)
print(markdown(rows), flush=True)
