"""Atomic output: write under a temporary name, rename when complete.

An interrupted job therefore never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c


def temporary_sibling(path: Path) -> Path:
    """A unique temporary name in the same folder (same filesystem, so rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically, keys sorted so equal content gives equal bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def file_digests(path: str | os.PathLike[str], block: int = 1 << 22) -> tuple[str, str]:
    """md5 and crc32c of a file, hex (the two checksums GCS reports)."""
    md5 = hashlib.md5()
    crc = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            md5.update(chunk)
            crc.update(chunk)
    return md5.hexdigest(), crc.digest().hex()


def log_to(path: str | os.PathLike[str]) -> None:
    """Send this process's stderr (progress bars, warnings, tracebacks) to a log file."""
    import logging
    import sys

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "w", buffering=1)
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
