# In-context RL on grid-worlds (issue 31): Dark-Room / Dark Key-Door learning histories, AD, DT,
# RA-DT and RA-DT (domain-agnostic) trained on them, evaluated for consecutive episodes on unseen
# goals, and the report section; one job per environment (histories), per (environment, method,
# seed) (training, evaluation), and the report.


include: "incontext_common.smk"


rule incontext_histories:
    output:
        manifest="results/incontext/{env}/histories/{key}/manifest.json",
        params="results/incontext/{env}/histories/{key}/params.json",
    log:
        "logs/incontext_histories/{env}_{key}.log",
    wildcard_constraints:
        env=ICENVS,
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("incontext_histories")
    resources:
        **rule_resources("incontext_histories"),
    params:
        stage=incontext_histories_params,
        incontext=INCONTEXT,
        input_keys=[],
        code=ICPLAN.code["incontext_histories"],
    message:
        "incontext: learning histories of {wildcards.env}'s training tasks"
    script:
        "../scripts/incontext_histories.py"


rule incontext_train:
    input:
        unpack(incontext_train_inputs),
    output:
        model="results/incontext/{env}/models/{method}/{key}/seed{seed}/model.pt",
        curve="results/incontext/{env}/models/{method}/{key}/seed{seed}/curve.csv",
        metrics="results/incontext/{env}/models/{method}/{key}/seed{seed}/metrics.json",
        params="results/incontext/{env}/models/{method}/{key}/seed{seed}/params.json",
    log:
        "logs/incontext_train/{env}_{method}_{key}_{seed}.log",
    wildcard_constraints:
        env=ICENVS,
        method=ICTRAINED,
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("incontext_train")
    resources:
        **rule_resources("incontext_train"),
    params:
        stage=lambda wc: ICPLAN.model(wc.env, wc.method).params,
        incontext=INCONTEXT,
        input_keys=lambda wc: list(ICPLAN.model(wc.env, wc.method).inputs),
        code=ICPLAN.code["incontext_train"],
    message:
        "incontext: train {wildcards.method} on {wildcards.env}, seed {wildcards.seed}"
    script:
        "../scripts/incontext_train.py"


rule incontext_evaluate:
    input:
        unpack(incontext_eval_inputs),
    output:
        episodes="results/incontext/{env}/eval/{method}/{key}/seed{seed}/episodes.parquet",
        summary="results/incontext/{env}/eval/{method}/{key}/seed{seed}/summary.json",
        params="results/incontext/{env}/eval/{method}/{key}/seed{seed}/params.json",
    log:
        "logs/incontext_evaluate/{env}_{method}_{key}_{seed}.log",
    wildcard_constraints:
        env=ICENVS,
        method=ICMETHODS,
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("incontext_evaluate")
    resources:
        **rule_resources("incontext_evaluate"),
    params:
        stage=lambda wc: ICPLAN.evaluation(wc.env, wc.method).params,
        incontext=INCONTEXT,
        input_keys=lambda wc: list(ICPLAN.evaluation(wc.env, wc.method).inputs),
        code=ICPLAN.code["incontext_evaluate"],
    message:
        "incontext: {wildcards.method} in {wildcards.env}'s unseen goals, seed {wildcards.seed}"
    script:
        "../scripts/incontext_evaluate.py"


rule incontext_report:
    input:
        unpack(incontext_report_inputs),
    output:
        section="results/report/incontext/{key}/section.json",
        curves="results/report/incontext/{key}/curves.csv",
        table="results/report/incontext/{key}/table.csv",
        plot="results/report/incontext/{key}/returns_per_episode.png",
        params="results/report/incontext/{key}/params.json",
    log:
        "logs/incontext_report/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("incontext_report")
    resources:
        **rule_resources("incontext_report"),
    params:
        stage=lambda wc: ICPLAN.report().params,
        input_keys=lambda wc: list(ICPLAN.report().inputs),
        code=ICPLAN.code["incontext_report"],
    message:
        "incontext: return vs in-context episode"
    script:
        "../scripts/incontext_report.py"
