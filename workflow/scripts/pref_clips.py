"""Draw one seed's clip bundle from its training set (the clips people or the labeller compare)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.dataset.training_set import TrainingSet
from fdt.keys import record_stage
from fdt.preferences.clips import draw_clips, write_bundle

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
c = p.clips
data = TrainingSet(Path(snakemake.input.manifest).parent)
bundle = draw_clips(data, p.input_keys[0], count=c["clips"], length=c["clip_length"],
                    heldout_fraction=c["heldout_fraction"], seed=seed)
write_bundle(snakemake.output.clips, bundle)
record_stage(Path(snakemake.output.clips).parent, "preference_clips", c, p.input_keys, p.code,
             wc.key, details={"seed": seed})
print({"bundle": bundle.digest, "clips": len(bundle.clips), "heldout": len(bundle.heldout)},
      flush=True)
