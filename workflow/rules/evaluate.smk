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
    threads: rule_threads("evaluate")
    resources:
        **rule_resources("evaluate"),
    params:
        evaluation=lambda wc: eval_stage(wc).params,
        run={k: EVALUATION[k] for k in fdt.plan.EVAL_RUN_SETTINGS},
        input_keys=lambda wc: list(eval_stage(wc).inputs),
        code=CODE["evaluate"],
    message:
        "evaluate: {wildcards.model} on {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/evaluate_model.py"


rule evaluate_random:
    input:
        unpack(random_inputs),
    output:
        episodes="results/{game}/random/{key}/episodes.parquet",
        summary="results/{game}/random/{key}/summary.json",
        params="results/{game}/random/{key}/params.json",
    log:
        "logs/evaluate_random/{game}_{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("evaluate_random")
    resources:
        **rule_resources("evaluate_random"),
    params:
        evaluation=lambda wc: PLAN.random_policy(wc.game).params,
        run={k: EVALUATION[k] for k in fdt.plan.EVAL_RUN_SETTINGS},
        code=CODE["random"],
    message:
        "evaluate: the random policy on {wildcards.game}"
    script:
        "../scripts/evaluate_random.py"


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
        summary="results/report/{key}/summary.json",
        section="results/report/{key}/section.json",
        params="results/report/{key}/params.json",
    log:
        "logs/report/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("report")
    resources:
        **rule_resources("report"),
    params:
        report=PLAN.report().params,
        context=report_context(),
        input_keys=list(PLAN.report().inputs),
        code=CODE["report"],
    message:
        "report: scores, context and plots"
    script:
        "../scripts/report.py"


rule report_html:
    input:
        sections=site_sections,
    output:
        page="results/report/html/{key}/index.html",
        params="results/report/html/{key}/params.json",
    log:
        "logs/report_html/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("report_html")
    resources:
        **rule_resources("report_html"),
    params:
        site=lambda wc: PLAN.site().params,
        input_keys=lambda wc: list(PLAN.site().inputs),
        code=CODE["site"],
    message:
        "report: the HTML page"
    script:
        "../scripts/report_html.py"
