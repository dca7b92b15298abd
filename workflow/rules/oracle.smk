# The oracle (offline C51, Dopamine's published C51, or the authors' labels), its own evaluation,
# and the labels of the mined states.


rule train_oracle:
    input:
        buffers=lambda wc: training_buffers(wc.game),
    output:
        oracle="results/{game}/oracle/{key}/oracle.pt",
        metrics="results/{game}/oracle/{key}/metrics.json",
        params="results/{game}/oracle/{key}/params.json",
    log:
        "logs/train_oracle/{game}_{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("train_oracle")
    resources:
        **rule_resources("train_oracle"),
    params:
        oracle=lambda wc: PLAN.oracle(wc.game).params,
        run={k: ORACLE["offline"][k] for k in fdt.plan.ORACLE_RUN_SETTINGS},
        input_keys=lambda wc: list(PLAN.oracle(wc.game).inputs),
        code=CODE["oracle"],
    message:
        "oracle: train the offline C51 oracle of {wildcards.game}"
    script:
        "../scripts/train_oracle.py"


rule fetch_oracle:
    output:
        files=[
            f"resources/oracle/{{game}}/{{run}}/c51/{name}"
            for name in agent_checkpoint_names(ORACLE["format"], ORACLE["checkpoint"])
        ],
        record="resources/oracle/{game}/{run}/c51/manifest.json",
    log:
        "logs/fetch_oracle/{game}_{run}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("fetch_oracle")
    resources:
        **rule_resources("fetch_oracle"),
    params:
        source=ORACLE["source"],
        checkpoint=ORACLE["checkpoint"],
        format=ORACLE["format"],
        code=CODE["fetch_oracle"],
    message:
        "oracle: fetch Dopamine's C51 checkpoint of {wildcards.game}"
    script:
        "../scripts/fetch_oracle.py"


rule evaluate_oracle:
    input:
        oracle=lambda wc: oracle_network_files(wc.game),
    output:
        "results/{game}/oracle/{key}/evaluation.json",
    log:
        "logs/evaluate_oracle/{game}_{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("evaluate_oracle")
    resources:
        **rule_resources("evaluate_oracle"),
    params:
        oracle=lambda wc: PLAN.oracle(wc.game).params,
        evaluation=ORACLE["evaluation"],
        code=CODE["evaluate_oracle"],
    message:
        "oracle: score the oracle of {wildcards.game} under the Dopamine protocol"
    script:
        "../scripts/evaluate_oracle.py"


rule label_states:
    input:
        unpack(label_inputs),
    output:
        labels="results/{game}/labels/{key}/seed{seed}/labels.parquet",
        agreement="results/{game}/labels/{key}/seed{seed}/agreement.json",
        params="results/{game}/labels/{key}/seed{seed}/params.json",
    log:
        "logs/label_states/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("label_states")
    resources:
        **rule_resources("label_states"),
    params:
        labels=lambda wc: PLAN.labels(wc.game).params,
        device=config["labels"]["device"],
        oracle=lambda wc: PLAN.oracle(wc.game).params,
        input_keys=lambda wc: list(PLAN.labels(wc.game).inputs),
        code=CODE["label"],
    message:
        "label: the oracle's feedback on {wildcards.game}'s important states, seed {wildcards.seed}"
    script:
        "../scripts/label_states.py"
