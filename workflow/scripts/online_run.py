"""One online run (fdt.online): rl or synth mode; a killed job resumes from its checkpoint."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

import logging

from fdt.online.loop import params_from, run_online

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
summary = run_online(params_from(dict(snakemake.params.settings)),
                     Path(snakemake.output.summary).parent)
print(f"{summary['env']} {summary['mode']}: {summary['steps']} steps in {summary['seconds']:.0f} s, "
      f"{summary['labels']} labels, final true return {summary['final_true_return']}", flush=True)
