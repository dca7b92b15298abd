# Evaluation in Atari (batched rollouts of each trained model) and the results report.


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        episodes="results/{game}/eval/{model}/{key}/seed{seed}/episodes.parquet",
        summary="results/{game}/eval/{model}/{key}/seed{seed}/summary.json",
        params="results/{game}/eval/{model}/{key}/seed{seed}/params.json",
    log:
        "logs/evaluate/{game}_{model}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        evaluation=lambda wc: PLAN.evaluation(wc.game, wc.model).params,
        run={k: EVALUATION[k] for k in fdt.plan.EVAL_RUN_SETTINGS},
        input_keys=lambda wc: list(PLAN.evaluation(wc.game, wc.model).inputs),
        code=CODE["evaluate"],
    script:
        "../scripts/evaluate_model.py"


rule report:
    input:
        unpack(report_inputs),
        paper=os.path.join(workflow.basedir, "workflow", "data", "paper_results.csv"),
    output:
        scores=report(
            "results/report/{key}/scores.csv",
            caption="../report/scores.rst",
            category="Scores",
        ),
        comparison=report(
            "results/report/{key}/comparison.csv",
            caption="../report/comparison.rst",
            category="Scores",
        ),
        ttest=report(
            "results/report/{key}/ttest.csv",
            caption="../report/ttest.rst",
            category="Scores",
        ),
        oracle=report(
            "results/report/{key}/oracle.csv",
            caption="../report/oracle.rst",
            category="Oracle",
        ),
        per_setup=report(
            "results/report/{key}/returns_per_setup.png",
            caption="../report/returns_per_setup.rst",
            category="Plots",
        ),
        per_target=report(
            "results/report/{key}/return_vs_target.png",
            caption="../report/return_vs_target.rst",
            category="Plots",
        ),
        summary="results/report/{key}/summary.json",
        params="results/report/{key}/params.json",
    log:
        "logs/report/{key}.log",
    conda:
        "../envs/fdt.yaml"
    params:
        report=PLAN.report().params,
        input_keys=list(PLAN.report().inputs),
        code=CODE["report"],
    script:
        "../scripts/report.py"
