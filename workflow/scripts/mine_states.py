"""Mine the important states of one game for one seed's training set."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.mining.stage import MiningParams, mine_states
from fdt.settings import params_from
from fdt.tracking import track_finished_stage

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
m = p.mining
params = params_from(MiningParams, m, seed=seed)
# results/{game}/replay/run{run}/buffer{N}.parquet -> (run, N)
stores = {(int(Path(path).parent.name.removeprefix("run")),
           int(Path(path).stem.removeprefix("buffer"))): path
          for path in snakemake.input.buffers}
out_dir = Path(snakemake.output.states).parent
counts = mine_states(stores, Path(snakemake.input.manifest).parent, out_dir, params, wc.game)
record_stage(out_dir, "mine_states", m, p.input_keys, p.code, wc.key, details={"seed": seed})
track_finished_stage(f"{wc.game}-mining-seed{seed}",
                     {"game": wc.game, "key": wc.key, "seed": seed, "stage": "mine_states",
                      "dataset_key": p.input_keys[0]}, {**m, "key": wc.key}, counts)
print(counts, flush=True)
