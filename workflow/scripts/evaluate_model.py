"""Evaluate one trained model in Atari: every setup, target, test seed and episode."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.device import resolve_device, set_job_threads
from fdt.evaluation.stage import EvalParams, evaluate_model
from fdt.keys import record_stage
from fdt.settings import params_from
from fdt.tracking import track_finished_stage

p = snakemake.params
wc = snakemake.wildcards
set_job_threads(snakemake.threads)  # no more than the free cores
e = p.evaluation
params = params_from(EvalParams, e, p.run, targets=tuple(float(t) for t in e["targets"]),
                     device=str(resolve_device(p.run["device"])))
out_dir = Path(snakemake.output.episodes).parent
# FDT with a budget sweep is named by its budget (fdt.plan.StagePlan.fdt_name)
summary = evaluate_model(snakemake.input.model, wc.game, params, out_dir,
                         model_name=e.get("name", wc.model), train_seed=int(wc.seed))
record_stage(out_dir, "evaluate", e, p.input_keys, p.code,
             wc.key, details={"seed": int(wc.seed), **p.run})
scores = {f"{r['setup']}.target{r['target']:g}": r for r in summary["scores"]}
track_finished_stage(f"{wc.game}-{wc.model}-seed{wc.seed}-eval",
                     {"game": wc.game, "model": wc.model, "key": wc.key, "seed": wc.seed,
                      "stage": "evaluate", "model_key": p.input_keys[0]},
                     {**e, "key": wc.key},
                     {**{k: v for k, v in summary.items() if k != "params"}, "scores": scores})
print({k: summary[k] for k in ("episodes", "env_steps", "env_steps_per_s")}, flush=True)
