# Important-state mining: cells, returns per (cell, action), ranked states inside the training set.


rule mine_states:
    input:
        unpack(mining_inputs),
    output:
        states="results/{game}/states/{key}/seed{seed}/states.parquet",
        counts="results/{game}/states/{key}/seed{seed}/counts.json",
        images=directory("results/{game}/states/{key}/seed{seed}/images"),
        params="results/{game}/states/{key}/seed{seed}/params.json",
    log:
        "logs/mine_states/{game}_{key}_{seed}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("mine_states")
    resources:
        **rule_resources("mine_states"),
    params:
        mining=lambda wc: PLAN.mining(wc.game).params,
        input_keys=lambda wc: list(PLAN.mining(wc.game).inputs),
        code=CODE["mine"],
    message:
        "mine: important states of {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/mine_states.py"
