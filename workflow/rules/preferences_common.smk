# Paths and input functions of the preferences' rules (workflow/rules/preferences.smk); what
# decides each folder is planned in Python: fdt.plan.StagePlan.preference_*.
PREFERENCES = config["preferences"]


def pref_budget(game, key, stage, what):
    """The budget whose folder key this is (several budgets share a rule)."""
    for budget in PLAN.preference_budgets():
        if stage(game, budget).key == key:
            return budget
    raise ValueError(
        f"{what}: key {key} is not the current config's for any comparison budget "
        f"({PLAN.preference_budgets()}); old folders are kept but only the current "
        "config's are built"
    )


def pref_stage(stage, wildcards):
    """The planned stage of a budgeted rule's folder (several budgets share the rule)."""
    game = wildcards.game
    budget = pref_budget(game, wildcards.key, stage, f"{stage.__name__} of {game}")
    return stage(game, budget)


def pref_clips_dir(game, seed):
    return (
        f"results/{game}/preferences/clips/{PLAN.preference_clips(game).key}/seed{seed}"
    )


def pref_comparisons_dir(game, budget, seed):
    key = PLAN.preference_comparisons(game, budget).key
    return f"results/{game}/preferences/comparisons/{key}/seed{seed}"


def pref_reward_dir(game, budget, seed):
    key = PLAN.preference_reward(game, budget).key
    return f"results/{game}/preferences/reward/{key}/seed{seed}"


def pref_dataset_dir(game, budget, seed):
    key = PLAN.preference_relabel(game, budget).key
    return f"results/{game}/preferences/dataset/{key}/seed{seed}"


def pref_model_dir(game, budget, seed):
    key = PLAN.preference_model(game, budget).key
    return f"results/{game}/models/dt_pref/{key}/seed{seed}"


def pref_eval_dir(game, budget, seed):
    key = PLAN.preference_evaluation(game, budget).key
    return f"results/{game}/eval/dt_pref/{key}/seed{seed}"


def pref_clips_inputs(wildcards):
    game = wildcards.game
    expect_key(wildcards.key, PLAN.preference_clips(game).key, f"clips of {game}")
    folder = dataset_dir(game, wildcards.seed)
    return {
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }


def pref_comparisons_inputs(wildcards):
    game = wildcards.game
    budget = pref_budget(
        game, wildcards.key, PLAN.preference_comparisons, f"comparisons of {game}"
    )
    inputs = {"clips": f"{pref_clips_dir(game, wildcards.seed)}/clips.json"}
    if PREFERENCES["source"] == "file":
        inputs["file"] = PREFERENCES["file"]
    if "presort_every" in PLAN.preference_comparisons(game, budget).params:
        # the clips' frames, for the reward model
        folder = dataset_dir(game, wildcards.seed)
        inputs["manifest"] = f"{folder}/manifest.json"
        inputs["arrays"] = training_set_arrays(folder)
    return inputs


def pref_reward_inputs(wildcards):
    game = wildcards.game
    budget = pref_budget(
        game, wildcards.key, PLAN.preference_reward, f"reward model of {game}"
    )
    folder = dataset_dir(game, wildcards.seed)
    return {
        "clips": f"{pref_clips_dir(game, wildcards.seed)}/clips.json",
        "comparisons": f"{pref_comparisons_dir(game, budget, wildcards.seed)}/comparisons.json",
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }


def pref_relabel_inputs(wildcards):
    game = wildcards.game
    budget = pref_budget(
        game, wildcards.key, PLAN.preference_relabel, f"relabelled set of {game}"
    )
    folder = dataset_dir(game, wildcards.seed)
    return {
        "reward_model": f"{pref_reward_dir(game, budget, wildcards.seed)}/reward_model.pt",
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }


def pref_train_inputs(wildcards):
    game = wildcards.game
    budget = pref_budget(
        game, wildcards.key, PLAN.preference_model, f"dt_pref of {game}"
    )
    folder = pref_dataset_dir(game, budget, wildcards.seed)
    return {
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }


def pref_eval_inputs(wildcards):
    game = wildcards.game
    budget = pref_budget(
        game,
        wildcards.key,
        PLAN.preference_evaluation,
        f"evaluation of dt_pref on {game}",
    )
    return {"model": f"{pref_model_dir(game, budget, wildcards.seed)}/model.pt"}


def pref_runs():
    """Per (game, budget, seed): the files the report reads."""
    return [
        {
            "game": game,
            "budget": budget,
            "seed": seed,
            "comparisons": f"{pref_comparisons_dir(game, budget, seed)}/comparisons.json",
            "metrics": f"{pref_reward_dir(game, budget, seed)}/metrics.json",
            "manifest": f"{pref_dataset_dir(game, budget, seed)}/manifest.json",
            "episodes": f"{pref_eval_dir(game, budget, seed)}/episodes.parquet",
        }
        for game in GAMES
        for budget in PLAN.preference_budgets()
        for seed in SEEDS
    ]


def pref_baseline():
    """Plain DT's episodes per game, when dt is among the models."""
    if "dt" not in MODELS:
        return {game: [] for game in GAMES}
    return {
        game: [f"{eval_dir(game, 'dt', seed)}/episodes.parquet" for seed in SEEDS]
        for game in GAMES
    }


def preferences_report_dir(key=None):
    return f"results/report/preferences/{key or PLAN.preferences_report().key}"


def preferences_report_inputs(wildcards):
    expect_key(wildcards.key, PLAN.preferences_report().key, "preferences report")
    runs = pref_runs()
    return {
        "files": [
            run[k]
            for run in runs
            for k in ("comparisons", "metrics", "manifest", "episodes")
        ],
        "baseline": [path for paths in pref_baseline().values() for path in paths],
    }


def preferences_report_targets():
    """The preferences section, when dt_pref is among the models."""
    if "dt_pref" not in MODELS:
        return []
    return [f"{preferences_report_dir()}/section.json"]
