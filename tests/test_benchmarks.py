"""Every script under benchmarks/ runs in its quick mode (tiny sizes, seconds), so an API change
that breaks a benchmark fails here rather than on the day someone measures with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = sorted(path.name for path in (REPO / "benchmarks").glob("*.py"))
# gpu_suite's quick mode is its --dry, which tests/test_gpu_suite.py runs and reads.
ELSEWHERE = {"gpu_suite.py"}
# retrieval's --quick keeps the paper's training batch and 64 live environments; smaller here.
EXTRA = {"retrieval.py": ["--batch", "8", "--envs", "4", "--threads", "1"]}


def test_every_benchmark_has_a_quick_mode() -> None:
    for name in SCRIPTS:
        assert '"--quick"' in (REPO / "benchmarks" / name).read_text(), name


@pytest.mark.parametrize("name", [name for name in SCRIPTS if name not in ELSEWHERE])
def test_benchmark_runs_quick(name: str, tmp_path: Path) -> None:
    # One thread each: the numbers mean nothing at these sizes, and on a shared machine torch's
    # threads would wait on each other's time slices.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), "--quick",
                           *EXTRA.get(name, [])],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.strip(), "printed nothing"
    assert not (tmp_path / "resources").exists(), "wrote into the working directory"
