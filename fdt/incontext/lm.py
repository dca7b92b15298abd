"""RA-DT's domain-agnostic embedder: a frozen language model reads a window as tokens.

The anchor (retriever_kwargs/discrete_s_r_rtg.yaml) tokenises each step's state (one token per
coordinate, 0..size-1), reward (0..1) and return-to-go (0..100) and embeds the window with a
frozen pretrained LM (its FrozenHopfield maps them into the LM's embedding space; here each
discrete value gets its own token id, below the LM's vocabulary size). The key is the mean of
the LM's last hidden states.

The model comes from a local folder (incontext.lm_path): a Hugging Face folder (config.json
and weights; needs `transformers`) or a TorchScript module saved as `model.pt` that maps token
ids (B, T) to hidden states (B, T, d). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdt.incontext.environments import InContextInputError


def step_token_ids(batch: dict[str, torch.Tensor], size: int, vocab: int) -> torch.Tensor:
    """(B, 4T) token ids: row, column, reward, return-to-go of every step, in disjoint ranges."""
    row, col = batch["row"], size + batch["col"]
    reward = 2 * size + (batch["prev_reward"] > 0).long()
    rtg = 2 * size + 2 + batch["rtg"].round().clamp(0, 100).long()
    ids = torch.stack([row, col, reward, rtg], dim=-1).reshape(row.shape[0], -1)
    return ids % vocab


class FrozenLM:
    """The LM and how to read a window with it; no gradient ever reaches it."""

    def __init__(self, folder: str | Path | None, size: int) -> None:
        if not folder:
            raise InContextInputError("incontext.lm_path is not set: radt_lm embeds with a frozen "
                                      "language model read from a local folder (a Hugging Face "
                                      "model folder, or a TorchScript model.pt)")
        path = Path(folder)
        if not path.is_dir():
            raise InContextInputError(f"{path}: no such folder (incontext.lm_path, radt_lm's "
                                      "language model)")
        self.size = size
        self.model: Any
        if (path / "model.pt").is_file():
            try:
                self.model = torch.jit.load(str(path / "model.pt"), map_location="cpu")
            except Exception as err:
                raise InContextInputError(f"{path / 'model.pt'}: not a TorchScript model ({err})"
                                          ) from err
            self.vocab = int(getattr(self.model, "vocab_size", 0) or 0)
            if self.vocab <= 0:
                raise InContextInputError(f"{path / 'model.pt'}: the module needs an integer "
                                          "attribute vocab_size")
        elif (path / "config.json").is_file():
            try:
                from transformers import AutoModel
            except ImportError as err:
                raise InContextInputError(f"{path}: a Hugging Face model folder, but "
                                          "`transformers` is not installed") from err
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
            self.vocab = int(self.model.config.vocab_size)
        else:
            raise InContextInputError(f"{path}: neither model.pt (TorchScript) nor config.json "
                                      "(Hugging Face) is there")
        self.model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        ids = step_token_ids(batch, self.size, self.vocab)
        out = self.model(ids)
        hidden = out if isinstance(out, torch.Tensor) else (
            out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0])
        return hidden.float().mean(dim=1).numpy()


class TinyLM(torch.nn.Module):
    """A randomly initialised stand-in LM, for tests and the default run's path check."""

    def __init__(self, vocab_size: int = 256, width: int = 32, layers: int = 1) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = torch.nn.Embedding(vocab_size, width)
        layer = torch.nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0,
                                                 batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(ids))


def save_tiny_lm(folder: str | Path, seed: int = 0) -> Path:
    """Write a random TinyLM as TorchScript into `folder` (a real local LM folder)."""
    torch.manual_seed(seed)
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyLM()).save(str(path / "model.pt"))
    return path
