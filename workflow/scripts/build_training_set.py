"""Sample one seed's training set from the converted checkpoints of a run."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.atari import minimal_action_count
from fdt.dataset.sampling import SamplingParams
from fdt.dataset.training_set import build_training_set
from fdt.keys import record_stage
from fdt.settings import params_from

p = snakemake.params
sampling = p.sampling
game, seed, key = snakemake.wildcards.game, int(snakemake.wildcards.seed), snakemake.wildcards.key
params = params_from(SamplingParams, sampling, seed=seed, capacity=p.capacity)
stores = {int(Path(path).stem.removeprefix("buffer")): path for path in snakemake.input.buffers}
folder = Path(snakemake.output.manifest).parent
manifest = build_training_set(
    stores, folder, params, num_actions=minimal_action_count(game),
    provenance={"game": game, "seed": seed, "key": key, "replay_key": p.input_keys[0]})
record_stage(folder, "training_set", sampling, p.input_keys, p.code,
             key, details={"seed": seed, "capacity": p.capacity})
print(manifest["counts"], flush=True)
