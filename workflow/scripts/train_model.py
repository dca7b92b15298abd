"""Train one model (DT or BC) for one seed on its training set; track it in MLflow."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import set_job_threads
from fdt.keys import record_stage
from fdt.models.trainer import TrainParams, train
from fdt.settings import params_from
from fdt.tracking import job_run

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
params = params_from(TrainParams, p.train, p.run, seed=seed)
set_job_threads(snakemake.threads)  # no more than the free cores
out_dir = Path(snakemake.output.model).parent

with job_run(f"{wc.game}-{wc.model}-seed{seed}",
             {"game": wc.game, "model": wc.model, "key": wc.key, "seed": seed,
              "dataset_key": p.dataset_key, "stage": "train"}) as tracker:
    metrics = train(Path(snakemake.input.manifest).parent, out_dir, params,
                    labels=snakemake.input.get("labels"), tracker=tracker)
record_stage(out_dir, "train", p.train, p.input_keys, p.code,
             wc.key, details={"seed": seed, **p.run})
print({k: metrics[k] for k in ("epochs", "steps", "final_loss", "samples_per_s")}, flush=True)
