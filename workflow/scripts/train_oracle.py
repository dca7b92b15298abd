"""Train the offline C51 oracle of one game on its training buffers' transitions."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.atari import minimal_action_count
from fdt.device import set_job_threads
from fdt.keys import record_stage
from fdt.oracle.training import OracleParams, train_oracle
from fdt.settings import params_from
from fdt.tracking import track_finished_stage

p = snakemake.params
set_job_threads(snakemake.threads)  # no more than the free cores
params = params_from(OracleParams, p.oracle, p.run)
out_dir = Path(snakemake.output.oracle).parent
metrics = train_oracle(snakemake.input.buffers, minimal_action_count(snakemake.wildcards.game),
                       out_dir, params)
record_stage(out_dir, "train_oracle", p.oracle, p.input_keys, p.code, snakemake.wildcards.key)
track_finished_stage(f"{snakemake.wildcards.game}-oracle",
                     {"game": snakemake.wildcards.game, "key": snakemake.wildcards.key,
                      "stage": "train_oracle"}, {**p.oracle, "key": snakemake.wildcards.key},
                     metrics)
print({k: metrics[k] for k in ("updates", "transitions", "final_loss")}, flush=True)
