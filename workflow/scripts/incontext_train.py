"""Train one in-context method (ad, dt, radt, radt_lm) for one seed on the training tasks'
learning histories; tracked in MLflow (experiment `incontext`); resumes from its checkpoint."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import set_job_threads
from fdt.incontext.stages import run_train
from fdt.keys import record_stage
from fdt.tracking import job_run

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
set_job_threads(snakemake.threads)
out_dir = Path(snakemake.output.model).parent
dt_model = snakemake.input.get("embedder")
with job_run(f"{wc.env}-{wc.method}-seed{seed}",
             {"env": wc.env, "method": wc.method, "key": wc.key, "seed": seed,
              "stage": "incontext_train"}, experiment="incontext") as tracker:
    metrics = run_train(p.incontext, wc.env, wc.method, seed, snakemake.input.manifest,
                        out_dir, dt_model, tracker)
record_stage(out_dir, "incontext_train", p.stage, p.input_keys, p.code, wc.key,
             details={"seed": seed})
print(metrics, flush=True)
