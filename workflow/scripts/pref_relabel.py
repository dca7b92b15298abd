"""Relabel one seed's training set with its reward model (rewards and returns-to-go)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.dataset.training_set import TrainingSet
from fdt.device import resolve_device, set_job_threads
from fdt.keys import record_stage
from fdt.preferences.relabel import relabel_training_set

p = snakemake.params
wc = snakemake.wildcards
set_job_threads(snakemake.threads)
out_dir = Path(snakemake.output.manifest).parent
dataset_key, reward_key = p.input_keys
manifest = relabel_training_set(
    TrainingSet(Path(snakemake.input.manifest).parent), snakemake.input.reward_model, out_dir,
    resolve_device(p.device, "preferences.reward_model.device"),
    {"key": wc.key, "dataset_key": dataset_key, "reward_key": reward_key})
record_stage(out_dir, "preference_relabel", p.relabel, p.input_keys, p.code, wc.key,
             details={"seed": int(wc.seed)})
print(manifest["relabelled"], flush=True)
