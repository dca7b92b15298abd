"""Tracking under concurrency: parallel jobs logging to one new SQLite store lose nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

JOB = """
import sys, warnings
from fdt.tracking import Tracker
i, uri, artifacts = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tracker = Tracker(uri, run_name=f"job{i}", tags={"model": "dt", "seed": i},
                      artifact_root=artifacts)
    tracker.start()
    tracker.log_params({f"p{k}": k for k in range(20)})
    for step in range(40):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    tracker.end("FINISHED")
failures = [str(w.message) for w in caught if "MLflow tracking" in str(w.message)]
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


@pytest.mark.slow
def test_parallel_jobs_share_a_new_store(tmp_path: Path) -> None:
    """Six jobs start at once on a store that does not exist yet (the first creates its tables
    under a lock) and write metrics side by side (a locked database is retried)."""
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    jobs = [subprocess.Popen([sys.executable, str(script), str(i), uri, str(tmp_path / "art")],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(6)]
    outcomes = [(job.wait(timeout=300), job.stdout.read()) for job in jobs]
    assert [code for code, _ in outcomes] == [0] * 6, [out for _, out in outcomes]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("fdt").experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == [str(i) for i in range(6)]
    assert all(r.info.status == "FINISHED" and len(r.data.params) == 20 for r in runs)
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 40
