"""FDT's labels from people's answers (oracle kind human) or the synthetic labeller (synthetic)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.keys import record_stage
from fdt.settings import params_from
from fdt.teacher.bundle import check_training_set, load_bundle
from fdt.teacher.export import human_labels
from fdt.teacher.synthetic import SyntheticParams, synthetic_labels
from fdt.tracking import track_finished_stage

p = snakemake.params
wc = snakemake.wildcards
out_dir = Path(snakemake.output.labels).parent
if p.labels["kind"] == "human":
    bundle = load_bundle(Path(snakemake.input.bundle).parent)
    check_training_set(bundle, Path(snakemake.input.manifest).parent)
    summary = human_labels(bundle, snakemake.input.answers, snakemake.input.states, out_dir)
else:
    settings = {k: v for k, v in p.labels.items() if k not in ("kind", "game")}
    summary = synthetic_labels(snakemake.input.base, out_dir,
                               params_from(SyntheticParams, settings))
record_stage(out_dir, "teacher_labels", p.labels, p.input_keys, p.code, wc.key,
             details={"seed": int(wc.seed)})
track_finished_stage(f"{wc.game}-{p.labels['kind']}-labels-seed{wc.seed}",
                     {"game": wc.game, "key": wc.key, "stage": "teacher_labels",
                      "seed": wc.seed}, p.labels,
                     {k: v for k, v in summary.items() if k != "labellers"})
print({k: v for k, v in summary.items() if k != "labellers"}, flush=True)
