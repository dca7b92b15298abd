# Replay ingestion: simulate (demo source only) -> fetch -> convert to Parquet.


rule simulate_demo:
    output:
        directory("resources/demo/{key}/{game}/{run}/replay_logs"),
    log:
        "logs/simulate_demo/{key}_{game}_{run}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("simulate_demo")
    resources:
        **rule_resources("simulate_demo"),
    params:
        demo=demo_params,
        code=CODE["demo"],
    message:
        "demo: simulate {wildcards.game} run {wildcards.run}'s replay logs in Dopamine's format"
    script:
        "../scripts/simulate_demo.py"


rule fetch_replay:
    input:
        unpack(fetch_inputs),
    output:
        files=replay_files("{game}", "{run}", "{buffer}"),
        record="resources/replay/{game}/{run}/manifest/buffer{buffer}.json",
    log:
        "logs/fetch_replay/{game}_{run}_{buffer}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("fetch_replay")
    resources:
        **rule_resources("fetch_replay"),
    params:
        source=PLAN.source_description(),
        workers=SOURCE["workers"],
        verify_gzip=SOURCE["verify_gzip"],
        code=CODE["fetch"],
    message:
        "fetch: checkpoint {wildcards.buffer} of {wildcards.game} run {wildcards.run}"
    script:
        "../scripts/fetch_replay.py"


rule replay_manifest:
    input:
        lambda wc: expand(
            "resources/replay/{game}/{run}/manifest/buffer{buffer}.json",
            game=wc.game,
            run=wc.run,
            buffer=BUFFERS,
        ),
    output:
        "resources/replay/{game}/{run}/manifest.json",
    log:
        "logs/replay_manifest/{game}_{run}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("replay_manifest")
    resources:
        **rule_resources("replay_manifest"),
    message:
        "fetch: manifest of {wildcards.game} run {wildcards.run}"
    script:
        "../scripts/replay_manifest.py"


rule convert_replay:
    input:
        unpack(convert_inputs),
    output:
        "results/{game}/replay/run{run}/buffer{buffer}.parquet",
    log:
        "logs/convert_replay/{game}_{run}_{buffer}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("convert_replay")
    resources:
        **rule_resources("convert_replay"),
    params:
        with_previous=lambda wc: int(wc.buffer) - 1 in BUFFERS,
        with_following=lambda wc: int(wc.buffer) + 1 in BUFFERS,
        episode_cap=EPISODE_CAP,
        row_group_rows=config["replay"]["row_group_rows"],
        zstd_level=config["replay"]["zstd_level"],
        source=PLAN.source_description(),
        code=CODE["convert"],
    message:
        "convert: checkpoint {wildcards.buffer} of {wildcards.game} run {wildcards.run} to Parquet"
    script:
        "../scripts/convert_replay.py"


rule replay_summary:
    input:
        lambda wc: expand(
            "results/{game}/replay/run{run}/buffer{buffer}.parquet",
            game=wc.game,
            run=wc.run,
            buffer=BUFFERS,
        ),
    output:
        summary="results/{game}/replay/run{run}/summary.json",
        params="results/{game}/replay/run{run}/params.json",
    log:
        "logs/replay_summary/{game}_{run}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("replay_summary")
    resources:
        **rule_resources("replay_summary"),
    params:
        episode_cap=EPISODE_CAP,
        row_group_rows=config["replay"]["row_group_rows"],
        zstd_level=config["replay"]["zstd_level"],
        source=PLAN.source_description(),
        code=CODE["convert"],
    message:
        "convert: summary of {wildcards.game} run {wildcards.run}"
    script:
        "../scripts/replay_summary.py"
