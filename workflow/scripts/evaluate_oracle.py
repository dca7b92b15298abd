"""Score the oracle in the environment under the Dopamine protocol (how good is the teacher?)."""

from pathlib import Path

from fdt.io import log_to, write_json

log_to(snakemake.log[0])

from fdt.atari import minimal_action_count
from fdt.device import set_job_threads
from fdt.oracle.checkpoints import load_oracle
from fdt.oracle.scoring import evaluate_oracle
from fdt.tracking import track_finished_stage

set_job_threads(snakemake.threads)  # no more than the free cores
p = snakemake.params
game = snakemake.wildcards.game
actions = minimal_action_count(game)
net = load_oracle(p.oracle["kind"], snakemake.input.oracle[0], p.oracle, actions)
e = p.evaluation
result = evaluate_oracle(net, game, episodes=e["episodes"], seed=e["seed"],
                         max_steps=e["max_steps"], envs=e["envs"], backend=e["backend"])
result["oracle"] = p.oracle
write_json(snakemake.output[0], result)
track_finished_stage(f"{game}-oracle-eval", {"game": game, "stage": "evaluate_oracle",
                                               "oracle_key": Path(snakemake.output[0]).parent.name},
                     {**p.oracle, **e}, {k: result[k] for k in ("mean_return", "std_return")})
print({k: result[k] for k in ("mean_return", "std_return")}, flush=True)
