"""Score the uniform-random policy under the evaluation protocol (the report's floor)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import set_job_threads
from fdt.evaluation.play import EvalParams, evaluate_random
from fdt.keys import record_stage
from fdt.settings import params_from

p = snakemake.params
wc = snakemake.wildcards
set_job_threads(snakemake.threads)
params = params_from(EvalParams, p.evaluation, p.run, device="cpu")
out_dir = Path(snakemake.output.episodes).parent
summary = evaluate_random(wc.game, params, out_dir)
record_stage(out_dir, "random", p.evaluation, [], p.code, wc.key, details=p.run)
print({k: summary[k] for k in ("episodes", "env_steps", "env_steps_per_s")}, flush=True)
