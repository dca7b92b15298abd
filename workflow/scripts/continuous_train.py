"""Train CORL's continuous Decision Transformer on one dataset for one seed, evaluating every
target return on the way and at the end; tracked in MLflow (experiment `continuous`)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.continuous.environments import (
    ContinuousInputError,
    check_environment,
    check_sizes,
    make_env,
    task_sizes,
)
from fdt.continuous.episodes import read_episodes
from fdt.continuous.training import DTParams, train_dt
from fdt.device import set_job_threads
from fdt.io import read_json
from fdt.keys import record_stage
from fdt.settings import params_from
from fdt.tracking import job_run

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
info = read_json(snakemake.input.info)
env_id = info["env_id"]
check_environment(env_id, f"continuous dataset {p.model['dataset']!r}")  # before any work
sizes = task_sizes(make_env(env_id))
check_sizes(env_id, sizes, info["observation_size"], info["action_size"],
            f"continuous dataset {p.model['dataset']!r}")
if p.model["episode_len"] < sizes.max_episode_steps:
    raise ContinuousInputError(f"continuous.dt.episode_len of {p.model['dataset']!r} is {p.model['episode_len']}, "
                     f"shorter than {env_id}'s episodes ({sizes.max_episode_steps} steps)")
episodes = read_episodes(snakemake.input.episodes)
set_job_threads(p.run["threads"])
params = params_from(DTParams, p.model, p.run, seed=seed)
out_dir = Path(snakemake.output.model).parent

with job_run(f"{wc.dataset}-dt-seed{seed}", {"dataset": p.model["dataset"], "env": env_id,
                                               "key": wc.key, "seed": seed,
                                               "stage": "continuous_train"},
             experiment="continuous") as tracker:
    metrics = train_dt(episodes, sizes, lambda: make_env(env_id), params, info["references"],
                       out_dir, tracker)
record_stage(out_dir, "continuous_train", p.model, p.input_keys, p.code, wc.key,
             details={"seed": seed, **p.run})
print({"final_loss": metrics["final_loss"], "targets": metrics["targets"]}, flush=True)
