"""Decision Transformer for continuous actions, as CORL's dt.py builds it.

Tokens (R_t, s_t, a_t) per step, each embedded linearly plus one timestep embedding shared by the
three tokens of a transition; LayerNorm and dropout on the embeddings; pre-norm GPT blocks with
causal attention; actions predicted from the state tokens through tanh, scaled to the bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelShape:
    """What decides the network's weights' shapes (and its dropout)."""

    observation_size: int
    action_size: int
    seq_len: int = 20
    episode_len: int = 1000
    embedding_dim: int = 128
    num_layers: int = 3
    num_heads: int = 1
    attention_dropout: float = 0.1
    residual_dropout: float = 0.1
    embedding_dropout: float = 0.1
    max_action: float = 1.0


class CausalBlock(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a 4x GELU MLP."""

    def __init__(self, width: int, heads: int, attention_dropout: float, residual_dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width),
                                 nn.Dropout(residual_dropout))
        self.drop = nn.Dropout(residual_dropout)
        self.heads = heads
        self.attention_dropout = attention_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, width // self.heads)
                   .permute(2, 0, 3, 1, 4))
        # Causal only: padding sits at a window's end (CORL pads on the right), so no real token
        # ever attends to a pad and CORL's key padding mask changes nothing a loss reads.
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attention_dropout if self.training else 0.0)
        x = x + self.drop(self.proj(attended.transpose(1, 2).reshape(batch, length, width)))
        return x + self.mlp(self.norm2(x))


class ContinuousDecisionTransformer(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        width = shape.embedding_dim
        # seq_len more timesteps than an episode: a window padded past the episode's end
        self.timestep_emb = nn.Embedding(shape.episode_len + shape.seq_len, width)
        self.state_emb = nn.Linear(shape.observation_size, width)
        self.action_emb = nn.Linear(shape.action_size, width)
        self.return_emb = nn.Linear(1, width)
        self.emb_norm = nn.LayerNorm(width)
        self.emb_drop = nn.Dropout(shape.embedding_dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(width, shape.num_heads, shape.attention_dropout, shape.residual_dropout)
            for _ in range(shape.num_layers))
        self.out_norm = nn.LayerNorm(width)
        self.action_head = nn.Linear(width, shape.action_size)
        self.apply(_init_weights)

    def tokens(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
               time_steps: torch.Tensor) -> torch.Tensor:
        """[B, T, ...] -> [B, 3T, width] as (R_0, s_0, a_0, R_1, ...), one timestep embedding
        added to the three tokens of each step."""
        time = self.timestep_emb(time_steps)
        per_step = torch.stack([self.return_emb(returns_to_go.unsqueeze(-1)) + time,
                                self.state_emb(states) + time, self.action_emb(actions) + time], dim=2)
        batch, steps = states.shape[:2]
        return per_step.reshape(batch, 3 * steps, self.shape.embedding_dim)

    def squash(self, hidden: torch.Tensor) -> torch.Tensor:
        """Actions within [-max_action, max_action]: tanh of the head, scaled."""
        return torch.tanh(self.action_head(hidden)) * self.shape.max_action

    def forward(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
                time_steps: torch.Tensor) -> torch.Tensor:
        """The action predicted at every step of the windows, from its state token: [B, T, A]."""
        x = self.emb_drop(self.emb_norm(self.tokens(states, actions, returns_to_go, time_steps)))
        for block in self.blocks:
            x = block(x)
        return self.squash(self.out_norm(x)[:, 1::3])


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation, as CORL's: N(0, 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.zeros_(module.bias)
        nn.init.ones_(module.weight)
