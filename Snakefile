# Feedback Decision Transformer on Atari: from the DQN Replay Dataset to a results table.
# The rules live in workflow/rules/, one stage per file; this file only wires them together.

import os

from snakemake.utils import min_version

min_version("8.20")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/replay.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/mine.smk"
include: "workflow/rules/oracle.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/agents.smk"
include: "workflow/rules/preferences.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/continuous.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/incontext.smk"
include: "workflow/rules/online.smk"


rule all:
    default_target: True
    input:
        replay_targets(),
        model_targets(),
        states_targets(),
        oracle_targets(),
        labels_targets(),
        f"{report_dir()}/scores.csv",
        agent_targets(),
        agents_report_targets(),
        preferences_report_targets(),
        retrieval_report_targets(),
        continuous_report_targets(),
        queries_targets(),
        teacher_report_targets(),
        incontext_report_targets(),
        online_targets(),
        site_target(),


# Every rule above sized in workflow/resources.yaml; per-rule overrides name existing rules.
check_resources()
