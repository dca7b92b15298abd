"""Convert one replay checkpoint to Parquet transitions."""

from pathlib import Path

from fdt.io import log_to
from fdt.replay.dopamine import ReplayFormatError
from fdt.replay.refused import discard_refused_copies
from fdt.replay.store import convert_checkpoint

log_to(snakemake.log[0])
p = snakemake.params
replay_dir = Path(snakemake.input.own[0]).parent
try:
    summary = convert_checkpoint(
        replay_dir, int(snakemake.wildcards.buffer), snakemake.output[0],
        with_previous=p.with_previous, with_following=p.with_following, episode_cap=p.episode_cap,
        row_group_rows=p.row_group_rows, zstd_level=p.zstd_level,
        provenance={"game": snakemake.wildcards.game, "run": int(snakemake.wildcards.run),
                    "source": dict(p.source), "code": p.code})
except ReplayFormatError as err:
    # The files are the fetch's cached copies: those at fault are removed, so a rerun refetches.
    number = int(snakemake.wildcards.buffer)
    read = [n for n, used in ((number - 1, p.with_previous), (number, True),
                              (number + 1, p.with_following)) if used]
    raise discard_refused_copies(replay_dir, read, err, p.source) from None
print(summary["counts"], flush=True)
