"""The workflow end to end on a tiny demo config: simulate -> fetch -> convert, then nothing to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO

TINY = {
    "games": ["Breakout"], "runs": [1], "buffers": [0, 1, 2, 3],
    "demo": {"capacity": 900, "checkpoints": 3, "final_rows": 300, "max_episode_steps": 800},
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "tiny.yaml"),
               "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = snakemake(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "results" / "Breakout" / "replay" / "run1"
    summary = json.loads((run / "summary.json").read_text())
    # Rows 0 .. 3*900-1+300-1: every row counted once, as padding or as a transition.
    assert summary["totals"]["rows_new"] == 3 * 900 - 1 + 300
    assert summary["totals"]["rows_new"] == summary["totals"]["transitions"] + summary["totals"]["padding_rows"]
    rows = sum(pq.ParquetFile(run / f"buffer{n}.parquet").metadata.num_rows for n in range(4))
    assert rows == summary["totals"]["transitions"]
    params = json.loads((run / "params.json").read_text())
    assert params["params"]["buffers"] == [0, 1, 2, 3] and params["params"]["episode_cap"] == 800
    manifest = json.loads((tmp_path / "resources/replay/Breakout/1/manifest.json").read_text())
    assert manifest["checkpoints"] == [0, 1, 2, 3] and len(manifest["files"]) == 24
    assert manifest["source"]["kind"] == "demo"

    again = snakemake(tmp_path, "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_stops_before_any_job(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "games": ["Breakot"]}))
    done = snakemake(tmp_path, "--dry-run")
    assert done.returncode != 0
    assert "config error in the workflow config at games: unknown game 'Breakot'" in done.stdout + done.stderr
