"""What each workflow rule's job asks of a machine: the table workflow/resources.yaml, read and
checked against the rules the workflow defines.

The table is the one place a rule's memory, runtime, threads and GPU are written (at the paper's
scale); the rules read their own line, so a new rule cannot land unsized and a renamed one cannot
leave a stale line behind: both stop planning with one error that names the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REQUIRED = ("mem_mb", "runtime", "threads")
OPTIONAL = ("gpu",)


@dataclass(frozen=True)
class JobSize:
    """One rule's line: memory (MB), runtime (minutes), threads (a number or a config setting's
    dotted name), GPUs (0 or 1), and the system the rule belongs to."""

    rule: str
    system: str
    mem_mb: int
    runtime: int
    threads: int | str
    gpu: int = 0

    def resources(self) -> dict[str, int]:
        """The rule's `resources:` (gpu only where it asks for one, so CPU jobs stay plain)."""
        found = {"mem_mb": self.mem_mb, "runtime": self.runtime}
        return {**found, "gpu": self.gpu} if self.gpu else found

    def job_threads(self, config: Mapping[str, Any]) -> int:
        """The job's threads: the number, or the config value its dotted name points at."""
        if isinstance(self.threads, int):
            return self.threads
        value: Any = config
        for part in self.threads.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise ValueError(f"workflow/resources.yaml: rule {self.rule}'s threads name the "
                                 f"config setting {self.threads!r}, which the config does not have")
            value = value[part]
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"config setting {self.threads} (threads of rule {self.rule}): "
                             f"expected a whole number of at least 1, found {value!r}")
        return value


def load_table(path: Path) -> dict[str, JobSize]:
    """The table at `path`, rule name -> its line; a malformed line is one error naming it."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected systems, each a mapping of rules, found {raw!r}")
    table: dict[str, JobSize] = {}
    for system, rules in raw.items():
        if not isinstance(rules, dict) or not rules:
            raise ValueError(f"{path}: system {system}: expected a mapping of rules to their "
                             f"resources, found {rules!r}")
        for rule, line in rules.items():
            table[rule] = _job_size(path, system, rule, line, table)
    return table


def _job_size(path: Path, system: str, rule: str, line: Any,
              seen: Mapping[str, JobSize]) -> JobSize:
    where = f"{path}: rule {rule}"
    if rule in seen:
        raise ValueError(f"{where}: listed twice (under {seen[rule].system} and {system})")
    if not isinstance(line, dict):
        raise ValueError(f"{where}: expected {{mem_mb, runtime, threads[, gpu]}}, found {line!r}")
    missing = [key for key in REQUIRED if key not in line]
    unknown = sorted(set(line) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise ValueError(f"{where}: expected {', '.join(REQUIRED)} (and optionally gpu); "
                         f"missing {missing}, unknown {unknown}")
    for key in ("mem_mb", "runtime"):
        if not isinstance(line[key], int) or line[key] < 1:
            raise ValueError(f"{where}: {key} must be a positive whole number, found {line[key]!r}")
    threads = line["threads"]
    if not ((isinstance(threads, int) and threads >= 1) or isinstance(threads, str)):
        raise ValueError(f"{where}: threads must be a number of at least 1 or a config setting's "
                         f"dotted name, found {threads!r}")
    gpu = line.get("gpu", 0)
    if gpu not in (0, 1):
        raise ValueError(f"{where}: gpu must be 0 or 1, found {gpu!r}")
    return JobSize(rule, system, line["mem_mb"], line["runtime"], threads, gpu)


def check_rules(table: Mapping[str, JobSize], rules: Iterable[str], read: Iterable[str],
                overrides: Mapping[str, Iterable[str]]) -> None:
    """Every rule that runs a job has a line and reads it; every line and every override names
    a rule the workflow has. `read`: the rules that asked for their line; `overrides`: where
    per-rule settings came from (e.g. --set-resources) -> the rules they name."""
    rules = set(rules)
    problems = [f"rule {name} has no line in workflow/resources.yaml (every rule that runs a job "
                "declares its memory, runtime and threads there)" for name in sorted(rules - set(table))]
    problems += [f"rule {name} does not read its line in workflow/resources.yaml (its resources: "
                 f"and threads: should be **rule_resources({name!r}) and rule_threads({name!r}))"
                 for name in sorted((rules & set(table)) - set(read))]
    problems += [f"workflow/resources.yaml sizes rule {name}, which the workflow does not have"
                 for name in sorted(set(table) - rules)]
    for source, named in overrides.items():
        problems += [f"{source} names rule {name}, which the workflow does not have"
                     for name in sorted(set(named) - rules)]
    if problems:
        raise ValueError("; ".join(problems))
