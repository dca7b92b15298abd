"""Threads for a job (no more than the cores the machine's load leaves free), the allocator
setting of CPU training, and the encoder's layout."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from fdt.device import usable_threads
from fdt.models.transformer import DecisionTransformer, model_config_for


@pytest.mark.parametrize("cores, load, requested, expected", [
    (2, 0.1, 2, 2), (2, 1.2, 2, 1), (2, 3.0, 2, 1), (16, 4.4, 8, 8), (16, 10.0, 8, 6),
])
def test_threads_fit_the_free_cores(monkeypatch: pytest.MonkeyPatch, cores: int, load: float,
                                    requested: int, expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert usable_threads(requested) == expected


def test_channels_last_encoder_gives_the_contiguous_values() -> None:
    torch.manual_seed(0)
    model = DecisionTransformer(model_config_for("dt", num_actions=4, context_length=3,
                                                 max_timestep=10, n_layer=1, n_head=1, n_embd=16))
    assert model.state_encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    states = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    tokens = model.encode_states(states)
    contiguous = torch.nn.Sequential(*model.state_encoder).to(memory_format=torch.contiguous_format)
    assert torch.allclose(tokens, contiguous(states.float() / 255.0), atol=1e-6)


# Run in a fresh interpreter: earlier tests in this process (any CPU training) leave large free
# chunks in glibc's heap, which then serve a big block without a mapping, whatever the setting.
_ALLOCATIONS = """
import ctypes, json
import numpy as np
from fdt.device import reusing_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def newly_mapped(size):
    # bytes glibc maps one by one (not in its heap) for one block of `size`
    before = libc.mallinfo2().hblkhd
    block = np.ones(size, np.uint8)
    mapped = libc.mallinfo2().hblkhd - before
    del block
    return mapped

size = 96 * 2**20  # above glibc's largest mapping threshold (32 MB)
default = newly_mapped(size)
with reusing_freed_memory() as changed:
    inside = newly_mapped(size)
print(json.dumps({"changed": changed, "default": default, "inside": inside,
                  "after": newly_mapped(size), "size": size}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_large_blocks_come_from_the_heap_only_inside_the_block() -> None:
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc older than 2.33 (no mallinfo2)")
    done = subprocess.run([sys.executable, "-c", _ALLOCATIONS], capture_output=True, text=True,
                          check=True, timeout=120)
    seen = json.loads(done.stdout)
    assert seen["changed"]
    assert seen["default"] >= seen["size"]  # glibc's default: mapped afresh
    assert seen["inside"] == 0  # from the heap, kept when freed
    assert seen["after"] >= seen["size"]  # the default is back
