"""Build RA-DT's memory of one seed's training set with that seed's trained DT."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import resolve_device, set_job_threads
from fdt.keys import record_stage
from fdt.models.trainer import load_model
from fdt.retrieval.memory import MemoryParams, build_memory
from fdt.settings import params_from

p = snakemake.params
wc = snakemake.wildcards
set_job_threads(snakemake.threads)
device = resolve_device(p.run["device"], "retrieval.device")
params = params_from(MemoryParams, p.memory, p.run)
out_dir = Path(snakemake.output.manifest).parent
manifest = build_memory(Path(snakemake.input.manifest).parent,
                        load_model(snakemake.input.embedder, device), out_dir, params,
                        embedder_key=p.embedder_key, device=device,
                        provenance={"key": wc.key, "seed": int(wc.seed)})
record_stage(out_dir, "memory", p.memory, p.input_keys, p.code, wc.key,
             details={"seed": int(wc.seed), **p.run})
print(manifest["counts"], flush=True)
