# Training set (the reference's sampling) and training of DT and BC.


rule training_set:
    input:
        unpack(training_set_inputs),
    output:
        manifest="results/{game}/dataset/{key}/seed{seed}/manifest.json",
        arrays=training_set_arrays("results/{game}/dataset/{key}/seed{seed}"),
        params="results/{game}/dataset/{key}/seed{seed}/params.json",
    log:
        "logs/training_set/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("training_set")
    resources:
        **rule_resources("training_set"),
    params:
        sampling=lambda wc: PLAN.dataset(wc.game).params,
        capacity=lambda wc: fdt.config.dataset_capacity(config, wc.game, int(wc.seed)),
        input_keys=lambda wc: list(PLAN.dataset(wc.game).inputs),
        code=CODE["dataset"],
    message:
        "dataset: sample the training set of {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/build_training_set.py"


rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/{game}/models/{model}/{key}/seed{seed}/model.pt",
        metrics="results/{game}/models/{model}/{key}/seed{seed}/metrics.json",
        curve="results/{game}/models/{model}/{key}/seed{seed}/curve.csv",
        params="results/{game}/models/{model}/{key}/seed{seed}/params.json",
    log:
        "logs/train/{game}_{model}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("train")
    resources:
        **rule_resources("train"),
    params:
        train=lambda wc: model_stage(wc).params,
        run=lambda wc: PLAN.run_settings(wc.game),
        dataset_key=lambda wc: PLAN.dataset(wc.game).key,
        input_keys=lambda wc: list(model_stage(wc).inputs),
        code=CODE["train"],
    message:
        "train: {wildcards.model} on {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/train_model.py"
