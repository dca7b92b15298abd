"""A planted torch file: its pickle runs code when loaded with weights_only=False."""

from __future__ import annotations

import builtins
from pathlib import Path

import torch


class _RunsCode:
    """Unpickles as exec(source): the planted payload."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple:
        return builtins.exec, (self.source,)


def plant(path: Path, marker: Path) -> None:
    """Write at `path` a torch file that looks like ours but whose unpickling creates `marker`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    touch = _RunsCode(f"open({str(marker)!r}, 'w').close()")
    torch.save({"model": touch, "config": {}, "num_actions": 4, "digest": touch}, path)
