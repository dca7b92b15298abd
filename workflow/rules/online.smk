# rl-teacher's loop online (issue 32, fdt.online): an agent trained on the reward a model learns
# from comparisons of its own clips. One job per (environment, mode, label budget, seed), then
# the report: true return against environment steps. Off unless the config has an `online`
# section (config/online.yaml); its report is results/report/online/{online.scale}/section.json:
#   snakemake --configfile config/online.yaml results/report/online/reduced/section.json
# Human mode is a command outside the graph (python -m fdt.online human).


include: "online_common.smk"


rule online_run:
    output:
        curve="results/online/{env}/{mode}/labels{budget}/{key}/seed{seed}/curve.csv",
        summary="results/online/{env}/{mode}/labels{budget}/{key}/seed{seed}/summary.json",
    log:
        "logs/online_run/{env}_{mode}_{budget}_{key}_{seed}.log",
    wildcard_constraints:
        mode="rl|synth",
        budget="[0-9]+",
        seed="[0-9]+",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("online_run")
    resources:
        **rule_resources("online_run"),
    params:
        settings=online_run_settings,
    message:
        "online: {wildcards.mode} on {wildcards.env} ({wildcards.budget} labels), seed {wildcards.seed}"
    script:
        "../scripts/online_run.py"


rule online_report:
    input:
        [path for run in online_runs() for path in (run["curve"], run["summary"])],
    output:
        table="results/report/online/{scale}/online.csv",
        figure="results/report/online/{scale}/return_vs_steps.png",
        section="results/report/online/{scale}/section.json",
    log:
        "logs/online_report/{scale}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("online_report")
    resources:
        **rule_resources("online_report"),
    params:
        runs=[
            {k: v for k, v in run.items() if k != "settings"} for run in online_runs()
        ],
        settings=ONLINE,
    message:
        "online: true return against environment steps, the report section"
    script:
        "../scripts/online_report.py"
