"""Learning histories of one grid-world's training tasks: PPO per task, or the anchor's files
from a local folder; one Parquet file per task, resumable after a kill."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.incontext.stages import run_histories
from fdt.keys import record_stage

p = snakemake.params
wc = snakemake.wildcards
info = run_histories(p.incontext, wc.env, snakemake.output.manifest,
                     lambda task, total: print(f"task {task}: reward {total:.0f}", flush=True))
record_stage(Path(snakemake.output.manifest).parent, "incontext_histories", p.stage,
             p.input_keys, p.code, wc.key)
print({"tasks": len(info["tasks"])}, flush=True)
