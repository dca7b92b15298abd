# Paths and input functions of RA-DT's rules (workflow/rules/retrieval.smk); what decides
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
