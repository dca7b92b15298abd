"""Train one of batch_rl's agents for one game and seed on the replay store; score it under the
Dopamine protocol after the chosen iterations; track it in MLflow (experiment `agents`)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

import torch

from fdt.agents.registry import agent_for_data
from fdt.agents.replay import BatchRLData, TrainingSetData
from fdt.agents.training import AgentEvaluation, AgentTrainingParams, train_agent
from fdt.atari import minimal_action_count
from fdt.keys import record_stage
from fdt.settings import params_from
from fdt.tracking import job_run

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
settings = p.agent
torch.set_num_threads(snakemake.threads)
agent = agent_for_data(wc.agent, settings["hyperparameters"], settings["data"],
                       settings.get("data_fraction", 1.0))
evaluation = params_from(AgentEvaluation, settings["evaluation"], p.run["evaluation"])
params = params_from(AgentTrainingParams, settings, p.run, seed=seed, evaluation=evaluation)
if settings["data"] == "batch_rl":
    data = BatchRLData(dict(zip(settings["checkpoints"], snakemake.input.buffers)),
                       settings["checkpoints_per_iteration"], fraction=settings["data_fraction"],
                       subset=settings["data_subset"], seed=seed)
else:
    data = TrainingSetData(Path(snakemake.input.manifest).parent, snakemake.input.buffers)
out_dir = Path(snakemake.output.agent).parent

with job_run(f"{wc.game}-{wc.agent}-seed{seed}",
             {"game": wc.game, "agent": wc.agent, "key": wc.key, "seed": seed,
              "data": settings["data"], "stage": "agent"}, experiment="agents") as tracker:
    metrics = train_agent(agent, data, minimal_action_count(wc.game), out_dir, params,
                          game=wc.game, tracker=tracker)
record_stage(out_dir, "agent", settings, p.input_keys, p.code, wc.key,
             details={"seed": seed, **p.run})
print({k: metrics[k] for k in ("iterations", "updates", "final_loss", "final_evaluation")},
      flush=True)
