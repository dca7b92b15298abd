"""Make one seed's comparisons (synthetic labeller) or import them (the feedback app's export)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.preferences.clips import read_bundle
from fdt.preferences.stage import ComparisonParams, make_comparisons
from fdt.settings import params_from
from fdt.tracking import track_finished_stage

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
params = params_from(ComparisonParams, p.comparisons, seed=seed, file=p.file)
out_dir = Path(snakemake.output.comparisons).parent
summary = make_comparisons(read_bundle(snakemake.input.clips), params, out_dir)
record_stage(out_dir, "preference_comparisons", p.comparisons, p.input_keys, p.code, wc.key,
             details={"seed": seed, "digest": summary["digest"]})
track_finished_stage(f"{wc.game}-preferences-seed{seed}-comparisons",
                     {"game": wc.game, "key": wc.key, "seed": seed,
                      "stage": "preference_comparisons"}, p.comparisons, summary)
print(summary, flush=True)
