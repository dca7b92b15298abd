"""In-context evaluation: each method placed in each unseen task for N consecutive episodes.

All evaluation tasks run side by side as one batch (their episodes have the same fixed length).
What carries across episodes is each method's own: AD's context holds the last `context` steps
across episode boundaries (the anchor's persist_context); DT's is the current episode; RA-DT
keeps, per task, a separate evaluation memory (the anchor's sep_eval_cache) that starts empty and
receives every finished episode's windows, scored with its return (eval_cache_kwargs:
return_weight 1), and retrieves from it every `retrieve_every` steps. Actions are sampled from
the policy (the anchor's deterministic: False).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from fdt.incontext.environments import GridWorld, TaskSplit
from fdt.incontext.model import NO_ACTION, InContextTransformer
from fdt.incontext.sequences import Embedder
from fdt.retrieval.index import IndexParams
from fdt.retrieval.retrieve import RetrievalParams, Retriever


@dataclass(frozen=True)
class EvalParams:
    episodes: int = 40  # the paper's in-context episodes per task
    target_return: float = 90.0  # the anchor's dark_room target_return
    retrieve_every: int = 25  # the anchor's cache_steps
    item_stride: int = 10  # windows of a finished episode stored in the evaluation memory
    seed: int = 0


class _EvalMemory:
    """One task's evaluation memory: item windows (their step arrays) and a retriever."""

    def __init__(self, width: int, params: RetrievalParams) -> None:
        self.retriever = Retriever(np.zeros((0, width), np.float32), np.zeros(0, np.int64),
                                   np.zeros(0, np.float32), params, IndexParams(kind="exact"))
        self.items: list[dict[str, np.ndarray]] = []

    def add(self, keys: np.ndarray, items: list[dict[str, np.ndarray]], episode_return: float) -> None:
        self.retriever.add(keys, self.retriever.new_trajectory(), episode_return)
        self.items += items


def _as_batch(steps: dict[str, np.ndarray],
              device: torch.device | None = None) -> dict[str, torch.Tensor]:
    batch = {k: torch.as_tensor(v) for k, v in steps.items()}
    batch["mask"] = torch.ones(batch["row"].shape, dtype=torch.bool)
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def evaluate(model: InContextTransformer, method: str, split: TaskSplit, tasks: list[int],
             p: EvalParams, embed: Embedder | None = None, item_length: int = 50,
             retrieval: RetrievalParams | None = None, key_width: int | None = None,
             progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Returns one row per (task, episode) with the episode's return, and timings."""
    rng = np.random.default_rng(p.seed)
    torch.manual_seed(p.seed)
    mp = model.p
    device = next(model.parameters()).device
    worlds = [GridWorld(split.evaluation[i], split.size, split.max_episode_steps) for i in tasks]
    n, horizon = len(worlds), split.max_episode_steps
    retrieving = method.startswith("radt")
    if retrieving and (embed is None or retrieval is None or key_width is None):
        raise ValueError("RA-DT's evaluation needs its embedder and retrieval settings")
    memories = [_EvalMemory(key_width or 1, retrieval.at_evaluation() if retrieval else
                            RetrievalParams()) for _ in worlds] if retrieving else []
    names = ("row", "col", "t", "prev_action", "prev_reward", "rtg")
    history = {k: np.zeros((n, 0), np.float32 if k in ("prev_reward", "rtg") else np.int64)
               for k in names}
    rows, timing = [], {"steps": 0, "seconds": 0.0, "retrieval_seconds": 0.0}
    prev_action = np.full(n, NO_ACTION)
    prev_reward = np.zeros(n, np.float32)
    for episode in range(p.episodes):
        obs = np.stack([w.reset() for w in worlds])
        rtg = np.full(n, p.target_return, np.float32)
        total = np.zeros(n)
        if method != "ad":  # DT and RA-DT: a fresh context every episode
            history = {k: v[:, :0] for k, v in history.items()}
            prev_action, prev_reward = np.full(n, NO_ACTION), np.zeros(n, np.float32)
        episode_steps = {k: [] for k in (*names, "action")}
        tokens = pad = None
        for t in range(horizon):
            began = time.perf_counter()
            step = {"row": obs[:, 0], "col": obs[:, 1], "t": np.full(n, t),
                    "prev_action": prev_action, "prev_reward": prev_reward, "rtg": rtg}
            history = {k: np.concatenate([history[k], step[k][:, None].astype(history[k].dtype)],
                                         axis=1)[:, -mp.context:] for k in names}
            for k in names:
                episode_steps[k].append(step[k].copy())
            batch = _as_batch(history, device)
            if retrieving and t % p.retrieve_every == 0:
                r0 = time.perf_counter()
                tokens, pad = _retrieve(model, memories, embed, batch, item_length)
                timing["retrieval_seconds"] += time.perf_counter() - r0
            with torch.no_grad():
                logits = model(batch, tokens, pad)[:, -1]
            probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
            action = np.array([rng.choice(len(pr), p=pr / pr.sum()) for pr in probs])
            episode_steps["action"].append(action)
            results = [w.step(int(a)) for w, a in zip(worlds, action)]
            obs = np.stack([r[0] for r in results])
            reward = np.array([r[1] for r in results], np.float32)
            total += reward
            rtg = rtg - reward
            prev_action, prev_reward = action, reward
            timing["steps"] += n
            timing["seconds"] += time.perf_counter() - began
        rows += [{"task": tasks[i], "goal": list(split.evaluation[tasks[i]].goal),
                  "episode": episode + 1, "return": float(total[i])} for i in range(n)]
        if retrieving:
            _remember(memories, embed, episode_steps, total, item_length, p.item_stride)
        if progress is not None:
            progress(episode + 1)
    frame = pd.DataFrame(rows)
    share = timing["retrieval_seconds"] / timing["seconds"] if timing["seconds"] else 0.0
    return frame, {"env_steps_per_s": timing["steps"] / max(timing["seconds"], 1e-9),
                   "retrieval_share": share}


def _retrieve(model: InContextTransformer, memories: list[_EvalMemory], embed: Embedder | None,
              batch: dict[str, torch.Tensor], length: int) -> tuple[torch.Tensor | None,
                                                                     torch.Tensor | None]:
    if all(len(m.retriever) == 0 for m in memories):
        return None, None  # the first episode: nothing of this task seen yet
    assert embed is not None
    window = {k: v[:, -length:] for k, v in batch.items()}
    queries = embed(window).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True) + 1e-8
    chosen: list[list[dict[str, np.ndarray] | None]] = []
    for i, memory in enumerate(memories):
        if len(memory.retriever) == 0:
            chosen.append([None])
            continue
        ids = memory.retriever.retrieve(queries[i:i + 1]).ids[0]
        chosen.append([memory.items[j] if j >= 0 else None for j in ids])
    k = max(len(c) for c in chosen)
    template = next(item for c in chosen for item in c if item is not None)
    items = {key: np.stack([np.stack([(c[j] if j < len(c) and c[j] is not None else template)[key]
                                      for j in range(k)]) for c in chosen])
             for key in template}
    pad = np.array([[j >= len(c) or c[j] is None for j in range(k)] for c in chosen])
    device = next(model.parameters()).device
    flat = {key: torch.as_tensor(v.reshape(-1, v.shape[-1])).to(device)
            for key, v in items.items()}
    with torch.no_grad():
        tokens = model.tokens(flat).reshape(len(memories), k * length, -1)
    return tokens, torch.as_tensor(np.repeat(pad, length, axis=1)).to(device)


def _remember(memories: list[_EvalMemory], embed: Embedder | None,
              steps: dict[str, list[np.ndarray]], total: np.ndarray, length: int,
              stride: int) -> None:
    assert embed is not None
    arrays = {k: np.stack(v, axis=1) for k, v in steps.items()}  # (n, horizon)
    # a stored item's return-to-go is what it actually went on to collect
    rewards = np.concatenate([arrays["prev_reward"][:, 1:], np.zeros((len(total), 1))], axis=1)
    arrays["rtg"] = (total[:, None] - np.concatenate(
        [np.zeros((len(total), 1)), np.cumsum(rewards, axis=1)[:, :-1]], axis=1)).astype(np.float32)
    horizon = arrays["row"].shape[1]
    starts = list(range(0, horizon - length + 1, stride))
    for i, memory in enumerate(memories):
        items = [{k: v[i, s:s + length] for k, v in arrays.items() if k != "action"}
                 for s in starts]
        batch = _as_batch({k: np.stack([it[k] for it in items]) for k in items[0]})
        keys = embed(batch).astype(np.float32)
        keys /= np.linalg.norm(keys, axis=1, keepdims=True) + 1e-8
        memory.add(keys, items, float(total[i]))
