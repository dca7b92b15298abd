"""Retrieval as RA-DT does it (ml-jku/RA-DT, src/buffers/cache.py), on the memory's index.

For each query: during training, the query's own trajectory is never a candidate
(`exclude_same_trjs`); the `top_k` most similar keys are the candidates, or, with a `sim_cutoff`,
the best `top_k` of a pool of the SIM_CUTOFF_POOL most similar after those too similar to the
query (inner product above `sim_cutoff`: near-copies) are given similarity -1, as RA-DT's
`filter_by_similarity` does (so they are read only when fewer than `top_k` others are left); the
candidates are scored by
`dist_weight` x similarity + `return_weight` x trajectory return, each min-max normalised over the
row's candidates (RA-DT's `reweight_retrieved_trjs`), and the best `reweight_top_k` are kept.
Parameter names are RA-DT's.

RA-DT retrieves with two caches of different settings: the training cache (`cache_kwargs`:
`sim_cutoff` 0.98 in radt_disc_icl and radt_mazerunner, `return_weight` left at the Cache's 0) and
the evaluation cache (`eval_cache_kwargs`: `top_k` 50, `return_weight` 1, and no `sim_cutoff`, as
neither a separate eval cache nor `Cache.update_attributes` keeps one). `RetrievalParams` holds
both: the plain fields are training's, the `eval_` fields evaluation's (`at_evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fdt.retrieval.index import IndexParams, build_index, search
from fdt.settings import defaults

_RETRIEVAL = defaults("retrieval")
# RA-DT's Cache default `sim_cutoff_k`, which none of its configs changes: the pool searched when
# a sim_cutoff is set.
SIM_CUTOFF_POOL = 100


@dataclass(frozen=True)
class RetrievalParams:
    top_k: int = _RETRIEVAL["top_k"]
    reweight_top_k: int = _RETRIEVAL["reweight_top_k"]  # k_keep: items read
    dist_weight: float = _RETRIEVAL["dist_weight"]
    return_weight: float = _RETRIEVAL["return_weight"]  # training (RA-DT's cache_kwargs)
    sim_cutoff: float | None = _RETRIEVAL["sim_cutoff"]  # training only
    exclude_same_trjs: bool = _RETRIEVAL["exclude_same_trjs"]
    eval_top_k: int = _RETRIEVAL["eval_top_k"]  # evaluation (RA-DT's eval_cache_kwargs)
    eval_return_weight: float = _RETRIEVAL["eval_return_weight"]
    eval_sim_cutoff: float | None = _RETRIEVAL["eval_sim_cutoff"]

    def at_evaluation(self) -> RetrievalParams:
        """The settings evaluation retrieves with: the eval cache's `top_k`, `return_weight` and
        `sim_cutoff`; there is no own trajectory to exclude."""
        return replace(self, top_k=self.eval_top_k, return_weight=self.eval_return_weight,
                       sim_cutoff=self.eval_sim_cutoff, exclude_same_trjs=False)


def min_max_norm(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1] over its valid entries (RA-DT's `min_max_norm_values`)."""
    low = np.where(valid, values, np.inf).min(axis=1, keepdims=True)
    high = np.where(valid, values, -np.inf).max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # a row with nothing valid: NaN, masked to 0 below
        scaled = (values - low) / (high - low + 1e-8)
    return np.where(valid, scaled, 0.0)


def drop_candidates(similarity: np.ndarray, ids: np.ndarray, drop: np.ndarray,
                    keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `keep` candidates of each row (in their order) that are not dropped; id -1 and
    similarity -inf fill rows with fewer."""
    valid = (ids >= 0) & ~drop
    order = np.argsort(~valid, axis=1, kind="stable")[:, :keep]  # valid ones first, in order
    ids = np.take_along_axis(np.where(valid, ids, -1), order, axis=1)
    similarity = np.take_along_axis(np.where(valid, similarity, -np.inf), order, axis=1)
    return similarity, ids


def filter_by_similarity(similarity: np.ndarray, ids: np.ndarray, sim_cutoff: float,
                         k: int) -> tuple[np.ndarray, np.ndarray]:
    """RA-DT's `filter_by_similarity`: candidates above `sim_cutoff` get similarity -1, then the
    k most similar of each row are kept (ties in their order); a missing one (-1 id) stays last."""
    similarity = np.where(similarity > sim_cutoff, -1.0, similarity)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarity, order, axis=1), np.take_along_axis(ids, order, axis=1)


def reweight_retrieved_trjs(similarity: np.ndarray, ids: np.ndarray, total_return: np.ndarray,
                            k: int, dist_weight: float = 1.0,
                            return_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Score = dist_weight x normalised similarity + return_weight x normalised trajectory return
    over each row's valid candidates (id >= 0); the best k by score, best first (ties: the more
    similar first). Invalid candidates score -1 and come last."""
    valid = ids >= 0
    score = dist_weight * min_max_norm(np.where(valid, similarity, 0.0), valid)
    if return_weight:
        returns = np.where(valid, total_return[np.maximum(ids, 0)], 0.0)
        score = score + return_weight * min_max_norm(returns, valid)
    score = np.where(valid, score, -1.0)
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(score, order, axis=1), np.take_along_axis(ids, order, axis=1)


@dataclass
class Retrieved:
    ids: np.ndarray  # (B, k_keep) memory items, -1 where none
    score: np.ndarray  # (B, k_keep)

    @property
    def valid(self) -> np.ndarray:
        return self.ids >= 0


class Retriever:
    """The memory's keys in an index, with what retrieval needs of each item."""

    def __init__(self, keys: np.ndarray, trajectory: np.ndarray, total_return: np.ndarray,
                 params: RetrievalParams | None = None,
                 index_params: IndexParams | None = None) -> None:
        params = params or RetrievalParams()
        if params.reweight_top_k > params.top_k:
            raise ValueError(f"retrieval.reweight_top_k ({params.reweight_top_k}) must not exceed "
                             f"retrieval.top_k ({params.top_k})")
        self.params = params
        self.index = build_index(keys, index_params or IndexParams())
        self.trajectory = np.asarray(trajectory, dtype=np.int64)
        self.total_return = np.asarray(total_return, dtype=np.float32)
        # Own-trajectory items are over-fetched, then dropped: at most this many per query.
        self.most_per_trajectory = int(np.bincount(self.trajectory).max()) if len(keys) else 0

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def retrieve(self, queries: np.ndarray, query_trajectory: np.ndarray | None = None) -> Retrieved:
        """The kept items of each query (B, d); with `query_trajectory` (training, when
        `exclude_same_trjs`), none of the query's own trajectory."""
        p = self.params
        exclude = p.exclude_same_trjs and query_trajectory is not None
        pool = p.top_k if p.sim_cutoff is None else max(p.top_k, SIM_CUTOFF_POOL)
        fetch = pool + (self.most_per_trajectory if exclude else 0)
        similarity, ids = search(self.index, queries, fetch)
        drop = np.zeros(ids.shape, dtype=bool)
        if exclude:
            drop |= self.trajectory[np.maximum(ids, 0)] == np.asarray(query_trajectory)[:, None]
        similarity, ids = drop_candidates(similarity, ids, drop, pool)
        if p.sim_cutoff is not None:
            similarity, ids = filter_by_similarity(similarity, ids, p.sim_cutoff, p.top_k)
        score, kept = reweight_retrieved_trjs(similarity, ids, self.total_return,
                                              p.reweight_top_k, p.dist_weight, p.return_weight)
        return Retrieved(kept, score)

    def emptied(self) -> Retriever:
        """A retriever of no items with these settings, over an exact index (RA-DT's separate
        eval cache, which finished episodes fill)."""
        width = self.index.d
        return Retriever(np.zeros((0, width), np.float32), np.zeros(0, np.int64),
                         np.zeros(0, np.float32), self.params, IndexParams(kind="exact"))

    def new_trajectory(self) -> int:
        """A trajectory number no item has yet (for items added at evaluation)."""
        return int(self.trajectory.max()) + 1 if len(self.trajectory) else 0

    def add(self, keys: np.ndarray, trajectory: int, total_return: float) -> None:
        """More items, of one new trajectory (RA-DT's eval cache: a finished episode)."""
        self.index.add(np.ascontiguousarray(keys, dtype=np.float32))
        self.trajectory = np.concatenate([self.trajectory, np.full(len(keys), trajectory)])
        self.total_return = np.concatenate([self.total_return,
                                            np.full(len(keys), total_return, np.float32)])
        self.most_per_trajectory = max(self.most_per_trajectory, len(keys))
