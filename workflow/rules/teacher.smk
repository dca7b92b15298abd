# People's feedback (fdt.teacher): the query bundles the labelling app serves, FDT's labels from
# people's answers (oracle.kind human) or the synthetic labeller (synthetic), and the report
# section. The app itself is started by hand: fdt-feedback serve QUERIES --db ANSWERS.
import fdt.teacher.report

TEACHER = config["teacher"]


def queries_dir(game, seed, key=None):
    return f"results/{game}/teacher/queries/{key or PLAN.queries(game).key}/seed{seed}"


def teacher_on():
    """Bundles are built from the mined states, which FDT's runs mine."""
    return TEACHER["queries"] > 0 and "fdt" in MODELS


def queries_inputs(wildcards):
    game = wildcards.game
    expect_key(wildcards.key, PLAN.queries(game).key, f"query bundle of {game}")
    folder = dataset_dir(game, wildcards.seed)
    inputs = {
        "states": f"{states_dir(game, wildcards.seed)}/states.parquet",
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }
    if TEACHER["gold_rate"] > 0:
        inputs["gold"] = f"{labels_dir(game, wildcards.seed)}/labels.parquet"
    return inputs


def queries_targets():
    if not teacher_on():
        return []
    return [
        f"{queries_dir(game, seed)}/bundle.json" for game in GAMES for seed in SEEDS
    ]


def teacher_labels_dir(game, seed, key=None):
    return f"results/{game}/teacher/labels/{key or PLAN.teacher_labels(game).key}/seed{seed}"


def answers_file(game, seed):
    return ORACLE["human"]["answers"].format(game=game, seed=seed)


def teacher_labels_inputs(wildcards):
    game, seed = wildcards.game, wildcards.seed
    expect_key(
        wildcards.key,
        PLAN.teacher_labels(game).key,
        f"{ORACLE['kind']} labels of {game}",
    )
    if ORACLE["kind"] == "synthetic":
        return {"base": f"{labels_dir(game, seed)}/labels.parquet"}
    return {
        "bundle": f"{queries_dir(game, seed)}/bundle.json",
        "answers": answers_file(game, seed),
        "states": f"{states_dir(game, seed)}/states.parquet",
        "manifest": f"{dataset_dir(game, seed)}/manifest.json",
    }


def fdt_labels_file(game, seed):
    """The labels FDT trains on: people's or the synthetic labeller's, else the oracle's."""
    if ORACLE["kind"] in fdt.plan.TEACHER_KINDS:
        return f"{teacher_labels_dir(game, seed)}/labels.parquet"
    return f"{labels_dir(game, seed)}/labels.parquet"


def teacher_report_dir(key=None):
    return f"results/report/teacher/{key or PLAN.teacher_report().key}"


def teacher_report_targets():
    """The feedback section of the report (none when no bundle is built)."""
    if not teacher_on():
        return []
    return [f"{teacher_report_dir()}/section.json"]


def teacher_report_inputs(wildcards):
    expect_key(wildcards.key, PLAN.teacher_report().key, "feedback report")
    answers = [answers_file(g, s) for g in GAMES for s in SEEDS]
    return {
        "bundles": queries_targets(),
        "answers": [a for a in answers if os.path.exists(a)],
    }


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
    params:
        teacher=lambda wc: PLAN.queries(wc.game).params,
        input_keys=lambda wc: list(PLAN.queries(wc.game).inputs),
        code=CODE["queries"],
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
    params:
        labels=lambda wc: PLAN.teacher_labels(wc.game).params,
        input_keys=lambda wc: list(PLAN.teacher_labels(wc.game).inputs),
        code=CODE["teacher_labels"],
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
    script:
        "../scripts/report_teacher.py"
