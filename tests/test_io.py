"""Atomic output: killed jobs' temporaries are cleaned up, and a full disk names the file."""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fdt.io import atomic_path, write_json


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The id of another process that runs for the whole test."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_stale_temporaries_of_the_target_are_removed(tmp_path: Path, dead_pid: int,
                                                     live_pid: int) -> None:
    target = tmp_path / "x.json"
    dead = tmp_path / f".x.json.tmp-{dead_pid}"
    live = tmp_path / f".x.json.tmp-{live_pid}"
    other_target = tmp_path / f".y.json.tmp-{dead_pid}"  # another output's: its own job cleans it
    for planted in (dead, live, other_target):
        planted.write_bytes(b"half written")
    write_json(target, {"a": 1})
    assert not dead.exists()
    assert live.exists(), "a live job's temporary must never be removed"
    assert other_target.exists()
    assert target.read_text() == '{\n  "a": 1\n}\n'


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    RuntimeError("write failed: [errno 28] No space left on device"),  # a library hid the errno
], ids=["ENOSPC", "EDQUOT", "in-message"])
def test_a_full_disk_names_the_file_being_written(tmp_path: Path, failure: Exception) -> None:
    target = tmp_path / "out" / "model.pt"
    with pytest.raises(OSError) as raised:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise failure
    assert str(target) in str(raised.value)
    assert raised.value.errno in (errno.ENOSPC, errno.EDQUOT)
    assert raised.value.__cause__ is failure  # the original stays in the traceback
    assert list(target.parent.iterdir()) == [], "neither the temporary nor the target remains"


def test_other_errors_pass_through_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(ValueError, match="bad data"):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise ValueError("bad data")
    assert list(tmp_path.iterdir()) == []
