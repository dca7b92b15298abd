"""Fetch Dopamine's C51 checkpoint of one game and run, and check it loads as a C51 for it."""

from pathlib import Path

from fdt.io import log_to, write_json

log_to(snakemake.log[0])

from fdt.atari import minimal_action_count
from fdt.oracle.checkpoints import fetch_c51_checkpoint
from fdt.replay.sources import source_from_config

p = snakemake.params
wc = snakemake.wildcards
source = source_from_config(p.source, folder="")
record = fetch_c51_checkpoint(source, wc.game, int(wc.run), p.checkpoint, p.format,
                              Path(snakemake.output.record).parent, minimal_action_count(wc.game))
record["code"] = p.code
write_json(snakemake.output.record, record)
