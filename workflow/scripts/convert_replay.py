"""Convert one replay checkpoint to Parquet transitions."""

from pathlib import Path

from fdt.io import log_to
from fdt.store import convert_checkpoint

log_to(snakemake.log[0])
p = snakemake.params
summary = convert_checkpoint(
    Path(snakemake.input.own[0]).parent, int(snakemake.wildcards.buffer), snakemake.output[0],
    with_previous=p.with_previous, with_following=p.with_following, episode_cap=p.episode_cap,
    row_group_rows=p.row_group_rows, zstd_level=p.zstd_level,
    provenance={"game": snakemake.wildcards.game, "run": int(snakemake.wildcards.run),
                "source": dict(p.source), "code": p.code})
print(summary["counts"], flush=True)
