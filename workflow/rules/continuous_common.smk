# Paths and input functions of the continuous-control rules (workflow/rules/continuous.smk); what
# decides each folder is planned in Python: fdt.plan.StagePlan.continuous_*.
import re

from fdt.continuous.environments import dataset_slug, parse_dataset_name

CONTINUOUS = config["continuous"]
if CONTINUOUS["source"] == "generated":
    for _name in CONTINUOUS["datasets"]:
        parse_dataset_name(_name)  # one sentence naming a bad name, before any job
elif CONTINUOUS["datasets"] and not CONTINUOUS["minari_path"]:
    raise ValueError(
        "continuous.minari_path: source minari needs the folder holding the Minari datasets"
    )
# a dataset's folder is its name with each slash a dash (fdt.continuous.environments.dataset_slug)
CONTINUOUS_NAMES = {dataset_slug(name): name for name in CONTINUOUS["datasets"]}
CONTINUOUS_RUN = CONTINUOUS["run"]
# the dataset wildcard matches the configured datasets' slugs only
CONTINUOUS_SLUGS = "|".join(re.escape(slug) for slug in CONTINUOUS_NAMES) or "(?!)"


def continuous_behaviour_dir(env):
    return f"results/continuous/behaviour/{env}/{PLAN.continuous_behaviour(env).key}"


def continuous_dataset_dir(name):
    key = PLAN.continuous_dataset(name).key
    return f"results/continuous/data/{dataset_slug(name)}/{key}"


def continuous_model_dir(name, seed):
    key = PLAN.continuous_model(name).key
    return f"results/continuous/dt/{dataset_slug(name)}/{key}/seed{seed}"


def continuous_behaviour_params(wildcards):
    expect_key(
        wildcards.key,
        PLAN.continuous_behaviour(wildcards.env).key,
        f"behaviour agent of {wildcards.env}",
    )
    return PLAN.continuous_behaviour(wildcards.env).params


def continuous_dataset_inputs(wildcards):
    name = CONTINUOUS_NAMES[wildcards.dataset]
    expect_key(
        wildcards.key, PLAN.continuous_dataset(name).key, f"continuous dataset {name}"
    )
    if CONTINUOUS["source"] == "minari":
        return {}
    folder = continuous_behaviour_dir(name.partition("/")[0])
    return {
        "policies": f"{folder}/policies.pt",
        "replay": f"{folder}/replay.parquet",
        "references": f"{folder}/references.json",
    }


def continuous_train_inputs(wildcards):
    name = CONTINUOUS_NAMES[wildcards.dataset]
    expect_key(
        wildcards.key, PLAN.continuous_model(name).key, f"continuous DT on {name}"
    )
    folder = continuous_dataset_dir(name)
    return {"episodes": f"{folder}/episodes.parquet", "info": f"{folder}/info.json"}


def continuous_runs():
    return [
        (name, seed) for name in CONTINUOUS["datasets"] for seed in CONTINUOUS["seeds"]
    ]


def continuous_report_dir(key=None):
    return f"results/report/continuous/{key or PLAN.continuous_report().key}"


def continuous_report_inputs(wildcards):
    expect_key(wildcards.key, PLAN.continuous_report().key, "continuous report")
    return {
        "metrics": [
            f"{continuous_model_dir(name, seed)}/metrics.json"
            for name, seed in continuous_runs()
        ],
        "infos": [
            f"{continuous_dataset_dir(name)}/info.json" for name, _ in continuous_runs()
        ],
        "behaviour": [
            f"{continuous_behaviour_dir(env)}/curve.csv"
            for env in PLAN.continuous_envs()
        ],
    }


def continuous_report_targets():
    """The continuous section's section.json (none while continuous.datasets is empty)."""
    if not CONTINUOUS["datasets"]:
        return []
    return [f"{continuous_report_dir()}/section.json"]
