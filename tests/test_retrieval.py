"""RA-DT's pieces on hand-built cases: sub-trajectories, the index, dedup, self-exclusion,
reweighting, and the model's attention pattern."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdt.models.transformer import ModelConfig
from fdt.retrieval.index import IndexParams, build_index, recall, search
from fdt.retrieval.memory import (
    deduplicate_keys,
    item_rows,
    key_windows,
    normalise,
    subtrajectory_starts,
)
from fdt.retrieval.model import RetrievalDecisionTransformer, radt_config
from fdt.retrieval.retrieve import (
    RetrievalParams,
    Retriever,
    drop_candidates,
    filter_by_similarity,
    min_max_norm,
    reweight_retrieved_trjs,
)


def test_subtrajectories_never_cross_trajectory_ends() -> None:
    # trajectories [0, 7), [7, 10), [10, 18), [18, 19): pieces of 3 rows
    starts, trajectory = subtrajectory_starts(np.array([7, 10, 18, 19]), 3)
    assert starts.tolist() == [0, 3, 7, 10, 13]
    assert trajectory.tolist() == [0, 0, 1, 2, 2]
    ends = np.array([7, 10, 18, 19])
    for start, t in zip(starts, trajectory):
        first = 0 if t == 0 else ends[t - 1]
        assert first <= start and start + 3 <= ends[t]
    # every trajectory at least C long is covered by whole pieces only
    starts, _ = subtrajectory_starts(np.array([4, 8]), 4)
    assert starts.tolist() == [0, 4]
    assert subtrajectory_starts(np.array([2, 3]), 5)[0].tolist() == []
    # RA-DT's eval cache also cuts a shorter tail: range(0, len, C) per trajectory
    starts, trajectory = subtrajectory_starts(np.array([7, 10, 18, 19]), 3, partial_last=True)
    assert starts.tolist() == [0, 3, 6, 7, 10, 13, 16, 18]
    assert trajectory.tolist() == [0, 0, 0, 1, 2, 2, 2, 3]


def test_items_are_the_past_and_next_c_steps_keyed_by_the_k_before_the_cut() -> None:
    # trajectories [0, 7) and [7, 17), C = 3, K = 4: cuts 0, 3 and 7, 10, 13
    ends = np.array([7, 17])
    cuts, trajectory = subtrajectory_starts(ends, 3)
    assert cuts.tolist() == [0, 3, 7, 10, 13]
    begin, end = np.array([0, 7])[trajectory], ends[trajectory]
    # the value: rows [cut - C, cut + C) within the trajectory, so the first cut's is its next C
    start, stop = item_rows(cuts, begin, end, 3)
    assert list(zip(start.tolist(), stop.tolist())) == [(0, 3), (0, 6), (7, 10), (7, 13),
                                                        (10, 16)]
    # the key: the K = 4 rows before the cut, the first cut's the trajectory's first two rows
    first, length = key_windows(cuts, begin, end, 4)
    assert list(zip(first.tolist(), length.tolist())) == [(0, 2), (0, 3), (7, 2), (7, 3),
                                                          (9, 4)]
    # a trajectory of one row: a key of that row alone, never past its end
    assert key_windows(np.array([5]), np.array([5]), np.array([6]), 4)[1].tolist() == [1]


# Unit keys in the plane: angles 0, 10, 90, 180 and 45 degrees.
ANGLES = np.radians([0.0, 10.0, 90.0, 180.0, 45.0])
KEYS = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1).astype(np.float32)


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_index_returns_the_hand_computed_neighbours(kind: str) -> None:
    index = build_index(KEYS, IndexParams(kind=kind, nlist=1, nprobe=1))
    query = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    similarity, ids = search(index, query, 3)
    # query 0 degrees: 0 (cos 0 = 1), 10 (0.985), 45 (0.707); query 90: 90, 45, 10 (0.174)
    assert ids.tolist() == [[0, 1, 4], [2, 4, 1]]
    np.testing.assert_allclose(similarity, [[1.0, np.cos(np.radians(10)), np.sqrt(0.5)],
                                            [1.0, np.sqrt(0.5), np.sin(np.radians(10))]],
                               atol=1e-6)
    # more than there are: -1 ids, -inf similarity
    similarity, ids = search(build_index(KEYS[:2]), query[:1], 3)
    assert ids.tolist() == [[0, 1]]


def test_recall_counts_the_exact_neighbours_found() -> None:
    exact = np.array([[0, 1, 2], [3, 4, 5]])
    assert recall(np.array([[2, 1, 0], [3, 9, 8]]), exact) == 4 / 6
    assert recall(exact, exact) == 1.0


def test_deduplication_removes_near_copies_as_ra_dts_gpu_path() -> None:
    keys = normalise(np.array([[1.0, 0.0], [1.0, 0.001], [1.0, 0.002], [0.0, 1.0],
                               [0.0, 1.0]], dtype=np.float32))
    # one item a batch: 0 removes its near-copies 1 and 2 (of any trajectory), 3 removes 4
    kept = deduplicate_keys(keys, sim_cutoff=0.98, batch_size=1)
    assert kept.tolist() == [True, False, False, True, False]
    assert deduplicate_keys(keys, sim_cutoff=1.5, batch_size=1).all()
    # RA-DT's batch of 512 holds all five: near-copies searching together remove each other
    assert not deduplicate_keys(keys, sim_cutoff=0.98).any()


def _unit(degrees: list[float]) -> np.ndarray:
    angles = np.radians(degrees)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def test_deduplication_searches_removed_items_too_as_ra_dt() -> None:
    # k = 2: item 0 finds itself (skipped) and 1 (0.3 degrees), removing 1; item 2 (0.5)
    # finds itself and the removed 1 (0.2 degrees away), which fills the slot where 0 (0.5
    # away) would have been, so 0 and 2 are both kept
    kept = deduplicate_keys(_unit([0.0, 0.3, 0.5]), sim_cutoff=0.98, k=2, batch_size=1)
    assert kept.tolist() == [True, False, True]
    # with k = 3, item 0 reaches 2 as well
    kept = deduplicate_keys(_unit([0.0, 0.3, 0.5]), sim_cutoff=0.98, k=3, batch_size=1)
    assert kept.tolist() == [True, False, False]


def test_min_max_norm_over_valid_entries() -> None:
    values = np.array([[2.0, 4.0, 3.0, 100.0]])
    valid = np.array([[True, True, True, False]])
    np.testing.assert_allclose(min_max_norm(values, valid), [[0.0, 1.0, 0.5, 0.0]], atol=1e-6)


def test_reweighting_mixes_similarity_and_return() -> None:
    similarity = np.array([[0.9, 0.7, 0.5]], dtype=np.float32)
    ids = np.array([[0, 1, 2]])
    total_return = np.array([1.0, 9.0, 5.0], dtype=np.float32)
    # similarity only: the nearest
    score, kept = reweight_retrieved_trjs(similarity, ids, total_return, k=1, return_weight=0.0)
    assert kept.tolist() == [[0]]
    # normalised similarity [1, 0.5, 0] + normalised return [0, 1, 0.5] = [1, 1.5, 0.5]
    score, kept = reweight_retrieved_trjs(similarity, ids, total_return, k=3)
    assert kept.tolist() == [[1, 0, 2]]
    np.testing.assert_allclose(score, [[1.5, 1.0, 0.5]], atol=1e-5)
    # return three times as heavy: [1, 3.5, 1.5]
    score, kept = reweight_retrieved_trjs(similarity, ids, total_return, k=2, return_weight=3.0)
    assert kept.tolist() == [[1, 2]]
    np.testing.assert_allclose(score, [[3.5, 1.5]], atol=1e-5)
    # an invalid candidate is never kept before a valid one; normalised over the valid two
    score, kept = reweight_retrieved_trjs(similarity, np.array([[-1, 1, 2]]), total_return, k=3)
    assert kept.tolist() == [[1, 2, -1]]
    np.testing.assert_allclose(score, [[2.0, 0.0, -1.0]], atol=1e-5)


def test_drop_candidates_keeps_the_order_of_the_rest() -> None:
    similarity = np.array([[0.9, 0.8, 0.7, 0.6]])
    ids = np.array([[5, 6, 7, 8]])
    kept_sim, kept = drop_candidates(similarity, ids, np.array([[True, False, True, False]]), 3)
    assert kept.tolist() == [[6, 8, -1]]
    assert kept_sim[0, :2].tolist() == pytest.approx([0.8, 0.6]) and kept_sim[0, 2] == -np.inf


def test_retriever_excludes_own_trajectory_and_near_copies() -> None:
    trajectory = np.array([0, 0, 1, 2, 3])
    total_return = np.array([0.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    params = RetrievalParams(top_k=2, reweight_top_k=1, return_weight=0.0, sim_cutoff=None)
    retriever = Retriever(KEYS, trajectory, total_return, params)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    assert retriever.retrieve(query).ids.tolist() == [[0]]
    # a window of trajectory 0 never reads items 0 and 1: the next nearest is 45 degrees
    assert retriever.retrieve(query, np.array([0])).ids.tolist() == [[4]]
    # the near-copy cutoff drops 0 (1.0) and 1 (0.985 > 0.98)
    cutoff = Retriever(KEYS, trajectory, total_return,
                       RetrievalParams(top_k=3, reweight_top_k=1, return_weight=0.0,
                                       sim_cutoff=0.98))
    assert cutoff.retrieve(query).ids.tolist() == [[4]]
    # with the return weighted, the higher-return candidate among the top_k wins: scores of
    # 0, 1, 4 are [1, 0.95, 0] + 2 x [0, 0, 1]
    rich = Retriever(KEYS, trajectory, np.array([0, 0, 0, 0, 9], np.float32),
                     RetrievalParams(top_k=3, reweight_top_k=2, return_weight=2.0,
                                     sim_cutoff=None))
    assert rich.retrieve(query).ids.tolist() == [[4, 0]]
    # added items (an evaluation episode) are found
    retriever.add(np.array([[1.0, 0.0]], np.float32), retriever.new_trajectory(), 3.0)
    assert retriever.new_trajectory() == 5
    assert sorted(retriever.retrieve(query, np.array([0])).ids.tolist()[0]) == [5]


def _radt(retrieved: int = 2, length: int = 3) -> RetrievalDecisionTransformer:
    torch.manual_seed(0)
    base = ModelConfig(num_actions=4, context_length=4, max_timestep=20, n_layer=2, n_head=2,
                       n_embd=16, dropout=0.0)
    return RetrievalDecisionTransformer(radt_config(base, retrieved, length, 8)).eval()


def _inputs(B: int = 2, T: int = 4, R: int = 2, S: int = 6, seed: int = 0) -> tuple:
    """Own windows and R retrieved items of S = 2C steps (C = 3) per row."""
    g = torch.Generator().manual_seed(seed)
    own = (torch.randint(0, 256, (B, T, 4, 84, 84), generator=g, dtype=torch.uint8),
           torch.randint(0, 4, (B, T), generator=g), torch.rand(B, T, generator=g) * 5,
           torch.tensor([0, 3])[:B])
    context = {"context_features": torch.randn(B, R, S, 8, generator=g),
               "context_actions": torch.randint(0, 4, (B, R, S), generator=g),
               "context_returns_to_go": torch.rand(B, R, S, generator=g),
               "context_timesteps": torch.tensor([[0, 5], [2, 7]])[:B],
               "context_valid": torch.ones(B, R, S, dtype=torch.bool)}
    return own, context


@torch.no_grad()
def test_radt_is_causal_over_its_own_tokens_and_every_position_sees_the_retrieved() -> None:
    model = _radt()
    (states, actions, rtg, timesteps), context = _inputs()
    logits = model(states, actions, rtg, timesteps, **context)
    assert logits.shape == (2, 4, 4)
    # a later step's change leaves the earlier steps' logits as they were
    later = states.clone()
    later[:, 2] = 255 - later[:, 2]
    changed = model(later, actions, rtg, timesteps, **context)
    torch.testing.assert_close(changed[:, :2], logits[:, :2])
    assert not torch.allclose(changed[:, 2:], logits[:, 2:])
    # any retrieved token reaches every position, the first included
    other = dict(context, context_actions=(context["context_actions"] + 1) % 4)
    moved = model(states, actions, rtg, timesteps, **other)
    assert (moved - logits).abs().amax(dim=-1).gt(1e-6).all()
    # a row with nothing valid reads nothing: the same as no retrieval at all for that row
    empty = dict(context, context_valid=torch.tensor([[False, False], [True, True]])[..., None]
                 .expand(2, 2, 6))
    none = model(states, actions, rtg, timesteps, **empty)
    alone = model(states[:1], actions[:1], rtg[:1], timesteps[:1])
    torch.testing.assert_close(none[:1], alone)
    torch.testing.assert_close(none[1:], logits[1:])
    # an invalid item is not read: changing it changes nothing
    half = dict(context, context_valid=torch.tensor([[True, False], [True, False]])[..., None]
                .expand(2, 2, 6))
    features = context["context_features"].clone()
    features[:, 1] = 0
    torch.testing.assert_close(model(states, actions, rtg, timesteps, **half),
                               model(states, actions, rtg, timesteps,
                                     **dict(half, context_features=features)))
    # nor is an item's left padding (its first 3 steps here), while its real steps are
    padded = torch.ones(2, 2, 6, dtype=torch.bool)
    padded[:, 0, :3] = False
    unread, read = context["context_features"].clone(), context["context_features"].clone()
    unread[:, 0, :3], read[:, 0, 3:] = 5.0, 5.0
    base = model(states, actions, rtg, timesteps, **dict(context, context_valid=padded))
    torch.testing.assert_close(model(states, actions, rtg, timesteps,
                                     **dict(context, context_valid=padded,
                                            context_features=unread)), base)
    assert not torch.allclose(model(states, actions, rtg, timesteps,
                                    **dict(context, context_valid=padded,
                                           context_features=read)), base)
    # items of another length than the past and next C = 3 steps: one sentence
    with pytest.raises(ValueError, match="retrieved items of 3 steps, but the model reads items "
                                         "of 6"):
        model(states, actions, rtg, timesteps,
              **{k: v[:, :, :3] if v.dim() > 2 else v for k, v in context.items()})
    # features of another width than the memory the model was built for: one sentence
    with pytest.raises(ValueError, match="state features of width 6, but the model reads a "
                                         "memory of width 8"):
        model(states, actions, rtg, timesteps,
              **dict(context, context_features=torch.zeros(2, 2, 6, 6)))


@torch.no_grad()
def test_radt_one_step_logits_agree_with_the_full_pass() -> None:
    model = _radt()
    (states, actions, rtg, timesteps), context = _inputs()
    full = model(states, actions, rtg, timesteps, **context)
    memory = model.retrieved_tokens(**context)
    own = model.encode_states(states.reshape(-1, 4, 84, 84)).reshape(2, 4, -1)
    at = model.forward_tokens(own[:, :3], actions[:, :2], rtg[:, :3], timesteps,
                              at_step=torch.tensor([2, 1]), memory=memory)
    torch.testing.assert_close(at, torch.stack([full[0, 2], full[1, 1]]), atol=1e-5, rtol=1e-5)


def test_sim_cutoff_filters_training_retrieval_only() -> None:
    # RA-DT's evaluation cache has no sim_cutoff: the nearest keys stay candidates there
    training = RetrievalParams()
    evaluation = training.at_evaluation()
    assert training.sim_cutoff == 0.98 and evaluation.sim_cutoff is None
    zero = np.zeros(5, np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    # training drops 0 (1.0) and 1 (0.985): the nearest left is 45 degrees
    assert Retriever(KEYS, np.arange(5), zero, training).retrieve(query).ids.tolist() == [[4]]
    # evaluation keeps them: the key at 0 degrees itself
    assert Retriever(KEYS, np.arange(5), zero, evaluation).retrieve(query).ids.tolist() == [[0]]


def test_return_reweighting_only_at_evaluation() -> None:
    # item 1 (10 degrees) has the highest return; the query is at 90 degrees
    total_return = np.array([0, 9, 0, 0, 0], np.float32)
    query = np.array([[0.0, 1.0]], dtype=np.float32)
    training = RetrievalParams()
    assert training.return_weight == 0.0 and training.at_evaluation().return_weight == 1.0
    # training: 90 degrees (1.0) is a near-copy, so the most similar left, 45 degrees, is read
    assert Retriever(KEYS, np.arange(5), total_return,
                     training).retrieve(query).ids.tolist() == [[4]]
    # evaluation: similarities [0, 0.174, 1, 0, 0.707] + returns [0, 1, 0, 0, 0], both already
    # in [0, 1]: item 1 scores 1.174 against the query's own direction's 1.0
    retrieved = Retriever(KEYS, np.arange(5), total_return,
                          training.at_evaluation()).retrieve(query)
    assert retrieved.ids.tolist() == [[1]]
    np.testing.assert_allclose(retrieved.score, [[1.0 + np.sin(np.radians(10))]], atol=1e-5)


def test_sim_cutoff_keeps_near_copies_at_minus_one_in_a_pool_of_100_as_ra_dt() -> None:
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    zero = np.zeros(5, np.float32)
    # top_k 1: RA-DT searches 100 (here all 5), gives 0 (1.0) and 1 (0.985) similarity -1, and
    # keeps the best one left, 45 degrees (searching only top_k would leave nothing)
    one = RetrievalParams(top_k=1, reweight_top_k=1, sim_cutoff=0.98)
    assert Retriever(KEYS, np.arange(5), zero, one).retrieve(query).ids.tolist() == [[4]]
    similarity, ids = filter_by_similarity(np.array([[1.0, 0.985, 0.7, -np.inf]]),
                                           np.array([[0, 1, 4, -1]]), 0.98, 3)
    assert ids.tolist() == [[4, 0, 1]] and similarity.tolist() == [[0.7, -1.0, -1.0]]
    # every key a near-copy: one is still read (the first searched), at score 0
    near = Retriever(_unit([0.0, 0.5, 1.0]), np.arange(3), np.zeros(3, np.float32),
                     RetrievalParams(top_k=2, reweight_top_k=1, sim_cutoff=0.98))
    retrieved = near.retrieve(query)
    assert retrieved.ids.tolist() == [[0]] and retrieved.score.tolist() == [[0.0]]
