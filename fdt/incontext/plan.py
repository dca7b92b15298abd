"""What decides each in-context stage's folder (the `incontext` config section), without
Snakemake: histories per environment, a model per (environment, method), its evaluation, and
the report. Code versions come from the stages' scripts' imports (fdt.keys.stage_code_version),
as fdt.plan computes them for every other system.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fdt.incontext.environments import InContextInputError
from fdt.keys import stage_code_version
from fdt.plan import SCRIPTS, Stage

STAGE_SCRIPTS = {
    "incontext_histories": ("incontext_histories.py",),
    "incontext_train": ("incontext_train.py",),
    "incontext_evaluate": ("incontext_evaluate.py",),
    "incontext_report": ("incontext_report.py",),
}
# How to run, not what is learnt: outside every key.
RUN_SETTINGS = ("threads",)


def code_versions(scripts: Path = SCRIPTS) -> dict[str, str]:
    return {stage: stage_code_version([scripts / name for name in names])
            for stage, names in STAGE_SCRIPTS.items()}


def _digest(path: str | None) -> str | None:
    if not path:
        return None
    if not Path(path).is_file():
        raise InContextInputError(f"{path}: no such task list (incontext.goals)")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class InContextPlan:
    def __init__(self, config: Mapping[str, Any], code: Mapping[str, str] | None = None) -> None:
        self.c = config["incontext"]
        self.code = dict(code) if code is not None else code_versions()

    def envs(self) -> list[str]:
        return list(self.c["envs"])

    def methods(self) -> list[str]:
        return list(self.c["methods"])

    def seeds(self) -> list[int]:
        return list(self.c["seeds"])

    def histories(self, env: str) -> Stage:
        c = self.c
        params: dict[str, Any] = {"env": env, "source": c["source"],
                                  "train_tasks": c["train_tasks"],
                                  "goals_sha256": _digest(c["goals"]) if c["goals"] else None}
        if c["source"] == "generated":
            params["steps_per_task"] = c["steps_per_task"]
            params["ppo"] = dict(c["ppo"])
            params["seed"] = c["generation_seed"]
        else:
            params["local_path"] = str(c["local_path"])
        return Stage(params, (), self.code["incontext_histories"])

    def model(self, env: str, method: str) -> Stage:
        c = self.c
        params = {"method": method, "model": dict(c["model"]), "train": dict(c["train"])}
        inputs = [self.histories(env).key]
        if method in ("radt", "radt_lm"):
            params["memory"] = dict(c["memory"])
        if method == "radt":  # the pretrained DT is RA-DT's embedder
            inputs.append(self.model(env, "dt").key)
        if method == "radt_lm":
            params["lm_path"] = str(c["lm_path"]) if c["lm_path"] else None
        return Stage(params, tuple(inputs), self.code["incontext_train"])

    def evaluation(self, env: str, method: str) -> Stage:
        c = self.c
        params = {"eval_tasks": c["eval_tasks"], **dict(c["evaluation"])}
        return Stage(params, (self.model(env, method).key,), self.code["incontext_evaluate"])

    def report(self) -> Stage:
        params = {"envs": self.envs(), "methods": self.methods(), "seeds": self.seeds()}
        inputs = tuple(self.evaluation(e, m).key for e in self.envs() for m in self.methods())
        return Stage(params, inputs, self.code["incontext_report"])
