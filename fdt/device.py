"""Which torch device a job runs on (one small module, so the stages that use it share it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


class DeviceError(RuntimeError):
    pass


def resolve_device(name: str, setting: str = "device") -> torch.device:
    """`auto`: CUDA when present, else the CPU; `cpu`, `cuda` or `cuda:N` as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{setting} is {name!r} but no CUDA device is available")
    return device


def usable_threads(requested: int) -> int:
    """CPU threads for a job: at most `requested`, and no more than the cores left free by
    the load already on the machine (measured: 2 threads on a loaded 2-core machine ran 2.4x
    slower than 1, as the threads wait on each other's time slices)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(requested, cores - busy))


def set_job_threads(requested: int) -> int:
    """Set torch's intra-op threads for this job (see `usable_threads`); returns the number."""
    threads = usable_threads(requested)
    torch.set_num_threads(threads)
    return threads


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_GLIBC_MMAP_MAX = 65536  # glibc's default
_GLIBC_TRIM_THRESHOLD = 128 * 1024  # glibc's default


def _glibc() -> Any | None:
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


@contextlib.contextmanager
def reusing_freed_memory() -> Iterator[bool]:
    """Within this block glibc serves large tensors from its heap and keeps what is freed.

    By default glibc maps each block over 32 MB afresh and unmaps it on free, so every CPU
    training step faults in its activations and gradients page by page (measured: 382,000
    page faults and a third of the state encoder's time per step at batch 128). Reusing the
    heap's memory removes that; the memory is handed back when the block ends. Yields whether
    the allocator was changed (only glibc's can be).
    """
    libc = _glibc()
    if libc is None:
        yield False
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield True
    finally:
        libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD)
        libc.malloc_trim(0)
