"""The Decision Transformer for Atari (docs/method.md §5): reward-conditioned (DT, FDT) or not (BC).

Tokens per step are (return-to-go, state, action) for DT and (state, action) for BC; action
logits are read at the state tokens. Position = a learned embedding of the window's first
timestep (global) + a learned per-token embedding. Six pre-LN blocks, 8 heads, width 128, GELU
MLP x4, dropout 0.1, causal. As in the reference code, the weight init N(0, 0.02) with zero
biases covers the transformer, and the action embedding is drawn N(0, 0.02); the state encoder and
the return embedding are built after the reference's init pass, so they keep PyTorch's default
init (`encoder_init: reference`; `normal` draws them N(0, 0.02) too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fdt.models.dropout import Dropout, cpu_masks, dropout
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.settings import defaults

MODELS = ("dt", "bc", "fdt")


_SIZES = defaults("train")  # the schema's, the one place they live


@dataclass(frozen=True)
class ModelConfig:
    num_actions: int
    context_length: int
    max_timestep: int
    return_conditioned: bool = True
    n_layer: int = _SIZES["n_layer"]
    n_head: int = _SIZES["n_head"]
    n_embd: int = _SIZES["n_embd"]
    dropout: float = _SIZES["dropout"]
    encoder_init: str = _SIZES["encoder_init"]

    @property
    def block_size(self) -> int:
        # The reference sizes the token positions for (R, s, a) triples for every model type.
        return 3 * self.context_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_config_for(model: str, **sizes: Any) -> ModelConfig:
    """DT and FDT condition on returns-to-go; BC does not."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    return ModelConfig(return_conditioned=model != "bc", **sizes)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd {config.n_embd} is not a multiple of n_head {config.n_head}")
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = config.dropout
        self.resid_drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if self.training and self.attn_dropout > 0 and cpu_masks(x):
            y = self._attention_with_dropout(q, k, v)
        else:  # fused attention (flash / memory-efficient kernels on a GPU), causal
            p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))

    def _attention_with_dropout(self, q: torch.Tensor, k: torch.Tensor,
                                v: torch.Tensor) -> torch.Tensor:
        """Causal attention written out, for the CPU in training: its weights' dropout mask is
        the largest of the step (B x heads x T x T), and `keep_scale` draws it 6x faster than
        the fused kernel's fallback does. The same function as the fused path."""
        B, H, T, hd = q.shape
        future = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
        scores = torch.baddbmm(future, q.reshape(B * H, T, hd),
                               k.reshape(B * H, T, hd).transpose(1, 2), alpha=hd ** -0.5)
        weights = dropout(scores.softmax(-1), self.attn_dropout, True)
        return torch.bmm(weights, v.reshape(B * H, T, hd)).view(B, H, T, hd)

    def forward_at(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Attention output (B, C) at one position per row (`query`), attending causally."""
        B, T, C = x.shape
        hd = C // self.n_head
        rows = torch.arange(B, device=x.device)
        weight, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[rows, query], weight[:C], bias[:C]).view(B, self.n_head, 1, hd)
        kv = F.linear(x, weight[C:], bias[C:]).view(B, T, 2, self.n_head, hd)
        k, v = kv.permute(2, 0, 3, 1, 4)
        visible = torch.arange(T, device=x.device)[None, :] <= query[:, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])
        return self.proj(y.reshape(B, C))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def forward_at(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """The block's output (B, C) at one position per row (eval: no dropout)."""
        out = x[torch.arange(len(x), device=x.device), query] + self.attn.forward_at(self.ln1(x),
                                                                                     query)
        return out + self.mlp(self.ln2(out))


def _normal_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv2d)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class DecisionTransformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.n_embd
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size + 1, d))
        self.global_pos_emb = nn.Parameter(torch.zeros(1, config.max_timestep + 1, d))
        self.drop = Dropout(config.dropout)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.num_actions, bias=False)
        self.apply(_normal_init)
        self.state_encoder = nn.Sequential(
            nn.Conv2d(STACK_SIZE, 32, 8, stride=4), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(3136, d), nn.Tanh(),
        )
        self.ret_emb = nn.Sequential(nn.Linear(1, d), nn.Tanh())
        self.action_embeddings = nn.Sequential(nn.Embedding(config.num_actions, d), nn.Tanh())
        nn.init.normal_(self.action_embeddings[0].weight, mean=0.0, std=0.02)
        if config.encoder_init == "normal":
            self.state_encoder.apply(_normal_init)
            self.ret_emb.apply(_normal_init)
        elif config.encoder_init != "reference":
            raise ValueError(f"encoder_init must be 'reference' or 'normal', not "
                             f"{config.encoder_init!r}")
        # Convolutions in channels-last layout: 1.4-1.5x the encoder's forward+backward on the
        # CPU (its largest cost), and what tensor cores want on a GPU; the same values.
        self.state_encoder.to(memory_format=torch.channels_last)

    def forward(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
                timesteps: torch.Tensor) -> torch.Tensor:
        """Action logits (B, T, A) at each state.

        states: (B, T, 4, 84, 84) uint8 or float in [0, 255]; actions: (B, T) for training, or
        (B, T-1) at inference (the actions taken so far); returns_to_go: (B, T); timesteps: (B,),
        the step of each window's first state (clamped to the largest seen in training).
        """
        B, T = states.shape[:2]
        if T > self.config.context_length:
            raise ValueError(f"window of {T} steps exceeds the context length "
                             f"{self.config.context_length}")
        state_tokens = self.encode_states(states.reshape(B * T, STACK_SIZE, *FRAME_SHAPE))
        return self.forward_tokens(state_tokens.reshape(B, T, -1), actions, returns_to_go,
                                   timesteps)

    def encode_states(self, states: torch.Tensor) -> torch.Tensor:
        """State tokens (N, n_embd) of frame stacks (N, 4, 84, 84); each depends on its own
        stack only, so an evaluator can encode each new state once and keep its token."""
        # Bytes go to channels-last before they become floats (one float pass, not three), and
        # the 1/255 scale rides on the first convolution's weights instead of on every frame:
        # together 2x the input's preparation on the CPU, the same values to rounding.
        frames = states.contiguous(memory_format=torch.channels_last).float()
        first = self.state_encoder[0]
        x = F.conv2d(frames, first.weight / 255.0, first.bias, first.stride, first.padding)
        return self.state_encoder[1:](x)

    def forward_tokens(self, state_tokens: torch.Tensor, actions: torch.Tensor,
                       returns_to_go: torch.Tensor, timesteps: torch.Tensor,
                       at_step: torch.Tensor | None = None) -> torch.Tensor:
        """`forward` on encoded states (B, T, n_embd). With `at_step` (B,), only the logits
        (B, A) at that step's state of each row: the last block then works on that one query
        (what an evaluator needs; the same values, a sixth less work)."""
        x, k = self.input_tokens(state_tokens, actions, returns_to_go, timesteps)
        state_index = k - 2  # the state token of each step: (R, s, a) -> 1, (s, a) -> 0
        if at_step is None:
            return self.head(self.ln_f(self.blocks(x)))[:, state_index::k]
        for block in self.blocks[:-1]:
            x = block(x)
        x = self.blocks[-1].forward_at(x, at_step.long() * k + state_index)
        return self.head(self.ln_f(x))

    def input_tokens(self, state_tokens: torch.Tensor, actions: torch.Tensor,
                     returns_to_go: torch.Tensor,
                     timesteps: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The token sequence (B, T*k or T*k-1, n_embd) the blocks read, with positions added,
        and k, the tokens per step."""
        B, T, d = state_tokens.shape
        if actions.shape[1] not in (T, T - 1):
            raise ValueError(f"{actions.shape[1]} actions for {T} states")
        action_tokens = self.action_embeddings(actions.long())
        per_step = [state_tokens]
        if self.config.return_conditioned:
            per_step.insert(0, self.ret_emb(returns_to_go.reshape(B, T, 1).to(state_tokens.dtype)))
        if actions.shape[1] < T:  # no token for the action not yet taken
            action_tokens = torch.cat([action_tokens, action_tokens.new_zeros(B, 1, d)], dim=1)
        per_step.append(action_tokens)
        k = len(per_step)
        tokens = torch.stack(per_step, dim=2).reshape(B, T * k, d)
        if actions.shape[1] < T:
            tokens = tokens[:, :-1]
        step = timesteps.long().clamp(0, self.config.max_timestep)
        position = self.global_pos_emb[0, step].unsqueeze(1) + self.pos_emb[:, : tokens.shape[1]]
        return self.drop(tokens + position), k

    def state_hidden_states(self, state_tokens: torch.Tensor, actions: torch.Tensor,
                            returns_to_go: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The last hidden states (B, T, n_embd) at the state tokens (after the final norm):
        what a frozen DT represents a window by (RA-DT's retrieval keys)."""
        x, k = self.input_tokens(state_tokens, actions, returns_to_go, timesteps)
        return self.ln_f(self.blocks(x))[:, k - 2::k]


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on the weights of linear and conv layers only (not biases, norms,
    embeddings or position embeddings), as the reference."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "weight" and isinstance(module, (nn.Linear, nn.Conv2d)):
                decay.append(param)
            else:
                no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
