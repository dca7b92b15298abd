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
    params:
        mining=lambda wc: mining_params(wc.game),
        dataset_key=lambda wc: dataset_key(wc.game),
        code=CODE["mine"],
    script:
        "../scripts/mine_states.py"
