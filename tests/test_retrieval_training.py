"""RA-DT on a real (tiny) training set: the memory, bad input, training with the trainer's
checkpoints and resume, and the evaluation policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.dataset.training_set import TrainingSet
from fdt.models.trainer import CHECKPOINT, MODEL, TrainParams, WindowBatches, train
from fdt.models.transformer import DecisionTransformer, ModelConfig
from fdt.retrieval.index import IndexParams
from fdt.retrieval.memory import (
    Memory,
    MemoryParams,
    RetrievalError,
    build_memory,
    mean_state_embedding,
)
from fdt.retrieval.model import RetrievalDecisionTransformer, load_radt, radt_config
from fdt.retrieval.policy import RetrievalPolicy, memory_items
from fdt.retrieval.retrieve import RetrievalParams, Retriever
from fdt.retrieval.training import RetrievalTraining
from fdt.torchfile import NUMPY_RNG_STATE, load_torch_file
from tests.test_train import (
    _assert_same_weights,
    _run,
    training_set,  # noqa: F401  (the 20-row training set fixture)
)

TINY = {"context_length": 2, "batch_size": 4, "epochs": 2, "n_layer": 1, "n_head": 2,
        "n_embd": 16, "warmup_tokens": 16, "log_every": 2}
RETRIEVAL = RetrievalParams(top_k=4, reweight_top_k=2, sim_cutoff=None)


def _embedder(data: TrainingSet, n_embd: int = 16) -> DecisionTransformer:
    torch.manual_seed(1)
    return DecisionTransformer(ModelConfig(num_actions=4, context_length=2,
                                           max_timestep=data.max_timestep, n_layer=1, n_head=2,
                                           n_embd=n_embd, dropout=0.0)).eval()


@pytest.fixture
def memory(training_set: Path, tmp_path: Path) -> Path:  # noqa: F811
    data = TrainingSet(training_set)
    build_memory(training_set, _embedder(data), tmp_path / "memory",
                 MemoryParams(subtrajectory_length=2, context_length=2, deduplicate=False),
                 embedder_key="dt-key", device=torch.device("cpu"), progress=False)
    return tmp_path / "memory"


def test_memory_holds_the_past_and_next_c_steps_keyed_by_the_k_before_each_cut(
        training_set: Path, memory: Path) -> None:  # noqa: F811
    data = TrainingSet(training_set)
    m = Memory(memory)
    ends = np.asarray(data.trajectory_ends)
    begins = np.concatenate([[0], ends[:-1]])
    trajectory = np.asarray(m.arrays["trajectory"])
    start, end = np.asarray(m.arrays["start"]), np.asarray(m.arrays["end"])
    # C = 2: one cut per whole piece of 2 rows, at b, b + 2, ...; the item holds rows
    # [cut - 2, cut + 2) within the trajectory, the first cut's only its next 2
    cuts = np.concatenate([np.arange(b, b + (e - b) // 2 * 2, 2) for b, e in zip(begins, ends)])
    assert len(start) == len(cuts)
    np.testing.assert_array_equal(start, np.maximum(begins[trajectory], cuts - 2))
    np.testing.assert_array_equal(end, np.minimum(ends[trajectory], cuts + 2))
    assert m.item_steps == 4
    np.testing.assert_allclose(m.arrays["total_return"],
                               np.asarray(data.returns_to_go)[begins[trajectory]])
    keys = np.asarray(m.keys)
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, atol=1e-5)
    # the key of a later cut by hand: the K = 2 rows before it, embedded and normalised
    embedder = _embedder(data)
    later = int(np.flatnonzero(cuts > begins[trajectory])[0])
    batches = WindowBatches(data, 2, torch.device("cpu"))
    window = batches.windows(torch.tensor([cuts[later] - 2]))
    with torch.no_grad():
        tokens = embedder.encode_states(window["states"].reshape(2, 4, 84, 84)).reshape(1, 2, -1)
        hidden = embedder.state_hidden_states(tokens, window["actions"], window["returns_to_go"],
                                              window["timesteps"])[0].mean(0)
    np.testing.assert_allclose(keys[later], (hidden / hidden.norm()).numpy(), atol=1e-5)
    # a first cut's key: the trajectory's first two rows (RA-DT never embeds one step alone)
    first = int(np.flatnonzero(cuts == begins[trajectory])[0])
    window = batches.windows(torch.tensor([cuts[first]]))
    with torch.no_grad():
        tokens = embedder.encode_states(window["states"].reshape(2, 4, 84, 84)).reshape(1, 2, -1)
        hidden = embedder.state_hidden_states(tokens, window["actions"], window["returns_to_go"],
                                              window["timesteps"])[0].mean(0)
    np.testing.assert_allclose(keys[first], (hidden / hidden.norm()).numpy(), atol=1e-5)
    # one query per training window (n - 3K = 14), each the embedding of its window
    assert m.arrays["queries"].shape == (14, 16)
    assert m.manifest["embedding_model"] == "dt-key" and m.manifest["width"] == 16
    # the state features: the embedder's state token of every row, each stack encoded once
    assert m.arrays["state_features"].shape == (len(data), 16)
    np.testing.assert_allclose(m.arrays["state_features"][cuts[first]:cuts[first] + 2],
                               tokens[0].numpy(), atol=1e-5)
    # the items as the model reads them: left-padded to 2C = 4 steps, the padding marked
    items = memory_items(batches, torch.as_tensor(np.array(m.arrays["state_features"])),
                         start, end, 4)
    assert items.valid[first].tolist() == [False, False, True, True]
    assert items.valid[later].tolist() == [True, True, True, True]
    rows = np.arange(end[later] - 4, end[later])
    assert items.actions[later].tolist() == np.asarray(data.actions)[rows].tolist()
    assert items.timesteps[later] == batches.timesteps[start[later]]
    # a memory of the earlier format (C-step pieces): one sentence
    manifest = json.loads((memory / "manifest.json").read_text())
    (memory / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(RetrievalError, match="a memory of format 1, but this code reads "
                                             "format 2"):
        Memory(memory)


def test_bad_memory_is_one_sentence_before_training(training_set: Path, memory: Path,  # noqa: F811
                                                    tmp_path: Path) -> None:
    data = TrainingSet(training_set)
    params = TrainParams(model="radt", seed=0, **TINY)
    manifest = json.loads((memory / "manifest.json").read_text())
    other_game = tmp_path / "other_game"
    other_game.mkdir()
    for f in memory.iterdir():
        (other_game / f.name).write_bytes(f.read_bytes())
    (other_game / "manifest.json").write_text(json.dumps({**manifest, "game": "Pong"}))
    with pytest.raises(RetrievalError, match="a memory of Pong, but the training set"):
        train(training_set, tmp_path / "out", params, progress=False,
              extension=RetrievalTraining(Memory(other_game), RETRIEVAL))
    (other_game / "manifest.json").write_text(json.dumps({**manifest, "training_set_rows": 99}))
    with pytest.raises(RetrievalError, match="built from training set"):
        train(training_set, tmp_path / "out", params, progress=False,
              extension=RetrievalTraining(Memory(other_game), RETRIEVAL))
    assert not (tmp_path / "out" / CHECKPOINT).exists()
    with pytest.raises(RetrievalError, match="keys of width 16, but the embedding model gives "
                                             "width 32"):
        Memory(memory).check_for(data, 32)
    with pytest.raises(RetrievalError, match="queries of 2-step windows, but "
                                             "train.context_length is 3"):
        RetrievalTraining(Memory(memory), RETRIEVAL).check(
            data, TrainParams(model="radt", seed=0, **{**TINY, "context_length": 3}))
    with pytest.raises(RetrievalError, match="the memory would be empty"):
        build_memory(training_set, _embedder(data), tmp_path / "empty",
                     MemoryParams(subtrajectory_length=50, context_length=2), embedder_key="k",
                     device=torch.device("cpu"), progress=False)
    assert not (tmp_path / "empty" / "manifest.json").exists()
    # RA-DT's deduplication with every similarity above the cutoff (-1.5) removes all 9 cuts
    with pytest.raises(RetrievalError, match="deduplication above -1.5 removed all 9 items"):
        build_memory(training_set, _embedder(data), tmp_path / "deduplicated",
                     MemoryParams(subtrajectory_length=2, context_length=2, deduplicate=True,
                                  dedup_sim_cutoff=-1.5),
                     embedder_key="k", device=torch.device("cpu"), progress=False)
    assert not (tmp_path / "deduplicated" / "manifest.json").exists()


def test_radt_trains_with_the_trainer_and_saves_what_it_retrieves_with(
        training_set: Path, memory: Path, tmp_path: Path) -> None:  # noqa: F811
    params = TrainParams(model="radt", seed=3, **TINY)
    extension = RetrievalTraining(Memory(memory), RETRIEVAL)
    metrics = train(training_set, tmp_path / "radt", params, progress=False, extension=extension)
    assert metrics["epochs"] == 2 and metrics["steps"] == 8  # 14 windows in batches of 4
    # each training window's kept items are never of its own trajectory
    retrieved = extension.retrieve(np.arange(14))
    own = extension.window_trajectory[np.arange(14)]
    assert retrieved.ids.shape == (14, 2) and retrieved.valid.all()
    assert not (np.asarray(Memory(memory).arrays["trajectory"])[retrieved.ids]
                == own[:, None]).any()
    model, payload = load_radt(tmp_path / "radt" / MODEL)
    assert model.config.retrieved == 2 and model.config.subtrajectory_length == 2
    assert model.config.memory_width == 16
    assert payload["retrieval"]["top_k"] == 4 and payload["memory"]["embedding_model"] == "dt-key"
    # other retrieval settings are other weights: a checkpoint of these is not resumed
    other = RetrievalTraining(Memory(memory), RetrievalParams(top_k=3, reweight_top_k=2))
    assert other.digest() != extension.digest()


RADT_KILLER = """
import os, signal, sys
import torch
from fdt.models.trainer import TrainParams, train
from fdt.retrieval.memory import Memory
from fdt.retrieval.retrieve import RetrievalParams
from fdt.retrieval.training import RetrievalTraining
torch.set_num_threads(1)
kill_at = int(sys.argv[4])
def hook(step, model):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
params = TrainParams(model="radt", seed=5, **{tiny})
extension = RetrievalTraining(Memory(sys.argv[3]), {retrieval})
train(sys.argv[1], sys.argv[2], params, on_step=hook if kill_at else None, progress=False,
      extension=extension)
"""


def test_radt_kill_and_resume_gives_the_same_weights(training_set: Path, memory: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    script = (RADT_KILLER.replace("{tiny}", repr(TINY))
              .replace("{retrieval}", repr(RETRIEVAL)))
    whole = _run(script, str(training_set), str(tmp_path / "whole"), str(memory), "0")
    assert whole.returncode == 0, whole.stderr
    killed = _run(script, str(training_set), str(tmp_path / "resumed"), str(memory), "6")
    assert killed.returncode == -9
    state = load_torch_file(tmp_path / "resumed" / CHECKPOINT, allow=NUMPY_RNG_STATE)["state"]
    assert state["epoch"] == 1 and state["step"] == 4
    resumed = _run(script, str(training_set), str(tmp_path / "resumed"), str(memory), "0")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(tmp_path / "whole" / MODEL, tmp_path / "resumed" / MODEL)


def _policy(training_set: Path, memory: Path, slots: int,  # noqa: F811
            eval_cache: bool | str = False) -> RetrievalPolicy:
    data = TrainingSet(training_set)
    torch.manual_seed(2)
    base = ModelConfig(num_actions=4, context_length=2, max_timestep=data.max_timestep,
                       n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    model = RetrievalDecisionTransformer(radt_config(base, 2, 2, 16)).eval()
    m = Memory(memory).arrays
    retriever = Retriever(np.asarray(m["keys"]), np.asarray(m["trajectory"]),
                          np.asarray(m["total_return"]), RETRIEVAL, IndexParams())
    items = memory_items(WindowBatches(data, 2, torch.device("cpu")),
                         torch.as_tensor(np.array(m["state_features"])), np.asarray(m["start"]),
                         np.asarray(m["end"]), 4)
    return RetrievalPolicy(model, _embedder(data), retriever, items, slots=slots,
                           eval_cache=eval_cache)


def test_policy_retrieves_batched_across_episodes_as_one_by_one(
        training_set: Path, memory: Path) -> None:  # noqa: F811
    together = _policy(training_set, memory, slots=2)
    alone = [_policy(training_set, memory, slots=1) for _ in range(2)]
    rng = np.random.default_rng(0)
    for policy in (together, *alone):
        for slot in range(policy.slots):
            policy.begin(slot, 5.0)
    for step in range(4):
        stacks = rng.integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
        together.observe([0, 1], stacks)
        for i, policy in enumerate(alone):
            policy.observe([0], stacks[i:i + 1])
        both = together.logits([0, 1])
        one = np.concatenate([policy.logits([0]) for policy in alone])
        np.testing.assert_allclose(both, one, atol=1e-5)
        for slot in (0, 1):
            together.record(slot, step % 4, 1.0)
        for policy in alone:
            policy.record(0, step % 4, 1.0)


def test_eval_cache_adds_finished_episodes_to_the_memory(
        training_set: Path, memory: Path) -> None:  # noqa: F811
    policy = _policy(training_set, memory, slots=1, eval_cache="joined")
    before = len(policy.retriever)
    rng = np.random.default_rng(1)
    policy.begin(0, 5.0)
    for step in range(5):
        policy.observe([0], rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8))
        policy.logits([0])
        policy.record(0, step % 4, 2.0 if step == 0 else 0.0)
    policy.end(0)
    # RA-DT's eval cache cuts 5 steps every C = 2 from the first, the tail included: 0, 2, 4;
    # each item the past and next 2 steps, [0, 2), [0, 4), [2, 5), left-padded to 4
    assert len(policy.retriever) == before + 3 and policy.cached_episodes == 1
    assert len(policy.items.actions) == before + 3
    assert policy.items.valid[-3:].tolist() == [[False, False, True, True], [True] * 4,
                                                [False, True, True, True]]
    valid = policy.items.valid[-3:]
    assert policy.items.actions[-3:][valid].tolist() == [0, 1, 0, 1, 2, 3, 2, 3, 0]
    # returns-to-go of the clipped rewards (2.0 counts as 1), from each step to the end
    assert policy.items.returns_to_go[-3:][valid].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0]
    assert policy.items.timesteps[-3:].tolist() == [0, 0, 2]
    # the added items' features are the embedder's state tokens of the episode's steps
    assert policy.items.features.shape[1:] == (4, 16)
    assert policy.retriever.total_return[-1] == 1.0
    # the last cut's key is the K = 2 steps before it, [2, 4), as the memory's keys
    tokens = policy.items.features[-1, 1:3][None]
    key = mean_state_embedding(policy.embedder, {
        "state_tokens": tokens, "actions": torch.tensor([[2, 3]]),
        "returns_to_go": torch.zeros(1, 2), "timesteps": torch.tensor([2])})
    np.testing.assert_allclose(policy.retriever.index.reconstruct(before + 2), key[0].numpy(),
                               atol=1e-5)


def test_separate_eval_cache_retrieves_only_from_its_own_finished_episodes(
        training_set: Path, memory: Path) -> None:  # noqa: F811
    # RA-DT's sep_eval_cache: the first episode reads nothing, the training memory never
    policy = _policy(training_set, memory, slots=1, eval_cache="separate")
    plain = _policy(training_set, memory, slots=1)
    assert len(policy.retriever) == 0 and len(policy.items.actions) == 0
    rng = np.random.default_rng(1)
    for p in (policy, plain):
        p.begin(0, 5.0)
    for step in range(5):
        stacks = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
        for p in (policy, plain):
            p.observe([0], stacks)
        # nothing retrieved: the logits are the model's own, without cross-attention
        logits = policy.logits([0])
        alone = plain.model.forward_tokens(plain.states[:1, :plain.length[0]],
                                           plain.actions[:1, :plain.length[0]],
                                           plain.returns[:1, :plain.length[0]],
                                           plain.step[:1], at_step=plain.length[:1] - 1)
        np.testing.assert_allclose(logits, alone.detach().numpy(), atol=1e-6)
        assert not np.allclose(logits, plain.logits([0]), atol=1e-4)
        for p in (policy, plain):
            p.record(0, 1, 0.0)
    policy.end(0)
    # the finished episode's three items (cuts 0, 2, 4) are the whole memory, of trajectory 0
    assert len(policy.retriever) == 3 and policy.retriever.trajectory.tolist() == [0, 0, 0]
    policy.begin(0, 5.0)
    policy.observe([0], rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8))
    query_ids = policy.retriever.retrieve(np.ones((1, 16), np.float32)).ids
    assert set(query_ids.ravel().tolist()) <= {0, 1, 2}
    assert np.isfinite(policy.logits([0])).all()
    with pytest.raises(ValueError, match="must be false, separate or joined"):
        _policy(training_set, memory, slots=1, eval_cache="shared")
