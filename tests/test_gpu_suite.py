"""The GPU suite's dry mode runs on the CPU, so the script a lent GPU runs cannot rot."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_gpu_suite_dry_run_prints_its_table(tmp_path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--dry",
                           "--workdir", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-7] == "GPU suite on the CPU (dry run)"
    for name in ("cuda tests", "train (dry)", "evaluation protocol", "oracle labelling",
                 "showcase (planned)", "evaluation protocol, vector env"):
        assert any(line.strip().startswith(name) for line in lines[-6:]), name
    assert "target <= 5" in done.stdout and "target <= 10" in done.stdout
    # each backend's env-steps/s per setup of the protocol, all six
    for name in ("evaluation protocol ", "evaluation protocol, vector env"):
        line = next(line for line in lines[-6:] if line.strip().startswith(name))
        assert all(f" {setup} " in line for setup in ("argmax", "sample+noop", "eps")), line
    # the larger showcase is planned through the workflow: 10 seeds x (DT, BC, FDT at 3 budgets)
    # trained and evaluated, among the jobs
    planned = next(line for line in lines if line.strip().startswith("showcase (planned)"))
    assert int(planned.split()[2]) > 100, planned
