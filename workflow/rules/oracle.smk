# The oracle (offline C51, Dopamine's published C51, or the authors' labels), its own evaluation,
# and the labels of the mined states.


rule train_oracle:
    input:
        buffers=lambda wc: training_buffers(wc.game),
    output:
        oracle="results/{game}/oracle/{key}/oracle.pt",
        metrics="results/{game}/oracle/{key}/metrics.json",
        params="results/{game}/oracle/{key}/params.json",
    params:
        oracle=lambda wc: oracle_params(wc.game),
        run={k: ORACLE["offline"][k] for k in ("device", "checkpoint_every")},
        replay_key=replay_key(),
        code=CODE["oracle"],
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    log:
        "logs/train_oracle/{game}_{key}.log",
    script:
        "../scripts/train_oracle.py"


rule fetch_oracle:
    output:
        files=[
            f"resources/oracle/{{game}}/{{run}}/c51/{name}"
            for name in agent_checkpoint_names(ORACLE["format"], ORACLE["checkpoint"])
        ],
        record="resources/oracle/{game}/{run}/c51/manifest.json",
    params:
        source=ORACLE["source"],
        checkpoint=ORACLE["checkpoint"],
        format=ORACLE["format"],
        code=CODE["fetch_oracle"],
    log:
        "logs/fetch_oracle/{game}_{run}.log",
    script:
        "../scripts/fetch_oracle.py"


rule evaluate_oracle:
    input:
        oracle=lambda wc: oracle_network_files(wc.game),
    output:
        "results/{game}/oracle/{key}/evaluation.json",
    params:
        oracle=lambda wc: oracle_params(wc.game),
        evaluation=ORACLE["evaluation"],
        code=CODE["evaluate_oracle"],
    threads: 1
    log:
        "logs/evaluate_oracle/{game}_{key}.log",
    script:
        "../scripts/evaluate_oracle.py"


rule label_states:
    input:
        unpack(label_inputs),
    output:
        labels="results/{game}/labels/{key}/seed{seed}/labels.parquet",
        agreement="results/{game}/labels/{key}/seed{seed}/agreement.json",
        params="results/{game}/labels/{key}/seed{seed}/params.json",
    params:
        labels=label_params(),
        device=config["labels"]["device"],
        oracle=lambda wc: oracle_params(wc.game),
        input_keys=lambda wc: [oracle_key(wc.game), mining_key(wc.game)],
        code=CODE["label"],
    threads: config["train"]["threads"]
    log:
        "logs/label_states/{game}_{key}_{seed}.log",
    script:
        "../scripts/label_states.py"
