"""`radt` as a rollout policy: at every step the current windows query the memory.

The live episodes' windows are queried together (one embedder pass, one index search per step);
the query is the frozen embedder's mean representation of each window's steps so far, the same
as the memory's keys. The memory's sub-trajectories are read as the memory's state features (the
embedder's state tokens), the same the policy keeps of each new state for its queries, so a step
encodes only the new states, once by each model.

In-context mode (`eval_cache`) adds each finished episode's sub-trajectories to a memory read by
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
    feature_windows,
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
    """The memory's sub-trajectories as the model reads them: state features (N, C, d), actions
    and returns-to-go (N, C), timesteps (N,) of their first steps."""

    features: torch.Tensor
    actions: torch.Tensor
    returns_to_go: torch.Tensor
    timesteps: torch.Tensor

    def extend(self, other: MemoryItems) -> None:
        for name in ("features", "actions", "returns_to_go", "timesteps"):
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))

    def emptied(self) -> MemoryItems:
        """No items, of the same shapes per item (RA-DT's separate eval cache starts so)."""
        return MemoryItems(self.features[:0], self.actions[:0], self.returns_to_go[:0],
                           self.timesteps[:0])


def memory_items(batches: WindowBatches, features: torch.Tensor, starts: np.ndarray,
                 length: int) -> MemoryItems:
    """The sub-trajectories beginning at `starts` (training-set rows), with their rows' state
    features."""
    window = feature_windows(batches, features, torch.as_tensor(np.array(starts),
                                                                device=batches.device), length)
    return MemoryItems(window["state_tokens"], window["actions"], window["returns_to_go"],
                       window["timesteps"])


@dataclass
class EpisodeHistory:
    """What the eval cache keeps of a live episode, step by step."""

    query_tokens: list[torch.Tensor] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)


class RetrievalPolicy(ModelPolicy):
    """ModelPolicy for `radt`: the windows also keep the embedder's state tokens (the queries),
    and each step's logits read the retrieved sub-trajectories."""

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
        """RA-DT's eval cache: the finished episode's sub-trajectories join the memory."""
        steps = len(history.actions)
        C = self.model.config.subtrajectory_length
        starts, _ = subtrajectory_starts(np.array([steps]), C)
        if len(starts) == 0:
            return
        # clipped, as the training set's rewards (and so the memory's returns) are
        rewards = np.clip(np.asarray(history.rewards, dtype=np.float64), -1.0, 1.0)
        rtg = torch.from_numpy(np.cumsum(rewards[::-1])[::-1].astype(np.float32)).to(self.device)
        actions = torch.tensor(history.actions, device=self.device)
        rows = torch.from_numpy(starts).to(self.device)[:, None] + torch.arange(C,
                                                                                 device=self.device)
        query_tokens = torch.stack(history.query_tokens[:steps])[rows]
        first = torch.from_numpy(starts).to(self.device)
        keys = mean_state_embedding(self.embedder, {"state_tokens": query_tokens,
                                                    "actions": actions[rows],
                                                    "returns_to_go": rtg[rows],
                                                    "timesteps": first})
        self.retriever.add(keys.cpu().numpy(), self.retriever.new_trajectory(),
                           float(rewards.sum()))
        self.items.extend(MemoryItems(query_tokens, actions[rows], rtg[rows], first))
        self.cached_episodes += 1

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
        memory = self.model.retrieved_tokens(
            context_actions=self.items.actions[ids],
            context_returns_to_go=self.items.returns_to_go[ids],
            context_timesteps=self.items.timesteps[ids],
            context_valid=torch.from_numpy(retrieved.valid).to(self.device),
            context_features=self.items.features[ids])
        out = self.model.forward_tokens(self.states[index, :t], actions, returns, timesteps,
                                        at_step=last, memory=memory)
        return out.float().cpu().numpy()
