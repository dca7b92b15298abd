"""The stage plan: what decides each stage's artifact, and so when it is stale.

A stage's key covers its parameters, its inputs' keys and its code version. The code version is
computed from the `fdt` modules its scripts import, directly or not (fdt.keys.stage_code_version),
never listed by hand: editing a module makes exactly the stages that import it stale, and no
other. `StagePlan` gives every stage's parameters and key for a config; the workflow's rules read
them from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdt.config import episode_cap, parse_buffers, train_settings
from fdt.keys import artifact_key, stage_code_version

SCRIPTS = Path(__file__).resolve().parent.parent / "workflow" / "scripts"

# Stage -> the scripts it runs (a stage's artifacts are keyed by this code).
STAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "demo": ("simulate_demo.py",),
    "fetch": ("fetch_replay.py", "replay_manifest.py"),
    "convert": ("convert_replay.py", "replay_summary.py"),
    "dataset": ("build_training_set.py",),
    "train": ("train_model.py",),
    "mine": ("mine_states.py",),
    "oracle": ("train_oracle.py", "evaluate_oracle.py"),
    "fetch_oracle": ("fetch_oracle.py", "evaluate_oracle.py"),
    "evaluate_oracle": ("evaluate_oracle.py",),
    "label": ("label_states.py",),
    "evaluate": ("evaluate_model.py",),
    "random": ("evaluate_random.py",),
    "report": ("report.py",),
    "agent": ("train_agent.py",),
    "agents_report": ("report_agents.py",),
    "preference_clips": ("pref_clips.py",),
    "preference_comparisons": ("pref_comparisons.py",),
    "preference_reward": ("pref_reward_model.py",),
    "preference_relabel": ("pref_relabel.py",),
    "preferences_report": ("pref_report.py",),
    "memory": ("build_memory.py",),
    "train_radt": ("train_radt.py",),
    "evaluate_radt": ("evaluate_radt.py",),
    "retrieval_report": ("report_retrieval.py",),
    "site": ("report_html.py",),
    "continuous_behaviour": ("continuous_behaviour.py",),
    "continuous_dataset": ("continuous_dataset.py",),
    "continuous_train": ("continuous_train.py",),
    "continuous_report": ("continuous_report.py",),
    "queries": ("build_queries.py",),
    "teacher_labels": ("teacher_labels.py",),
    "teacher_report": ("report_teacher.py",),
}


def code_versions(scripts: Path = SCRIPTS) -> dict[str, str]:
    """Each stage's code version, from the transitive imports of its scripts."""
    return {stage: stage_code_version([scripts / name for name in names])
            for stage, names in STAGE_SCRIPTS.items()}


# --- the stages' keys ---------------------------------------------------------------------------

# What the trainer is told about the machine: not part of any key (the weights' recipe).
TRAIN_RUN_SETTINGS = ("device", "precision", "compile", "threads", "log_every")
EVAL_RUN_SETTINGS = ("envs", "workers", "backend", "device")  # how to run, not what is measured
AGENT_EVAL_RUN_SETTINGS = ("envs", "backend")  # the agents' scoring: likewise
ORACLE_RUN_SETTINGS = ("device", "checkpoint_every")
AGENT_RUN_SETTINGS = ("device", "log_every")  # and evaluation.envs
TEACHER_KINDS = ("human", "synthetic")  # label sources standing in for the oracle's labels
_SOURCE_FIELDS = {"gcs": ("bucket", "prefix", "endpoint"), "https": ("url",), "local": ("path",),
                  "fsspec": ("url", "storage_options")}  # the config holds no credentials


@dataclass(frozen=True)
class Stage:
    """What decides one stage's artifact: its parameters, its inputs' keys and its code."""

    params: dict[str, Any]
    inputs: tuple[str, ...]
    code: str

    @property
    def key(self) -> str:
        return artifact_key(self.params, self.inputs, self.code)


class StagePlan:
    """Every stage's parameters, input keys and key for a validated config, without Snakemake.

    The workflow's rules read their params and folder keys from here, so what makes a folder
    stale is decided (and tested) in one place.
    """

    def __init__(self, config: Mapping[str, Any], code: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.code = dict(code) if code is not None else code_versions()
        self.dataset_section = config["dataset"]
        self.oracle_section = config["oracle"]
        self.evaluation_section = config["evaluation"]

    # --- replay ---
    def demo(self) -> Stage:
        return Stage(dict(self.config["demo"]), (), self.code["demo"])

    def source_description(self) -> dict[str, Any]:
        """What the fetch rule fetches from; part of its params, so a new source refetches."""
        source = self.config["source"]
        if source["kind"] == "demo":
            return {"kind": "demo"}
        return {"kind": source["kind"], **{k: source[k] for k in _SOURCE_FIELDS[source["kind"]]}}

    def replay(self) -> Stage:
        """What decides the converted transitions: the source, its step cap, the conversion code."""
        demo = self.demo().key if self.config["source"]["kind"] == "demo" else None
        return Stage({"source": {**self.source_description(), "demo": demo},
                      "episode_cap": episode_cap(self.config)}, (), self.code["convert"])

    # --- training set and models ---
    def training_buffers(self) -> list[int]:
        """The checkpoints the training set draws from (of run `dataset.run`)."""
        end, count = self.dataset_section["buffers_end"], self.dataset_section["num_buffers"]
        return list(range(end - count, end))

    def dataset(self, game: str) -> Stage:
        """Sampling parameters shared by every seed of a game (a seed's capacity may differ)."""
        d = self.dataset_section
        params = {
            "game": game,
            **{k: d[k] for k in ("mode", "run", "num_buffers", "buffers_end", "capacity",
                                 "transitions", "trajectories_per_visit")},
            "capacity_overrides": [o for o in d["capacity_overrides"] if o["game"] == game],
            "context_length": train_settings(self.config, game)["context_length"],
        }
        return Stage(params, (self.replay().key,), self.code["dataset"])

    def run_settings(self, game: str) -> dict[str, Any]:
        settings = train_settings(self.config, game)
        return {k: settings[k] for k in TRAIN_RUN_SETTINGS}

    def fdt_budgets(self) -> list[int]:
        """FDT's feedback budgets: fdt.budget's and the sweep's."""
        f = self.config["fdt"]
        return sorted({f["budget"], *f.get("sweep", [])})

    def fdt_name(self, budget: int) -> str:
        """How FDT with this budget is named in the results: `fdt` without a sweep (the paper's
        single budget), else `fdt_b{budget}` for every budget, so none is mistaken for another."""
        return f"fdt_b{budget}" if self.config["fdt"].get("sweep") else "fdt"

    def model(self, game: str, model: str, budget: int | None = None) -> Stage:
        """What decides a model's weights for a game (the seed is the folder below the key);
        `budget` picks one of FDT's budgets (fdt.budget's when None)."""
        if model == "dt_pref":  # DT on the training set relabelled by a learnt reward
            return self.preference_model(game, self.config["preferences"]["budget"])
        settings = train_settings(self.config, game)
        params = {"model": model, **{k: v for k, v in settings.items() if k not in TRAIN_RUN_SETTINGS}}
        inputs = [self.dataset(game).key]
        if model == "fdt":
            params.update(budget=self.config["fdt"]["budget"] if budget is None else budget,
                          feedback_lambda=self.config["fdt"]["lambda"])
            inputs.append(self.feedback_labels(game).key)
        if model == "radt":  # RA-DT: its retrieval settings and its memory decide it too
            params["retrieval"] = self.retrieval_params()
            inputs.append(self.memory(game).key)
            return Stage(params, tuple(inputs), self.code["train_radt"])
        return Stage(params, tuple(inputs), self.code["train"])

    # --- mining ---
    def mining(self, game: str) -> Stage:
        """What decides the mined states of a game (the seed's training set is an input)."""
        d = self.dataset_section
        params = {
            "game": game,
            **{k: v for k, v in self.config["mining"].items() if k != "spare_buffers"},
            "run": d["run"], "num_buffers": d["num_buffers"], "buffers_end": d["buffers_end"],
            "context_length": train_settings(self.config, game)["context_length"],
            # the checkpoints ingested, since mining skips the others as missing
            "checkpoints": parse_buffers(self.config["buffers"]),
        }
        return Stage(params, (self.dataset(game).key,), self.code["mine"])

    # --- the oracle and its labels ---
    def oracle(self, game: str) -> Stage:
        """What decides the oracle of a game, by its kind."""
        oracle, d = self.oracle_section, self.dataset_section
        kind = self.oracle_kind()
        if kind == "offline":
            offline = {k: v for k, v in oracle["offline"].items() if k not in ORACLE_RUN_SETTINGS}
            params = {"kind": kind, "game": game, "run": d["run"], "num_buffers": d["num_buffers"],
                      "buffers_end": d["buffers_end"], **offline}
            return Stage(params, (self.replay().key,), self.code["oracle"])
        if kind == "dopamine":
            source = {k: oracle["source"][k] for k in ("kind", "bucket", "prefix", "url", "path")}
            params = {"kind": kind, "game": game, "run": oracle["run"],
                      "checkpoint": oracle["checkpoint"], "format": oracle["format"],
                      "source": source}
            return Stage(params, (), self.code["fetch_oracle"])
        if kind == "agent":  # a trained offline agent: its key decides the labels
            agent = oracle["agent"]
            return Stage({"kind": kind, "game": game, "agent": agent["name"],
                          "seed": agent["seed"]}, (self.agent(game, agent["name"]).key,),
                         self.code["evaluate_oracle"])
        if kind == "demo":  # the demo's controller, recorded by the simulator: its key decides
            return Stage({"kind": kind, "game": game, "run": d["run"]}, (self.demo().key,),
                         self.code["demo"])
        return Stage({"kind": kind, "game": game, "labels_path": oracle["labels_path"]}, (),
                     self.code["fetch_oracle"])

    def labels(self, game: str) -> Stage:
        params = {k: v for k, v in self.config["labels"].items() if k != "device"}
        return Stage(params, (self.oracle(game).key, self.mining(game).key), self.code["label"])

    def oracle_is_network(self) -> bool:
        """An oracle with weights of its own (scored, and read by labelling)."""
        return "fdt" in self.config["models"] and self.oracle_kind() not in ("published", "demo")

    def oracle_kind(self) -> str:
        """The kind of oracle whose network or files label the mined states: the configured one,
        or for human and synthetic labels the oracle they stand on (gold queries, flip noise)."""
        kind = self.oracle_section["kind"]
        return self.oracle_section["base"] if kind in TEACHER_KINDS else kind

    # --- people's feedback (fdt.teacher) ---
    def queries(self, game: str) -> Stage:
        """The query bundle of a game's mined states (the seed is the folder below the key); the
        oracle's labels give the gold queries' answers."""
        teacher = self.config["teacher"]
        inputs = [self.mining(game).key]
        if teacher["gold_rate"] > 0:
            inputs.append(self.labels(game).key)
        return Stage({"game": game, **teacher}, tuple(inputs), self.code["queries"])

    def answer_files(self, game: str) -> list[str]:
        """The labelling app's answers of each seed's bundle (oracle.human.answers)."""
        template = self.oracle_section["human"]["answers"]
        return [template.format(game=game, seed=seed) for seed in self.config["seeds"]]

    def teacher_labels(self, game: str) -> Stage:
        """Human labels (keyed by the answers' digest) or synthetic ones (another oracle's labels
        with flip noise and a budget), for oracle kinds human and synthetic."""
        kind = self.oracle_section["kind"]
        if kind == "human":
            # imported here: only a human-labelled plan reads the answers
            from fdt.teacher.export import answers_digest

            params = {"kind": kind, "game": game,
                      "answers_digest": answers_digest(self.answer_files(game))}
            return Stage(params, (self.queries(game).key,), self.code["teacher_labels"])
        if kind == "synthetic":
            params = {"kind": kind, "game": game, **self.oracle_section["synthetic"]}
            return Stage(params, (self.labels(game).key,), self.code["teacher_labels"])
        raise ValueError(f"oracle kind {kind!r} is not one of {', '.join(TEACHER_KINDS)}")

    def feedback_labels(self, game: str) -> Stage:
        """The labels FDT trains on: people's or the synthetic labeller's, else the oracle's."""
        if self.oracle_section["kind"] in TEACHER_KINDS:
            return self.teacher_labels(game)
        return self.labels(game)

    def teacher_report(self) -> Stage:
        """The feedback section of the report: the bundles and, where used, their labels."""
        games = self.config["games"]
        inputs = [self.queries(g).key for g in games]
        if self.oracle_section["kind"] in TEACHER_KINDS:
            inputs += [self.teacher_labels(g).key for g in games]
        return Stage({"games": games, "seeds": self.config["seeds"],
                      "kind": self.oracle_section["kind"]}, tuple(inputs),
                     self.code["teacher_report"])

    # --- evaluation and the report ---
    def evaluation(self, game: str, model: str, budget: int | None = None) -> Stage:
        """What decides a model's evaluation results for a game (`budget`: one of FDT's)."""
        e = self.evaluation_section
        params = {k: v for k, v in e.items() if k not in EVAL_RUN_SETTINGS + ("targets",)}
        if model == "fdt" and self.config["fdt"].get("sweep"):
            # the name the episodes carry is part of what the folder holds
            budget = self.config["fdt"]["budget"] if budget is None else budget
            return Stage({**params, "game": game, "targets": e["targets"][game],
                          "name": self.fdt_name(budget)},
                         (self.model(game, model, budget).key,), self.code["evaluate"])
        if model == "radt":  # its own script; in-context mode is a way of evaluating
            return Stage({**params, "game": game, "targets": e["targets"][game],
                          "eval_cache": self.config["retrieval"]["eval_cache"]},
                         (self.model(game, model).key,), self.code["evaluate_radt"])
        return Stage({**params, "game": game, "targets": e["targets"][game]},
                     (self.model(game, model).key,), self.code["evaluate"])

    def random_policy(self, game: str) -> Stage:
        """The uniform-random policy scored under the models' protocol, seeds, episodes and cap
        (no setups or targets: it has neither)."""
        e = self.evaluation_section
        skip = EVAL_RUN_SETTINGS + ("targets", "setups", "timestep")
        params = {k: v for k, v in e.items() if k not in skip}
        return Stage({**params, "game": game, "policy": "uniform"}, (), self.code["random"])

    def report(self) -> Stage:
        """The report is keyed by what it gathers: changing a value back finds the old one."""
        games, models = self.config["games"], self.config["models"]
        params = {"games": games, "models": models, "seeds": self.config["seeds"],
                  "setups": self.evaluation_section["setups"],
                  "behaviour": {"run": self.dataset_section["run"],
                                "checkpoints": self.training_buffers()}}
        inputs = [self.evaluation(g, m).key for g in games for m in models]
        inputs += [self.model(g, m).key for g in games for m in models]  # training curves
        if "fdt" in models:  # FDT's other budgets (fdt.sweep)
            others = [b for b in self.fdt_budgets() if b != self.config["fdt"]["budget"]]
            inputs += [self.evaluation(g, "fdt", b).key for g in games for b in others]
        inputs += [self.random_policy(g).key for g in games] + [self.replay().key]
        if "fdt" in models:  # the mined states' contact sheet and the labels' agreement
            inputs += [self.labels(g).key for g in games]
        if self.oracle_is_network():
            inputs += [self.oracle(g).key for g in games]
        return Stage(params, tuple(inputs), self.code["report"])

    # --- RA-DT (fdt.retrieval) ---
    def retrieval_params(self) -> dict[str, Any]:
        """What decides retrieval in training: the search, dedup and reweighting, the index."""
        r = self.config["retrieval"]
        return {k: r[k] for k in ("top_k", "reweight_top_k", "dist_weight", "return_weight",
                                  "sim_cutoff", "exclude_same_trjs", "eval_top_k",
                                  "eval_return_weight", "eval_sim_cutoff", "index")}

    def memory(self, game: str) -> Stage:
        """The memory of a game's training set (the seed is the folder below the key), embedded
        by the trained DT of the same game and seed."""
        r = self.config["retrieval"]
        context = train_settings(self.config, game)["context_length"]
        params = {"game": game, "context_length": context,
                  "subtrajectory_length": r["subtrajectory_length"] or context,
                  "deduplicate": r["deduplicate"], "dedup_sim_cutoff": r["dedup_sim_cutoff"]}
        return Stage(params, (self.dataset(game).key, self.model(game, "dt").key),
                     self.code["memory"])

    def retrieval_report(self) -> Stage:
        """RA-DT's section: radt and dt evaluated on every game, and the memories."""
        games = self.config["games"]
        params = {"games": games, "seeds": self.config["seeds"],
                  "setups": self.evaluation_section["setups"]}
        inputs = [self.evaluation(g, m).key for g in games for m in ("radt", "dt")]
        inputs += [self.memory(g).key for g in games]
        return Stage(params, tuple(inputs), self.code["retrieval_report"])

    # --- batch_rl's agents ---
    def agent_seeds(self) -> list[int]:
        """The agents' seeds (the top-level seeds unless agents.seeds names others)."""
        return list(self.config["agents"]["seeds"] or self.config["seeds"])

    def agent_run(self) -> int:
        run = self.config["agents"]["run"]
        return int(run if run is not None else self.dataset_section["run"])

    def agent_checkpoints(self) -> list[int]:
        """The checkpoints an agent reads: every ingested one of its run (batch_rl), or those the
        training set draws from (training_set)."""
        if self.config["agents"]["data"] == "batch_rl":
            return parse_buffers(self.config["buffers"])
        return self.training_buffers()

    def agent(self, game: str, agent: str) -> Stage:
        """What decides an agent's weights and scores for a game (the seed is the folder below)."""
        a = self.config["agents"]
        params: dict[str, Any] = {
            "game": game, "agent": agent, "hyperparameters": dict(a[agent]),
            **{k: a[k] for k in ("data", "iterations", "steps_per_iteration", "batch_size",
                                 "evaluate_after")},
            "evaluation": {k: v for k, v in a["evaluation"].items()
                           if k not in AGENT_EVAL_RUN_SETTINGS},
        }
        if a["data"] == "batch_rl":
            params.update(run=self.agent_run(), checkpoints=self.agent_checkpoints(),
                          **{k: a[k] for k in ("checkpoints_per_iteration", "data_fraction",
                                               "data_subset")})
            return Stage(params, (self.replay().key,), self.code["agent"])
        return Stage(params, (self.dataset(game).key,), self.code["agent"])

    def agents_report(self) -> Stage:
        """The agents' table and curves, keyed by the agents they gather."""
        games, names = self.config["games"], self.config["agents"]["names"]
        params = {"games": games, "agents": names, "seeds": self.agent_seeds()}
        return Stage(params, tuple(self.agent(g, n).key for g in games for n in names),
                     self.code["agents_report"])

    # --- continuous control (fdt.continuous, issue 20) ---
    def continuous_datasets(self) -> list[str]:
        """The continuous datasets' names (empty: the system is off)."""
        return list(self.config["continuous"]["datasets"])  # a list: an overlay config can empty it

    def continuous_envs(self) -> list[str]:
        """The environments whose behaviour agent a generated dataset needs."""
        if self.config["continuous"]["source"] != "generated":
            return []
        return sorted({name.partition("/")[0] for name in self.continuous_datasets()})

    def continuous_behaviour(self, env_id: str) -> Stage:
        """What decides an environment's behaviour agent (its replay, snapshots, references)."""
        behaviour = self.config["continuous"]["behaviour"]
        params = {"env": env_id, **{k: v for k, v in behaviour.items() if k != "dataset_steps"}}
        return Stage(params, (), self.code["continuous_behaviour"])

    def continuous_dataset(self, name: str) -> Stage:
        """A generated dataset: its quality, size and behaviour agent; a Minari one: its id and folder."""
        c = self.config["continuous"]
        if c["source"] == "minari":
            return Stage({"source": "minari", "dataset": name, "path": c["minari_path"],
                          "reference_episodes": c["behaviour"]["reference_episodes"]}, (),
                         self.code["continuous_dataset"])
        env_id, _, quality = name.partition("/")
        params = {"source": "generated", "env": env_id, "quality": quality,
                  "steps": c["behaviour"]["dataset_steps"], "seed": c["behaviour"]["seed"]}
        return Stage(params, (self.continuous_behaviour(env_id).key,), self.code["continuous_dataset"])

    def continuous_model(self, name: str) -> Stage:
        """A DT's weights and evaluations on a dataset: CORL's defaults under the dataset's own
        hyperparameters (the seed is the folder below the key)."""
        c = self.config["continuous"]
        params = {"dataset": name, **c["dt"], **c["hyperparameters"].get(name, {})}
        return Stage(params, (self.continuous_dataset(name).key,), self.code["continuous_train"])

    def continuous_report(self) -> Stage:
        names = self.continuous_datasets()
        c = self.config["continuous"]
        return Stage({"datasets": names, "seeds": c["seeds"], "source": c["source"]},
                     tuple(self.continuous_model(n).key for n in names), self.code["continuous_report"])

    # --- the HTML report ---
    def description(self) -> dict[str, Any]:
        """What was run, on what data, with which settings: the HTML report's first lines."""
        c, d, e = self.config, self.dataset_section, self.evaluation_section
        train = train_settings(c, c["games"][0])
        out: dict[str, Any] = {
            "games": c["games"],
            "replay": f"{c['source']['kind']} source, runs {c['runs']}, checkpoints "
                      f"{parse_buffers(c['buffers'])}",
            "training set": f"{d['transitions']} transitions from checkpoints "
                            f"{self.training_buffers()} of run {d['run']} ({d['mode']} sampling)",
            "models": c["models"], "seeds": c["seeds"],
            "model sizes": f"{train['n_layer']} layers, {train['n_head']} heads, width "
                           f"{train['n_embd']}, context {train['context_length']}, batch "
                           f"{train['batch_size']}, {train['epochs']} epochs",
            "evaluation": f"{e['protocol']} protocol; setups {e['setups']}; test seeds "
                          f"{e['test_seeds']} x {e['episodes']} episodes; targets "
                          f"{e['targets']}; step cap {e['max_steps'] or 'the protocol cap'}",
        }
        if "fdt" in c["models"]:
            out["feedback"] = (f"{self.oracle_section['kind']} oracle; mining over "
                               f"{c['mining']['transitions']} transitions; budget "
                               f"{', '.join(map(str, self.fdt_budgets()))}, "
                               f"lambda {c['fdt']['lambda']}")
        if c["agents"]["names"]:
            a = c["agents"]
            out["offline agents"] = (f"{a['names']} on {a['data']} data, {a['iterations']} "
                                     f"iterations of {a['steps_per_iteration']} updates")
        return out

    def report_sections(self) -> dict[str, Stage]:
        """Each system's report stage, in the page's order, for the systems this config runs."""
        c, models = self.config, self.config["models"]
        sections = {"fdt": self.report()}
        if c["agents"]["names"]:
            sections["agents"] = self.agents_report()
        if c["teacher"]["queries"] > 0 and "fdt" in models:
            sections["teacher"] = self.teacher_report()
        if "radt" in models:
            sections["retrieval"] = self.retrieval_report()
        if "dt_pref" in models:
            sections["preferences"] = self.preferences_report()
        if self.continuous_datasets():
            sections["continuous"] = self.continuous_report()
        return sections

    def site(self) -> Stage:
        """The HTML report: the description and every system's report section."""
        sections = self.report_sections()
        return Stage({"description": self.description(), "sections": list(sections)},
                     tuple(stage.key for stage in sections.values()), self.code["site"])

    # --- preferences (rl-teacher): a reward learnt from clip comparisons, DT trained on it ---
    def preference_budgets(self) -> list[int]:
        """The comparison budgets: dt_pref's (preferences.budget) and the sweep's."""
        p = self.config["preferences"]
        return sorted({p["budget"], *p["sweep"]})

    def preference_clips(self, game: str) -> Stage:
        """The clip bundle of a game's training set (the seed is the folder below the key)."""
        p = self.config["preferences"]
        params = {"game": game, **{k: p[k] for k in ("clips", "clip_length", "heldout_fraction")}}
        return Stage(params, (self.dataset(game).key,), self.code["preference_clips"])

    def preference_comparisons(self, game: str, budget: int) -> Stage:
        """Synthetic comparisons are decided by the labeller's settings; imported ones by the
        file's digest, so a new export makes a new folder."""
        p = self.config["preferences"]
        params: dict[str, Any] = {"source": p["source"], "mode": p["mode"], "budget": budget,
                                  "heldout_comparisons": p["heldout_comparisons"]}
        if p["mode"] == "tree":
            params["cant_tell"] = p["cant_tell"]
        if p["mode"] == "tree" and p["source"] == "synthetic" and p["presort_every"] is not None:
            params["presort_every"] = p["presort_every"]  # and the reward model it refits
            params["presort_reward"] = {k: v for k, v in p["reward_model"].items() if k != "device"}
        if p["source"] == "synthetic":
            params["noise"] = p["noise"]
        else:
            params["file_sha256"] = hashlib.sha256(Path(p["file"]).read_bytes()).hexdigest()
        return Stage(params, (self.preference_clips(game).key,),
                     self.code["preference_comparisons"])

    def preference_reward(self, game: str, budget: int) -> Stage:
        p = self.config["preferences"]
        params = {"min_comparisons": p["min_comparisons"],
                  **{k: v for k, v in p["reward_model"].items() if k != "device"}}
        return Stage(params, (self.preference_comparisons(game, budget).key,),
                     self.code["preference_reward"])

    def preference_relabel(self, game: str, budget: int) -> Stage:
        """The training set relabelled by the reward model (fdt.preferences.relabel)."""
        return Stage({"game": game}, (self.dataset(game).key, self.preference_reward(game, budget).key),
                     self.code["preference_relabel"])

    def preference_model(self, game: str, budget: int) -> Stage:
        """dt_pref: the trainer's plain DT on the relabelled training set."""
        settings = train_settings(self.config, game)
        params = {"model": "dt", "rewards": "preferences",
                  **{k: v for k, v in settings.items() if k not in TRAIN_RUN_SETTINGS}}
        return Stage(params, (self.preference_relabel(game, budget).key,), self.code["train"])

    def preference_evaluation(self, game: str, budget: int) -> Stage:
        """dt_pref scored by the true game score under the usual protocol."""
        usual = self.evaluation(game, "dt")
        return Stage(usual.params, (self.preference_model(game, budget).key,), usual.code)

    def preferences_report(self) -> Stage:
        """Score against comparisons, the reward models' accuracy: keyed by what it gathers."""
        games, budgets = self.config["games"], self.preference_budgets()
        params = {"games": games, "budgets": budgets, "seeds": self.config["seeds"]}
        inputs = [self.preference_evaluation(g, b).key for g in games for b in budgets]
        inputs += [self.preference_reward(g, b).key for g in games for b in budgets]
        if "dt" in self.config["models"]:  # the true reward's DT, for comparison
            inputs += [self.evaluation(g, "dt").key for g in games]
        return Stage(params, tuple(inputs), self.code["preferences_report"])
