"""Training `radt` with the existing trainer: retrieval batched per training batch.

Each batch's windows query the memory with their stored queries (the frozen embedder's mean
representation of the window, fdt.retrieval.memory), excluding their own trajectory; the kept
items (the past and next C steps of a cut) are gathered from the same training-set tensors the
windows come from and read by the model's cross-attention (fdt.retrieval.model).

Own-trajectory exclusion is per query: each window never reads its own trajectory, and may read
the other windows' of the batch. RA-DT's CPU search (`compute_indices_to_exclude` over the whole
batch's `trj_ids`) excludes every trajectory of the batch for every query; its GPU path, the one
its radt_disc_icl and radt_mazerunner configs run (`use_gpu`), masks each query's own only. We
keep the per-query rule: what a window reads then does not depend on which windows share its
batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from fdt.dataset.training_set import TrainingSet
from fdt.keys import canonical_json
from fdt.models.trainer import TrainParams, WindowBatches
from fdt.models.transformer import ModelConfig
from fdt.retrieval.index import IndexParams
from fdt.retrieval.memory import Memory, RetrievalError, item_windows
from fdt.retrieval.model import RetrievalDecisionTransformer, radt_config
from fdt.retrieval.retrieve import RetrievalParams, Retrieved, Retriever


def context_inputs(batches: WindowBatches, features: torch.Tensor, memory_start: np.ndarray,
                   memory_end: np.ndarray, retrieved: Retrieved,
                   width: int) -> dict[str, torch.Tensor]:
    """The retrieved items of a batch as the model's `context_*` inputs (the memory's state
    features, the training set's actions, returns-to-go and timesteps), padded on the left to
    `width` steps; nothing retrieved: every step marked unreal."""
    ids = np.maximum(retrieved.ids, 0)
    device = batches.device
    window = item_windows(batches, features, torch.from_numpy(memory_start[ids]).to(device),
                          torch.from_numpy(memory_end[ids]).to(device), width)
    valid = window["valid"] & torch.from_numpy(retrieved.valid).to(device)[..., None]
    return {"context_features": window["state_tokens"], "context_actions": window["actions"],
            "context_returns_to_go": window["returns_to_go"],
            "context_timesteps": window["timesteps"], "context_valid": valid}


class RetrievalTraining:
    """The trainer's extension for `radt` (fdt.models.trainer.TrainingExtension)."""

    base_model = "dt"

    def __init__(self, memory: Memory, params: RetrievalParams,
                 index_params: IndexParams | None = None) -> None:
        self.memory, self.params = memory, params
        self.index_params = index_params or IndexParams()
        self.retriever: Retriever | None = None
        self.batches: WindowBatches | None = None

    def check(self, data: TrainingSet, params: TrainParams) -> None:
        """A memory of another training set or game, or for windows of another length: one
        sentence before training."""
        self.memory.check_for(data)
        self.trajectory_ends = np.asarray(data.trajectory_ends)
        built = self.memory.manifest["params"]["context_length"]
        if built != params.context_length:
            raise RetrievalError(f"{self.memory.folder}: queries of {built}-step windows, but "
                                 f"train.context_length is {params.context_length}")

    def build_model(self, config: ModelConfig) -> RetrievalDecisionTransformer:
        return RetrievalDecisionTransformer(radt_config(
            config, self.params.reweight_top_k, self.memory.subtrajectory_length,
            self.memory.width))

    def prepare(self, batches: WindowBatches) -> None:
        m = self.memory.arrays
        self.batches = batches
        self.start, self.end = np.asarray(m["start"]), np.asarray(m["end"])
        self.features = torch.as_tensor(np.array(m["state_features"]), device=batches.device)
        self.queries = np.asarray(m["queries"])
        if len(self.queries) != len(batches):
            raise RetrievalError(f"{self.memory.folder}: {len(self.queries)} window queries, but "
                                 f"the training set has {len(batches)} windows")
        self.retriever = Retriever(np.asarray(m["keys"]), np.asarray(m["trajectory"]),
                                   np.asarray(m["total_return"]), self.params, self.index_params)
        # the trajectory of each window (check() has read the training set's ends)
        self.window_trajectory = np.searchsorted(self.trajectory_ends,
                                                 batches.starts.cpu().numpy(), side="right")

    def retrieve(self, samples: np.ndarray) -> Retrieved:
        """The kept items of the given training windows."""
        assert self.retriever is not None, "prepare() first"
        return self.retriever.retrieve(self.queries[samples], self.window_trajectory[samples])

    def inputs(self, samples: torch.Tensor) -> dict[str, torch.Tensor]:
        assert self.batches is not None, "prepare() first"
        retrieved = self.retrieve(samples.cpu().numpy())
        return context_inputs(self.batches, self.features, self.start, self.end, retrieved,
                              self.memory.item_steps)

    def digest(self) -> str:
        """What else decides the weights: the memory and the retrieval settings."""
        what = {"memory": self.memory.manifest["arrays"]["keys"]["sha256"],
                "retrieval": asdict(self.params), "index": asdict(self.index_params)}
        return hashlib.sha256(canonical_json(what).encode()).hexdigest()[:16]

    def payload(self) -> dict[str, Any]:
        """Saved with the weights: what the model retrieves with at evaluation."""
        return {"retrieval": asdict(self.params), "index": asdict(self.index_params),
                "memory": {k: self.memory.manifest.get(k)
                           for k in ("training_set", "embedding_model", "width", "game")}}
