"""Train one seed's reward model on its comparisons; its held-out accuracy in metrics.json."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.dataset.training_set import TrainingSet
from fdt.device import resolve_device, set_job_threads
from fdt.io import write_json
from fdt.keys import record_stage
from fdt.preferences.clips import read_bundle
from fdt.preferences.reward_model import RewardParams
from fdt.preferences.stage import learn_reward
from fdt.settings import params_from
from fdt.tracking import job_run, mlflow_names, numeric

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
set_job_threads(snakemake.threads)  # no more than the free cores
params = params_from(RewardParams, p.reward, p.run, seed=seed)
out_dir = Path(snakemake.output.model).parent
with job_run(f"{wc.game}-preferences-seed{seed}-reward",
             {"game": wc.game, "key": wc.key, "seed": seed, "stage": "preference_reward"}) as tracker:
    if tracker is not None:
        tracker.log_params(mlflow_names(p.reward))
    metrics = learn_reward(TrainingSet(Path(snakemake.input.manifest).parent),
                           read_bundle(snakemake.input.clips),
                           Path(snakemake.input.comparisons).parent, params,
                           p.reward["min_comparisons"], snakemake.output.model,
                           resolve_device(p.run["device"], "preferences.reward_model.device"))
    if tracker is not None:
        tracker.log_metrics(mlflow_names(numeric(metrics)), step=metrics["updates"])
write_json(snakemake.output.metrics, metrics)
record_stage(out_dir, "preference_reward", p.reward, p.input_keys, p.code, wc.key,
             details={"seed": seed, **p.run})
print(metrics, flush=True)
