"""`radt` as a rollout policy: at every step the current windows query the memory.

The live episodes' windows are queried together (one embedder pass, one index search per step);
the query is the frozen embedder's mean representation of each window's steps so far, the same
as the memory's keys. The memory's items are read as the memory's state features (the
embedder's state tokens), the same the policy keeps of each new state for its queries, so a step
encodes only the new states, once by each model.

In-context mode (`eval_cache`) adds each finished episode's items to a memory read by
the episodes that start after it (their own trajectory is not excluded: at evaluation there is
none). `separate` is RA-DT's `sep_eval_cache` (set in all its radt configs): evaluation retrieves
only from its own finished episodes, never the training memory, so the episodes played before the
first one ends retrieve nothing. `joined` adds the finished episodes to the training memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fdt.evaluation.policies import ModelPolicy
from fdt.models.trainer import WindowBatches
from fdt.models.transformer import DecisionTransformer
from fdt.retrieval.memory import (
    item_rows,
    item_windows,
    key_windows,
    mean_state_embedding,
    subtrajectory_starts,
)
from fdt.retrieval.model import RetrievalDecisionTransformer
from fdt.retrieval.retrieve import Retriever

# In-context evaluation: off (the training memory only), RA-DT's sep_eval_cache (the finished
# episodes only), or the finished episodes joining the training memory.
EVAL_CACHE_MODES = ("off", "separate", "joined")


def eval_cache_mode(setting: bool | str | None) -> str:
    """The mode of the config's `retrieval.eval_cache` (false: off)."""
    mode = "off" if setting is False or setting is None else setting
    if mode not in EVAL_CACHE_MODES:
        raise ValueError(f"retrieval.eval_cache must be false, separate or joined, not "
                         f"{setting!r}")
    return str(mode)


@dataclass
class MemoryItems:
    """The memory's items as the model reads them, padded on the left to S = 2C steps: state
    features (N, S, d), actions and returns-to-go (N, S), timesteps (N,) of their first real
    steps, real steps (N, S)."""

    features: torch.Tensor
    actions: torch.Tensor
    returns_to_go: torch.Tensor
    timesteps: torch.Tensor
    valid: torch.Tensor

    FIELDS = ("features", "actions", "returns_to_go", "timesteps", "valid")

    def extend(self, other: MemoryItems) -> None:
        for name in self.FIELDS:
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))

    def emptied(self) -> MemoryItems:
        """No items, of the same shapes per item (RA-DT's separate eval cache starts so)."""
        return MemoryItems(*(getattr(self, name)[:0] for name in self.FIELDS))


def memory_items(batches: WindowBatches, features: torch.Tensor, start: np.ndarray,
                 end: np.ndarray, width: int) -> MemoryItems:
    """The items of training-set rows [start, end), with their rows' state features."""
    window = item_windows(batches, features, torch.as_tensor(np.array(start),
                                                             device=batches.device),
                          torch.as_tensor(np.array(end), device=batches.device), width)
    return MemoryItems(window["state_tokens"], window["actions"], window["returns_to_go"],
                       window["timesteps"], window["valid"])


@dataclass
class EpisodeRows:
    """A finished episode's steps as the rows item_windows reads: the embedder's state tokens
    (T, d), actions, returns-to-go of the clipped rewards and timesteps (T,)."""

    state_tokens: torch.Tensor
    actions: torch.Tensor
    returns_to_go: torch.Tensor
    timesteps: torch.Tensor

    @classmethod
    def of(cls, history: EpisodeHistory, device: torch.device) -> EpisodeRows:
        steps = len(history.actions)
        # clipped, as the training set's rewards (and so the memory's returns) are
        rewards = np.clip(np.asarray(history.rewards, dtype=np.float64), -1.0, 1.0)
        returns_to_go = np.cumsum(rewards[::-1])[::-1].astype(np.float32)
        return cls(torch.stack(history.query_tokens[:steps]),
                   torch.tensor(history.actions, device=device),
                   torch.from_numpy(returns_to_go).to(device), torch.arange(steps, device=device))

    def window(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"state_tokens": self.state_tokens[rows], "actions": self.actions[rows],
                "returns_to_go": self.returns_to_go[rows]}


@dataclass
class EpisodeHistory:
    """What the eval cache keeps of a live episode, step by step."""

    query_tokens: list[torch.Tensor] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)


class RetrievalPolicy(ModelPolicy):
    """ModelPolicy for `radt`: the windows also keep the embedder's state tokens (the queries),
    and each step's logits read the retrieved items."""

    def __init__(self, model: RetrievalDecisionTransformer, embedder: DecisionTransformer,
                 retriever: Retriever, items: MemoryItems, device: str | torch.device = "cpu", *,
                 timestep: str = "reference", slots: int = 64,
                 eval_cache: bool | str = False) -> None:
        super().__init__(model, device, timestep=timestep, slots=slots)
        self.embedder = embedder.to(device).eval()
        self.eval_cache_mode = eval_cache_mode(eval_cache)
        if self.eval_cache_mode == "separate":  # an exact index: IVF cannot start empty
            retriever, items = retriever.emptied(), items.emptied()
        self.retriever, self.items = retriever, items
        self.query_states = torch.zeros((slots, self.k, embedder.config.n_embd),
                                        device=self.device)
        self.eval_cache = self.eval_cache_mode != "off"
        self.histories: dict[int, EpisodeHistory] = {}
        self.cached_episodes = 0

    def state_windows(self, states: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        kept = super().state_windows(states)
        return [*kept, (self.query_states, self.embedder.encode_states(states))]

    @torch.inference_mode()
    def observe(self, slots: Sequence[int], stacks: np.ndarray) -> None:
        super().observe(slots, stacks)
        if self.eval_cache:
            index = torch.tensor(list(slots), device=self.device)
            last = self.length[index] - 1
            for row, slot in enumerate(slots):
                history = self.histories.setdefault(slot, EpisodeHistory())
                history.query_tokens.append(self.query_states[slot, last[row]].clone())

    def begin(self, slot: int, target: float) -> None:
        super().begin(slot, target)
        self.histories.pop(slot, None)

    def record(self, slot: int, action: int, reward: float) -> None:
        super().record(slot, action, reward)
        if self.eval_cache:
            history = self.histories[slot]
            history.actions.append(action)
            history.rewards.append(reward)

    def end(self, slot: int) -> None:
        super().end(slot)
        history = self.histories.pop(slot, None)
        if self.eval_cache and history is not None:
            self.add_episode(history)

    @torch.inference_mode()
    def add_episode(self, history: EpisodeHistory) -> None:
        """The finished episode's items join the eval cache, cut as RA-DT's
        `construct_keys_and_values_from_trj`: every C steps from the first, a shorter tail
        included; each keyed by the K steps before its cut, holding the past and next C."""
        steps = len(history.actions)
        C = self.model.config.subtrajectory_length
        cuts, _ = subtrajectory_starts(np.array([steps]), C, partial_last=True)
        if len(cuts) == 0:
            return
        episode = EpisodeRows.of(history, self.device)
        begin, end = np.zeros_like(cuts), np.full_like(cuts, steps)
        keys = self.episode_keys(episode, *key_windows(cuts, begin, end, self.k))
        start, stop = (torch.from_numpy(rows).to(self.device)
                       for rows in item_rows(cuts, begin, end, C))
        items = item_windows(episode, episode.state_tokens, start, stop,
                             self.model.config.item_steps)
        self.retriever.add(keys, self.retriever.new_trajectory(),
                           float(episode.returns_to_go[0]))
        self.items.extend(MemoryItems(items["state_tokens"], items["actions"],
                                      items["returns_to_go"], items["timesteps"], items["valid"]))
        self.cached_episodes += 1

    def episode_keys(self, episode: EpisodeRows, first: np.ndarray,
                     length: np.ndarray) -> np.ndarray:
        """Keys (N, d) of an episode's windows of `length` steps from `first`, embedded as the
        memory's keys are (the policy's K steps, read up to `length`)."""
        rows = torch.from_numpy(first).to(self.device)[:, None] + torch.arange(
            self.k, device=self.device)
        window = episode.window(rows.clamp(max=len(episode.actions) - 1))
        window["timesteps"] = torch.from_numpy(first).to(self.device)
        keys = mean_state_embedding(self.embedder, window, torch.from_numpy(length).to(
            self.device))
        return keys.cpu().numpy()

    @torch.inference_mode()
    def logits(self, slots: Sequence[int]) -> np.ndarray:
        index = torch.tensor(list(slots), device=self.device)
        lengths = self.length[index]
        t = int(lengths.max())
        last = lengths - 1
        step = self.step[index]
        actions, returns = self.actions[index, :t], self.returns[index, :t]
        query = mean_state_embedding(self.embedder, {
            "state_tokens": self.query_states[index, :t], "actions": actions,
            "returns_to_go": returns, "timesteps": step - last}, lengths)
        timesteps = step if self.timestep == "reference" else step - last
        if len(self.retriever) == 0:  # the separate eval cache before an episode has ended
            out = self.model.forward_tokens(self.states[index, :t], actions, returns, timesteps,
                                            at_step=last)
            return out.float().cpu().numpy()
        retrieved = self.retriever.retrieve(query.cpu().numpy())
        ids = torch.from_numpy(np.maximum(retrieved.ids, 0)).to(self.device)
        valid = self.items.valid[ids] & torch.from_numpy(retrieved.valid).to(
            self.device)[..., None]
        memory = self.model.retrieved_tokens(
            context_actions=self.items.actions[ids],
            context_returns_to_go=self.items.returns_to_go[ids],
            context_timesteps=self.items.timesteps[ids],
            context_valid=valid,
            context_features=self.items.features[ids])
        out = self.model.forward_tokens(self.states[index, :t], actions, returns, timesteps,
                                        at_step=last, memory=memory)
        return out.float().cpu().numpy()
