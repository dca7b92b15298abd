"""Train one model (DT or BC) for one seed on its training set; track it in MLflow."""

import os
from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import set_job_threads
from fdt.keys import record_stage
from fdt.models.trainer import TrainParams, train
from fdt.settings import params_from
from fdt.tracking import Tracker, default_tracking_uri

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
params = params_from(TrainParams, p.train, p.run, seed=seed)
set_job_threads(snakemake.threads)  # no more than the free cores
out_dir = Path(snakemake.output.model).parent

tracker = None
if os.environ.get("FDT_TRACKING", "on") != "off":
    tracker = Tracker(default_tracking_uri(), run_name=f"{wc.game}-{wc.model}-seed{seed}",
                      tags={"game": wc.game, "model": wc.model, "key": wc.key, "seed": seed,
                            "dataset_key": p.dataset_key, "stage": "train"})
try:
    labels = snakemake.input.get("labels")
    metrics = train(Path(snakemake.input.manifest).parent, out_dir, params, labels=labels,
                    tracker=tracker)
except BaseException:
    if tracker is not None:
        tracker.end("FAILED")
    raise
if tracker is not None:
    tracker.end("FINISHED")
record_stage(out_dir, "train", p.train, p.input_keys, p.code,
             wc.key, details={"seed": seed, **p.run})
print({k: metrics[k] for k in ("epochs", "steps", "final_loss", "samples_per_s")}, flush=True)
