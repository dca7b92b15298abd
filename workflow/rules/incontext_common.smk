# Paths and input functions of the in-context rules (workflow/rules/incontext.smk); what
# decides each folder is planned in Python: fdt.incontext.plan.InContextPlan.
import os

import fdt.incontext.environments
import fdt.incontext.plan

INCONTEXT = config["incontext"]
ICPLAN = fdt.incontext.plan.InContextPlan(config)
ICENVS = "|".join(ICPLAN.envs()) or "(?!)"
ICMETHODS = "|".join(ICPLAN.methods()) or "(?!)"
# trained: the methods, and DT whenever RA-DT needs it as its embedder
ICTRAINED = "|".join(sorted({*ICPLAN.methods(), "dt"})) if ICPLAN.methods() else "(?!)"
for (
    _env
) in ICPLAN.envs():  # a bad task list: one sentence naming the file, before any job
    fdt.incontext.environments.load_split(_env, INCONTEXT["goals"])
if ICPLAN.envs() and "radt_lm" in ICPLAN.methods():
    # one sentence naming the folder, before any job (the training job checks it again)
    if not INCONTEXT["lm_path"]:
        raise ValueError(
            "incontext.lm_path: radt_lm needs a local folder holding the frozen language model"
        )
    if not os.path.isdir(INCONTEXT["lm_path"]):
        raise ValueError(
            f"{INCONTEXT['lm_path']}: no such folder (incontext.lm_path, radt_lm's language model)"
        )


def incontext_histories_dir(env):
    return f"results/incontext/{env}/histories/{ICPLAN.histories(env).key}"


def incontext_model_dir(env, method, seed):
    key = ICPLAN.model(env, method).key
    return f"results/incontext/{env}/models/{method}/{key}/seed{seed}"


def incontext_eval_dir(env, method, seed):
    key = ICPLAN.evaluation(env, method).key
    return f"results/incontext/{env}/eval/{method}/{key}/seed{seed}"


def incontext_histories_params(wildcards):
    expect_key(
        wildcards.key,
        ICPLAN.histories(wildcards.env).key,
        f"learning histories of {wildcards.env}",
    )
    return ICPLAN.histories(wildcards.env).params


def incontext_train_inputs(wildcards):
    env, method = wildcards.env, wildcards.method
    expect_key(wildcards.key, ICPLAN.model(env, method).key, f"{method} on {env}")
    inputs = {"manifest": f"{incontext_histories_dir(env)}/manifest.json"}
    if method == "radt":  # the pretrained DT embeds RA-DT's memory
        inputs["embedder"] = (
            f"{incontext_model_dir(env, 'dt', wildcards.seed)}/model.pt"
        )
    return inputs


def incontext_eval_inputs(wildcards):
    env, method = wildcards.env, wildcards.method
    expect_key(
        wildcards.key,
        ICPLAN.evaluation(env, method).key,
        f"evaluation of {method} on {env}",
    )
    inputs = {
        "manifest": f"{incontext_histories_dir(env)}/manifest.json",
        "model": f"{incontext_model_dir(env, method, wildcards.seed)}/model.pt",
    }
    if method == "radt":
        inputs["embedder"] = (
            f"{incontext_model_dir(env, 'dt', wildcards.seed)}/model.pt"
        )
    return inputs


def incontext_report_dir(key=None):
    return f"results/report/incontext/{key or ICPLAN.report().key}"


def incontext_report_inputs(wildcards):
    expect_key(wildcards.key, ICPLAN.report().key, "in-context report")
    return {
        "episodes": [
            f"{incontext_eval_dir(env, method, seed)}/episodes.parquet"
            for env in ICPLAN.envs()
            for method in ICPLAN.methods()
            for seed in ICPLAN.seeds()
        ]
    }


def incontext_report_targets():
    """The in-context section (none while incontext.envs is empty)."""
    if not ICPLAN.envs():
        return []
    return [f"{incontext_report_dir()}/section.json"]
