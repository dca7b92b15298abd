"""The tiny workflow through the slurm profile on a real SLURM cluster equals a local run.

Needs a running cluster: `make slurm-test` installs SLURM from Debian's packages, starts a
one-node cluster on localhost (tests/slurm/cluster.sh) and runs this test; without one it is
skipped.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_workflow import TINY, snakemake


def cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return done.returncode == 0 and any(s in done.stdout for s in ("idle", "mixed"))


pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(not cluster_up(), reason="no SLURM cluster (make slurm-test)")]


def test_profile_for_this_cluster(tmp_path: Path) -> None:
    """Our profile, with memory sized for the test node, GPU requests off (it has no GPU) and
    the same threads as a local run (so results can be compared byte for byte)."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    assert profile["set-resources"]["train"]["mem_mb"] >= 16000


def _slurm_profile(folder: Path) -> Path:
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["set-resources"] = {rule: {**values, "mem_mb": 1500, "runtime": 30,
                                       **({"gpu": 0} if rule in ("train", "train_oracle",
                                                                 "evaluate") else {})}
                                for rule, values in profile["set-resources"].items()}
    profile["default-resources"] = {"mem_mb": 1500, "runtime": 30}
    profile.pop("set-threads")
    profile["jobs"] = 4
    profile["slurm-init-seconds-before-status-checks"] = 5  # tiny jobs: check often
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def _digest(path: Path) -> str:
    """A file's bytes; a Parquet file's data (its footer names the folders it came from)."""
    if path.suffix != ".parquet":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path).replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _comparable(workdir: Path) -> dict[str, str]:
    """Digests of the outputs that must not depend on where jobs ran."""
    results = workdir / "results"
    keep = {}
    for pattern in ("*/replay/run1/buffer*.parquet", "*/dataset/*/seed*/*.npy",
                    "*/states/*/seed*/states.parquet", "*/labels/*/seed*/labels.parquet",
                    "*/models/*/*/seed*/model.pt", "*/eval/*/*/seed*/episodes.parquet",
                    "report/*/scores.csv"):
        for path in results.glob(pattern):
            keep[str(path.relative_to(results))] = _digest(path)
    return keep


@pytest.mark.slow
def test_tiny_workflow_on_slurm_equals_local(tmp_path: Path) -> None:
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for workdir in (local, cluster):
        workdir.mkdir()
        (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = snakemake(local)
    assert done.returncode == 0, done.stderr[-3000:]
    profile = _slurm_profile(tmp_path / "profile")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(cluster), "--configfile", str(cluster / "tiny.yaml"),
               "--profile", str(profile)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "slurm" in (done.stdout + done.stderr).lower()
    ours, theirs = _comparable(local), _comparable(cluster)
    assert len(ours) > 20 and ours.keys() == theirs.keys()
    differ = sorted(k for k in ours if ours[k] != theirs[k])
    assert differ == [], differ
