"""The `radt` model: our Decision Transformer with cross-attention to retrieved items.

As RA-DT's GPT-2 with `add_cross_attention`, every block reads its input by causal self-attention,
then by cross-attention over the retrieved tokens, then its MLP (each sub-layer pre-LN, residual).
The retrieved items (the past and next C steps of a cut, fdt.retrieval.memory) are tokenised as
its own window is, (return-to-go, state, action) per step, by the model's own return and action
embeddings, with the global position of their first step and positions of their own over the 2C
steps (RA-DT's `separate_ca_embed` gives the retrieved tokens their own `wpe`); their states
arrive encoded by the memory's frozen encoder (as RA-DT's Procgen models read images encoded by a
frozen encoder) and pass a learnt projection. An item shorter than 2C steps is padded on the left
and its padding is never read (RA-DT's context attention mask). The model's own tokens stay causal
among themselves, while every position may read every retrieved token; a window with nothing
retrieved reads nothing (its cross-attention adds 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fdt.models.dropout import Dropout
from fdt.models.transformer import Block, DecisionTransformer, ModelConfig, _normal_init
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.torchfile import load_torch_file


@dataclass(frozen=True)
class RetrievalConfig(ModelConfig):
    retrieved: int = 1  # items read per window (RA-DT's reweight_top_k)
    subtrajectory_length: int = 1  # C: an item is the past C and the next C steps of a cut
    memory_width: int = 1  # width of the memory's state features (its embedder's)
    item_steps: int = 2  # steps per retrieved item, 2C

    @property
    def tokens_per_step(self) -> int:
        return 3 if self.return_conditioned else 2


class CrossAttention(nn.Module):
    """Multi-head attention of the window's tokens (queries) over retrieved tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.key_value = nn.Linear(config.n_embd, 2 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = config.dropout
        self.resid_drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) reads memory (B, M, C) where visible (B, M); rows that see nothing get 0."""
        B, T, C = x.shape
        M, hd = memory.shape[1], C // self.n_head
        q = self.query(x).view(B, T, self.n_head, hd).transpose(1, 2)
        k, v = self.key_value(memory).view(B, M, 2, self.n_head, hd).permute(2, 0, 3, 1, 4)
        anything = visible.any(dim=1)
        mask = (visible | ~anything[:, None])[:, None, None, :]  # no all-masked row (NaN)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.attn_dropout if self.training else 0.0)
        y = self.proj(y.transpose(1, 2).reshape(B, T, C))
        return self.resid_drop(y) * anything[:, None, None].to(y.dtype)


class RetrievalBlock(Block):
    """A DT block with cross-attention between its self-attention and its MLP (GPT-2's order)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.ln_cross = nn.LayerNorm(config.n_embd)
        self.cross = CrossAttention(config)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                visible: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        if memory is not None:
            x = x + self.cross(self.ln_cross(x), memory, visible)
        return x + self.mlp(self.ln2(x))

    def forward_at(self, x: torch.Tensor, query: torch.Tensor, memory: torch.Tensor | None = None,
                   visible: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output (B, C) at one position per row (eval: no dropout)."""
        out = x[torch.arange(len(x), device=x.device), query] + self.attn.forward_at(self.ln1(x),
                                                                                     query)
        if memory is not None:
            out = out + self.cross(self.ln_cross(out)[:, None], memory, visible)[:, 0]
        return out + self.mlp(self.ln2(out))


class RetrievalDecisionTransformer(DecisionTransformer):
    """DT whose blocks also read retrieved items (RA-DT)."""

    def __init__(self, config: RetrievalConfig) -> None:
        super().__init__(config)
        self.blocks = nn.ModuleList(RetrievalBlock(config) for _ in range(config.n_layer))
        self.blocks.apply(_normal_init)
        self.memory_states = nn.Sequential(nn.Linear(config.memory_width, config.n_embd),
                                           nn.Tanh())
        self.memory_pos_emb = nn.Parameter(
            torch.zeros(1, config.item_steps * config.tokens_per_step, config.n_embd))

    def forward(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
                timesteps: torch.Tensor, **context: torch.Tensor) -> torch.Tensor:
        """Action logits (B, T, A) at each state, reading the retrieved `context_*` tensors
        (`retrieved_tokens`); none given: nothing retrieved."""
        B, T = states.shape[:2]
        if T > self.config.context_length:
            raise ValueError(f"window of {T} steps exceeds the context length "
                             f"{self.config.context_length}")
        state_tokens = self.encode_states(states.reshape(B * T, STACK_SIZE, *FRAME_SHAPE))
        memory = self.retrieved_tokens(**context) if context else None
        return self.forward_tokens(state_tokens.reshape(B, T, -1), actions, returns_to_go,
                                   timesteps, memory=memory)

    def retrieved_tokens(self, context_features: torch.Tensor, context_actions: torch.Tensor,
                         context_returns_to_go: torch.Tensor, context_timesteps: torch.Tensor,
                         context_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, R*S*k, n_embd) of R retrieved items of S = 2C steps per row, and which are
        visible (B, R*S*k): state features (B, R, S, memory_width), actions and returns-to-go
        (B, R, S), timesteps (B, R) of their first real steps, real steps (B, R, S)."""
        B, R, S = context_actions.shape
        if context_features.shape[-1] != self.config.memory_width:
            raise ValueError(f"state features of width {context_features.shape[-1]}, but the "
                             f"model reads a memory of width {self.config.memory_width}")
        if S != self.config.item_steps:
            raise ValueError(f"retrieved items of {S} steps, but the model reads items of "
                             f"{self.config.item_steps}")
        states = self.memory_states(context_features.reshape(B * R, S, -1).to(
            self.pos_emb.dtype))
        per_step = [states, self.action_embeddings(context_actions.reshape(B * R, S).long())]
        if self.config.return_conditioned:
            per_step.insert(0, self.ret_emb(context_returns_to_go.reshape(B * R, S, 1).to(
                states.dtype)))
        k = len(per_step)
        tokens = torch.stack(per_step, dim=2).reshape(B * R, S * k, -1)
        step = context_timesteps.reshape(B * R).long().clamp(0, self.config.max_timestep)
        x = self.drop(tokens + self.global_pos_emb[0, step].unsqueeze(1) + self.memory_pos_emb)
        visible = context_valid.bool()[..., None].expand(B, R, S, k).reshape(B, R * S * k)
        return x.reshape(B, R * S * k, -1), visible

    def forward_tokens(self, state_tokens: torch.Tensor, actions: torch.Tensor,
                       returns_to_go: torch.Tensor, timesteps: torch.Tensor,
                       at_step: torch.Tensor | None = None,
                       memory: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """DT's `forward_tokens`, each block also reading `memory` (tokens, visible)."""
        x, k = self.input_tokens(state_tokens, actions, returns_to_go, timesteps)
        tokens, visible = memory if memory is not None else (None, None)
        if at_step is None:
            for block in self.blocks:
                x = block(x, tokens, visible)
            return self.head(self.ln_f(x))[:, k - 2::k]
        for block in self.blocks[:-1]:
            x = block(x, tokens, visible)
        # the last block on the asked state tokens only, as DT's evaluator does
        x = self.blocks[-1].forward_at(x, at_step.long() * k + k - 2, tokens, visible)
        return self.head(self.ln_f(x))


def radt_config(base: ModelConfig, retrieved: int, subtrajectory_length: int,
                memory_width: int) -> RetrievalConfig:
    """radt's config: `retrieved` items of the past and next C = `subtrajectory_length` steps."""
    return RetrievalConfig(**base.to_dict(), retrieved=retrieved,
                           subtrajectory_length=subtrajectory_length, memory_width=memory_width,
                           item_steps=2 * subtrajectory_length)


def load_radt(path: str | Path, device: str | torch.device = "cpu"
              ) -> tuple[RetrievalDecisionTransformer, Mapping[str, Any]]:
    """A trained `radt` from `model.pt`, in eval mode, and its payload (what it retrieves from)."""
    payload = load_torch_file(path, device)
    config = payload["config"]
    if "retrieved" not in config:
        raise ValueError(f"{path}: not a radt model (its config has no retrieval settings)")
    if "item_steps" not in config:
        raise ValueError(f"{path}: a radt model that reads C-step sub-trajectories, not the "
                         "past and next C steps of a cut; retrain it")
    model = RetrievalDecisionTransformer(RetrievalConfig(**config))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload
