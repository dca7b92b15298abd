"""Offline C51: the distributional projection by hand, transitions from the store, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.oracle.c51 import C51Network, OracleError, load_network
from fdt.oracle.training import (
    OracleParams,
    OracleTrainingError,
    c51_loss,
    load_transitions,
    project_distribution,
    train_oracle,
)
from fdt.torchfile import TorchFileError
from tests.planted import plant


def test_projection_by_hand() -> None:
    support = torch.tensor([-1.0, 0.0, 1.0])
    one_hot_middle = torch.tensor([[0.0, 1.0, 0.0]] * 4)
    rewards = torch.tensor([0.5, 1.0, 5.0, -0.25])
    discounts = torch.tensor([1.0, 0.0, 0.9, 0.5])
    out = project_distribution(one_hot_middle, rewards, discounts, support)
    expected = torch.tensor([
        [0.0, 0.5, 0.5],    # 0.5 lies halfway between atoms 0 and 1
        [0.0, 0.0, 1.0],    # 1.0 is an atom: all mass there (terminal, discount 0)
        [0.0, 0.0, 1.0],    # clipped to v_max
        [0.25, 0.75, 0.0],  # -0.25: a quarter to -1, three quarters to 0
    ])
    assert torch.allclose(out, expected)
    spread = torch.tensor([[0.2, 0.3, 0.5]])
    # r = 0, discount 0.5: atoms move to -0.5, 0, 0.5
    out = project_distribution(spread, torch.tensor([0.0]), torch.tensor([0.5]), support)
    assert torch.allclose(out, torch.tensor([[0.1, 0.1 + 0.3 + 0.25, 0.25]]))
    assert torch.allclose(out.sum(), torch.tensor(1.0))


def test_transitions_from_the_store(episode_store: list[Path]) -> None:
    """Transitions t = 0..18 of the `episode_run` fixture: A 0-3, B 4-7, D 8-13, E 14-16, F 17-18
    (open); frames are t + 1 everywhere."""
    data = load_transitions(episode_store, progress=False)
    n = 19
    assert len(data.action) == n and data.frames.shape == (n + 1, 84, 84)
    value = data.frames[:, 0, 0]
    assert value[:n].tolist() == [t + 1 for t in range(n)] and value[n] == 0
    zero = n
    assert data.state[0].tolist() == [zero, zero, zero, 0]
    assert data.state[9].tolist() == [zero, zero, 8, 9]  # D starts at t = 8
    assert data.state[13].tolist() == [10, 11, 12, 13]
    assert data.next_state[12].tolist() == [10, 11, 12, 13]
    assert data.terminal.tolist() == [t in (3, 7, 13, 16) for t in range(n)]
    # the open episode's last transition has no logged next state
    assert data.usable.tolist() == [t != 18 for t in range(n)]
    assert data.action.tolist() == [t % 4 for t in range(n)]
    assert data.reward[[1, 9, 11]].tolist() == [1.0, 1.0, 1.0] and data.reward.sum() == 3


def test_loss_at_initialisation_and_training(episode_store: list[Path], tmp_path: Path) -> None:
    params = OracleParams(updates=6, batch_size=4, target_update_period=3, checkpoint_every=3,
                          device="cpu")
    metrics = train_oracle(episode_store, 4, tmp_path / "oracle", params, progress=False)
    assert metrics["updates"] == 6 and metrics["usable"] == 18
    assert [h["update"] for h in metrics["history"]] == [3, 6]
    net = load_network(tmp_path / "oracle" / "oracle.pt", 4)
    assert isinstance(net, C51Network)
    again = train_oracle(episode_store, 4, tmp_path / "oracle", params, progress=False)
    assert again["updates"] == 6 and again["history"] == metrics["history"]  # resumed, done
    with pytest.raises(OracleTrainingError, match="action 3 is outside the game's 2 actions"):
        train_oracle(episode_store, 2, tmp_path / "other", params, progress=False)


def test_planted_checkpoint_and_oracle_are_refused(episode_store: list[Path],
                                                   tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plant(tmp_path / "oracle" / "checkpoint.pt", marker)
    params = OracleParams(updates=3, batch_size=4, checkpoint_every=3, device="cpu")
    with pytest.raises(TorchFileError, match=r"checkpoint\.pt: holds something other than weights"):
        train_oracle(episode_store, 4, tmp_path / "oracle", params, progress=False)
    plant(tmp_path / "oracle.pt", marker)
    with pytest.raises(TorchFileError, match=r"oracle\.pt: holds something other than weights"):
        load_network(tmp_path / "oracle.pt", 4)
    assert not marker.exists()


def test_c51_loss_is_cross_entropy_to_the_projection() -> None:
    torch.manual_seed(0)
    net = C51Network(2)
    states = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    batch = {"state": states, "next_state": states.flip(0), "action": torch.tensor([0, 1, 0]),
             "reward": torch.tensor([0.0, 1.0, -1.0]), "terminal": torch.tensor([True] * 3)}
    # Terminal rows: the target is the reward alone, on linspace(-10, 10, 51) (step 0.4): 0 is
    # atom 25; 1.0 and -1.0 fall halfway between atoms 27/28 and 22/23.
    loss = c51_loss(net, net, batch, gamma=0.99)
    logp = torch.log_softmax(net(states), -1)
    target = torch.zeros(3, 51)
    target[0, 25] = 1.0
    target[1, 27], target[1, 28] = 0.5, 0.5  # 1.0 = -10 + 27.5 * 0.4
    target[2, 22], target[2, 23] = 0.5, 0.5  # -1.0 = -10 + 22.5 * 0.4
    expected = -(target * logp[torch.arange(3), batch["action"]]).sum(-1).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


# --- fetching Dopamine's checkpoints through the source machinery (loopback only) -------------

DOPAMINE_BUCKET = "download-dopamine-rl"


def _jax_checkpoint(num_actions: int, seed: int = 0) -> tuple[bytes, dict]:
    """A Dopamine JAX C51 pickle (plain dicts, as flax's FrozenDict unpickles to) and its weights."""
    import pickle

    from fdt.oracle.checkpoints import TF_NAMES
    from tests.test_c51 import random_tensors

    tf = random_tensors(num_actions, np.random.default_rng(seed))
    layers = ("Conv_0", "Conv_1", "Conv_2", "Dense_0", "Dense_1")
    params = {layer: {"kernel": tf[k], "bias": tf[b]} for layer, (k, b) in zip(layers, TF_NAMES)}
    return pickle.dumps({"online_params": {"params": params}}), tf


def test_fetch_from_the_bucket_checks_the_checkpoint(tmp_path: Path) -> None:
    from fdt.oracle.checkpoints import fetch_c51_checkpoint, load_c51
    from fdt.replay.sources import GcsSource, SourceError
    from tests.loopback import gcs_emulator, upload

    fixture = Path(__file__).parent / "fixtures" / "tf_checkpoint"
    blob, _ = _jax_checkpoint(4)
    with gcs_emulator(DOPAMINE_BUCKET) as endpoint:
        for name in ("tf_ckpt-199.index", "tf_ckpt-199.data-00000-of-00001", "tf_ckpt-199.meta"):
            upload(endpoint, DOPAMINE_BUCKET, f"lucid/c51/Breakout/1/{name}",
                   (fixture / name).read_bytes())
        upload(endpoint, DOPAMINE_BUCKET, "lucid/c51/Breakout/1/ckpt.199", blob)
        source = GcsSource(DOPAMINE_BUCKET, "lucid/c51", endpoint, folder="")
        record = fetch_c51_checkpoint(source, "Breakout", 1, 199, "jax", tmp_path / "jax", 4,
                                      progress=False)
        assert record["files"]["ckpt.199"]["checked"][:2] == ["size", "md5"]
        assert (tmp_path / "jax" / "ckpt.199").read_bytes() == blob
        assert load_c51(tmp_path / "jax", "jax", 199, 4).num_actions == 4
        # The tiny TF fixture arrives byte for byte, is refused as not a C51, and nothing is
        # kept: a rerun fetches again once the source is mended.
        with pytest.raises(SourceError, match=r"^gs://download-dopamine-rl/lucid/c51/Breakout/1/: "
                           r"the source's files fail the checks on them, so nothing was kept in "
                           rf"{tmp_path / 'tf'} .*missing Online/Conv_2/weights"):
            fetch_c51_checkpoint(source, "Breakout", 1, 199, "tf", tmp_path / "tf", 4,
                                 progress=False)
        assert not (tmp_path / "tf" / "tf_ckpt-199.index").exists()
        # Issue 27: the wrong game's checkpoint named only the local copy; now the source's file
        # and the copy, as the replay's fetch errors do.
        with pytest.raises(SourceError, match=r"^gs://download-dopamine-rl/lucid/c51/Breakout/1/"
                           rf"ckpt\.199: .*nothing was kept in {tmp_path / 'other'} .*204 units = 4 "
                           r"actions x 51 atoms, but the game has 18"):
            fetch_c51_checkpoint(source, "Breakout", 1, 199, "jax", tmp_path / "other", 18,
                                 progress=False)
        assert not (tmp_path / "other" / "ckpt.199").exists()


def test_refused_checkpoint_names_the_oracle_alternatives(tmp_path: Path) -> None:
    from fdt.oracle.checkpoints import fetch_c51_checkpoint
    from fdt.replay.sources import GcsSource, SourceRefusedError
    from tests.loopback import serve_folder

    server, url = serve_folder(tmp_path, status=401)
    try:
        with pytest.raises(SourceRefusedError) as info:
            fetch_c51_checkpoint(GcsSource(DOPAMINE_BUCKET, "lucid/c51", url, folder=""), "Pong",
                                 1, 199, "tf", tmp_path / "d", 6, progress=False)
    finally:
        server.shutdown()
    message = str(info.value)
    assert message.startswith("the C51 checkpoint of Pong run 1 could not be fetched")
    assert "gs://download-dopamine-rl/lucid/c51/Pong/1/tf_ckpt-199.index" in message
    assert "HTTP 401" in message and "oracle.source.kind" in message and "'offline'" in message
    assert "replay bucket" not in message


def test_oracle_is_scored_under_the_dopamine_protocol() -> None:
    from fdt.oracle.scoring import evaluate_oracle

    net = C51Network(4)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias.view(4, 51)[3, -1] = 50.0  # always LEFT (Q = 10)
    first = evaluate_oracle(net, "Breakout", episodes=2, seed=5, max_steps=40, envs=2,
                            progress=False)
    again = evaluate_oracle(net, "Breakout", episodes=2, seed=5, max_steps=40, envs=1,
                            progress=False)
    assert first == again  # sticky draws come from each episode's own seed
    assert [e["steps"] for e in first["episodes"]] == [40, 40]  # never FIREs: the ball never comes
    assert first["mean_return"] == 0.0 and first["protocol"] == "dopamine"
    with pytest.raises(OracleError, match="the oracle has 4 actions, Pong has 6"):
        evaluate_oracle(net, "Pong", episodes=1, seed=0, progress=False)
