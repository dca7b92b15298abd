# Learning a reward from preferences (rl-teacher; model dt_pref): clips of each seed's training
# set, comparisons (the synthetic labeller or the feedback app's export, in pairs or through the
# sort tree), a reward model, the training set relabelled by it, DT trained on that and scored
# by the true game score, and the report section. Every comparison budget (preferences.budget
# and preferences.sweep) has its own comparisons, reward model, relabelled set and dt_pref; the
# dt_pref of models is preferences.budget's. What decides each folder: fdt.plan.StagePlan.


include: "preferences_common.smk"


rule preference_clips:
    input:
        unpack(pref_clips_inputs),
    output:
        clips="results/{game}/preferences/clips/{key}/seed{seed}/clips.json",
        params="results/{game}/preferences/clips/{key}/seed{seed}/params.json",
    log:
        "logs/preference_clips/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("preference_clips")
    resources:
        **rule_resources("preference_clips"),
    params:
        clips=lambda wc: PLAN.preference_clips(wc.game).params,
        input_keys=lambda wc: list(PLAN.preference_clips(wc.game).inputs),
        code=CODE["preference_clips"],
    message:
        "preferences: draw the clips of {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/pref_clips.py"


rule preference_comparisons:
    input:
        unpack(pref_comparisons_inputs),
    output:
        comparisons="results/{game}/preferences/comparisons/{key}/seed{seed}/comparisons.json",
        params="results/{game}/preferences/comparisons/{key}/seed{seed}/params.json",
    log:
        "logs/preference_comparisons/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("preference_comparisons")
    resources:
        **rule_resources("preference_comparisons"),
    params:
        comparisons=lambda wc: pref_stage(PLAN.preference_comparisons, wc).params,
        file=PREFERENCES["file"],
        device=PREFERENCES["reward_model"]["device"],  # pre-sorting's reward model
        input_keys=lambda wc: list(pref_stage(PLAN.preference_comparisons, wc).inputs),
        code=CODE["preference_comparisons"],
    message:
        "preferences: compare clips of {wildcards.game} ({params.comparisons[source]}, {params.comparisons[mode]}, budget {params.comparisons[budget]}), seed {wildcards.seed}"
    script:
        "../scripts/pref_comparisons.py"


rule preference_reward:
    input:
        unpack(pref_reward_inputs),
    output:
        model="results/{game}/preferences/reward/{key}/seed{seed}/reward_model.pt",
        metrics="results/{game}/preferences/reward/{key}/seed{seed}/metrics.json",
        params="results/{game}/preferences/reward/{key}/seed{seed}/params.json",
    log:
        "logs/preference_reward/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("preference_reward")
    resources:
        **rule_resources("preference_reward"),
    params:
        reward=lambda wc: pref_stage(PLAN.preference_reward, wc).params,
        run={"device": PREFERENCES["reward_model"]["device"]},
        input_keys=lambda wc: list(pref_stage(PLAN.preference_reward, wc).inputs),
        code=CODE["preference_reward"],
    message:
        "preferences: train the reward model of {wildcards.game} ({params.reward[loss]}), seed {wildcards.seed}"
    script:
        "../scripts/pref_reward_model.py"


rule preference_relabel:
    input:
        unpack(pref_relabel_inputs),
    output:
        manifest="results/{game}/preferences/dataset/{key}/seed{seed}/manifest.json",
        arrays=training_set_arrays(
            "results/{game}/preferences/dataset/{key}/seed{seed}"
        ),
        params="results/{game}/preferences/dataset/{key}/seed{seed}/params.json",
    log:
        "logs/preference_relabel/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("preference_relabel")
    resources:
        **rule_resources("preference_relabel"),
    params:
        relabel=lambda wc: pref_stage(PLAN.preference_relabel, wc).params,
        device=PREFERENCES["reward_model"]["device"],
        input_keys=lambda wc: list(pref_stage(PLAN.preference_relabel, wc).inputs),
        code=CODE["preference_relabel"],
    message:
        "preferences: relabel the training set of {wildcards.game} with the learnt reward, seed {wildcards.seed}"
    script:
        "../scripts/pref_relabel.py"


rule train_pref:
    input:
        unpack(pref_train_inputs),
    output:
        model="results/{game}/models/{model}/{key}/seed{seed}/model.pt",
        metrics="results/{game}/models/{model}/{key}/seed{seed}/metrics.json",
        curve="results/{game}/models/{model}/{key}/seed{seed}/curve.csv",
        params="results/{game}/models/{model}/{key}/seed{seed}/params.json",
    log:
        "logs/train/{game}_{model}_{key}_{seed}.log",
    wildcard_constraints:
        model="dt_pref",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("train_pref")
    resources:
        **rule_resources("train_pref"),
    params:
        train=lambda wc: pref_stage(PLAN.preference_model, wc).params,
        run=lambda wc: PLAN.run_settings(wc.game),
        dataset_key=lambda wc: pref_stage(PLAN.preference_model, wc).inputs[0],
        input_keys=lambda wc: list(pref_stage(PLAN.preference_model, wc).inputs),
        code=CODE["train"],
    message:
        "train: dt_pref on {wildcards.game} (key {wildcards.key}), seed {wildcards.seed}"
    script:
        "../scripts/train_model.py"


rule evaluate_pref:
    input:
        unpack(pref_eval_inputs),
    output:
        episodes="results/{game}/eval/{model}/{key}/seed{seed}/episodes.parquet",
        summary="results/{game}/eval/{model}/{key}/seed{seed}/summary.json",
        params="results/{game}/eval/{model}/{key}/seed{seed}/params.json",
    log:
        "logs/evaluate/{game}_{model}_{key}_{seed}.log",
    wildcard_constraints:
        model="dt_pref",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("evaluate_pref")
    resources:
        **rule_resources("evaluate_pref"),
    params:
        evaluation=lambda wc: pref_stage(PLAN.preference_evaluation, wc).params,
        run={k: EVALUATION[k] for k in fdt.plan.EVAL_RUN_SETTINGS},
        input_keys=lambda wc: list(pref_stage(PLAN.preference_evaluation, wc).inputs),
        code=CODE["evaluate"],
    message:
        "evaluate: dt_pref on {wildcards.game} (key {wildcards.key}), seed {wildcards.seed}"
    script:
        "../scripts/evaluate_model.py"


rule preferences_report:
    input:
        unpack(preferences_report_inputs),
    output:
        table=report(
            "results/report/preferences/{key}/preferences.csv",
            caption="../report/preferences.rst",
            category="Preferences",
        ),
        figure=report(
            "results/report/preferences/{key}/score_vs_comparisons.png",
            caption="../report/preferences.rst",
            category="Preferences",
        ),
        section="results/report/preferences/{key}/section.json",
        params="results/report/preferences/{key}/params.json",
    log:
        "logs/preferences_report/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("preferences_report")
    resources:
        **rule_resources("preferences_report"),
    params:
        report=lambda wc: PLAN.preferences_report().params,
        settings=PREFERENCES,
        runs=lambda wc: pref_runs(),
        baseline=lambda wc: pref_baseline(),
        input_keys=lambda wc: list(PLAN.preferences_report().inputs),
        code=CODE["preferences_report"],
    message:
        "preferences: score against comparisons, the report section"
    script:
        "../scripts/pref_report.py"
