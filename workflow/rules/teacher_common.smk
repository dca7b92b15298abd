# Paths and input functions of the feedback rules (workflow/rules/teacher.smk); what decides
# each folder is planned in Python: fdt.plan.StagePlan.queries, teacher_labels, teacher_report.
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
