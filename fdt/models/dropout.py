"""Dropout whose masks are cheap to draw on the CPU.

PyTorch draws a CPU dropout mask one Mersenne-Twister number per element (`bernoulli_`): at
batch 128 and context 30 that is 69 million draws a step, a fifth of the transformer's
forward+backward. Here a mask element is one 16-bit word of numpy's PCG64 stream (four per
64-bit draw, 6x faster), dropped when the word falls in the lowest round(p * 65536) of 65,536
values, so p is met to within 1/131,072. Each mask's PCG64 seed is drawn from torch's CPU
generator, so `torch.manual_seed` and a saved torch RNG state still reproduce a run exactly.
On other devices, and under torch.compile, torch's own dropout is used (a GPU draws its masks
fast, fused attention applies them inside its kernel, compiled code generates its own).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_WORD = 1 << 16


def keep_scale(shape: torch.Size | tuple[int, ...], p: float,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A dropout mask of `shape`: 1 / (1 - p) where kept, 0 where dropped (probability p)."""
    n = math.prod(shape)
    seed = int(torch.randint(0, 2**62, ()).item())
    words = np.random.Generator(np.random.PCG64(seed)).bit_generator.random_raw((n + 3) // 4)
    drawn = torch.from_numpy(words.view(np.int16)[:n])
    dropped_below = -_WORD // 2 + round(p * _WORD)
    return torch.where(drawn >= dropped_below, 1.0 / (1.0 - p), 0.0).to(dtype).reshape(shape)


def cpu_masks(x: torch.Tensor) -> bool:
    """Whether `x`'s dropout masks are drawn here: on the CPU, and not while torch.compile
    traces (compiled code draws its own masks, and a numpy call would break its graph)."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`, with the CPU's masks drawn by `keep_scale`."""
    if not training or p == 0.0 or not cpu_masks(x):
        return F.dropout(x, p, training)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), not {p}")
    return x * keep_scale(x.shape, p, x.dtype)


class Dropout(nn.Dropout):
    """`nn.Dropout` drawing its CPU masks with `keep_scale` (no parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
