"""The vector index over the memory's keys (faiss): exact inner-product search by default, HNSW or
IVF for large memories, with recall against exact search to say what the approximation costs.

Keys are L2-normalised, so inner product is cosine similarity. Results are deterministic for a
seed: IVF's k-means is seeded and HNSW's graph is built on one thread (its insertion order then
decides the graph).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fdt.settings import defaults

KINDS = ("exact", "hnsw", "ivf")
_INDEX = defaults("retrieval", "index")


@dataclass(frozen=True)
class IndexParams:
    kind: str = _INDEX["kind"]
    hnsw_m: int = _INDEX["hnsw_m"]  # graph degree
    ef_search: int = _INDEX["ef_search"]  # HNSW candidates kept while searching
    nlist: int = _INDEX["nlist"]  # IVF cells (0: about 4 sqrt(N))
    nprobe: int = _INDEX["nprobe"]  # IVF cells visited per query
    seed: int = _INDEX["seed"]


def build_index(keys: np.ndarray, params: IndexParams | None = None):  # -> faiss.Index
    """An inner-product index holding `keys` (N, d), ids 0..N-1."""
    import faiss

    params = params or IndexParams()
    if params.kind not in KINDS:
        raise ValueError(f"retrieval.index.kind must be one of {', '.join(KINDS)}, not "
                         f"{params.kind!r}")
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    n, d = keys.shape
    if params.kind == "exact":
        index = faiss.IndexFlatIP(d)
        index.add(keys)
        return index
    if params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # a deterministic graph
        try:
            index.add(keys)
        finally:
            faiss.omp_set_num_threads(threads)
        index.hnsw.efSearch = params.ef_search
        return index
    nlist = params.nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))  # faiss wants 39 per cell
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = params.seed
    index.train(keys)
    index.add(keys)
    index.nprobe = min(params.nprobe, nlist)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner products (B, k) and ids (B, k) of each query's k nearest keys, best first; id -1
    (similarity -inf) where fewer than k were found."""
    k = min(k, index.ntotal)
    similarity, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    similarity[ids < 0] = -np.inf
    return similarity, ids


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact k nearest (per row) that an approximate search also found."""
    hits = sum(len(np.intersect1d(a[a >= 0], b[b >= 0])) for a, b in zip(found, exact))
    return hits / max(1, int((exact >= 0).sum()))
