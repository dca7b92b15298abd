"""Configuration: defaults from the JSON schema, validation with one clear sentence per error."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fdt.credentials import FROM_THE_ENVIRONMENT, find_credentials
from fdt.games import UnknownGameError, check_game, mining_games
from fdt.replay.dopamine import PADDING_ROWS, number_ranges
from fdt.settings import SCHEMA_PATH, load_schema


class ConfigError(ValueError):
    pass


def _fill_defaults(schema: Mapping[str, Any], value: dict[str, Any]) -> None:
    """Set every missing property that has a default, recursively into objects."""
    for name, sub in schema.get("properties", {}).items():
        if name not in value and "default" in sub:
            value[name] = copy.deepcopy(sub["default"])
        if isinstance(value.get(name), dict) and sub.get("type") == "object":
            _fill_defaults(sub, value[name])


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def parse_buffers(spec: list[int] | str) -> list[int]:
    """Checkpoint numbers from a list or a "first-last" range string, sorted and unique."""
    if isinstance(spec, str):
        try:
            first, last = (int(x) for x in spec.split("-"))
        except ValueError:
            raise ConfigError(f"config error at buffers: {spec!r} is not a range such as "
                              "'0-49' (or give a list)") from None
        if last < first:
            raise ConfigError(f"config error at buffers: range {spec!r} ends before it starts")
        return list(range(first, last + 1))
    return sorted(set(spec))


def validate_config(raw: Mapping[str, Any], origin: str = "config",
                    schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Return the config with defaults filled in, or raise ConfigError naming the key at fault."""
    config = copy.deepcopy(dict(raw))
    _check_credentials(config, origin)  # first: later messages may quote the values
    schema = load_schema(schema_path)
    _fill_defaults(schema, config)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config),
                    key=lambda e: list(e.absolute_path))
    if errors:
        first = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"config error in {origin} at {_where(first)}: {first.message}")
    _check_semantics(config, origin)
    return config


def _check_credentials(config: Mapping[str, Any], origin: str) -> None:
    """The config enters params.json and the artifact keys in plain text: refuse a credential
    anywhere in it (a secret option, user:password@ in a URL, ...), naming where, never what."""
    found = find_credentials(config, "")
    if found:
        place, what = found[0]
        raise ConfigError(f"config error in {origin} at {place}: credentials do not belong in the "
                          f"config ({what}; the config enters params.json and the artifact keys). "
                          f"{FROM_THE_ENVIRONMENT}")


def _check_semantics(config: dict[str, Any], origin: str) -> None:
    """Checks a schema cannot express: known games, sources that name where to read from."""
    try:
        for game in config["games"]:
            check_game(game)
    except UnknownGameError as err:
        raise ConfigError(f"config error in {origin} at games: {err}") from None
    buffers = parse_buffers(config["buffers"])
    source = config["source"]
    if source["kind"] in URL_EXAMPLES and not source["url"]:
        raise ConfigError(f"config error in {origin} at source.url: source kind {source['kind']!r} "
                          f"needs a url template such as {URL_EXAMPLES[source['kind']]!r}")
    _check_url(source, "source", origin)
    if source["kind"] == "local" and not source["path"]:
        raise ConfigError(f"config error in {origin} at source.path: source kind 'local' needs the "
                          "folder that holds {Game}/{run}/replay_logs/")
    if source["kind"] == "demo":
        demo = config["demo"]
        available = demo["checkpoints"] + (1 if demo["final_rows"] > 0 else 0)
        missing = [b for b in buffers if b >= available]
        if missing:
            raise ConfigError(
                f"config error in {origin} at buffers: the demo source writes checkpoints "
                f"0..{available - 1} (demo.checkpoints={demo['checkpoints']}, "
                f"demo.final_rows={demo['final_rows']}), but buffers asks for "
                f"{number_ranges(missing)}")
        # An episode must fit in one file so it spans at most two (conversion reads one
        # neighbour on each side), as it does in the real data (27,000 steps << 1,000,000 rows).
        if demo["capacity"] < demo["max_episode_steps"] + PADDING_ROWS + 1:
            raise ConfigError(
                f"config error in {origin} at demo.capacity: {demo['capacity']} rows cannot hold "
                f"one episode of demo.max_episode_steps={demo['max_episode_steps']} plus its "
                f"{PADDING_ROWS} padding rows")
        if demo["final_rows"] >= demo["capacity"]:
            raise ConfigError(f"config error in {origin} at demo.final_rows: must be below "
                              f"demo.capacity ({demo['capacity']})")
    _check_training(config, origin, buffers)
    _check_oracle(config, origin)
    _check_mining_games(config, origin)
    _check_statistics_set(config, origin)
    _check_agents(config, origin, buffers)
    _check_preferences(config, origin)
    _check_retrieval(config, origin)
    missing = [g for g in config["games"] if g not in config["evaluation"]["targets"]]
    if missing:
        raise ConfigError(f"config error in {origin} at evaluation.targets: no target return-to-go "
                          f"for {', '.join(missing)} (e.g. evaluation.targets.{missing[0]}: [...])")


def _check_oracle(config: dict[str, Any], origin: str) -> None:
    """An oracle source must say where its files are."""
    oracle = config["oracle"]
    if "fdt" not in config["models"]:
        return
    _check_teacher_kind(config, origin)
    kind = oracle["base"] if oracle["kind"] in ("human", "synthetic") else oracle["kind"]
    if kind == "demo" and config["source"]["kind"] != "demo":
        raise ConfigError(f"config error in {origin} at oracle.kind: oracle kind 'demo' labels with "
                          "the demo simulator's scripted controller, which only source kind "
                          f"'demo' records; source.kind is {config['source']['kind']!r} (use "
                          "oracle kind offline, dopamine, published or agent for it)")
    if kind == "published" and not oracle["labels_path"]:
        raise ConfigError(f"config error in {origin} at oracle.labels_path: oracle kind "
                          "'published' needs the folder holding {Game}/{run}/"
                          "$store$_feedback_ckpt.N.gz")
    if kind == "agent" and oracle["agent"]["name"] not in agent_names():
        raise ConfigError(f"config error in {origin} at oracle.agent.name: "
                          f"{oracle['agent']['name']!r} is not an offline agent (one of "
                          f"{', '.join(agent_names())})")
    source = oracle["source"]
    if kind == "dopamine" and source["kind"] in ("https", "fsspec", "local"):
        needed = "path" if source["kind"] == "local" else "url"
        if not source[needed]:
            raise ConfigError(f"config error in {origin} at oracle.source.{needed}: oracle source "
                              f"kind {source['kind']!r} needs it")
        _check_url(source, "oracle.source", origin)


def _check_teacher_kind(config: Mapping[str, Any], origin: str) -> None:
    """Human labels need one answers file per (game, seed); people need queries to answer."""
    oracle = config["oracle"]
    if oracle["kind"] != "human":
        return
    if config["teacher"]["queries"] == 0:
        raise ConfigError(f"config error in {origin} at teacher.queries: oracle kind 'human' "
                          "labels the query bundle's states, and teacher.queries is 0 (no bundle)")
    answers = oracle["human"]["answers"]
    missing = [name for name in ("{game}", "{seed}") if name not in answers]
    if missing:
        raise ConfigError(f"config error in {origin} at oracle.human.answers: {answers!r} must "
                          f"name {' and '.join(missing)} (one answers file per query bundle, e.g. "
                          "'feedback/{game}/seed{seed}/answers.sqlite')")


URL_EXAMPLES = {"https": "https://host/dqn/{game}/{run}/replay_logs/{name}",
                "fsspec": "s3://bucket/dqn/{game}/{run}/replay_logs/{name}"}


def _check_url(source: Mapping[str, Any], where: str, origin: str) -> None:
    """A mirror's url template (and an fsspec URL's protocol and storage options) is checked now,
    not by a KeyError in the fetch job."""
    options = source.get("storage_options") or {}
    if options and source["kind"] != "fsspec":
        raise ConfigError(f"config error in {origin} at {where}.storage_options: only source kind "
                          f"'fsspec' reads it, and {where}.kind is {source['kind']!r}")
    if source["kind"] not in URL_EXAMPLES or not source.get("url"):
        return
    from fdt.replay.sources import check_fsspec_url, check_url_template

    check = check_fsspec_url if source["kind"] == "fsspec" else check_url_template
    try:
        check(source["url"])
    except ValueError as err:
        raise ConfigError(f"config error in {origin} at {where}.url: {err}") from None


def _check_mining_games(config: dict[str, Any], origin: str) -> None:
    """FDT mines every game's important states, which needs the game's allowed-step detector:
    refuse a game without one here, before any job runs."""
    if "fdt" not in config["models"]:
        return
    supported = mining_games()
    missing = [g for g in config["games"] if g not in supported]
    if missing:
        raise ConfigError(f"config error in {origin} at games: no allowed-step detector for "
                          f"{', '.join(missing)}, so FDT cannot mine its important states "
                          f"(mining supports {', '.join(supported)}; without fdt in models, "
                          "DT and BC train on any game)")


def _check_statistics_set(config: dict[str, Any], origin: str) -> None:
    """The statistics set starts as the training set (its run, its rows first) and must not
    run past the runs it lists (mining runs only for FDT)."""
    if "fdt" not in config["models"]:
        return
    mining, dataset = config["mining"], config["dataset"]
    if mining["runs"][0] != dataset["run"]:
        raise ConfigError(f"config error in {origin} at mining.runs: the statistics set starts in "
                          f"the training set's run (dataset.run = {dataset['run']}), so "
                          f"{mining['runs']} must begin with it")
    if mining["random_rows"] < dataset["transitions"]:
        raise ConfigError(f"config error in {origin} at mining.random_rows: {mining['random_rows']} "
                          f"is below dataset.transitions ({dataset['transitions']}), so the "
                          "statistics set's first rows would not be the training set's")
    reach = mining["rows_per_run"] * len(mining["runs"])
    if mining["transitions"] > reach:
        raise ConfigError(f"config error in {origin} at mining.runs: {mining['transitions']} rows "
                          f"(mining.transitions) go past {len(mining['runs'])} run(s) of "
                          f"{mining['rows_per_run']} rows (mining.rows_per_run); list the next run")


def _check_training(config: dict[str, Any], origin: str, buffers: list[int]) -> None:
    """The training set must draw from ingested, complete checkpoints; sizes must fit."""
    dataset, train = config["dataset"], config["train"]
    if dataset["run"] not in config["runs"]:
        raise ConfigError(f"config error in {origin} at dataset.run: run {dataset['run']} is not "
                          f"among runs {config['runs']}")
    drawn = list(range(dataset["buffers_end"] - dataset["num_buffers"], dataset["buffers_end"]))
    if drawn[0] < 0:
        raise ConfigError(f"config error in {origin} at dataset.num_buffers: "
                          f"{dataset['num_buffers']} buffers cannot end at buffers_end "
                          f"{dataset['buffers_end']}")
    missing = sorted(set(drawn) - set(buffers))
    if missing:
        raise ConfigError(f"config error in {origin} at dataset.buffers_end: the training set draws "
                          f"from checkpoints {drawn[0]}..{drawn[-1]}, but buffers does not ingest "
                          f"{number_ranges(missing)}")
    if config["source"]["kind"] == "demo":
        demo = config["demo"]
        if dataset["buffers_end"] > demo["checkpoints"]:
            raise ConfigError(f"config error in {origin} at dataset.buffers_end: the demo writes "
                              f"complete checkpoints 0..{demo['checkpoints'] - 1} only")
        capacities = [dataset["capacity"]] + [o["capacity"] for o in dataset["capacity_overrides"]]
        if max(capacities) > demo["capacity"]:
            raise ConfigError(f"config error in {origin} at dataset.capacity: {max(capacities)} "
                              f"slots per buffer, but demo files hold {demo['capacity']}")
    for game in train["game_overrides"]:
        if game not in config["games"]:
            raise ConfigError(f"config error in {origin} at train.game_overrides.{game}: not one "
                              f"of games {config['games']}")
    if train["n_embd"] % train["n_head"]:
        raise ConfigError(f"config error in {origin} at train.n_embd: {train['n_embd']} is not a "
                          f"multiple of train.n_head ({train['n_head']})")


def agent_names(schema_path: Path = SCHEMA_PATH) -> list[str]:
    """The agents the workflow can train: the sections of the schema's `agents` that hold
    hyperparameters (fdt.agents.registry implements exactly these)."""
    sections = load_schema(schema_path)["properties"]["agents"]["properties"]
    return [name for name, spec in sections.items()
            if "learning_rate" in spec.get("properties", {})]


def _check_agents(config: dict[str, Any], origin: str, buffers: list[int]) -> None:
    """batch_rl's agents: known names, a data fraction in (0, 1], enough checkpoints per
    iteration, evaluations within the run (checked before any job)."""
    agents = config["agents"]
    if not agents["names"]:
        return
    known = agent_names()
    for name in agents["names"]:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"config error in {origin} at agents.names: unknown agent {name!r}"
                              f"{hint}; the agents are {', '.join(known)}")
    fraction = agents["data_fraction"]
    if not 0 < fraction <= 1:
        raise ConfigError(f"config error in {origin} at agents.data_fraction: {fraction} is "
                          "outside (0, 1] (the share of each checkpoint's transitions used)")
    if agents["data"] == "training_set" and fraction != 1:
        raise ConfigError(f"config error in {origin} at agents.data_fraction: {fraction} applies "
                          "to data batch_rl only; training_set uses the training set as it is")
    run = agents["run"] if agents["run"] is not None else config["dataset"]["run"]
    if agents["data"] == "batch_rl":
        if run not in config["runs"]:
            raise ConfigError(f"config error in {origin} at agents.run: run {run} is not among "
                              f"runs {config['runs']}")
        wanted = agents["checkpoints_per_iteration"]
        if wanted > len(buffers):
            raise ConfigError(
                f"config error in {origin} at agents.checkpoints_per_iteration: an iteration loads "
                f"{wanted} checkpoints, but run {run} has {len(buffers)} "
                f"(buffers: {number_ranges(buffers)})")
    late = [i for i in agents["evaluate_after"] or [] if i > agents["iterations"]]
    if late:
        raise ConfigError(f"config error in {origin} at agents.evaluate_after: iteration {late[0]} "
                          f"is past agents.iterations ({agents['iterations']})")


def _check_retrieval(config: Mapping[str, Any], origin: str) -> None:
    """RA-DT's settings that only make sense together (fdt.retrieval)."""
    if "radt" not in config["models"]:
        return
    r = config["retrieval"]
    for top_k in ("top_k", "eval_top_k"):  # training's candidates, evaluation's
        if r["reweight_top_k"] > r[top_k]:
            raise ConfigError(f"config error in {origin} at retrieval.reweight_top_k: keeps "
                              f"{r['reweight_top_k']} of retrieval.{top_k} = {r[top_k]} "
                              f"candidates; it must not exceed {top_k}")
    for game in config["games"]:
        context = train_settings(config, game)["context_length"]
        if (r["subtrajectory_length"] or context) > context:
            raise ConfigError(f"config error in {origin} at retrieval.subtrajectory_length: "
                              f"{r['subtrajectory_length']}-step sub-trajectories do not fit "
                              f"{game}'s context length {context} (RA-DT's cache_steps is at "
                              "most its max_length)")


def _check_preferences(config: Mapping[str, Any], origin: str) -> None:
    """dt_pref's settings that only make sense together (fdt.preferences)."""
    if "dt_pref" not in config["models"]:
        return
    p = config["preferences"]
    where = f"config error in {origin} at preferences"
    if p["reward_model"]["loss"] == "ordinal" and p["mode"] != "tree":
        raise ConfigError(f"{where}.reward_model.loss: the ordinal loss regresses on the sort "
                          f"tree's order, but preferences.mode is {p['mode']!r} (use mode: tree, "
                          "or loss: bradley_terry)")
    if p["source"] == "file":
        if not p["file"] or not Path(p["file"]).is_file():
            raise ConfigError(f"{where}.file: source 'file' needs the comparisons JSON the "
                              f"feedback app exported; {p['file']!r} is not a file")
        if len(config["seeds"]) != 1:
            raise ConfigError(f"{where}.file: a comparisons file answers one seed's clip bundle, "
                              f"but seeds has {len(config['seeds'])} ({config['seeds']})")
    low = [b for b in [p["budget"], *p["sweep"]] if b < p["min_comparisons"]]
    if low:
        raise ConfigError(f"{where}.budget: budgets {low} are below preferences.min_comparisons "
                          f"({p['min_comparisons']}): too few comparisons for a reward model")
    training_clips = p["clips"] - round(p["heldout_fraction"] * p["clips"])
    if training_clips < 2:
        raise ConfigError(f"{where}.clips: {p['clips']} clips leave {training_clips} to learn from "
                          f"after holding out {p['heldout_fraction']:g} of them")


def train_settings(config: Mapping[str, Any], game: str) -> dict[str, Any]:
    """The train section with the game's overrides applied (game_overrides itself removed)."""
    settings = {k: v for k, v in config["train"].items() if k != "game_overrides"}
    settings.update(config["train"]["game_overrides"].get(game, {}))
    return settings


def dataset_capacity(config: Mapping[str, Any], game: str, seed: int) -> int:
    """Slots read per buffer for (game, seed): the reference reads more for Pong, seed 512."""
    for override in config["dataset"]["capacity_overrides"]:
        if override["game"] == game and override["seed"] == seed:
            return int(override["capacity"])
    return int(config["dataset"]["capacity"])


def load_config(path: str | Path) -> dict[str, Any]:
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    return validate_config(raw, origin=str(path))


def episode_cap(config: Mapping[str, Any]) -> int:
    """The agent-step cap the configured source's data was collected with."""
    if config["source"]["kind"] == "demo":
        return int(config["demo"]["max_episode_steps"])
    return int(config["replay"]["max_episode_steps"])
