"""RA-DT's report section: radt vs dt scores, the paired test, the memories."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.retrieval.report import build_retrieval_report

p = snakemake.params
out_dir = Path(snakemake.output.section).parent
summary = build_retrieval_report(snakemake.input.episodes, snakemake.input.memories, out_dir,
                                 setups=p.report["setups"])
record_stage(out_dir, "retrieval_report", p.report, p.input_keys, p.code, snakemake.wildcards.key)
print(summary, flush=True)
