"""Make one seed's comparisons (synthetic labeller) or import them (the feedback app's export)."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.dataset.training_set import TrainingSet
from fdt.device import resolve_device
from fdt.keys import record_stage
from fdt.preferences.clips import clip_states, read_bundle
from fdt.preferences.reward_model import RewardParams
from fdt.preferences.stage import ComparisonParams, make_comparisons, reward_predictor
from fdt.settings import params_from
from fdt.tracking import track_finished_stage

p = snakemake.params
wc = snakemake.wildcards
seed = int(wc.seed)
params = params_from(ComparisonParams, p.comparisons, seed=seed, file=p.file)
out_dir = Path(snakemake.output.comparisons).parent
bundle = read_bundle(snakemake.input.clips)
predict = None
if "presort_reward" in p.comparisons:  # pre-sorting refits the stage's reward model as it goes
    data = TrainingSet(Path(snakemake.input.manifest).parent)
    states, actions = clip_states(data, bundle.clips)
    reward = params_from(RewardParams, p.comparisons["presort_reward"], seed=seed)
    predict = reward_predictor(bundle, states, actions, data.num_actions, reward,
                               resolve_device(p.device, "preferences.reward_model.device"))
summary = make_comparisons(bundle, params, out_dir, predict)
record_stage(out_dir, "preference_comparisons", p.comparisons, p.input_keys, p.code, wc.key,
             details={"seed": seed, "digest": summary["digest"]})
track_finished_stage(f"{wc.game}-preferences-seed{seed}-comparisons",
                     {"game": wc.game, "key": wc.key, "seed": seed,
                      "stage": "preference_comparisons"}, p.comparisons, summary)
print(summary, flush=True)
