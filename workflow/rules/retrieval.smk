# Retrieval-augmented DT (RA-DT, model radt): a memory of each seed's training set embedded by
# that seed's trained DT, radt trained and evaluated on it, and its report section. What decides
# each folder is planned in Python: fdt.plan.StagePlan.memory, .model, .evaluation.


include: "retrieval_common.smk"


rule build_memory:
    input:
        unpack(memory_inputs),
    output:
        manifest="results/{game}/memory/{key}/seed{seed}/manifest.json",
        vectors="results/{game}/memory/{key}/seed{seed}/keys.npy",
        params="results/{game}/memory/{key}/seed{seed}/params.json",
    log:
        "logs/build_memory/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("build_memory")
    resources:
        **rule_resources("build_memory"),
    params:
        memory=lambda wc: PLAN.memory(wc.game).params,
        run={k: RETRIEVAL[k] for k in ("device", "embed_batch_size")},
        embedder_key=lambda wc: PLAN.model(wc.game, "dt").key,
        input_keys=lambda wc: list(PLAN.memory(wc.game).inputs),
        code=CODE["memory"],
    message:
        "retrieval: build RA-DT's memory of {wildcards.game}'s training set, seed {wildcards.seed}"
    script:
        "../scripts/build_memory.py"


rule train_radt:
    input:
        unpack(radt_train_inputs),
    output:
        model="results/{game}/models/radt/{key}/seed{seed}/model.pt",
        metrics="results/{game}/models/radt/{key}/seed{seed}/metrics.json",
        curve="results/{game}/models/radt/{key}/seed{seed}/curve.csv",
        params="results/{game}/models/radt/{key}/seed{seed}/params.json",
    log:
        "logs/train/{game}_radt_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("train_radt")
    resources:
        **rule_resources("train_radt"),
    params:
        train=lambda wc: PLAN.model(wc.game, "radt").params,
        run=lambda wc: PLAN.run_settings(wc.game),
        dataset_key=lambda wc: PLAN.dataset(wc.game).key,
        input_keys=lambda wc: list(PLAN.model(wc.game, "radt").inputs),
        code=CODE["train_radt"],
    message:
        "train: radt on {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/train_radt.py"


rule evaluate_radt:
    input:
        unpack(radt_eval_inputs),
    output:
        episodes="results/{game}/eval/radt/{key}/seed{seed}/episodes.parquet",
        summary="results/{game}/eval/radt/{key}/seed{seed}/summary.json",
        params="results/{game}/eval/radt/{key}/seed{seed}/params.json",
    log:
        "logs/evaluate/{game}_radt_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("evaluate_radt")
    resources:
        **rule_resources("evaluate_radt"),
    params:
        evaluation=lambda wc: PLAN.evaluation(wc.game, "radt").params,
        run={k: EVALUATION[k] for k in fdt.plan.EVAL_RUN_SETTINGS},
        input_keys=lambda wc: list(PLAN.evaluation(wc.game, "radt").inputs),
        code=CODE["evaluate_radt"],
    message:
        "evaluate: radt on {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/evaluate_radt.py"


rule report_retrieval:
    input:
        unpack(retrieval_report_inputs),
    output:
        section="results/report/retrieval/{key}/section.json",
        scores="results/report/retrieval/{key}/scores.csv",
        ttest="results/report/retrieval/{key}/ttest.csv",
        memory="results/report/retrieval/{key}/memory.csv",
        plot="results/report/retrieval/{key}/returns_per_setup.png",
        params="results/report/retrieval/{key}/params.json",
    log:
        "logs/report_retrieval/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("report_retrieval")
    resources:
        **rule_resources("report_retrieval"),
    params:
        report=lambda wc: PLAN.retrieval_report().params,
        input_keys=lambda wc: list(PLAN.retrieval_report().inputs),
        code=CODE["retrieval_report"],
    message:
        "retrieval: RA-DT against DT"
    script:
        "../scripts/report_retrieval.py"
