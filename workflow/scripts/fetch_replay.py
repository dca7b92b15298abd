"""Fetch and verify one checkpoint's six files from the configured source."""

from pathlib import Path

from fdt.io import log_to, write_json
from fdt.replay.sources import fetch_checkpoint, source_from_config

log_to(snakemake.log[0])
demo_root = Path(snakemake.input.demo).parents[2] if "demo" in snakemake.input.keys() else None
source = source_from_config(snakemake.params.source, demo_root=demo_root)
record = fetch_checkpoint(source, snakemake.wildcards.game, int(snakemake.wildcards.run),
                          int(snakemake.wildcards.buffer), Path(snakemake.output.files[0]).parent,
                          workers=snakemake.params.workers, check_gzip=snakemake.params.verify_gzip)
record["code"] = snakemake.params.code
write_json(snakemake.output.record, record)
