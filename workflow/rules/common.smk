# Validation of the config, artifact keys and input functions shared by the rules.

import fdt.config
import fdt.plan
import fdt.mining.stage
from fdt.oracle.checkpoints import agent_checkpoint_names
from fdt.replay.dopamine import FILE_KINDS, FULL_CAPACITY, file_name
from fdt.dataset.training_set import ARRAYS as TRAINING_SET_ARRAYS
from fdt.keys import artifact_key

config = fdt.config.validate_config(config, origin="the workflow config")
GAMES = config["games"]
RUNS = config["runs"]
BUFFERS = fdt.config.parse_buffers(config["buffers"])
SOURCE = config["source"]
EPISODE_CAP = fdt.config.episode_cap(config)

# Library code each stage runs, from its scripts' imports: editing a module makes exactly the
# stages that import it stale (via params).
CODE = fdt.plan.code_versions()
ORACLE = config["oracle"]
SEEDS = config["seeds"]
MODELS = config["models"]
DATASET = config["dataset"]
# What the trainer is told about the machine: not part of any key (the weights' recipe).
RUN_SETTINGS = ("device", "precision", "compile", "threads", "log_every")


wildcard_constraints:
    game="[A-Za-z]+",
    run="[0-9]+",
    buffer="[0-9]+",
    seed="[0-9]+",
    key="[0-9a-f]+",
    model="dt|bc|fdt",


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
    keep = {
        "gcs": ("bucket", "prefix", "endpoint"),
        "https": ("url",),
        "local": ("path",),
    }
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
    return [
        f"results/{game}/replay/run{run}/summary.json" for game in GAMES for run in RUNS
    ] + [
        f"resources/replay/{game}/{run}/manifest.json" for game in GAMES for run in RUNS
    ]


# --- training set and training -------------------------------------------------------------


def replay_key():
    """What decides the converted transitions: the source, its step cap, the conversion code."""
    source = {
        **source_description(),
        "demo": DEMO_KEY if SOURCE["kind"] == "demo" else None,
    }
    return artifact_key(
        {"source": source, "episode_cap": EPISODE_CAP}, code=CODE["convert"]
    )


def dataset_params(game):
    """Sampling parameters shared by every seed of a game (a seed's capacity may differ)."""
    overrides = [o for o in DATASET["capacity_overrides"] if o["game"] == game]
    return {
        "game": game,
        "mode": DATASET["mode"],
        "run": DATASET["run"],
        "num_buffers": DATASET["num_buffers"],
        "buffers_end": DATASET["buffers_end"],
        "capacity": DATASET["capacity"],
        "capacity_overrides": overrides,
        "transitions": DATASET["transitions"],
        "trajectories_per_visit": DATASET["trajectories_per_visit"],
        "context_length": fdt.config.train_settings(config, game)["context_length"],
    }


def dataset_key(game):
    return artifact_key(dataset_params(game), [replay_key()], code=CODE["dataset"])


def train_params(game, model):
    """What decides a model's weights for a game (the seed is the folder below the key)."""
    settings = fdt.config.train_settings(config, game)
    params = {
        "model": model,
        **{k: v for k, v in settings.items() if k not in RUN_SETTINGS},
    }
    if model == "fdt":
        params.update(
            budget=config["fdt"]["budget"], feedback_lambda=config["fdt"]["lambda"]
        )
    return params


def run_settings(game):
    settings = fdt.config.train_settings(config, game)
    return {k: settings[k] for k in RUN_SETTINGS}


def model_key(game, model):
    inputs = [dataset_key(game)] + ([labels_key(game)] if model == "fdt" else [])
    return artifact_key(train_params(game, model), inputs, code=CODE["train"])


def expect_key(found, wanted, what):
    """A folder key in a requested path must be the current config's: old folders stay as
    they are and are found again when the config changes back."""
    if found != wanted:
        raise ValueError(
            f"{what}: key {found} is not the current config's ({wanted}); old "
            "folders are kept but only the current config's are built"
        )


def dataset_dir(game, seed, key=None):
    return f"results/{game}/dataset/{key or dataset_key(game)}/seed{seed}"


def model_dir(game, model, seed, key=None):
    return f"results/{game}/models/{model}/{key or model_key(game, model)}/seed{seed}"


def training_set_inputs(wildcards):
    expect_key(
        wildcards.key, dataset_key(wildcards.game), f"training set of {wildcards.game}"
    )
    end, count = DATASET["buffers_end"], DATASET["num_buffers"]
    return {
        "buffers": [
            f"results/{wildcards.game}/replay/run{DATASET['run']}/buffer{b}.parquet"
            for b in range(end - count, end)
        ]
    }


def train_inputs(wildcards):
    game, model = wildcards.game, wildcards.model
    expect_key(wildcards.key, model_key(game, model), f"{model} model of {game}")
    folder = dataset_dir(game, wildcards.seed)
    inputs = {
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }
    if model == "fdt":
        inputs["labels"] = f"{labels_dir(game, wildcards.seed)}/labels.parquet"
    return inputs


def training_set_arrays(folder):
    return [f"{folder}/{name}.npy" for name in TRAINING_SET_ARRAYS]


def model_targets():
    return [
        f"{model_dir(game, model, seed)}/metrics.json"
        for game in GAMES
        for model in MODELS
        for seed in SEEDS
    ]


# --- important-state mining ------------------------------------------------------------------


def mining_params(game):
    """What decides the mined states of a game (the seed's training set is an input); the
    checkpoints ingested, since mining skips the others as missing."""
    return {
        "game": game,
        **{k: v for k, v in config["mining"].items() if k != "spare_buffers"},
        "run": DATASET["run"],
        "num_buffers": DATASET["num_buffers"],
        "buffers_end": DATASET["buffers_end"],
        "context_length": fdt.config.train_settings(config, game)["context_length"],
        "checkpoints": BUFFERS,
    }


def mining_key(game):
    return artifact_key(mining_params(game), [dataset_key(game)], code=CODE["mine"])


def states_dir(game, seed, key=None):
    return f"results/{game}/states/{key or mining_key(game)}/seed{seed}"


def replay_file_capacity():
    """Rows per replay file of the configured source (for planning only)."""
    if SOURCE["kind"] == "demo":
        return config["demo"]["capacity"]
    return FULL_CAPACITY


def mining_buffers(game):
    """The converted checkpoints the statistics set may read, of every run it reads (past the
    training set's buffers an estimate: fdt.mining.stage.planned_checkpoints)."""
    settings = {**mining_params(game), "spare_buffers": config["mining"]["spare_buffers"]}
    planned = fdt.mining.stage.planned_checkpoints(
        fdt.mining.stage.MiningParams.from_settings(settings, seed=0), replay_file_capacity()
    )
    return [
        f"results/{game}/replay/run{run}/buffer{b}.parquet"
        for run, numbers in planned.items()
        for b in numbers
    ]


def mining_inputs(wildcards):
    expect_key(
        wildcards.key, mining_key(wildcards.game), f"mined states of {wildcards.game}"
    )
    folder = dataset_dir(wildcards.game, wildcards.seed)
    return {
        "buffers": mining_buffers(wildcards.game),
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }


def states_targets():
    """Mined states feed FDT only (its labels); the config check refuses an fdt run on a game
    without an allowed-step detector."""
    if "fdt" not in MODELS:
        return []
    return [f"{states_dir(game, seed)}/counts.json" for game in GAMES for seed in SEEDS]


# --- the oracle and its labels -------------------------------------------------------------


def training_buffers(game):
    end, count = DATASET["buffers_end"], DATASET["num_buffers"]
    return [
        f"results/{game}/replay/run{DATASET['run']}/buffer{b}.parquet"
        for b in range(end - count, end)
    ]


def oracle_params(game):
    """What decides the oracle of a game, by its kind."""
    kind = ORACLE["kind"]
    if kind == "offline":
        offline = {
            k: v
            for k, v in ORACLE["offline"].items()
            if k not in ("device", "checkpoint_every")
        }
        return {
            "kind": kind,
            "game": game,
            "run": DATASET["run"],
            "num_buffers": DATASET["num_buffers"],
            "buffers_end": DATASET["buffers_end"],
            **offline,
        }
    if kind == "dopamine":
        source = {
            k: ORACLE["source"][k] for k in ("kind", "bucket", "prefix", "url", "path")
        }
        return {
            "kind": kind,
            "game": game,
            "run": ORACLE["run"],
            "checkpoint": ORACLE["checkpoint"],
            "format": ORACLE["format"],
            "source": source,
        }
    return {"kind": kind, "game": game, "labels_path": ORACLE["labels_path"]}


def oracle_key(game):
    inputs = [replay_key()] if ORACLE["kind"] == "offline" else []
    code = CODE["oracle"] if ORACLE["kind"] == "offline" else CODE["fetch_oracle"]
    return artifact_key(oracle_params(game), inputs, code=code)


def oracle_dir(game, key=None):
    return f"results/{game}/oracle/{key or oracle_key(game)}"


def dopamine_checkpoint_dir(game):
    return f"resources/oracle/{game}/{ORACLE['run']}/c51"


def oracle_network_files(game):
    """The files a network oracle is loaded from (none for published labels)."""
    if ORACLE["kind"] == "offline":
        return [f"{oracle_dir(game)}/oracle.pt"]
    if ORACLE["kind"] == "dopamine":
        names = agent_checkpoint_names(ORACLE["format"], ORACLE["checkpoint"])
        return [f"{dopamine_checkpoint_dir(game)}/{name}" for name in names]
    return []


def label_params():
    return {k: v for k, v in config["labels"].items() if k != "device"}


def labels_key(game):
    inputs = [oracle_key(game), mining_key(game)]
    return artifact_key(label_params(), inputs, code=CODE["label"])


def labels_dir(game, seed, key=None):
    return f"results/{game}/labels/{key or labels_key(game)}/seed{seed}"


def published_label_files(game):
    """The authors' label files of the training buffers, one per replay checkpoint."""
    end, count = DATASET["buffers_end"], DATASET["num_buffers"]
    folder = f"{ORACLE['labels_path']}/{game}/{DATASET['run']}"
    return [f"{folder}/$store$_feedback_ckpt.{b}.gz" for b in range(end - count, end)]


def label_inputs(wildcards):
    game = wildcards.game
    expect_key(wildcards.key, labels_key(game), f"labels of {game}")
    folder = dataset_dir(game, wildcards.seed)
    inputs = {
        "states": f"{states_dir(game, wildcards.seed)}/states.parquet",
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
        "oracle": oracle_network_files(game),
    }
    if ORACLE["kind"] == "published":
        inputs["published"] = published_label_files(game)
        inputs["buffers"] = training_buffers(game)
    return inputs


def oracle_targets():
    """The oracle's own evaluation, where the oracle is a network."""
    if "fdt" not in MODELS or ORACLE["kind"] == "published":
        return []
    return [f"{oracle_dir(game)}/evaluation.json" for game in GAMES]


def labels_targets():
    if "fdt" not in MODELS:
        return []
    return [
        f"{labels_dir(game, seed)}/agreement.json" for game in GAMES for seed in SEEDS
    ]


# --- evaluation and the report ---------------------------------------------------------------

EVALUATION = config["evaluation"]
EVAL_RUN_SETTINGS = ("envs", "workers", "device")  # how to run, not what is measured


def eval_params(game):
    """What decides a model's evaluation results for a game."""
    params = {
        k: v for k, v in EVALUATION.items() if k not in EVAL_RUN_SETTINGS + ("targets",)
    }
    return {**params, "game": game, "targets": EVALUATION["targets"][game]}


def eval_key(game, model):
    return artifact_key(
        eval_params(game), [model_key(game, model)], code=CODE["evaluate"]
    )


def eval_dir(game, model, seed, key=None):
    return f"results/{game}/eval/{model}/{key or eval_key(game, model)}/seed{seed}"


def eval_inputs(wildcards):
    game, model = wildcards.game, wildcards.model
    expect_key(wildcards.key, eval_key(game, model), f"evaluation of {model} on {game}")
    return {"model": f"{model_dir(game, model, wildcards.seed)}/model.pt"}


def eval_episode_files():
    return [
        f"{eval_dir(game, model, seed)}/episodes.parquet"
        for game in GAMES
        for model in MODELS
        for seed in SEEDS
    ]


def report_params():
    return {
        "games": GAMES,
        "models": MODELS,
        "seeds": SEEDS,
        "setups": EVALUATION["setups"],
    }


def report_input_keys():
    keys = [eval_key(game, model) for game in GAMES for model in MODELS]
    return keys + ([oracle_key(game) for game in GAMES] if oracle_targets() else [])


def report_key():
    """The report is keyed by what it gathers: changing a value back finds the old one."""
    return artifact_key(report_params(), report_input_keys(), code=CODE["report"])


def report_dir(key=None):
    return f"results/report/{key or report_key()}"


def report_inputs(wildcards):
    expect_key(wildcards.key, report_key(), "report")
    inputs = {"episodes": eval_episode_files()}
    oracles = oracle_targets()
    if oracles:
        inputs["oracle"] = oracles
    return inputs
