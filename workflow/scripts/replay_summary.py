"""Counts of one run's converted checkpoints, and the folder's params.json."""

from pathlib import Path

from fdt.io import log_to, write_json
from fdt.keys import write_params
from fdt.replay.store import run_summary

log_to(snakemake.log[0])
write_json(snakemake.output.summary, run_summary(snakemake.input))
p = snakemake.params
write_params(Path(snakemake.output.params).parent, "replay",
             {"game": snakemake.wildcards.game, "run": int(snakemake.wildcards.run),
              "buffers": [int(Path(x).stem.removeprefix("buffer")) for x in snakemake.input],
              "episode_cap": p.episode_cap, "row_group_rows": p.row_group_rows,
              "zstd_level": p.zstd_level, "source": dict(p.source)},
             code=p.code)
