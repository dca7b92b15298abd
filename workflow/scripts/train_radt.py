"""Train RA-DT (radt) for one seed on its training set and memory; track it in MLflow."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import set_job_threads
from fdt.keys import record_stage
from fdt.models.trainer import TrainParams, train
from fdt.retrieval.index import IndexParams
from fdt.retrieval.memory import Memory
from fdt.retrieval.retrieve import RetrievalParams
from fdt.retrieval.training import RetrievalTraining
from fdt.settings import params_from
from fdt.tracking import job_run

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
params = params_from(TrainParams, p.train, p.run, seed=seed)
retrieval = p.train["retrieval"]
extension = RetrievalTraining(Memory(Path(snakemake.input.memory).parent),
                              params_from(RetrievalParams, retrieval),
                              params_from(IndexParams, retrieval["index"]))
set_job_threads(snakemake.threads)
out_dir = Path(snakemake.output.model).parent

with job_run(f"{wc.game}-radt-seed{seed}",
             {"game": wc.game, "model": "radt", "key": wc.key, "seed": seed,
              "dataset_key": p.dataset_key, "stage": "train"}) as tracker:
    metrics = train(Path(snakemake.input.manifest).parent, out_dir, params, tracker=tracker,
                    extension=extension)
record_stage(out_dir, "train", p.train, p.input_keys, p.code,
             wc.key, details={"seed": seed, **p.run})
print({k: metrics[k] for k in ("epochs", "steps", "final_loss", "samples_per_s")}, flush=True)
