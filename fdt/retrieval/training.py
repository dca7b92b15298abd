"""Training `radt` with the existing trainer: retrieval batched per training batch.

Each batch's windows query the memory with their stored queries (the frozen embedder's mean
representation of the window, fdt.retrieval.memory), excluding their own trajectory; the kept
sub-trajectories are gathered from the same training-set tensors the windows come from and read
by the model's cross-attention (fdt.retrieval.model).
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
from fdt.retrieval.memory import Memory, RetrievalError, feature_windows
from fdt.retrieval.model import RetrievalDecisionTransformer, radt_config
from fdt.retrieval.retrieve import RetrievalParams, Retrieved, Retriever


def context_inputs(batches: WindowBatches, features: torch.Tensor, memory_start: np.ndarray,
                   retrieved: Retrieved, length: int) -> dict[str, torch.Tensor]:
    """The retrieved sub-trajectories of a batch as the model's `context_*` inputs (the memory's
    state features, the training set's actions, returns-to-go and timesteps); rows of nothing
    retrieved point at row 0 and are marked invalid."""
    starts = np.where(retrieved.valid, memory_start[np.maximum(retrieved.ids, 0)], 0)
    window = feature_windows(batches, features, torch.from_numpy(starts).to(batches.device),
                             length)
    return {"context_features": window["state_tokens"], "context_actions": window["actions"],
            "context_returns_to_go": window["returns_to_go"],
            "context_timesteps": window["timesteps"],
            "context_valid": torch.from_numpy(retrieved.valid).to(batches.device)}


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
        if self.memory.subtrajectory_length > params.context_length:
            raise RetrievalError(f"{self.memory.folder}: {self.memory.subtrajectory_length}-step "
                                 f"sub-trajectories do not fit the model's positions "
                                 f"({params.context_length} steps)")

    def build_model(self, config: ModelConfig) -> RetrievalDecisionTransformer:
        return RetrievalDecisionTransformer(radt_config(
            config, self.params.reweight_top_k, self.memory.subtrajectory_length,
            self.memory.width))

    def prepare(self, batches: WindowBatches) -> None:
        m = self.memory.arrays
        self.batches = batches
        self.start = np.asarray(m["start"])
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
        """The kept sub-trajectories of the given training windows."""
        assert self.retriever is not None, "prepare() first"
        return self.retriever.retrieve(self.queries[samples], self.window_trajectory[samples])

    def inputs(self, samples: torch.Tensor) -> dict[str, torch.Tensor]:
        assert self.batches is not None, "prepare() first"
        retrieved = self.retrieve(samples.cpu().numpy())
        return context_inputs(self.batches, self.features, self.start, retrieved,
                              self.memory.subtrajectory_length)

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
