"""One manifest per run from the per-checkpoint fetch records."""

from fdt.io import log_to, read_json, write_json
from fdt.replay.sources import merge_manifest

log_to(snakemake.log[0])
write_json(snakemake.output[0], merge_manifest([read_json(p) for p in snakemake.input]))
