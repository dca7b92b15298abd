# Retrieval-augmented DT (RA-DT, model radt): a memory of each seed's training set embedded by
# that seed's trained DT, radt trained and evaluated on it, and its report section. What decides
# each folder is planned in Python: fdt.plan.StagePlan.memory, .model, .evaluation.
RETRIEVAL = config["retrieval"]


def memory_dir(game, seed, key=None):
    return f"results/{game}/memory/{key or PLAN.memory(game).key}/seed{seed}"


def memory_inputs(wildcards):
    """The seed's training set and its trained DT (the frozen embedder)."""
    game = wildcards.game
    expect_key(wildcards.key, PLAN.memory(game).key, f"memory of {game}")
    folder = dataset_dir(game, wildcards.seed)
    return {
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
        "embedder": f"{model_dir(game, 'dt', wildcards.seed)}/model.pt",
    }


def radt_data_inputs(game, seed):
    """The seed's training set and its memory: what radt trains on and retrieves from."""
    folder = dataset_dir(game, seed)
    return {
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
        "memory": f"{memory_dir(game, seed)}/manifest.json",
    }


def radt_train_inputs(wildcards):
    game = wildcards.game
    expect_key(wildcards.key, PLAN.model(game, "radt").key, f"radt model of {game}")
    return radt_data_inputs(game, wildcards.seed)


def radt_eval_inputs(wildcards):
    game = wildcards.game
    expect_key(
        wildcards.key,
        PLAN.evaluation(game, "radt").key,
        f"evaluation of radt on {game}",
    )
    return {
        **radt_data_inputs(game, wildcards.seed),
        "model": f"{model_dir(game, 'radt', wildcards.seed)}/model.pt",
        "embedder": f"{model_dir(game, 'dt', wildcards.seed)}/model.pt",
    }


def retrieval_report_dir(key=None):
    return f"results/report/retrieval/{key or PLAN.retrieval_report().key}"


def retrieval_report_inputs(wildcards):
    expect_key(wildcards.key, PLAN.retrieval_report().key, "retrieval report")
    return {
        "episodes": [
            f"{eval_dir(game, model, seed)}/episodes.parquet"
            for game in GAMES
            for model in ("radt", "dt")
            for seed in SEEDS
        ],
        "memories": [
            f"{memory_dir(game, seed)}/manifest.json"
            for game in GAMES
            for seed in SEEDS
        ],
    }


def retrieval_report_targets():
    """RA-DT's report section, when radt is among the models."""
    if "radt" not in MODELS:
        return []
    return [f"{retrieval_report_dir()}/section.json"]


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
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        memory=lambda wc: PLAN.memory(wc.game).params,
        run={k: RETRIEVAL[k] for k in ("device", "embed_batch_size")},
        embedder_key=lambda wc: PLAN.model(wc.game, "dt").key,
        input_keys=lambda wc: list(PLAN.memory(wc.game).inputs),
        code=CODE["memory"],
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
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        train=lambda wc: PLAN.model(wc.game, "radt").params,
        run=lambda wc: PLAN.run_settings(wc.game),
        dataset_key=lambda wc: PLAN.dataset(wc.game).key,
        input_keys=lambda wc: list(PLAN.model(wc.game, "radt").inputs),
        code=CODE["train_radt"],
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
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        evaluation=lambda wc: PLAN.evaluation(wc.game, "radt").params,
        run={k: EVALUATION[k] for k in fdt.plan.EVAL_RUN_SETTINGS},
        input_keys=lambda wc: list(PLAN.evaluation(wc.game, "radt").inputs),
        code=CODE["evaluate_radt"],
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
    params:
        report=lambda wc: PLAN.retrieval_report().params,
        input_keys=lambda wc: list(PLAN.retrieval_report().inputs),
        code=CODE["retrieval_report"],
    script:
        "../scripts/report_retrieval.py"
