"""The feedback section of the report: bundles, labellers' agreement, noise and budget runs."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.teacher.report import build_teacher_report

p = snakemake.params
out_dir = Path(snakemake.output.section).parent
section = build_teacher_report([(g, s, Path(b).parent) for g, s, b in p.bundles], p.answers,
                               "results", out_dir, p.report["kind"])
record_stage(out_dir, "teacher_report", p.report, p.input_keys, p.code, snakemake.wildcards.key)
print(section["summary"], flush=True)
