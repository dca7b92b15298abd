"""Build the query bundle of one seed's mined states for the labelling app."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.teacher.bundle import BundleParams, build_bundle
from fdt.teacher.clips import ClipSettings

p = snakemake.params
wc = snakemake.wildcards
t = p.teacher
params = BundleParams(queries=t["queries"], gold_rate=t["gold_rate"],
                      clip=ClipSettings(**t["clip"]))
out_dir = Path(snakemake.output.bundle).parent
bundle = build_bundle(Path(snakemake.input.manifest).parent, snakemake.input.states, out_dir,
                      wc.game, params, gold_labels=snakemake.input.get("gold"))
record_stage(out_dir, "build_queries", t, p.input_keys, p.code, wc.key,
             details={"seed": int(wc.seed), "bundle_id": bundle["bundle_id"]})
gold = sum(q["gold"] is not None for q in bundle["queries"])
print(f"bundle {bundle['bundle_id']}: {len(bundle['queries']) - gold} queries, {gold} gold",
      flush=True)
