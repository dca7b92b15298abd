"""RA-DT's external memory: the training set's trajectories cut every C steps, embedded by a
frozen DT.

As RA-DT's cache (src/buffers/cache_dataset.py, buffer_utils.py), each trajectory of rows [b, e)
is cut at c = b, b + C, b + 2C, ... once per whole piece of C steps (C is RA-DT's `cache_steps`;
(e - b) // C cuts, the agent's `make_sampler`). At each cut the memory holds one item:

- its key: the window of the K steps before the cut, rows [max(b, c' - K), c') with
  c' = max(c, b + 2) (RA-DT never embeds a first step alone) and c' at most e, embedded by a
  frozen, trained DT of the same game and seed as the mean of its last hidden states at the state
  tokens (RA-DT's `representation_type: mean`, `agg_token: s`), L2-normalised (`norm`), so that
  inner product is cosine similarity;
- its value, what the model reads: the past C and the next C steps, rows
  [max(b, c - C), min(e, c + C)) (RA-DT's `cache_context_len` = `future_context_len` = C,
  `compute_start_end_context_idx`), so the model reads what happened after the retrieved
  situation; an item of fewer than 2C rows (the first cut's) is padded on the left, as RA-DT's.

The memory stores those keys, each item's trajectory and rows [start, end), the return of its
trajectory (for reweighting) and the key of the model that embedded it. It also stores the query
of every training window (the same embedding of the window's K steps): the embedder is frozen, so
a window's query never changes and training reads it instead of running the embedder.

The embedder's state encoder sees each row's frame stack once (`state_features`, one vector per
training-set row); keys and queries are its transformer over those features. The features are
also what radt reads of a retrieved item's states, as RA-DT's Procgen models read images encoded
by a frozen encoder (`img_is_encoded`), so retrieval adds no encoder work.

Files (one `.npy` each, written atomically, `manifest.json` last): keys (N, d) float32,
trajectory (N,) int64, start (N,) int64, end (N,) int64, total_return (N,) float32,
queries (W, d) float32, state_features (n, d) float32.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fdt.dataset.training_set import TrainingSet, save_arrays
from fdt.io import write_json
from fdt.models.trainer import WindowBatches
from fdt.models.transformer import DecisionTransformer
from fdt.settings import defaults

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: items are the past and next C steps of a cut, keyed by the K before it
ARRAYS = ("keys", "trajectory", "start", "end", "total_return", "queries", "state_features")


class RetrievalError(ValueError):
    """Bad input to retrieval (a memory that does not fit what reads it), in one sentence."""


_RETRIEVAL = defaults("retrieval")


@dataclass(frozen=True)
class MemoryParams:
    subtrajectory_length: int  # C (RA-DT's cache_steps); the workflow's default is K
    context_length: int  # K of the training windows whose queries are stored
    deduplicate: bool = _RETRIEVAL["deduplicate"]
    dedup_sim_cutoff: float = _RETRIEVAL["dedup_sim_cutoff"]
    embed_batch_size: int = _RETRIEVAL["embed_batch_size"]


def subtrajectory_starts(trajectory_ends: np.ndarray, length: int, *,
                         partial_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """RA-DT's cuts: the row and trajectory number of every C = `length`-th row from each
    trajectory's first, in row order, once per whole piece of C rows (the training cache), or
    also for a shorter tail with `partial_last` (the eval cache's `range(0, len, cache_steps)`)."""
    if length < 1:
        raise RetrievalError(f"sub-trajectories need at least one step, not {length}")
    ends = np.asarray(trajectory_ends, dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    counts = -((begins - ends) // length) if partial_last else (ends - begins) // length
    trajectory = np.repeat(np.arange(len(ends), dtype=np.int64), counts)
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts,
                                                                      counts)
    return begins[trajectory] + within * length, trajectory


def key_windows(cuts: np.ndarray, begin: np.ndarray, end: np.ndarray,
                context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """First row and length of each cut's key window: the K steps before the cut, but never a
    first step alone (RA-DT's `end_idx = max(count, 2)`, then `trj.sample(context_len, end_idx)`)
    and never past its trajectory's end."""
    last = np.minimum(end, np.maximum(cuts, begin + 2))
    first = np.maximum(begin, last - context_length)
    return first, last - first


def item_rows(cuts: np.ndarray, begin: np.ndarray, end: np.ndarray,
              length: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [start, end) of each cut's item: its past and next C = `length` steps within the
    trajectory (RA-DT's `compute_start_end_context_idx` with cache_len = future_cache_len = C)."""
    return np.maximum(begin, cuts - length), np.minimum(end, cuts + length)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (inner product = cosine similarity)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-8)).astype(np.float32)


@torch.inference_mode()
def mean_state_embedding(model: DecisionTransformer, window: Mapping[str, torch.Tensor],
                         lengths: torch.Tensor | None = None) -> torch.Tensor:
    """RA-DT's `mean` representation of windows (B, T): the mean of the model's last hidden
    states at the state tokens (over each row's first `lengths` steps when given), L2-normalised.
    Windows are given as the model's state tokens (`state_tokens`, B, T, d)."""
    hidden = model.state_hidden_states(window["state_tokens"], window["actions"],
                                       window["returns_to_go"],
                                       window["timesteps"]).float()
    if lengths is not None:
        steps = torch.arange(hidden.shape[1], device=hidden.device)
        weight = (steps[None, :] < lengths[:, None]).float()[..., None]
        hidden = (hidden * weight).sum(1) / weight.sum(1).clamp(min=1.0)
    else:
        hidden = hidden.mean(1)
    return torch.nn.functional.normalize(hidden, dim=1)


@torch.inference_mode()
def encode_rows(model: DecisionTransformer, batches: WindowBatches, batch_size: int,
                progress: bool = True) -> torch.Tensor:
    """The model's state token (n, d) of every training-set row, each frame stack encoded once."""
    rows = torch.arange(len(batches.actions), device=batches.device)
    out = torch.empty((len(rows), model.config.n_embd), device=batches.device)
    with tqdm(total=len(rows), desc="state features", unit="row", disable=not progress) as bar:
        for first in range(0, len(rows), batch_size):
            states = batches.windows(rows[first:first + batch_size], 1)["states"][:, 0]
            out[first:first + len(states)] = model.encode_states(states)
            bar.update(len(states))
    return out


def feature_windows(batches: WindowBatches, features: torch.Tensor, starts: torch.Tensor,
                    length: int) -> dict[str, torch.Tensor]:
    """Windows of `length` rows beginning at `starts` (any shape S) with the rows' state features
    in place of frames: state_tokens (*S, length, d), actions and returns-to-go (*S, length),
    timesteps (*S). Rows past the training set repeat its last (a short window's unread tail)."""
    rows = (starts[..., None] + torch.arange(length, device=starts.device)).clamp(
        max=len(batches.actions) - 1)
    return {"state_tokens": features[rows], "actions": batches.actions[rows],
            "returns_to_go": batches.returns_to_go[rows], "timesteps": batches.timesteps[starts]}


def item_windows(batches: WindowBatches, features: torch.Tensor, start: torch.Tensor,
                 end: torch.Tensor, width: int) -> dict[str, torch.Tensor]:
    """Items of rows [start, end) (any shape S) as the model reads them, padded on the left to
    `width` steps as RA-DT pads: state_tokens (*S, width, d), actions and returns-to-go
    (*S, width), timesteps (*S) of their first rows, and which steps are real (*S, width).
    The rows are the training set's (`batches`), or an evaluation episode's (the same fields)."""
    rows = end[..., None] - width + torch.arange(width, device=end.device)
    valid = rows >= start[..., None]
    rows = torch.maximum(rows, start[..., None])  # padding reads the first row, masked
    return {"state_tokens": features[rows], "actions": batches.actions[rows],
            "returns_to_go": batches.returns_to_go[rows], "timesteps": batches.timesteps[start],
            "valid": valid}


def embed_windows(model: DecisionTransformer, batches: WindowBatches, features: torch.Tensor,
                  starts: np.ndarray, length: int, batch_size: int, desc: str,
                  progress: bool = True, lengths: np.ndarray | None = None) -> np.ndarray:
    """Keys (N, d) of the windows of `length` rows beginning at `starts`, each the mean over its
    first `lengths` rows when given (causal attention keeps the later rows out of theirs)."""
    out = np.empty((len(starts), model.config.n_embd), dtype=np.float32)
    with tqdm(total=len(starts), desc=desc, unit="window", disable=not progress) as bar:
        for first in range(0, len(starts), batch_size):
            chunk = torch.as_tensor(np.array(starts[first:first + batch_size]),
                                    device=batches.device)
            used = (None if lengths is None else
                    torch.as_tensor(np.array(lengths[first:first + batch_size]),
                                    device=batches.device))
            window = feature_windows(batches, features, chunk, length)
            out[first:first + len(chunk)] = mean_state_embedding(model, window,
                                                                 used).cpu().numpy()
            bar.update(len(chunk))
    return out


def deduplicate_keys(keys: np.ndarray, sim_cutoff: float, k: int = 10,
                     batch_size: int = 512) -> np.ndarray:
    """RA-DT's `deduplicate_cache` as the configs that deduplicate run it (radt_disc_icl and
    radt_mazerunner set `use_gpu`, so it takes its GPU path; `dedup_kwargs` defaults k 10,
    batch 512): the items, in order and in batches, each search their k nearest among all items,
    removed ones and their own trajectory's included, and every neighbour above `sim_cutoff`
    other than the item itself is removed. Items removed before their batch do not search; two
    near-copies in one batch remove each other. (Its CPU path would exclude the batch's
    trajectories and the removed items from the search.) Returns the kept mask."""
    import faiss

    keys = np.ascontiguousarray(keys, dtype=np.float32)
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    removed = np.zeros(len(keys), dtype=bool)
    for first in range(0, len(keys), batch_size):
        batch = np.arange(first, min(first + batch_size, len(keys)))
        batch = batch[~removed[batch]]
        if len(batch) == 0:
            continue
        similarity, neighbours = index.search(keys[batch], min(k, len(keys)))
        similarity[neighbours == batch[:, None]] = -1.0  # never the item itself
        copies = (neighbours >= 0) & (similarity > sim_cutoff)
        removed[neighbours[copies]] = True
    return ~removed


def build_memory(training_set: str | Path, embedder: DecisionTransformer, out_dir: str | Path,
                 params: MemoryParams, *, embedder_key: str, device: torch.device,
                 provenance: Mapping[str, Any] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Embed the training set's cuts (their key windows) and training windows; write the
    memory."""
    data = TrainingSet(training_set, verify=False)
    width = embedder.config.n_embd
    C, K = params.subtrajectory_length, params.context_length
    ends = np.asarray(data.trajectory_ends, dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    cuts, trajectory = subtrajectory_starts(ends, C)
    if len(cuts) == 0:
        raise RetrievalError(f"{data.folder} has no trajectory of {C} "
                             "steps: the memory would be empty (lower retrieval.subtrajectory_length)")
    if K > embedder.config.context_length:
        raise RetrievalError(
            f"the embedding model reads windows of at most {embedder.config.context_length} "
            f"steps, but the memory asks for {K}-step keys and queries")
    embedder = embedder.to(device).eval()
    batches = WindowBatches(data, K, device)
    features = encode_rows(embedder, batches, params.embed_batch_size, progress)
    key_first, key_length = key_windows(cuts, begins[trajectory], ends[trajectory], K)
    keys = embed_windows(embedder, batches, features, key_first, K, params.embed_batch_size,
                         "memory keys", progress, lengths=key_length)
    starts, stops = item_rows(cuts, begins[trajectory], ends[trajectory], C)
    queries = embed_windows(embedder, batches, features, batches.starts.cpu().numpy(),
                            K, params.embed_batch_size, "window queries", progress)
    embedded = len(cuts)
    if params.deduplicate:
        kept = deduplicate_keys(keys, params.dedup_sim_cutoff)
        if not kept.any():
            raise RetrievalError(f"deduplication above {params.dedup_sim_cutoff} removed all "
                                 f"{len(keys)} items of {data.folder}: the embedder's keys are "
                                 "near-copies of one another (set retrieval.deduplicate: false "
                                 "or raise retrieval.dedup_sim_cutoff)")
        keys, starts, stops, trajectory = keys[kept], starts[kept], stops[kept], trajectory[kept]
    total_return = np.asarray(data.returns_to_go, dtype=np.float32)[begins][trajectory]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The arrays appear together once all are written: a killed build leaves only temporaries
    # (.NAME.npy.tmp-PID), which the next build removes, not arrays no rule declares.
    with contextlib.ExitStack() as together:
        entries = save_arrays(out_dir, {"keys": keys, "trajectory": trajectory, "start": starts,
                                        "end": stops, "total_return": total_return,
                                        "queries": queries, "state_features": features.cpu().numpy()},
                              together)
    manifest = {
        "format_version": FORMAT_VERSION,
        "params": asdict(params),
        "game": data.manifest.get("game"),
        "training_set": data.manifest.get("key"),
        "training_set_rows": len(data),
        "embedding_model": embedder_key,
        "width": width,
        "counts": {"subtrajectories": embedded, "kept": len(keys),
                   "removed_as_duplicates": int(embedded - len(keys)),
                   "trajectories": len(np.unique(trajectory)),
                   "queries": len(queries)},
        "arrays": entries,
        **dict(provenance or {}),
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


class Memory:
    """A built memory, read back: its arrays (memory-mapped) and manifest."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise RetrievalError(f"{path}: missing; the memory in {self.folder} is incomplete "
                               "(rebuild it with the build_memory rule)")
        self.manifest: dict[str, Any] = json.loads(path.read_text())
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise RetrievalError(f"{self.folder}: a memory of format {version}, but this code "
                                 f"reads format {FORMAT_VERSION} (items of the past and next C "
                                 "steps); rebuild it with the build_memory rule")
        self.arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r")
                       for name in ARRAYS}
        if len(self.keys) == 0:
            raise RetrievalError(f"{self.folder}: the memory holds no sub-trajectory")
        width = self.manifest["width"]
        for name in ("keys", "queries", "state_features"):
            if self.arrays[name].shape[1] != width:
                raise RetrievalError(f"{self.folder}/{name}.npy: vectors of width "
                                   f"{self.arrays[name].shape[1]}, the manifest says {width}")

    @property
    def keys(self) -> np.ndarray:
        return self.arrays["keys"]

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    @property
    def subtrajectory_length(self) -> int:
        return int(self.manifest["params"]["subtrajectory_length"])

    @property
    def item_steps(self) -> int:
        """Steps the model reads of an item: the past and the next C."""
        return 2 * self.subtrajectory_length

    def check_for(self, data: TrainingSet, embedding_width: int | None = None) -> None:
        """One sentence when this memory was built from another training set or game, or with an
        embedding model of another width than the one that will query it."""
        built_from, game = self.manifest.get("training_set"), self.manifest.get("game")
        if data.manifest.get("game") != game:
            raise RetrievalError(f"{self.folder}: a memory of {game}, but the training set "
                               f"{data.folder} is of {data.manifest.get('game')}")
        if (built_from != data.manifest.get("key")
                or self.manifest["training_set_rows"] != len(data)):
            raise RetrievalError(f"{self.folder}: built from training set {built_from}, not from "
                               f"{data.folder} (key {data.manifest.get('key')}); rebuild it")
        if embedding_width is not None and embedding_width != self.width:
            raise RetrievalError(f"{self.folder}: keys of width {self.width}, but the embedding "
                               f"model gives width {embedding_width}")
