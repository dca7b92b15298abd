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
