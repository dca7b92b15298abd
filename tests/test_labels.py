"""The FDT authors' published labels, mapped to training-set rows by (buffer, slot)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fdt.oracle.labels import LabelError, PublishedLabels

FIXTURE = Path(__file__).parent / "fixtures" / "fdt_feedback" / "Breakout_run1_feedback_ckpt.0.gz"


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """The fixture under the name the authors ship it as, beside the replay files."""
    folder = tmp_path / "Breakout" / "1"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURE, folder / "$store$_feedback_ckpt.0.gz")
    return folder


def raw_labels() -> np.ndarray:
    with gzip.open(FIXTURE) as f:
        return np.load(f)


def test_fixture_is_what_the_authors_ship() -> None:
    labels = raw_labels()
    assert labels.dtype == np.int64 and labels.shape == (999_999,)
    assert int(labels.sum()) == 243_878


def test_labels_line_up_with_training_set_rows(published: Path) -> None:
    labels = raw_labels()
    ones, zeros = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    # Training-set rows (in the training set's own order) at chosen slots of checkpoint 0.
    slots = np.array([ones[0], zeros[0], ones[-1], zeros[-1], 999_998, 0, 123_456])
    data = SimpleNamespace(buffer=np.zeros(len(slots), np.int32), slot=slots.astype(np.int32))
    oracle = PublishedLabels(published, file_capacity=1_000_000)
    positions = np.array([6, 0, 1, 2, 3, 4])  # a subset, out of order
    verdicts = oracle.verdicts(data, positions, progress=False)
    assert verdicts.feedback.tolist() == [labels[123_456], 1, 0, 1, 0, labels[999_998]]
    assert verdicts.q_values is None and (verdicts.oracle_action == -1).all()


def test_slot_without_a_label_is_named(published: Path) -> None:
    data = SimpleNamespace(buffer=np.array([0]), slot=np.array([999_999]))
    with pytest.raises(LabelError, match="slot 999999 has no published label"):
        PublishedLabels(published, 1_000_000).verdicts(data, np.array([0]), progress=False)


def test_labels_of_another_file_size_are_refused(published: Path) -> None:
    data = SimpleNamespace(buffer=np.array([0]), slot=np.array([5]))
    with pytest.raises(LabelError, match=r"checkpoint 0 \(4000 slots, so 3999 labels expected\).*"
                                          r"expected shape \(3999,\), found \(999999,\)"):
        PublishedLabels(published, 4000).verdicts(data, np.array([0]), progress=False)
    data = SimpleNamespace(buffer=np.array([1]), slot=np.array([5]))
    with pytest.raises(LabelError, match="feedback_ckpt.1.gz: file not found"):
        PublishedLabels(published, 1_000_000).verdicts(data, np.array([0]), progress=False)


def _states_parquet(path: Path, positions: list[int], actions: list[int]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(positions)
    pq.write_table(pa.table({
        "order": np.arange(n), "position": np.array(positions, np.int64),
        "replay_index": np.arange(n, dtype=np.int64), "buffer": np.zeros(n, np.int32),
        "slot": np.zeros(n, np.int32), "action": np.array(actions, np.int32),
        "best_action": np.full(n, 3, np.int32), "worst_action": np.zeros(n, np.int32),
        "gap": np.ones(n)}), path)
    return path


def test_label_states_with_a_network_and_with_published_files(episode_store: list[Path],
                                                               tmp_path: Path) -> None:
    """On the hand-checked training set of test_dataset (actions 0 0 0 0 1 2 3 0 1 2 3 3 0 1 0 0
    0 2 3 0, buffers 0 x7, 1 x4, 2 x9): an oracle that always says action 1, and label files."""
    import pyarrow.parquet as pq
    import torch

    from fdt.dataset.sampling import SamplingParams
    from fdt.dataset.training_set import build_training_set
    from fdt.oracle.c51 import C51Network
    from fdt.oracle.labels import NetworkOracle, label_states
    from fdt.replay.dopamine import write_npy_gz

    params = SamplingParams(seed=0, transitions=20, num_buffers=3, buffers_end=3, capacity=10,
                            trajectories_per_visit=1, context_length=2)
    build_training_set(dict(enumerate(episode_store)), tmp_path / "set", params, num_actions=4,
                       progress=False)
    states = _states_parquet(tmp_path / "states.parquet", [4, 8, 5, 13], [1, 1, 2, 1])
    net = C51Network(4)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias.view(4, 51)[1, -1] = 50.0  # action 1: all mass on +10
    summary = label_states(tmp_path / "set", states, tmp_path / "net", NetworkOracle(net, {"kind": "test"}),
                           all_transitions=True, progress=False)
    labels = pq.read_table(tmp_path / "net" / "labels.parquet").to_pandas()
    assert labels["oracle_action"].tolist() == [1, 1, 1, 1]
    assert labels["feedback"].tolist() == [1, 1, 0, 1]
    assert summary["states"] == {"count": 4, "positives": 3, "negatives": 1, "agreement": 0.75,
                                 "oracle_is_best_action": 0.0, "oracle_actions": {1: 4}}
    # 14 transitions (6 padding rows left out), of which actions == 1 at rows 4, 8, 13
    assert summary["transitions"]["count"] == 14 and summary["transitions"]["positives"] == 3
    assert labels["q_values"].iloc[0][1] == pytest.approx(10.0, abs=1e-3)

    # Published labels: 9 per file (slots 0..8 of a 10-slot file); label = slot parity, + buffer.
    folder = tmp_path / "published"
    folder.mkdir()
    for b in range(3):
        write_npy_gz(folder / f"$store$_feedback_ckpt.{b}.gz", (np.arange(9) + b) % 2)
    summary = label_states(tmp_path / "set", states, tmp_path / "pub", PublishedLabels(folder, 10),
                           progress=False)
    labels = pq.read_table(tmp_path / "pub" / "labels.parquet").to_pandas()
    # positions 4, 8, 5, 13: (buffer 0, slot 4), (1, 1), (0, 5), (2, 2)
    assert labels["feedback"].tolist() == [0, 0, 1, 0]
    assert "q_values" not in labels and summary["states"]["positives"] == 1


def test_an_offline_agent_labels_as_an_oracle(episode_store: list[Path], tmp_path: Path) -> None:
    """oracle.kind agent: a trained agent's `agent.pt`, read by the oracle loader, labels through
    the same stage (here a QR-DQN whose head always prefers action 2)."""
    from dataclasses import asdict

    import pyarrow.parquet as pq
    import torch

    from fdt.agents.registry import make_agent
    from fdt.dataset.sampling import SamplingParams
    from fdt.dataset.training_set import build_training_set
    from fdt.oracle.checkpoints import load_oracle
    from fdt.oracle.labels import NetworkOracle, label_states

    params = SamplingParams(seed=0, transitions=20, num_buffers=3, buffers_end=3, capacity=10,
                            trajectories_per_visit=1, context_length=2)
    build_training_set(dict(enumerate(episode_store)), tmp_path / "set", params, num_actions=4,
                       progress=False)
    agent = make_agent("qr_dqn")
    net = agent.network(4)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.view(4, -1)[2] = 5.0  # every quantile of action 2 is the highest
    torch.save({"agent": agent.name, "num_actions": 4, "hyperparameters": asdict(agent.params),
                "model": net.state_dict()}, tmp_path / "agent.pt")
    oracle_net = load_oracle("agent", tmp_path / "agent.pt", {"agent": "qr_dqn"}, 4)
    states = _states_parquet(tmp_path / "states.parquet", [4, 8, 5, 13], [1, 1, 2, 1])
    summary = label_states(tmp_path / "set", states, tmp_path / "out",
                           NetworkOracle(oracle_net, {"kind": "agent"}), all_transitions=False,
                           progress=False)
    labels = pq.read_table(tmp_path / "out" / "labels.parquet").to_pandas()
    assert labels["oracle_action"].tolist() == [2, 2, 2, 2]
    assert labels["feedback"].tolist() == [0, 0, 1, 0]  # the dataset took 2 only at row 5
    assert summary["states"]["agreement"] == 0.25
    with pytest.raises(ValueError, match="oracle kind 'published' has no network"):
        load_oracle("published", tmp_path / "agent.pt", {}, 4)
