"""Mine the important states of one game for one seed's training set."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import write_params
from fdt.mine import MiningParams, mine_states

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
m = p.mining
params = MiningParams(
    seed=seed, transitions=m["transitions"], num_buffers=m["num_buffers"],
    buffers_end=m["buffers_end"], trajectories_per_visit=m["trajectories_per_visit"],
    context_length=m["context_length"], capacity=m["capacity"], gamma=m["gamma"],
    first_visit=m["first_visit"], life_loss_penalty=m["life_loss_penalty"],
    life_loss_horizon=m["life_loss_horizon"], extra_per_cell=m["extra_per_cell"],
    window=m["window"], images=m["images"])
stores = {int(Path(path).stem.removeprefix("buffer")): path for path in snakemake.input.buffers}
out_dir = Path(snakemake.output.states).parent
counts = mine_states(stores, Path(snakemake.input.manifest).parent, out_dir, params, wc.game)
written = write_params(out_dir, "mine_states", m, [p.dataset_key], p.code, details={"seed": seed})
assert written == wc.key, f"params.json key {written} differs from the folder's {wc.key}"
print(counts, flush=True)
