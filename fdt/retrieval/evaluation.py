"""Evaluating `radt`: the protocol of the other models, played by the retrieval policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdt.dataset.training_set import TrainingSet
from fdt.evaluation.stage import EvalParams, check_model_fits, play_protocol
from fdt.models.trainer import WindowBatches, load_model
from fdt.retrieval.index import IndexParams
from fdt.retrieval.memory import Memory, RetrievalError
from fdt.retrieval.model import load_radt
from fdt.retrieval.policy import RetrievalPolicy, memory_items
from fdt.retrieval.retrieve import RetrievalParams, Retriever
from fdt.settings import params_from


def retrieval_policy(model_path: str | Path, embedder_path: str | Path, memory_dir: str | Path,
                     training_set: str | Path, game: str, params: EvalParams, *,
                     eval_cache: bool | str = False) -> RetrievalPolicy:
    """The trained radt with its memory, checked to belong together before any episode."""
    device = torch.device(params.device)
    model, payload = load_radt(model_path, device)
    check_model_fits(model, game, payload.get("game"), params.rom_dir)
    embedder = load_model(embedder_path, device)
    memory = Memory(memory_dir)
    data = TrainingSet(training_set, verify=False)
    memory.check_for(data, embedder.config.n_embd)
    if model.config.memory_width != memory.width:
        raise RetrievalError(f"{model_path}: reads state features of width "
                             f"{model.config.memory_width}, but {memory.folder} holds width "
                             f"{memory.width}")
    if payload["memory"]["training_set"] != memory.manifest.get("training_set"):
        raise RetrievalError(f"{model_path}: trained with a memory of training set "
                             f"{payload['memory']['training_set']}, but {memory.folder} is of "
                             f"{memory.manifest.get('training_set')}")
    arrays = memory.arrays
    retriever = Retriever(np.asarray(arrays["keys"]), np.asarray(arrays["trajectory"]),
                          np.asarray(arrays["total_return"]),
                          params_from(RetrievalParams, payload["retrieval"]).at_evaluation(),
                          params_from(IndexParams, payload["index"]))
    batches = WindowBatches(data, model.config.context_length, device)
    features = torch.as_tensor(np.array(arrays["state_features"]), device=device)
    if model.config.subtrajectory_length != memory.subtrajectory_length:
        raise RetrievalError(f"{model_path}: reads items of the past and next "
                             f"{model.config.subtrajectory_length} steps, but {memory.folder} "
                             f"cuts every {memory.subtrajectory_length}")
    items = memory_items(batches, features, np.asarray(arrays["start"]), np.asarray(arrays["end"]),
                         model.config.item_steps)
    return RetrievalPolicy(model, embedder, retriever, items, device, timestep=params.timestep,
                           slots=params.envs, eval_cache=eval_cache)


def evaluate_radt(model_path: str | Path, embedder_path: str | Path, memory_dir: str | Path,
                  training_set: str | Path, game: str, params: EvalParams, out_dir: str | Path, *,
                  train_seed: int, eval_cache: bool | str = False,
                  progress: bool = True) -> dict[str, Any]:
    """Play the protocol with a trained radt; `episodes.parquet` and `summary.json` as the other
    models' (with the eval cache's size when in-context: `separate`, RA-DT's sep_eval_cache, or
    `joined`, fdt.retrieval.policy)."""
    if not params.targets:
        raise RetrievalError(f"no target return-to-go given for {game}")
    policy = retrieval_policy(model_path, embedder_path, memory_dir, training_set, game, params,
                              eval_cache=eval_cache)
    summary = play_protocol(policy, game, params, out_dir, model_name="radt",
                            train_seed=train_seed, progress=progress)
    summary["memory_items"] = len(policy.retriever)
    summary["eval_cache_episodes"] = policy.cached_episodes
    return summary
