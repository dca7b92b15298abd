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
    assert lines[-5] == "GPU suite on the CPU (dry run)"
    for name in ("cuda tests", "train (dry)", "evaluation protocol", "oracle labelling"):
        assert any(line.strip().startswith(name) for line in lines[-4:]), name
    assert "target <= 5" in done.stdout and "target <= 10" in done.stdout
