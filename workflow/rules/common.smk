# Config validation, then the input functions and paths the rules share. What decides each
# folder (its params, input keys and key) is planned in Python: fdt.plan.StagePlan.

import fdt.config
import fdt.plan
from fdt.dataset.training_set import ARRAYS as TRAINING_SET_ARRAYS
from fdt.mining.stage import MiningParams, planned_checkpoints
from fdt.oracle.checkpoints import agent_checkpoint_names
from fdt.replay.dopamine import FILE_KINDS, FULL_CAPACITY, file_name
from fdt.settings import params_from

config = fdt.config.validate_config(config, origin="the workflow config")
PLAN = fdt.plan.StagePlan(config)
CODE = PLAN.code
GAMES = config["games"]
RUNS = config["runs"]
BUFFERS = fdt.config.parse_buffers(config["buffers"])
SOURCE = config["source"]
EPISODE_CAP = fdt.config.episode_cap(config)
ORACLE = config["oracle"]
ORACLE_KIND = PLAN.oracle_kind()  # human and synthetic labels stand on this oracle
SEEDS = config["seeds"]
MODELS = config["models"]
DATASET = config["dataset"]
EVALUATION = config["evaluation"]


wildcard_constraints:
    game="[A-Za-z]+",
    run="[0-9]+",
    buffer="[0-9]+",
    seed="[0-9]+",
    key="[0-9a-f]+",
    model="dt|bc|fdt",


def expect_key(found, wanted, what):
    """A folder key in a requested path must be the current config's: old folders stay as
    they are and are found again when the config changes back."""
    if found != wanted:
        raise ValueError(
            f"{what}: key {found} is not the current config's ({wanted}); old "
            "folders are kept but only the current config's are built"
        )


# --- replay ------------------------------------------------------------------------------------


def demo_params(wildcards):
    """Everything that decides the simulated logs of one run."""
    return {**config["demo"], "game": wildcards.game, "run": int(wildcards.run)}


def demo_dir(game, run):
    """The simulated logs are keyed by the demo settings, laid out like the bucket below."""
    return f"resources/demo/{PLAN.demo().key}/{game}/{run}/replay_logs"


def replay_files(game, run, buffer):
    """The six files of a checkpoint (`buffer` may be the "{buffer}" wildcard itself)."""
    folder = f"resources/replay/{game}/{run}/replay_logs"
    return [f"{folder}/{file_name(kind, buffer)}" for kind in FILE_KINDS]


def converted_buffers(game, run, numbers):
    return [f"results/{game}/replay/run{run}/buffer{b}.parquet" for b in numbers]


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


def training_buffers(game):
    """The converted checkpoints the training set draws from (written once, used thrice)."""
    return converted_buffers(game, DATASET["run"], PLAN.training_buffers())


def dataset_dir(game, seed, key=None):
    return f"results/{game}/dataset/{key or PLAN.dataset(game).key}/seed{seed}"


def model_dir(game, model, seed, key=None):
    return (
        f"results/{game}/models/{model}/{key or PLAN.model(game, model).key}/seed{seed}"
    )


def training_set_arrays(folder):
    return [f"{folder}/{name}.npy" for name in TRAINING_SET_ARRAYS]


def fdt_budget_of(game, key, stage, what):
    """The FDT budget whose folder key this is (fdt.budget and fdt.sweep share the rules)."""
    for budget in PLAN.fdt_budgets():
        if stage(game, "fdt", budget).key == key:
            return budget
    raise ValueError(
        f"{what}: key {key} is not the current config's for any FDT budget "
        f"({PLAN.fdt_budgets()}); old folders are kept but only the current config's are built"
    )


def model_stage(wildcards):
    """The planned stage of a model folder (for FDT, of the budget its key was planned for)."""
    game, model = wildcards.game, wildcards.model
    if model == "fdt":
        what = f"fdt model of {game}"
        return PLAN.model(
            game, model, fdt_budget_of(game, wildcards.key, PLAN.model, what)
        )
    expect_key(wildcards.key, PLAN.model(game, model).key, f"{model} model of {game}")
    return PLAN.model(game, model)


def eval_stage(wildcards):
    """The planned stage of an evaluation folder (for FDT, of its budget)."""
    game, model = wildcards.game, wildcards.model
    if model == "fdt":
        what = f"evaluation of fdt on {game}"
        budget = fdt_budget_of(game, wildcards.key, PLAN.evaluation, what)
        return PLAN.evaluation(game, model, budget)
    expect_key(
        wildcards.key,
        PLAN.evaluation(game, model).key,
        f"evaluation of {model} on {game}",
    )
    return PLAN.evaluation(game, model)


def training_set_inputs(wildcards):
    game = wildcards.game
    expect_key(wildcards.key, PLAN.dataset(game).key, f"training set of {game}")
    return {"buffers": training_buffers(game)}


def train_inputs(wildcards):
    game, model = wildcards.game, wildcards.model
    model_stage(wildcards)  # the key must be the current config's (a budget's, for FDT)
    folder = dataset_dir(game, wildcards.seed)
    inputs = {
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
    }
    if model == "fdt":
        inputs["labels"] = fdt_labels_file(game, wildcards.seed)  # teacher.smk
    return inputs


def model_targets():
    return [
        f"{model_dir(game, model, seed)}/metrics.json"
        for game in GAMES
        for model in MODELS
        for seed in SEEDS
    ]


# --- important-state mining ------------------------------------------------------------------


def states_dir(game, seed, key=None):
    return f"results/{game}/states/{key or PLAN.mining(game).key}/seed{seed}"


def replay_file_capacity():
    """Rows per replay file of the configured source (for planning only)."""
    if SOURCE["kind"] == "demo":
        return config["demo"]["capacity"]
    return FULL_CAPACITY


def mining_buffers(game):
    """The converted checkpoints the statistics set may read, of every run it reads (past the
    training set's buffers an estimate: fdt.mining.stage.planned_checkpoints)."""
    settings = {
        **PLAN.mining(game).params,
        "spare_buffers": config["mining"]["spare_buffers"],
    }
    planned = planned_checkpoints(
        params_from(MiningParams, settings, seed=0), replay_file_capacity()
    )
    return [
        path
        for run, numbers in planned.items()
        for path in converted_buffers(game, run, numbers)
    ]


def mining_inputs(wildcards):
    game = wildcards.game
    expect_key(wildcards.key, PLAN.mining(game).key, f"mined states of {game}")
    folder = dataset_dir(game, wildcards.seed)
    return {
        "buffers": mining_buffers(game),
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


def oracle_dir(game, key=None):
    return f"results/{game}/oracle/{key or PLAN.oracle(game).key}"


def dopamine_checkpoint_dir(game):
    return f"resources/oracle/{game}/{ORACLE['run']}/c51"


def oracle_network_files(game):
    """The files a network oracle is loaded from (none for published labels or the demo's
    controller)."""
    if ORACLE_KIND == "offline":
        return [f"{oracle_dir(game)}/oracle.pt"]
    if ORACLE_KIND == "dopamine":
        names = agent_checkpoint_names(ORACLE["format"], ORACLE["checkpoint"])
        return [f"{dopamine_checkpoint_dir(game)}/{name}" for name in names]
    if ORACLE_KIND == "agent":
        # an offline agent, trained by the agents' rules (agents_common.smk)
        agent = ORACLE["agent"]
        return [f"{agent_dir(game, agent['name'], agent['seed'])}/agent.pt"]
    return []


def labels_dir(game, seed, key=None):
    return f"results/{game}/labels/{key or PLAN.labels(game).key}/seed{seed}"


def published_label_files(game):
    """The authors' label files of the training buffers, one per replay checkpoint."""
    folder = f"{ORACLE['labels_path']}/{game}/{DATASET['run']}"
    return [f"{folder}/$store$_feedback_ckpt.{b}.gz" for b in PLAN.training_buffers()]


def label_inputs(wildcards):
    game = wildcards.game
    expect_key(wildcards.key, PLAN.labels(game).key, f"labels of {game}")
    folder = dataset_dir(game, wildcards.seed)
    inputs = {
        "states": f"{states_dir(game, wildcards.seed)}/states.parquet",
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
        "oracle": oracle_network_files(game),
    }
    if ORACLE_KIND == "published":
        inputs["published"] = published_label_files(game)
        inputs["buffers"] = training_buffers(game)
    # the controller's actions, recorded beside the demo's logs
    if ORACLE_KIND == "demo":
        inputs["demo"] = demo_dir(game, DATASET["run"])
    return inputs


def oracle_targets():
    """The oracle's own evaluation, where the oracle is a network."""
    if not PLAN.oracle_is_network():
        return []
    return [f"{oracle_dir(game)}/evaluation.json" for game in GAMES]


def labels_targets():
    if "fdt" not in MODELS:
        return []
    return [
        f"{labels_dir(game, seed)}/agreement.json" for game in GAMES for seed in SEEDS
    ]


# --- evaluation and the report ---------------------------------------------------------------


def eval_dir(game, model, seed, key=None):
    key = key or PLAN.evaluation(game, model).key
    return f"results/{game}/eval/{model}/{key}/seed{seed}"


def eval_inputs(wildcards):
    game, model = wildcards.game, wildcards.model
    stage = eval_stage(wildcards)
    return {
        "model": f"{model_dir(game, model, wildcards.seed, stage.inputs[0])}/model.pt"
    }


def fdt_sweep_budgets():
    """FDT's budgets beyond fdt.budget (fdt.sweep), trained and evaluated beside it."""
    if "fdt" not in MODELS:
        return []
    return [b for b in PLAN.fdt_budgets() if b != config["fdt"]["budget"]]


def eval_episode_files():
    return [
        f"{eval_dir(game, model, seed)}/episodes.parquet"
        for game in GAMES
        for model in MODELS
        for seed in SEEDS
    ] + [
        f"{eval_dir(game, 'fdt', seed, PLAN.evaluation(game, 'fdt', budget).key)}/episodes.parquet"
        for game in GAMES
        for budget in fdt_sweep_budgets()
        for seed in SEEDS
    ]


def report_dir(key=None):
    return f"results/report/{key or PLAN.report().key}"


def random_dir(game, key=None):
    return f"results/{game}/random/{key or PLAN.random_policy(game).key}"


def random_inputs(wildcards):
    expect_key(wildcards.key, PLAN.random_policy(wildcards.game).key, "random policy")
    return {}


def report_context():
    """Where the report finds, per game, what makes its scores readable: the behaviour policy's
    checkpoints, the training curves, and (with FDT) the mined states and the labels."""
    return {
        game: {
            "behaviour": training_buffers(game),
            "random": f"{random_dir(game)}/episodes.parquet",
            "curves": {
                f"{model}/{seed}": f"{model_dir(game, model, seed)}/curve.csv"
                for model in MODELS
                for seed in SEEDS
            },
            "images": (
                [f"{states_dir(game, seed)}/images" for seed in SEEDS]
                if "fdt" in MODELS
                else []
            ),
            "agreement": (
                [f"{labels_dir(game, seed)}/agreement.json" for seed in SEEDS]
                if "fdt" in MODELS
                else []
            ),
        }
        for game in GAMES
    }


def report_inputs(wildcards):
    expect_key(wildcards.key, PLAN.report().key, "report")
    inputs = {"episodes": eval_episode_files()}
    oracles = oracle_targets()
    if oracles:
        inputs["oracle"] = oracles
    context = report_context()
    inputs["context"] = [
        path
        for game in context.values()
        for value in game.values()
        for path in (
            value.values()
            if isinstance(value, dict)
            else value if isinstance(value, list) else [value]
        )
    ]
    return inputs


# --- the HTML report ------------------------------------------------------------------------


def site_sections(wildcards):
    """Every system's section, in the order the page shows them (the systems the config runs:
    fdt.plan.StagePlan.report_sections)."""
    expect_key(wildcards.key, PLAN.site().key, "HTML report")
    folders = {
        "fdt": report_dir,
        "agents": agents_report_dir,
        "teacher": teacher_report_dir,
        "retrieval": retrieval_report_dir,
        "preferences": preferences_report_dir,
        "continuous": continuous_report_dir,
    }
    planned = [f"{folders[system]()}/section.json" for system in PLAN.report_sections()]
    # the grid-world and online systems plan their own keys (fdt.incontext, config online);
    # their sections close the page when the config runs them
    return planned + incontext_report_targets() + online_targets()


def site_target():
    return f"results/report/html/{PLAN.site().key}/index.html"
