# Continuous control (issue 20): CORL's Decision Transformer on D4RL-style datasets generated here
# with MuJoCo (a SAC behaviour agent per environment) or read from a local Minari folder. What
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
# dataset names hold "/": their folders are slugs ("Hopper-v5/medium" -> "Hopper-v5-medium")
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
    }


def continuous_report_targets():
    """The continuous section's section.json (none while continuous.datasets is empty)."""
    if not CONTINUOUS["datasets"]:
        return []
    return [f"{continuous_report_dir()}/section.json"]


rule continuous_behaviour:
    output:
        policies="results/continuous/behaviour/{env}/{key}/policies.pt",
        replay="results/continuous/behaviour/{env}/{key}/replay.parquet",
        curve="results/continuous/behaviour/{env}/{key}/curve.csv",
        references="results/continuous/behaviour/{env}/{key}/references.json",
        params="results/continuous/behaviour/{env}/{key}/params.json",
    log:
        "logs/continuous_behaviour/{env}_{key}.log",
    wildcard_constraints:
        env="[A-Za-z0-9]+-v[0-9]+",
    conda:
        "../envs/fdt.yaml"
    threads: CONTINUOUS_RUN["threads"]
    params:
        behaviour=continuous_behaviour_params,
        input_keys=[],
        code=CODE["continuous_behaviour"],
    script:
        "../scripts/continuous_behaviour.py"


rule continuous_dataset:
    input:
        unpack(continuous_dataset_inputs),
    output:
        episodes="results/continuous/data/{dataset}/{key}/episodes.parquet",
        info="results/continuous/data/{dataset}/{key}/info.json",
        params="results/continuous/data/{dataset}/{key}/params.json",
    log:
        "logs/continuous_dataset/{dataset}_{key}.log",
    wildcard_constraints:
        dataset=CONTINUOUS_SLUGS,
    conda:
        "../envs/fdt.yaml"
    params:
        dataset=lambda wc: PLAN.continuous_dataset(CONTINUOUS_NAMES[wc.dataset]).params,
        input_keys=lambda wc: list(
            PLAN.continuous_dataset(CONTINUOUS_NAMES[wc.dataset]).inputs
        ),
        code=CODE["continuous_dataset"],
    script:
        "../scripts/continuous_dataset.py"


rule continuous_train:
    input:
        unpack(continuous_train_inputs),
    output:
        model="results/continuous/dt/{dataset}/{key}/seed{seed}/model.pt",
        curve="results/continuous/dt/{dataset}/{key}/seed{seed}/curve.csv",
        evaluation="results/continuous/dt/{dataset}/{key}/seed{seed}/evaluation.csv",
        metrics="results/continuous/dt/{dataset}/{key}/seed{seed}/metrics.json",
        params="results/continuous/dt/{dataset}/{key}/seed{seed}/params.json",
    log:
        "logs/continuous_train/{dataset}_{key}_{seed}.log",
    wildcard_constraints:
        dataset=CONTINUOUS_SLUGS,
    conda:
        "../envs/fdt.yaml"
    threads: CONTINUOUS_RUN["threads"]
    resources:
        gpu=1,
    params:
        model=lambda wc: PLAN.continuous_model(CONTINUOUS_NAMES[wc.dataset]).params,
        run=CONTINUOUS_RUN,
        input_keys=lambda wc: list(
            PLAN.continuous_model(CONTINUOUS_NAMES[wc.dataset]).inputs
        ),
        code=CODE["continuous_train"],
    script:
        "../scripts/continuous_train.py"


rule continuous_report:
    input:
        unpack(continuous_report_inputs),
    output:
        section="results/report/continuous/{key}/section.json",
        scores="results/report/continuous/{key}/scores.csv",
        datasets="results/report/continuous/{key}/datasets.csv",
        curves="results/report/continuous/{key}/learning_curves.csv",
        score_plot="results/report/continuous/{key}/score_per_target.png",
        curve_plot="results/report/continuous/{key}/learning_curves.png",
        params="results/report/continuous/{key}/params.json",
    log:
        "logs/continuous_report/{key}.log",
    conda:
        "../envs/fdt.yaml"
    params:
        report=lambda wc: PLAN.continuous_report().params,
        runs=continuous_runs(),
        input_keys=lambda wc: list(PLAN.continuous_report().inputs),
        code=CODE["continuous_report"],
    script:
        "../scripts/continuous_report.py"
