"""Which torch device a job runs on (one small module, so the stages that use it share it)."""

from __future__ import annotations

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
