# Validation of the config, artifact keys and input functions shared by the rules.

import fdt.config
from fdt.dopamine import FILE_KINDS, file_name
from fdt.keys import artifact_key, code_version


config = fdt.config.validate_config(config, origin="the workflow config")
GAMES = config["games"]
RUNS = config["runs"]
BUFFERS = fdt.config.parse_buffers(config["buffers"])
SOURCE = config["source"]
EPISODE_CAP = fdt.config.episode_cap(config)

# Library code each stage runs: editing a module makes exactly its stages stale (via params).
CODE = {
    "demo": code_version(["demo", "atari", "dopamine"]),
    "fetch": code_version(["sources", "dopamine"]),
    "convert": code_version(["store", "dopamine"]),
}


wildcard_constraints:
    game="[A-Za-z]+",
    run="[0-9]+",
    buffer="[0-9]+",


def demo_params(wildcards):
    """Everything that decides the simulated logs of one run."""
    return {**config["demo"], "game": wildcards.game, "run": int(wildcards.run)}


# The simulated logs are keyed by the demo settings and laid out like the bucket below the key.
DEMO_KEY = artifact_key(config["demo"], code=CODE["demo"])


def demo_dir(game, run):
    return f"resources/demo/{DEMO_KEY}/{game}/{run}/replay_logs"


def source_description():
    """What the fetch rule fetches from; part of its params, so a new source refetches."""
    if SOURCE["kind"] == "demo":
        return {"kind": "demo"}
    keep = {"gcs": ("bucket", "prefix", "endpoint"), "https": ("url",), "local": ("path",)}
    return {"kind": SOURCE["kind"], **{k: SOURCE[k] for k in keep[SOURCE["kind"]]}}


def replay_files(game, run, buffer):
    """The six files of a checkpoint (`buffer` may be the "{buffer}" wildcard itself)."""
    folder = f"resources/replay/{game}/{run}/replay_logs"
    return [f"{folder}/{file_name(kind, buffer)}" for kind in FILE_KINDS]


def fetch_inputs(wildcards):
    if SOURCE["kind"] == "demo":
        return {"demo": demo_dir(wildcards.game, wildcards.run)}
    return {}


def convert_inputs(wildcards):
    """The checkpoint's own files and those of its neighbours that the config ingests."""
    number = int(wildcards.buffer)
    inputs = {"own": replay_files(wildcards.game, wildcards.run, number)}
    if number - 1 in BUFFERS:
        inputs["previous"] = replay_files(wildcards.game, wildcards.run, number - 1)
    if number + 1 in BUFFERS:
        inputs["following"] = replay_files(wildcards.game, wildcards.run, number + 1)
    return inputs


def replay_targets():
    return [f"results/{game}/replay/run{run}/summary.json" for game in GAMES for run in RUNS] + [
        f"resources/replay/{game}/{run}/manifest.json" for game in GAMES for run in RUNS
    ]
