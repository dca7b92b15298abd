"""In-context evaluation of one trained method and seed: every unseen goal for N consecutive
episodes, context and evaluation memory carried across them."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import set_job_threads
from fdt.incontext.stages import run_evaluate
from fdt.keys import record_stage

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
set_job_threads(snakemake.threads)
summary = run_evaluate(p.incontext, wc.env, wc.method, seed, snakemake.input.model,
                       snakemake.input.manifest, snakemake.output.episodes,
                       snakemake.output.summary, snakemake.input.get("embedder"))
record_stage(Path(snakemake.output.summary).parent, "incontext_evaluate", p.stage,
             p.input_keys, p.code, wc.key, details={"seed": seed})
print(summary, flush=True)
