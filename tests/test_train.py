"""The DT/BC model, the token schedule, training, kill-and-resume, divergence and tracking."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.dataset.sampling import SamplingParams
from fdt.dataset.training_set import build_training_set
from fdt.models.trainer import (
    CHECKPOINT,
    MODEL,
    TrainingError,
    TrainParams,
    load_model,
    lr_multiplier,
    train,
)
from fdt.models.transformer import DecisionTransformer, ModelConfig, optimizer_groups
from fdt.torchfile import NUMPY_RNG_STATE, TorchFileError, load_torch_file
from fdt.tracking import Tracker
from tests.conftest import REPO
from tests.planted import plant

TINY = dict(context_length=2, batch_size=4, epochs=3, n_layer=1, n_head=2, n_embd=16,
            warmup_tokens=16, log_every=2)


@pytest.fixture
def training_set(episode_store: list[Path], tmp_path: Path) -> Path:
    """The 20-row training set of test_dataset (4 trajectories, 14 windows of 2 steps)."""
    folder = tmp_path / "set"
    build_training_set({n: p for n, p in enumerate(episode_store)}, folder,
                       SamplingParams(seed=0, transitions=20, num_buffers=3, buffers_end=3,
                                      capacity=10, trajectories_per_visit=1, context_length=2),
                       num_actions=4, progress=False)
    return folder


def test_schedule_matches_the_formula() -> None:
    warmup, final = 10_240, 100_000
    assert lr_multiplier(0, warmup, final, 0.1) == 0.0
    assert lr_multiplier(5_120, warmup, final, 0.1) == 0.5
    assert lr_multiplier(10_240, warmup, final, 0.1) == 1.0
    assert lr_multiplier(55_120, warmup, final, 0.1) == pytest.approx(0.5)
    assert lr_multiplier(10_240 + 0.75 * 89_760, warmup, final, 0.1) == pytest.approx(
        0.5 * (1 - math.sqrt(0.5)))
    assert lr_multiplier(95_000, warmup, final, 0.1) == 0.1  # the floor
    assert lr_multiplier(100_000, warmup, final, 0.1) == 0.1


def _model(return_conditioned: bool = True, **kw: int) -> DecisionTransformer:
    torch.manual_seed(0)
    config = ModelConfig(num_actions=4, context_length=5, max_timestep=20,
                         return_conditioned=return_conditioned, n_layer=2, n_head=2, n_embd=16,
                         **kw)
    return DecisionTransformer(config).eval()


@pytest.mark.parametrize("return_conditioned", [True, False])
def test_model_is_causal_and_reads_state_tokens(return_conditioned: bool) -> None:
    model = _model(return_conditioned)
    states = torch.randint(0, 256, (3, 5, 4, 84, 84), dtype=torch.uint8)
    actions = torch.randint(0, 4, (3, 5))
    rtg = torch.rand(3, 5) * 10
    timesteps = torch.tensor([0, 7, 50])  # 50 is past max_timestep: clamped
    with torch.no_grad():
        full = model(states, actions, rtg, timesteps)
        # At inference the last action is not known yet; the logits must not depend on it.
        inference = model(states, actions[:, :-1], rtg, timesteps)
        first = model(states[:, :1], actions[:, :0], rtg[:, :1], timesteps)
    assert full.shape == (3, 5, 4)
    torch.testing.assert_close(inference, full)
    torch.testing.assert_close(first[:, 0], full[:, 0])
    changed = rtg.clone()
    changed[:, 3] += 5
    with torch.no_grad():
        moved = model(states, actions, changed, timesteps)
    torch.testing.assert_close(moved[:, :3], full[:, :3])
    assert torch.equal(moved[:, 3:], full[:, 3:]) is (not return_conditioned)


def test_init_and_weight_decay_groups() -> None:
    model = _model()
    block = model.blocks[0]
    assert torch.count_nonzero(block.attn.qkv.bias) == 0 and model.head.bias is None
    assert abs(block.mlp[0].weight.std().item() - 0.02) < 0.002
    assert torch.equal(block.ln1.weight, torch.ones(16))
    decay, no_decay = optimizer_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    named = dict(model.named_parameters())
    expected = {"state_encoder.0.weight", "state_encoder.2.weight", "state_encoder.4.weight",
                "state_encoder.7.weight", "ret_emb.0.weight", "head.weight"}
    expected |= {f"blocks.{i}.{name}.weight" for i in range(2)
                 for name in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2")}
    assert {n for n, p in named.items() if id(p) in decayed} == expected
    assert "state_encoder.0.weight" in expected and "pos_emb" not in expected
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)


def test_trains_dt_and_bc_and_writes_outputs(training_set: Path, tmp_path: Path) -> None:
    for model in ("dt", "bc"):
        out = tmp_path / model
        metrics = train(training_set, out, TrainParams(model=model, seed=1, **TINY),
                        progress=False)
        assert metrics["epochs"] == 3 and metrics["steps"] == 3 * 4  # ceil(14 / 4) per epoch
        assert metrics["tokens"] == 3 * 14 * 2 and metrics["final_tokens"] == 2 * 14 * 2 * 3
        last = metrics["history"][-1]
        assert last["lr"] == pytest.approx(6e-4 * lr_multiplier(84, 16, 168, 0.1))
        assert all(math.isfinite(r["loss"]) for r in metrics["history"])
        loaded = load_model(out / MODEL)
        assert loaded.config.return_conditioned is (model == "dt")
        assert json.loads((out / "metrics.json").read_text())["model"] == model
        assert (out / "curve.csv").read_text().count("\n") == 4


def test_same_seed_same_weights(training_set: Path, tmp_path: Path) -> None:
    a = train(training_set, tmp_path / "a", TrainParams(model="dt", seed=3, **TINY), progress=False)
    b = train(training_set, tmp_path / "b", TrainParams(model="dt", seed=3, **TINY), progress=False)
    assert a["history"] == [{**r, "seconds": a["history"][i]["seconds"],
                             "samples_per_s": a["history"][i]["samples_per_s"]}
                            for i, r in enumerate(b["history"])]
    _assert_same_weights(tmp_path / "a" / MODEL, tmp_path / "b" / MODEL)


def _assert_same_weights(first: Path, second: Path) -> None:
    x = torch.load(first, weights_only=True)["model"]
    y = torch.load(second, weights_only=True)["model"]
    assert x.keys() == y.keys()
    for name in x:
        assert torch.equal(x[name], y[name]), name


def _checkpoint(out_dir: Path) -> dict:
    """The trainer's checkpoint, read as the trainer reads it (weights-only, numpy RNG state)."""
    return load_torch_file(out_dir / CHECKPOINT, allow=NUMPY_RNG_STATE)


KILLER = """
import os, signal, sys
import torch
from fdt.models.trainer import TrainParams, train
torch.set_num_threads(1)
kill_at = int(sys.argv[3])
def hook(step, model):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
params = TrainParams(model="dt", seed=5, **{tiny})
train(sys.argv[1], sys.argv[2], params, on_step=hook if kill_at else None, progress=False)
"""


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_kill_and_resume_gives_the_same_weights(training_set: Path, tmp_path: Path) -> None:
    script = KILLER.replace("{tiny}", repr(TINY))
    whole = _run(script, str(training_set), str(tmp_path / "whole"), "0")
    assert whole.returncode == 0, whole.stderr
    # SIGKILL in the middle of epoch 2 (steps 5-8): epoch 1's checkpoint survives.
    killed = _run(script, str(training_set), str(tmp_path / "resumed"), "6")
    assert killed.returncode == -9
    assert (tmp_path / "resumed" / CHECKPOINT).is_file()
    assert not (tmp_path / "resumed" / MODEL).exists()
    state = _checkpoint(tmp_path / "resumed")["state"]
    assert state["epoch"] == 1 and state["step"] == 4
    resumed = _run(script, str(training_set), str(tmp_path / "resumed"), "0")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(tmp_path / "whole" / MODEL, tmp_path / "resumed" / MODEL)
    whole_opt = _checkpoint(tmp_path / "whole")["optimizer"]
    resumed_opt = _checkpoint(tmp_path / "resumed")["optimizer"]
    for key, value in whole_opt["state"].items():
        assert torch.equal(value["exp_avg"], resumed_opt["state"][key]["exp_avg"])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(training_set: Path,
                                                           tmp_path: Path) -> None:
    def poison(step: int, model: DecisionTransformer) -> None:
        if step == 5:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match="NaN or infinite in epoch 2.*1 epochs.*checkpoint.pt"):
        train(training_set, tmp_path / "out", TrainParams(model="dt", seed=1, **TINY),
              on_step=poison, progress=False)
    kept = _checkpoint(tmp_path / "out")
    assert kept["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values())
    assert not (tmp_path / "out" / MODEL).exists()


def test_planted_checkpoint_and_model_are_refused(training_set: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plant(tmp_path / "out" / CHECKPOINT, marker)
    with pytest.raises(TorchFileError, match=r"checkpoint\.pt: holds something other than weights"):
        train(training_set, tmp_path / "out", TrainParams(model="dt", seed=1, **TINY),
              progress=False)
    plant(tmp_path / MODEL, marker)
    with pytest.raises(TorchFileError, match=r"model\.pt: holds something other than weights"):
        load_model(tmp_path / MODEL)
    assert not marker.exists()


def test_sizes_that_do_not_fit(training_set: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="sampled for context length 2"):
        train(training_set, tmp_path / "a", TrainParams(model="dt", seed=1, **{**TINY, "context_length": 3}),
              progress=False)
    with pytest.raises(TrainingError, match="multiple of train.n_head"):
        train(training_set, tmp_path / "b", TrainParams(model="dt", seed=1, **{**TINY, "n_head": 3}),
              progress=False)


def test_tracking_records_the_run(training_set: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, run_name="dt-seed1", artifact_root=tmp_path / "artifacts",
                      tags={"game": "Breakout", "model": "dt", "key": "abc", "seed": 1})
    train(training_set, tmp_path / "out", TrainParams(model="dt", seed=1, **TINY),
          tracker=tracker, progress=False)
    tracker.end()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.data.tags["game"] == "Breakout" and run.data.tags["key"] == "abc"
    assert run.data.params["batch_size"] == "4" and run.info.status == "FINISHED"
    assert {"loss", "lr", "samples_per_s", "epoch_loss", "final_loss"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "epoch_loss")) == 3
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "curve.csv"} <= artifacts


def test_tracking_failure_only_warns(training_set: Path, tmp_path: Path) -> None:
    broken = tmp_path / "not-a-dir"
    broken.write_text("a file where the store's folder should be")
    tracker = Tracker(f"sqlite:///{broken}/mlflow.db", run_name="x", tags={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(training_set, tmp_path / "out", TrainParams(model="bc", seed=1, **TINY),
                        tracker=tracker, progress=False)
    assert metrics["epochs"] == 3
    assert any("training goes on untracked" in str(w.message) for w in caught)
    assert np.isfinite(metrics["final_loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_training_keeps_frames_on_the_device(training_set: Path, tmp_path: Path) -> None:
    metrics = train(training_set, tmp_path / "gpu", TrainParams(model="dt", seed=1, device="cuda",
                                                               **TINY), progress=False)
    assert metrics["frames_on_device"] and metrics["device"].startswith("cuda")
    assert all(math.isfinite(r["loss"]) for r in metrics["history"])


def _labels(path: Path, positions: list[int], actions: list[int], feedback: list[int],
            best: list[int]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"order": np.arange(len(positions)), "position": np.array(positions),
                             "action": np.array(actions, np.int32),
                             "best_action": np.array(best, np.int32),
                             "feedback": np.array(feedback, np.int8)}), path)
    return path


def test_fdt_trains_on_feedback(training_set: Path, tmp_path: Path) -> None:
    """Positives only with lambda 0 is DT exactly; a counted negative changes the weights; the
    run records the feedback's composition. Actions at positions 4, 5, 8, 13: 1, 2, 1, 1."""
    dt = train(training_set, tmp_path / "dt", TrainParams(model="dt", seed=2, **TINY), progress=False)
    positives = _labels(tmp_path / "pos.parquet", [4, 8], [1, 1], [1, 1], [1, 0])
    fdt = train(training_set, tmp_path / "fdt0", TrainParams(model="fdt", seed=2, budget=2,
                                                             feedback_lambda=0.0, **TINY),
                labels=positives, progress=False)
    _assert_same_weights(tmp_path / "dt" / MODEL, tmp_path / "fdt0" / MODEL)
    assert fdt["history"][-1]["loss"] == dt["history"][-1]["loss"]
    assert fdt["feedback"] == {"feedback_states": 2, "positives": 2,
                               "positives_best_action_share": 0.5, "negatives": 0,
                               "negatives_ignored": 0, "negatives_ignored_share": None}

    mixed = _labels(tmp_path / "mixed.parquet", [5, 13, 4], [2, 1, 1], [0, 0, 1], [3, 1, 1])
    fdt = train(training_set, tmp_path / "fdt1", TrainParams(model="fdt", seed=2, budget=2,
                                                             feedback_lambda=0.5, **TINY),
                labels=mixed, progress=False)
    assert fdt["feedback"]["negatives"] == 2 and fdt["feedback"]["negatives_ignored"] == 1
    assert fdt["feedback"]["positives"] == 0  # the budget stops before position 4
    first = torch.load(tmp_path / "dt" / MODEL, weights_only=True)["model"]
    second = torch.load(tmp_path / "fdt1" / MODEL, weights_only=True)["model"]
    assert not torch.equal(first["head.weight"], second["head.weight"])
    with pytest.raises(TrainingError, match="FDT needs the labels"):
        train(training_set, tmp_path / "x", TrainParams(model="fdt", seed=2, **TINY), progress=False)
