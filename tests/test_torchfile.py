"""Our torch files are read by torch's weights-only unpickler: a planted pickle runs nothing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.evaluation.stage import EvalParams, evaluate_model
from fdt.torchfile import NUMPY_RNG_STATE, TorchFileError, load_torch_file
from tests.planted import plant


def test_weights_and_plain_data_load(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    payload = {"model": {"w": torch.arange(3.0)}, "config": {"n": 1, "betas": (0.9, 0.95)},
               "rng": {"state": 2**127 + 1, "name": "PCG64"}, "history": [{"loss": 0.5}]}
    torch.save(payload, path)
    loaded = load_torch_file(path)
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"])
    assert {k: v for k, v in loaded.items() if k != "model"} == {
        k: v for k, v in payload.items() if k != "model"}


def test_numpy_rng_state_loads_only_where_allowed(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"numpy": np.random.RandomState(3).get_state()}, path)
    with pytest.raises(TorchFileError, match=r"checkpoint\.pt: holds something other than "
                                             r"weights and plain data \(.*_reconstruct"):
        load_torch_file(path)
    state = load_torch_file(path, allow=NUMPY_RNG_STATE)["numpy"]
    assert np.array_equal(state[1], np.random.RandomState(3).get_state()[1])


def test_planted_file_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plant(tmp_path / "model.pt", marker)
    with pytest.raises(TorchFileError, match=r"model\.pt: holds something other than weights"):
        load_torch_file(tmp_path / "model.pt", allow=NUMPY_RNG_STATE)
    assert not marker.exists()


def test_evaluation_refuses_a_planted_model(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plant(tmp_path / "model.pt", marker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TorchFileError, match=r"model\.pt: holds something other than weights"):
            evaluate_model(tmp_path / "model.pt", "Pong", EvalParams(targets=(20.0,)),
                           tmp_path / "eval", model_name="dt", train_seed=1, progress=False)
    assert not marker.exists()


def test_the_reward_model_loader_refuses_a_planted_file(tmp_path: Path) -> None:
    """Issue 28 item 10d: it called torch.load itself, whose refusal is paragraphs of advice
    that name no file."""
    from fdt.preferences.reward_model import load_reward_model

    marker = tmp_path / "ran"
    plant(tmp_path / "reward_model.pt", marker)
    with pytest.raises(TorchFileError) as info:
        load_reward_model(tmp_path / "reward_model.pt")
    assert str(info.value).startswith(f"{tmp_path / 'reward_model.pt'}: holds something other than "
                                      "weights and plain data (")
    assert not marker.exists()
