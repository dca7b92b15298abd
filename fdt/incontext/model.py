"""The in-context policies: one causal transformer for AD, DT and RA-DT.

One token per environment step (the anchor interleaves separate state, action, reward tokens;
one summed token keeps the sequence 3x shorter on a CPU): the embedding of the cell, of the
previous action and reward in the stream, of the step within its episode, and for DT and RA-DT
of the return-to-go. AD's stream runs across episodes (the learning history); DT's stays in one
episode. RA-DT adds a cross-attention in every block to the tokens of retrieved
sub-trajectories (RA-DT's `add_cross_attention`), masked where nothing was retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fdt.incontext.environments import N_ACTIONS

NO_ACTION = N_ACTIONS  # "no previous action": the first step of a stream


@dataclass(frozen=True)
class ModelParams:
    size: int = 10
    max_episode_steps: int = 100
    context: int = 200  # steps in the context (AD: two episodes, the anchor's eval_context_len)
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    dropout: float = 0.1
    rtg: bool = False  # DT and RA-DT condition on the return-to-go
    cross_attention: bool = False  # RA-DT
    max_return: float = 100.0  # return-to-go scale (an episode's most reward)


class Block(nn.Module):
    def __init__(self, p: ModelParams) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(p.n_embd), nn.LayerNorm(p.n_embd)
        self.attn = nn.MultiheadAttention(p.n_embd, p.n_head, dropout=p.dropout, batch_first=True)
        self.cross = (nn.MultiheadAttention(p.n_embd, p.n_head, dropout=p.dropout,
                                            batch_first=True) if p.cross_attention else None)
        self.ln_x = nn.LayerNorm(p.n_embd) if p.cross_attention else None
        self.mlp = nn.Sequential(nn.Linear(p.n_embd, 4 * p.n_embd), nn.GELU(),
                                 nn.Linear(4 * p.n_embd, p.n_embd), nn.Dropout(p.dropout))

    def forward(self, x: torch.Tensor, causal: torch.Tensor, memory: torch.Tensor | None,
                memory_pad: torch.Tensor | None) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        if self.cross is not None and memory is not None:
            assert self.ln_x is not None and memory_pad is not None
            # a row with nothing retrieved attends to nothing: its cross-attention adds zero
            empty = memory_pad.all(dim=1)
            pad = memory_pad.clone()
            pad[empty, 0] = False
            out = self.cross(self.ln_x(x), memory, memory, key_padding_mask=pad,
                             need_weights=False)[0]
            x = x + out * (~empty).to(out.dtype)[:, None, None]
        return x + self.mlp(self.ln2(x))


class InContextTransformer(nn.Module):
    def __init__(self, p: ModelParams) -> None:
        super().__init__()
        self.p = p
        self.state = nn.Embedding(p.size * p.size, p.n_embd)
        self.prev_action = nn.Embedding(N_ACTIONS + 1, p.n_embd)
        self.prev_reward = nn.Linear(1, p.n_embd)
        self.timestep = nn.Embedding(p.max_episode_steps, p.n_embd)
        self.rtg = nn.Linear(1, p.n_embd) if p.rtg else None
        self.position = nn.Embedding(p.context, p.n_embd)
        self.drop = nn.Dropout(p.dropout)
        self.blocks = nn.ModuleList(Block(p) for _ in range(p.n_layer))
        self.ln_f = nn.LayerNorm(p.n_embd)
        self.head = nn.Linear(p.n_embd, N_ACTIONS)

    def tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, d) step tokens, without position (also what retrieved items are read as)."""
        p = self.p
        x = (self.state(batch["row"] * p.size + batch["col"])
             + self.prev_action(batch["prev_action"])
             + self.prev_reward(batch["prev_reward"].unsqueeze(-1))
             + self.timestep(batch["t"]))
        if self.rtg is not None:
            x = x + self.rtg((batch["rtg"] / p.max_return).unsqueeze(-1))
        return x

    def hidden(self, batch: dict[str, torch.Tensor], memory: torch.Tensor | None = None,
               memory_pad: torch.Tensor | None = None) -> torch.Tensor:
        x = self.tokens(batch)
        length = x.shape[1]
        x = self.drop(x + self.position(torch.arange(length, device=x.device)))
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        for block in self.blocks:
            x = block(x, causal, memory, memory_pad)
        return self.ln_f(x)

    def forward(self, batch: dict[str, torch.Tensor], memory: torch.Tensor | None = None,
                memory_pad: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.hidden(batch, memory, memory_pad))

    def loss(self, batch: dict[str, torch.Tensor], memory: torch.Tensor | None = None,
             memory_pad: torch.Tensor | None = None) -> torch.Tensor:
        logits = self(batch, memory, memory_pad)
        return F.cross_entropy(logits.reshape(-1, N_ACTIONS), batch["action"].reshape(-1),
                               reduction="none").reshape(batch["action"].shape)[
            batch["mask"]].mean()

    @torch.no_grad()
    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, d) the mean hidden state of a window: RA-DT's key and query (the pretrained DT
        as embedder, representation_type "mean")."""
        device = next(self.parameters()).device
        h = self.hidden({k: v.to(device) for k, v in batch.items()})
        mask = batch["mask"].to(device).unsqueeze(-1).to(h.dtype)
        return ((h * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu()
