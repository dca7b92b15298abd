"""Label one seed's mined states with the oracle (and, optionally, every transition)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.atari import minimal_action_count
from fdt.device import resolve_device, set_job_threads
from fdt.keys import record_stage
from fdt.oracle.checkpoints import load_oracle
from fdt.oracle.labels import DemoController, NetworkOracle, PublishedLabels, label_states
from fdt.replay.store import read_summary
from fdt.tracking import track_finished_stage

set_job_threads(snakemake.threads)  # no more than the free cores
p = snakemake.params
game = snakemake.wildcards.game
kind = p.oracle["kind"]
if kind == "published":
    capacity = int(read_summary(snakemake.input.buffers[0])["capacity"])
    oracle = PublishedLabels(Path(snakemake.input.published[0]).parent, capacity)
elif kind == "demo":  # the demo's scripted controller, recorded beside its logs
    oracle = DemoController(snakemake.input.demo)
else:
    actions = minimal_action_count(game)
    net = load_oracle(kind, snakemake.input.oracle[0], p.oracle, actions)
    oracle = NetworkOracle(net, p.oracle, batch_size=p.labels["batch_size"],
                           device=str(resolve_device(p.device)))
out_dir = Path(snakemake.output.labels).parent
summary = label_states(Path(snakemake.input.manifest).parent, snakemake.input.states, out_dir,
                       oracle, all_transitions=p.labels["all_transitions"])
record_stage(out_dir, "label_states", p.labels, p.input_keys, p.code,
             snakemake.wildcards.key, details={"seed": int(snakemake.wildcards.seed)})
track_finished_stage(f"{game}-labels-seed{snakemake.wildcards.seed}",
                     {"game": game, "key": snakemake.wildcards.key, "stage": "label_states",
                      "seed": snakemake.wildcards.seed, "oracle_key": p.input_keys[0],
                      "mining_key": p.input_keys[1]}, {**p.labels, "oracle": p.oracle}, summary)
print(summary, flush=True)
