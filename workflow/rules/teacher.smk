# People's feedback (fdt.teacher): the query bundles the labelling app serves, FDT's labels from
# people's answers (oracle.kind human) or the synthetic labeller (synthetic), and the report
# section. The app itself is started by hand: fdt-feedback serve QUERIES --db ANSWERS.


include: "teacher_common.smk"


rule build_queries:
    input:
        unpack(queries_inputs),
    output:
        bundle="results/{game}/teacher/queries/{key}/seed{seed}/bundle.json",
        params="results/{game}/teacher/queries/{key}/seed{seed}/params.json",
    log:
        "logs/build_queries/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("build_queries")
    resources:
        **rule_resources("build_queries"),
    params:
        teacher=lambda wc: PLAN.queries(wc.game).params,
        input_keys=lambda wc: list(PLAN.queries(wc.game).inputs),
        code=CODE["queries"],
    message:
        "feedback: the query bundle of {wildcards.game}'s important states, seed {wildcards.seed}"
    script:
        "../scripts/build_queries.py"


rule teacher_labels:
    input:
        unpack(teacher_labels_inputs),
    output:
        labels="results/{game}/teacher/labels/{key}/seed{seed}/labels.parquet",
        agreement="results/{game}/teacher/labels/{key}/seed{seed}/agreement.json",
        params="results/{game}/teacher/labels/{key}/seed{seed}/params.json",
    log:
        "logs/teacher_labels/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("teacher_labels")
    resources:
        **rule_resources("teacher_labels"),
    params:
        labels=lambda wc: PLAN.teacher_labels(wc.game).params,
        input_keys=lambda wc: list(PLAN.teacher_labels(wc.game).inputs),
        code=CODE["teacher_labels"],
    message:
        "feedback: {wildcards.game}'s labels from people or the synthetic labeller, seed {wildcards.seed}"
    script:
        "../scripts/teacher_labels.py"


rule report_teacher:
    input:
        unpack(teacher_report_inputs),
    output:
        section="results/report/teacher/{key}/section.json",
        queries="results/report/teacher/{key}/queries.csv",
        labellers="results/report/teacher/{key}/labellers.csv",
        params="results/report/teacher/{key}/params.json",
    log:
        "logs/report_teacher/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("report_teacher")
    resources:
        **rule_resources("report_teacher"),
    params:
        report=lambda wc: PLAN.teacher_report().params,
        input_keys=lambda wc: list(PLAN.teacher_report().inputs),
        code=CODE["teacher_report"],
        bundles=lambda wc: [
            [g, s, f"{queries_dir(g, s)}/bundle.json"] for g in GAMES for s in SEEDS
        ],
        answers=lambda wc: [answers_file(g, s) for g in GAMES for s in SEEDS],
        # the noise/budget runs found in results/: a new one reruns the report
        study=lambda wc: fdt.teacher.report.noise_budget_runs("results", GAMES),
    message:
        "feedback: the labelling report"
    script:
        "../scripts/report_teacher.py"
