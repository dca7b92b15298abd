"""The slurm profile: what it holds, what the paper's run asks of a cluster, and the tiny workflow
with every system through a real SLURM cluster, equal to a local run.

`make slurm-test` installs SLURM from Debian's packages, starts a one-node cluster on localhost
(tests/slurm/cluster.sh) and runs the tests marked slurm with FDT_SLURM_REQUIRED=1, so a cluster
or plugin that is missing fails them there; elsewhere they skip, saying why.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fdt.resources import load_table
from tests.conftest import REPO
from tests.test_continuous_workflow import TINY_CONTINUOUS
from tests.test_online_workflow import TINY_ONLINE
from tests.test_preferences_workflow import PREFERENCES
from tests.test_workflow import TINY

PROFILE = REPO / "profiles/slurm"
TABLE = load_table(REPO / "workflow/resources.yaml")
REQUIRED = os.environ.get("FDT_SLURM_REQUIRED") == "1"  # set by make slurm-test


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (make slurm-test needs it)")
    pytest.skip(reason)


@pytest.fixture
def plugin() -> None:
    """The SLURM executor plugin: the profile's options are its own."""
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _missing("no snakemake-executor-plugin-slurm (pip install -e '.[slurm]')")


@pytest.fixture
def cluster(plugin: None) -> None:
    """A SLURM cluster answering on this machine with an idle node."""
    if shutil.which("sinfo") is None:
        _missing("no SLURM cluster: sinfo not found (make slurm-test)")
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if done.returncode != 0 or not any(s in done.stdout for s in ("idle", "mixed")):
        _missing(f"no SLURM cluster: sinfo says {(done.stdout + done.stderr).strip()!r}")


def plan(configfile: Path, profile: Path = PROFILE) -> list[dict[str, Any]]:
    """Every job a fresh run of `configfile` plans through `profile` (profiles/slurm/plan.py)."""
    done = subprocess.run([sys.executable, str(PROFILE / "plan.py"), "--json",
                           "--configfile", str(configfile), "--profile", str(profile)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the profile and the paper's plan -----------------------------------------------------------


def test_the_profile_holds_only_the_cluster() -> None:
    """Sizes are the workflow's (workflow/resources.yaml): a per-rule line here would drift."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    assert profile["retries"] >= 1
    assert not {"set-resources", "set-threads"} & set(profile)
    assert not {"mem_mb", "runtime", "gpu"} & set(profile.get("default-resources") or {})
    # the one setting that sends GPU jobs to a GPU partition, and its example
    assert "# slurm-partition-config: profiles/slurm/partitions.yaml" in (
        PROFILE / "config.yaml").read_text()
    partitions = yaml.safe_load((PROFILE / "partitions.yaml").read_text())["partitions"]
    assert any(limits.get("max_gpu", 0) >= 1 for limits in partitions.values())
    assert any(limits.get("max_gpu", 0) == 0 for limits in partitions.values())


@pytest.mark.slurm
def test_the_example_partitions_send_gpu_jobs_to_the_gpu_partition(plugin: None) -> None:
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

    partitions = read_partition_file(PROFILE / "partitions.yaml")
    logger = SimpleNamespace(info=lambda *a: None, debug=lambda *a: None, warning=lambda *a: None)
    for name, size in TABLE.items():
        job = SimpleNamespace(name=name, threads=8, resources={**size.resources(), "_cores": 8})
        wanted = "gpu" if size.gpu else "cpu"
        assert get_best_partition(partitions, job, logger) == wanted, name


@pytest.mark.slurm
def test_the_papers_plan_sizes_every_job_from_the_table(plugin: None, tmp_path: Path) -> None:
    """No GPU rule (nor any other) plans on default resources at the paper's scale."""
    jobs = plan(REPO / "config/paper.yaml")
    assert len(jobs) > 900
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    for job in jobs:
        size = TABLE[job["rule"]]
        assert (job["mem_mb"], job["runtime"], job["gpu"]) == (
            size.mem_mb, size.runtime, size.gpu), job
        if size.threads == "train.threads":
            assert job["threads"] == paper["train"]["threads"], job
    gpu_rules = {job["rule"] for job in jobs if job["gpu"]}
    assert {"train", "evaluate", "train_agent", "continuous_train"} <= gpu_rules  # C51: fetched
    # and the printed table adds them up per system
    spec = importlib.util.spec_from_file_location("slurm_plan", PROFILE / "plan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["slurm_plan"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    lines = module.summary([module.PlannedJob(**job) for job in jobs], TABLE).splitlines()
    totals = {line.split()[0]: line.split()[1:] for line in lines[lines.index(
        next(line for line in lines if "GPU-hours" in line)) + 1:]}
    train_hours = sum(j["runtime"] * j["gpu"] for j in jobs if TABLE[j["rule"]].system == "fdt") / 60
    assert math.isclose(float(totals["fdt"][1]), train_hours, abs_tol=0.5)
    assert {"fdt", "agents", "continuous", "total"} <= set(totals)


# --- the tiny workflow on a real cluster --------------------------------------------------------

# Every system the default run has: FDT (dt, bc, fdt and their feedback), the offline agents,
# the feedback bundle for the labelling app, preferences (dt_pref), RA-DT (radt), and
# continuous control, each at the sizes its own workflow test uses.
TINY_ALL = {
    **copy.deepcopy(TINY),
    "models": ["dt", "bc", "fdt", "dt_pref", "radt"],
    "teacher": {"queries": 6, "gold_rate": 0.0},
    "preferences": {**PREFERENCES, "sweep": []},
    "retrieval": {"top_k": 8, "reweight_top_k": 2},
    "continuous": {**copy.deepcopy(TINY_CONTINUOUS["continuous"]), "seeds": [1]},
    # in-context RL on Dark-Room (AD, DT, RA-DT) and rl-teacher's online loop (rl, synth)
    "incontext": {"envs": ["dark_room"], "train_tasks": 2, "eval_tasks": 2, "steps_per_task": 300,
                  "methods": ["ad", "dt", "radt"], "seeds": [0],
                  "model": {"context": 40, "n_layer": 1, "n_head": 2, "n_embd": 16},
                  "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2},
                  "memory": {"length": 20, "stride": 20, "top_k": 4},
                  "evaluation": {"episodes": 2}},
    **copy.deepcopy(TINY_ONLINE),
}


def _test_profile(folder: Path, jobs: list[dict[str, Any]]) -> Path:
    """Our profile for the one-node test cluster: every planned rule's memory and runtime sized
    for it (the table's are the paper's), and GPU requests off on the rules that make them, as
    the workflow plans them (the node has no GPU). Threads stay the workflow's: a local run
    with --cores 2 gives each job the same, so results can be compared byte for byte."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    gpu_rules = {job["rule"] for job in jobs if job["gpu"]}
    profile["set-resources"] = {rule: {"mem_mb": 1500, "runtime": 30,
                                       **({"gpu": 0} if rule in gpu_rules else {})}
                                for rule in sorted({job["rule"] for job in jobs})}
    profile["jobs"] = 4
    profile["slurm-init-seconds-before-status-checks"] = 5  # tiny jobs: check often
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def _volatile(key: str) -> bool:
    """Fields that say how fast a job ran, or which MLflow run it logged to: they differ
    between any two runs, on one machine or two, and decide nothing downstream."""
    return (key == "tracking_run_id" or "seconds" in key or "minutes" in key
            or "per_second" in key or key.endswith("_per_s")
            or key == "retrieval_share")  # a share of the step's time


def _markdown_without_timings(text: str) -> str:
    """A Markdown table (a report section's `table`) without its volatile columns, named by
    their headers as a CSV's are ('minutes per run'); other text as it is."""
    lines = text.splitlines()
    if len(lines) < 2 or not lines[0].startswith("|") or not lines[1].startswith("|---"):
        return text
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    keep = [i for i, name in enumerate(header) if not _volatile(name.replace(" ", "_"))]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return "\n".join("|".join(row[i] for i in keep if i < len(row)) for row in rows)


def _canonical(value: Any) -> Any:
    """`value` without its volatile fields, tensors and arrays as digests of their bytes."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items() if not _volatile(str(k))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [str(value.dtype), list(value.shape),
                hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()]
    if isinstance(value, str):
        return _markdown_without_timings(value)
    return value if isinstance(value, (int, float, bool, type(None))) else repr(value)


def _digest(path: Path) -> str:
    """A file's bytes, except: a Parquet file's data (its footer names the folders it came
    from); a JSON or CSV file's, and a torch file's (checkpoints, models: weights, optimizer,
    history), without their volatile fields (see _volatile)."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path).replace_schema_metadata(None)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    if path.suffix == ".json":
        found = _canonical(json.loads(path.read_text()))
    elif path.suffix == ".csv":
        rows = list(csv.reader(path.read_text().splitlines()))
        keep = [i for i, name in enumerate(rows[0] if rows else []) if not _volatile(name)]
        found = [[row[i] for i in keep if i < len(row)] for row in rows]
    elif path.suffix == ".pt":  # checkpoints, models: torch.save's zip differs run to run
        import torch

        found = _canonical(torch.load(path, map_location="cpu", weights_only=False))
    else:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()


# Files that say when a job ran or where: the MLflow store and its copies of outputs compared
# here (mlartifacts/<run id>/), the HTML report (its build time), Snakemake's timestamps.
NOT_COMPARED = ("mlflow.db*", ".snakemake_timestamp", "*.html")


def _results(workdir: Path) -> dict[str, Path]:
    results = workdir / "results"
    return {str(path.relative_to(results)): path for path in sorted(results.rglob("*"))
            if path.is_file() and not path.relative_to(results).parts[0] == "mlartifacts"
            and not any(path.match(pattern) for pattern in NOT_COMPARED)}


def _run_together(commands: dict[str, list[str]], env: dict[str, str],
                  timeout: float) -> dict[str, tuple[int, str]]:
    """Run the commands side by side; each one's exit code and output (stdout, then stderr).
    Every process still running at the timeout is killed, and the timeout raised."""
    import tempfile

    logs = {name: tempfile.TemporaryFile("w+") for name in commands}
    procs = {name: subprocess.Popen(cmd, stdout=logs[name], stderr=subprocess.STDOUT, text=True,
                                    env=env) for name, cmd in commands.items()}
    deadline = time.monotonic() + timeout
    try:
        for proc in procs.values():
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = {}
    for name, log in logs.items():
        log.seek(0)
        results[name] = (procs[name].returncode, log.read())
        log.close()
    return results


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_workflow_with_every_system_on_slurm_equals_local(cluster: None,
                                                                tmp_path: Path) -> None:
    local, on_cluster = tmp_path / "local", tmp_path / "cluster"
    for workdir in (local, on_cluster):
        workdir.mkdir()
        (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY_ALL))
    jobs = plan(local / "tiny.yaml")
    # the tiny run reaches every system, and every GPU rule the table has
    assert {TABLE[job["rule"]].system for job in jobs} == {size.system for size in TABLE.values()}
    assert {job["rule"] for job in jobs if job["gpu"]} == {n for n, s in TABLE.items() if s.gpu}

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the default store
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    profile = _test_profile(tmp_path / "profile", jobs)
    # Both runs at once: the SLURM run spends most of its time waiting (status checks, the
    # scheduler, each job's own Snakemake start-up), which the local run's work fills.
    runs = {"local": [*command, "--directory", str(local), "--configfile",
                      str(local / "tiny.yaml"), "--cores", "2", "--scheduler", "greedy"],
            "slurm": [*command, "--directory", str(on_cluster), "--configfile",
                      str(on_cluster / "tiny.yaml"), "--profile", str(profile)]}
    outputs = _run_together(runs, env, timeout=2400)
    for name, (code, output) in outputs.items():
        assert code == 0, f"the {name} run failed:\n{output[-4000:]}"
    assert "slurm" in outputs["slurm"][1].lower()

    page = next((local / "results/report/html").glob("*/index.html")).read_text()
    assert "In-context" in page or "in-context" in page, "the grid-world section is not on the page"
    assert "rl-teacher&#x27;s loop" in page, "the online loop's section is not on the page"

    ours, theirs = _results(local), _results(on_cluster)
    assert ours.keys() == theirs.keys()
    assert len(ours) > 100
    differ = sorted(name for name in ours if _digest(ours[name]) != _digest(theirs[name]))
    assert differ == [], differ
