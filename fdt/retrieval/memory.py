"""RA-DT's external memory: sub-trajectories of the training set, embedded by a frozen DT.

The training set is cut into sub-trajectories of C steps (RA-DT's `cache_steps`) that never cross
a trajectory's end: each trajectory gives its rows [s, s + C), [s + C, s + 2C), ... while a whole
piece fits (a shorter tail is left out). A frozen, trained DT of the same game and seed embeds
each piece as the mean of its last hidden states at the state tokens (RA-DT's
`representation_type: mean`, `agg_token: s`), L2-normalised so that inner product is cosine
similarity. The memory stores those keys, where each piece is (trajectory, start row), the return
of its trajectory (for reweighting) and the key of the model that embedded it. It also stores the
query of every training window (the same embedding of the window's K steps): the embedder is
frozen, so a window's query never changes and training reads it instead of running the embedder.

The embedder's state encoder sees each row's frame stack once (`state_features`, one vector per
training-set row); keys and queries are its transformer over those features. The features are
also what radt reads of a retrieved sub-trajectory's states, as RA-DT's Procgen models read
images encoded by a frozen encoder (`img_is_encoded`), so retrieval adds no encoder work.

Files (one `.npy` each, written atomically, `manifest.json` last): keys (N, d) float32,
trajectory (N,) int64, start (N,) int64, total_return (N,) float32, queries (W, d) float32,
state_features (n, d) float32.
"""

from __future__ import annotations

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
FORMAT_VERSION = 1
ARRAYS = ("keys", "trajectory", "start", "total_return", "queries", "state_features")


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


def subtrajectory_starts(trajectory_ends: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """First row and trajectory number of every whole piece of `length` rows, in row order;
    a piece never crosses a trajectory's end."""
    if length < 1:
        raise RetrievalError(f"sub-trajectories need at least one step, not {length}")
    ends = np.asarray(trajectory_ends, dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    counts = (ends - begins) // length
    trajectory = np.repeat(np.arange(len(ends), dtype=np.int64), counts)
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts,
                                                                      counts)
    return begins[trajectory] + within * length, trajectory


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
    timesteps (*S)."""
    rows = starts[..., None] + torch.arange(length, device=starts.device)
    return {"state_tokens": features[rows], "actions": batches.actions[rows],
            "returns_to_go": batches.returns_to_go[rows], "timesteps": batches.timesteps[starts]}


def embed_windows(model: DecisionTransformer, batches: WindowBatches, features: torch.Tensor,
                  starts: np.ndarray, length: int, batch_size: int, desc: str,
                  progress: bool = True) -> np.ndarray:
    """Keys (N, d) of the windows of `length` rows beginning at `starts`, in batches."""
    out = np.empty((len(starts), model.config.n_embd), dtype=np.float32)
    with tqdm(total=len(starts), desc=desc, unit="window", disable=not progress) as bar:
        for first in range(0, len(starts), batch_size):
            chunk = torch.as_tensor(np.array(starts[first:first + batch_size]),
                                    device=batches.device)
            window = feature_windows(batches, features, chunk, length)
            out[first:first + len(chunk)] = mean_state_embedding(model, window).cpu().numpy()
            bar.update(len(chunk))
    return out


def deduplicate_keys(keys: np.ndarray, trajectory: np.ndarray, sim_cutoff: float,
                     k: int = 10, batch_size: int = 512) -> np.ndarray:
    """RA-DT's `deduplicate_cache` (its `dedup_kwargs` defaults k 10, batch 512): the items, in
    order and in batches, each search their k nearest among the items that are neither of a
    trajectory in the batch nor removed yet, and every neighbour above `sim_cutoff` is removed.
    Items removed before their batch do not search. Returns the kept mask."""
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
        # as RA-DT's CPU path: the whole batch's trajectories are excluded for every query
        excluded = np.flatnonzero(np.isin(trajectory, trajectory[batch]) | removed)
        selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(excluded.astype(np.int64)))
        similarity, neighbours = index.search(keys[batch], k,
                                              params=faiss.SearchParameters(sel=selector))
        copies = (neighbours >= 0) & (similarity > sim_cutoff)
        removed[neighbours[copies]] = True
    return ~removed


def build_memory(training_set: str | Path, embedder: DecisionTransformer, out_dir: str | Path,
                 params: MemoryParams, *, embedder_key: str, device: torch.device,
                 provenance: Mapping[str, Any] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Embed the training set's sub-trajectories and training windows; write the memory."""
    data = TrainingSet(training_set, verify=False)
    width = embedder.config.n_embd
    starts, trajectory = subtrajectory_starts(np.asarray(data.trajectory_ends),
                                              params.subtrajectory_length)
    if len(starts) == 0:
        raise RetrievalError(f"{data.folder} has no trajectory of {params.subtrajectory_length} "
                             "steps: the memory would be empty (lower retrieval.subtrajectory_length)")
    if max(params.subtrajectory_length, params.context_length) > embedder.config.context_length:
        raise RetrievalError(
            f"the embedding model reads windows of at most {embedder.config.context_length} "
            f"steps, but the memory asks for {params.subtrajectory_length}-step sub-trajectories "
            f"and {params.context_length}-step queries")
    embedder = embedder.to(device).eval()
    batches = WindowBatches(data, params.context_length, device)
    features = encode_rows(embedder, batches, params.embed_batch_size, progress)
    keys = embed_windows(embedder, batches, features, starts, params.subtrajectory_length,
                         params.embed_batch_size, "memory keys", progress)
    queries = embed_windows(embedder, batches, features, batches.starts.cpu().numpy(),
                            params.context_length, params.embed_batch_size, "window queries",
                            progress)
    embedded = len(starts)
    if params.deduplicate:
        kept = deduplicate_keys(keys, trajectory, params.dedup_sim_cutoff)
        keys, starts, trajectory = keys[kept], starts[kept], trajectory[kept]
    ends = np.asarray(data.trajectory_ends, dtype=np.int64)
    first_rows = np.concatenate([[0], ends[:-1]])
    total_return = np.asarray(data.returns_to_go, dtype=np.float32)[first_rows][trajectory]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = save_arrays(out_dir, {"keys": keys, "trajectory": trajectory, "start": starts,
                                    "total_return": total_return, "queries": queries,
                                    "state_features": features.cpu().numpy()})
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
