"""Atomic output: write under a temporary name, rename when complete.

An interrupted job therefore never leaves a file that looks finished. A killed job does leave its
temporary (`.NAME.tmp-PID`, gigabytes at paper scale); the next write of the same file removes it
once that process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
# Errors that mean the disk (or the user's quota) is full; libraries that hide the errno still
# say so in the message.
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")


def temporary_sibling(path: Path) -> Path:
    """A unique temporary name in the same folder (same filesystem, so rename is atomic)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but belongs to another user
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporaries of `path` left by processes that no longer run; return them.

    A live process's temporary is kept: it may be writing it now. (Liveness is judged on this
    machine; the workflow never runs two jobs for one output at once, on any machine.)
    """
    prefix = f".{path.name}{TMP_MARK}"
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        pid = entry.name.removeprefix(prefix)
        if not entry.name.startswith(prefix) or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        stale = Path(entry.path)
        with contextlib.suppress(FileNotFoundError):  # another rerun may remove it first
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed.append(stale)
            log.info("removed %s, left by process %s that no longer runs", stale, pid)
    return removed


def is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True
    return any(words in str(err) for words in DISK_FULL_WORDS)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    Temporaries of `path` that killed jobs left behind are removed first. A full disk surfaces as
    an OSError naming `path` (the temporary's name would mean nothing to the user).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if is_disk_full(err):
            raise disk_full_error(err, final, "while writing") from err
        raise


def disk_full_error(err: BaseException, path: str | os.PathLike[str], doing: str) -> OSError:
    """A full disk as an OSError naming the file being written (the bare `[Errno 28]` names
    none), e.g. "[Errno 28] No space left on device while writing: 'results/x.parquet'"."""
    code = err.errno if isinstance(err, OSError) and err.errno else errno.ENOSPC
    return OSError(code, f"{os.strerror(code)} {doing}", str(path))


@contextlib.contextmanager
def naming_full_disk(path: str | os.PathLike[str], doing: str = "while writing") -> Iterator[None]:
    """Writes to `path` in this block: a full disk leaves as an OSError naming `path`."""
    try:
        yield
    except BaseException as err:
        if is_disk_full(err):
            raise disk_full_error(err, path, doing) from err
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
