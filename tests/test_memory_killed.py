"""A killed build_memory leaves only temporaries, which the next build removes, not arrays that no
rule declares (issue 28 item 10e)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from fdt.dataset.training_set import TrainingSet
from fdt.retrieval.memory import ARRAYS, MANIFEST, MemoryParams, build_memory
from tests.conftest import REPO
from tests.test_retrieval_training import _embedder
from tests.test_train import training_set  # noqa: F401  (the 20-row training set fixture)

PARAMS = "MemoryParams(subtrajectory_length=2, context_length=2, deduplicate=False)"
# Builds the memory and is killed (SIGKILL: nothing runs after it) as it saves its fourth array.
KILLED_BUILD = f"""
import os, signal, sys
from pathlib import Path
import numpy as np, torch
from fdt.dataset.training_set import TrainingSet
from fdt.retrieval.memory import MemoryParams, build_memory
from tests.test_retrieval_training import _embedder

real_save, saved = np.save, []
def save(file, array, *args, **kwargs):
    saved.append(array.shape)
    if len(saved) == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(file, array, *args, **kwargs)
np.save = save
data, out = Path(sys.argv[1]), Path(sys.argv[2])
build_memory(data, _embedder(TrainingSet(data)), out, {PARAMS}, embedder_key="dt-key",
             device=torch.device("cpu"), progress=False)
"""


def test_a_killed_build_leaves_only_temporaries_that_the_next_removes(
        training_set: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "memory"
    killed = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(training_set), str(out)],
                              cwd=REPO, stderr=subprocess.PIPE, text=True)
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -9, stderr
    # The three arrays saved and the fourth begun, each under its temporary name only.
    assert sorted(p.name for p in out.iterdir()) == [
        f".{name}.npy.tmp-{killed.pid}" for name in ("end", "keys", "start", "trajectory")]

    build_memory(training_set, _embedder(TrainingSet(training_set)), out,
                 MemoryParams(subtrajectory_length=2, context_length=2, deduplicate=False),
                 embedder_key="dt-key", device=torch.device("cpu"), progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{a}.npy" for a in ARRAYS), MANIFEST])
