"""workflow/resources.yaml: every rule sized in one place, and bad lines stopped at planning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fdt.resources import JobSize, check_rules, load_table
from tests.conftest import REPO

TABLE = REPO / "workflow/resources.yaml"


def workflow_rules() -> set[str]:
    """The rules the workflow's files define (all: the default target, which runs nothing)."""
    text = "\n".join(path.read_text() for path in
                     [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))])
    return set(re.findall(r"^rule (\w+):", text, flags=re.MULTILINE)) - {"all"}


def test_every_rule_has_a_line_and_reads_its_own() -> None:
    table = load_table(TABLE)
    assert set(table) == workflow_rules()
    for path in (REPO / "workflow/rules").glob("*.smk"):
        # each rule block names itself in both lines (a copied line would size the wrong rule)
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)+)", path.read_text(),
                                     flags=re.MULTILINE):
            assert f'threads: rule_threads("{name}")' in body, (path.name, name)
            assert f'**rule_resources("{name}")' in body, (path.name, name)


def test_paper_scale_lines_are_plausible() -> None:
    """Sizes for the paper's data: no line left at a laptop's, none beyond a real node."""
    for size in load_table(TABLE).values():
        assert 1000 <= size.mem_mb <= 128000, size
        assert 10 <= size.runtime <= 3 * 24 * 60, size
        if size.gpu:  # GPU jobs hold a whole device: hours, and the memory to feed it
            assert size.mem_mb >= 16000 and size.runtime >= 240, size


def test_threads_follow_the_config() -> None:
    config = {"train": {"threads": 6}}
    assert JobSize("train", "fdt", 1000, 10, "train.threads", 1).job_threads(config) == 6
    assert JobSize("report", "fdt", 1000, 10, 1).job_threads(config) == 1
    with pytest.raises(ValueError, match="rule train's threads name the config setting 'train.cores'"):
        JobSize("train", "fdt", 1000, 10, "train.cores", 1).job_threads(config)


@pytest.mark.parametrize("line, error", [
    ({"mem_mb": 1000, "runtime": 10}, r"rule train: expected mem_mb, runtime, threads.*missing \['threads'\]"),
    ({"mem_mb": 1000, "runtime": 10, "threads": 1, "gpus": 1}, r"rule train: .*unknown \['gpus'\]"),
    ({"mem_mb": "4G", "runtime": 10, "threads": 1}, "rule train: mem_mb must be a positive whole number"),
    ({"mem_mb": 1000, "runtime": 10, "threads": 1, "gpu": 2}, "rule train: gpu must be 0 or 1"),
])
def test_a_malformed_line_names_its_rule(tmp_path: Path, line: dict, error: str) -> None:
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump({"fdt": {"train": line}}))
    with pytest.raises(ValueError, match=error):
        load_table(path)


def test_a_rule_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resources.yaml"
    line = {"mem_mb": 1000, "runtime": 10, "threads": 1}
    path.write_text(yaml.safe_dump({"fdt": {"train": line}, "agents": {"train": line}}))
    with pytest.raises(ValueError, match="rule train: listed twice"):
        load_table(path)


def test_check_rules_names_each_mismatch() -> None:
    table = {name: JobSize(name, "fdt", 1000, 10, 1) for name in ("train", "evaluate", "gone")}
    check_rules(table, ["train", "evaluate", "gone"], read=["train", "evaluate", "gone"],
                overrides={"--set-resources": ["train"]})
    with pytest.raises(ValueError) as raised:
        check_rules(table, ["train", "evaluate", "new_rule"], read=["train"],
                    overrides={"--set-resources": ["trian"]})
    message = str(raised.value)
    assert "rule new_rule has no line in workflow/resources.yaml" in message
    assert "rule evaluate does not read its line" in message
    assert "workflow/resources.yaml sizes rule gone, which the workflow does not have" in message
    assert "--set-resources names rule trian, which the workflow does not have" in message


def _dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(tmp_path), "--dry-run", "--quiet", "all",
                           "--cores", "1", *args], capture_output=True, text=True, timeout=300)


def test_an_override_for_a_rule_the_workflow_lacks_stops_planning(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, "--set-resources", "trian:mem_mb=64000", "--set-threads", "train=4")
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert ("--set-resources (profile or command line) names rule trian, which the workflow "
            "does not have") in said
    assert "names rule train," not in said  # train exists: its threads are fine
