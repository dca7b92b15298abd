"""Training windows cut from learning histories, and RA-DT's memory over them.

Histories are concatenated into one stream (task after task). AD's windows are any `context`
consecutive steps of one task's stream, across episode boundaries (the learning history is the
context); DT's and RA-DT's stay inside one episode. RA-DT's memory holds every in-episode window
at a stride, keyed by an embedder's mean hidden state; neighbours for training are found once,
with the query's own episode excluded (RA-DT's `exclude_same_trjs`), through the retriever of
fdt.retrieval (the same scoring and reweighting as our Atari RA-DT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from fdt.incontext.model import NO_ACTION
from fdt.retrieval.retrieve import RetrievalParams, Retriever

FIELDS = ("row", "col", "t", "prev_action", "prev_reward", "rtg", "action")


@dataclass
class Stream:
    """All histories as flat arrays; `episode` numbers are global (unique across tasks)."""

    arrays: dict[str, np.ndarray]
    task: np.ndarray
    episode: np.ndarray
    episode_return: np.ndarray  # per global episode

    def __len__(self) -> int:
        return len(self.task)


def build_stream(frames: Sequence[pd.DataFrame]) -> Stream:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
    tasks, episodes, returns = [], [], []
    offset = 0
    for frame in frames:
        reward = frame["reward"].to_numpy(np.float32)
        action = frame["action"].to_numpy(np.int64)
        episode = frame["episode"].to_numpy(np.int64)
        ep = episode - episode.min() + offset
        per_episode = np.bincount(ep - offset, weights=reward)
        # return-to-go within the episode: the episode's total less what came before
        before = np.concatenate([[0.0], np.cumsum(reward)[:-1]])
        first = np.flatnonzero(np.concatenate([[True], ep[1:] != ep[:-1]]))
        before_episode = np.repeat(before[first], np.diff(np.append(first, len(ep))))
        rtg = per_episode[ep - offset] - (before - before_episode)
        parts["row"].append(frame["row"].to_numpy(np.int64))
        parts["col"].append(frame["col"].to_numpy(np.int64))
        parts["t"].append(frame["t"].to_numpy(np.int64))
        parts["prev_action"].append(np.concatenate([[NO_ACTION], action[:-1]]))
        parts["prev_reward"].append(np.concatenate([[0.0], reward[:-1]]).astype(np.float32))
        parts["rtg"].append(rtg.astype(np.float32))
        parts["action"].append(action)
        tasks.append(frame["task"].to_numpy(np.int64))
        episodes.append(ep)
        returns.append(per_episode)
        offset = int(ep.max()) + 1
    return Stream({k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(tasks),
                  np.concatenate(episodes), np.concatenate(returns).astype(np.float32))


def window_starts(stream: Stream, length: int, within_episode: bool, stride: int = 1) -> np.ndarray:
    """Start rows of every window of `length` steps inside one task (or one episode)."""
    group = stream.episode if within_episode else stream.task
    ends = np.flatnonzero(np.append(group[1:] != group[:-1], True))  # last row of each group
    starts = np.concatenate([[0], ends[:-1] + 1])
    out = [np.arange(s, e + 2 - length, stride) for s, e in zip(starts, ends) if e + 1 - s >= length]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def gather(stream: Stream, starts: np.ndarray, length: int, within_episode: bool) -> dict[str, torch.Tensor]:
    """A batch of windows as tensors; DT windows see the episode's start as a fresh stream."""
    rows = starts[:, None] + np.arange(length)[None, :]
    batch = {k: torch.as_tensor(v[rows]) for k, v in stream.arrays.items()}
    if within_episode:  # the window's first step has no previous action in its own episode
        first = torch.as_tensor(stream.arrays["t"][rows] == 0)
        batch["prev_action"] = torch.where(first, NO_ACTION, batch["prev_action"])
        batch["prev_reward"] = torch.where(first, 0.0, batch["prev_reward"])
    batch["mask"] = torch.ones(len(starts), length, dtype=torch.bool)
    return batch


Embedder = Callable[[dict[str, torch.Tensor]], np.ndarray]


@dataclass
class Memory:
    """RA-DT's memory: item windows, their keys, and each item's neighbours for training."""

    starts: np.ndarray  # item -> first row in the stream
    length: int
    keys: np.ndarray
    retriever: Retriever
    neighbours: np.ndarray  # (items, reweight_top_k), -1 where none


def build_memory(stream: Stream, embed: Embedder, length: int, stride: int,
                 params: RetrievalParams, batch_size: int = 256) -> Memory:
    starts = window_starts(stream, length, within_episode=True, stride=stride)
    keys = np.concatenate([embed(gather(stream, starts[i:i + batch_size], length, True))
                           for i in range(0, len(starts), batch_size)]).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True) + 1e-8  # cosine, as RA-DT's norm: True
    trajectory = stream.episode[starts]
    retriever = Retriever(keys, trajectory, stream.episode_return[trajectory], params)
    neighbours = retriever.retrieve(keys, trajectory).ids
    return Memory(starts, length, keys, retriever, neighbours)


def retrieved_tokens(model: torch.nn.Module, stream: Stream, memory: Memory,
                     ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k*L, d) the retrieved items read as step tokens, and their padding mask."""
    batch_size, k = ids.shape
    safe = np.maximum(ids, 0).reshape(-1)
    device = next(model.parameters()).device
    items = {k: v.to(device) for k, v in gather(stream, memory.starts[safe], memory.length,
                                                 True).items()}
    tokens = model.tokens(items).reshape(batch_size, k * memory.length, -1)
    pad = torch.as_tensor(np.repeat(ids < 0, memory.length, axis=1))
    return tokens, pad
