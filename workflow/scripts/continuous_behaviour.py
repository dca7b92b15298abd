"""Train an environment's behaviour agent (SAC, online) for the continuous datasets: its replay
(medium-replay), the medium and expert snapshots, its learning curve and our normalisation's
reference returns; tracked in MLflow (experiment `continuous`)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

import logging

import pandas as pd

from fdt.continuous.environments import check_environment, make_env
from fdt.continuous.episodes import write_csv, write_episodes
from fdt.continuous.generate import references, save_policies
from fdt.continuous.sac import SACParams, train_behaviour
from fdt.device import set_job_threads
from fdt.io import write_json
from fdt.keys import record_stage
from fdt.settings import params_from
from fdt.tracking import flat_values, job_run, mlflow_names

p = snakemake.params
settings, env_id = p.behaviour, snakemake.wildcards.env
check_environment(env_id)  # one sentence before any work
set_job_threads(snakemake.threads)
params = params_from(SACParams, settings)
out_dir = Path(snakemake.output.policies).parent
log = logging.getLogger("continuous_behaviour")

with job_run(f"{env_id}-behaviour", {"env": env_id, "key": snakemake.wildcards.key,
                                     "stage": "continuous_behaviour"},
             experiment="continuous") as tracker:
    if tracker is not None:
        tracker.start()
        tracker.log_params(mlflow_names(flat_values(settings)))

    def progress(step: int, point: dict) -> None:
        log.info("step %d/%d: %s", step, params.steps, point)
        if tracker is not None:
            tracker.log_metrics({"evaluation_return": point["evaluation_return"]}, step=step)

    env = make_env(env_id)
    run = train_behaviour(env, make_env(env_id), params, progress, out_dir / "checkpoint.pt",
                          p.run["checkpoint_every"])  # a rerun resumes an interrupted one
    write_episodes(snakemake.output.replay, run.replay,
                   {"seed": params.seed, "policies": ["random", "sac-replay"]})
    chosen = save_policies(snakemake.output.policies, env, run, params, settings["medium_fraction"])
    write_csv(pd.DataFrame(run.curve), snakemake.output.curve)
    measured = references(env, snakemake.output.policies, settings["reference_episodes"], params.seed)
    write_json(snakemake.output.references, {**measured, "snapshots": chosen})
    if tracker is not None:
        tracker.log_metrics({"reference_random": measured["random"],
                             "reference_expert": measured["expert"]}, step=params.steps)
record_stage(out_dir, "continuous_behaviour", settings, p.input_keys, p.code, snakemake.wildcards.key)
print({"references": measured, **chosen}, flush=True)
