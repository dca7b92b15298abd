# Continuous control (issue 20): CORL's Decision Transformer on D4RL-style datasets generated here
# with MuJoCo (a SAC behaviour agent per environment) or read from a local Minari folder; one job
# per environment (behaviour agent), per dataset, per (dataset, seed) (DT), and the report.


include: "continuous_common.smk"


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
    threads: rule_threads("continuous_behaviour")
    resources:
        **rule_resources("continuous_behaviour"),
    params:
        behaviour=continuous_behaviour_params,
        run=CONTINUOUS_RUN,
        input_keys=[],
        code=CODE["continuous_behaviour"],
    message:
        "continuous: train the SAC behaviour agent on {wildcards.env}"
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
    threads: rule_threads("continuous_dataset")
    resources:
        **rule_resources("continuous_dataset"),
    params:
        dataset=lambda wc: PLAN.continuous_dataset(CONTINUOUS_NAMES[wc.dataset]).params,
        input_keys=lambda wc: list(
            PLAN.continuous_dataset(CONTINUOUS_NAMES[wc.dataset]).inputs
        ),
        code=CODE["continuous_dataset"],
    message:
        "continuous: generate the {wildcards.dataset} dataset"
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
    threads: rule_threads("continuous_train")
    resources:
        **rule_resources("continuous_train"),
    params:
        model=lambda wc: PLAN.continuous_model(CONTINUOUS_NAMES[wc.dataset]).params,
        run=CONTINUOUS_RUN,
        input_keys=lambda wc: list(
            PLAN.continuous_model(CONTINUOUS_NAMES[wc.dataset]).inputs
        ),
        code=CODE["continuous_train"],
    message:
        "continuous: train and evaluate DT on {wildcards.dataset}, seed {wildcards.seed}"
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
        behaviour_plot="results/report/continuous/{key}/behaviour.png",
        params="results/report/continuous/{key}/params.json",
    log:
        "logs/continuous_report/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("continuous_report")
    resources:
        **rule_resources("continuous_report"),
    params:
        report=lambda wc: PLAN.continuous_report().params,
        runs=continuous_runs(),
        envs=PLAN.continuous_envs(),
        input_keys=lambda wc: list(PLAN.continuous_report().inputs),
        code=CODE["continuous_report"],
    message:
        "continuous: tables and figures"
    script:
        "../scripts/continuous_report.py"
