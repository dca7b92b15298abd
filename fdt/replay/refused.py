"""Fetched checkpoints that a conversion refuses: removed, so the next run fetches them again.

A fetch checks each checkpoint alone before keeping it (fdt.replay.sources); the checks across
files (a last file's counters moved forward, a stale copy that differs from the file before, an
episode spanning more than two files) can run only when a conversion reads the neighbours. Their
copies are then at fault as a fetched file that fails its checks is, and are treated alike. (Its
own module: the conversion imports it, and its key should not follow the fetch's code.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fdt.replay.dopamine import ReplayFormatError, checkpoint_files, number_ranges


def discard_refused_copies(replay_dir: str | Path, read: list[int], error: ReplayFormatError,
                           source: Mapping[str, Any]) -> ReplayFormatError:
    """A conversion refused fetched checkpoints by a check across files (a last file's counters
    moved forward, a stale copy that differs, ...), which the fetch of one checkpoint cannot
    run. Remove the copies at fault, as a fetch removes files that fail its checks, so that the
    next run fetches them again (once the source is mended) instead of refusing the same copies
    for ever: the checkpoints whose files the error names, or all those the conversion `read`
    when it names none (they disagree with each other). Returns the error to raise, saying so."""
    replay_dir = Path(replay_dir)
    message = str(error)
    named = [n for n in read if any(str(replay_dir / name) in message for name in checkpoint_files(n))]
    at_fault = named or list(read)
    for number in at_fault:
        for name in checkpoint_files(number):
            with contextlib.suppress(FileNotFoundError):
                (replay_dir / name).unlink()
    return ReplayFormatError(
        f"{message} (the files in {replay_dir} were fetched from {dict(source)}; the copies of "
        f"checkpoint{'s' if len(at_fault) > 1 else ''} {number_ranges(at_fault)} were removed, "
        "so the next run fetches them again: rerun once the source is mended)")
