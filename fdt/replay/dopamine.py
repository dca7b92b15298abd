"""Dopamine's replay-log format (the DQN Replay Dataset), read and written with numpy.

A checkpoint N is six gzip'd `.npy` files (method.md §1). Each is a snapshot of a circular buffer of
capacity C taken when the write cursor was C-1, so its rows in the order they were written are
slots [C-1, 0, 1, ..., C-2] (file 0 never wrote slot C-1) and `add_count = N*C + C-1`. The run's
last file is batch_rl's `log_final_buffer`: `add_count` is the cursor itself (below C), only slots
C-1 and 0..cursor-1 are new, and the rest is a stale copy of the file before. `invalid_range`
always names the rows around the cursor. Three all-zero padding rows precede every episode; they
exist for frame stacking and are not transitions.

The observation file of a real checkpoint is 7 GB uncompressed, so it is only ever streamed.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from fdt.io import atomic_path

# The module that inflates Dopamine's .gz files: python-isal's zlib twin (same decompressobj API,
# about 2.4x faster here) when installed, else zlib. Both raise the same ReplayFormatError.
INFLATER: ModuleType = zlib
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
try:
    from isal import isal_zlib

    INFLATER = isal_zlib
    _INFLATE_ERRORS = (zlib.error, isal_zlib.error)
except ImportError:
    pass

FRAME_SHAPE = (84, 84)
FRAME_BYTES = FRAME_SHAPE[0] * FRAME_SHAPE[1]
STACK_SIZE = 4
PADDING_ROWS = STACK_SIZE - 1
FULL_CAPACITY = 1_000_000
FILE_KINDS = ("observation", "action", "reward", "terminal", "add_count", "invalid_range")
STORE_KINDS = ("observation", "action", "reward", "terminal")
_ROW_DTYPES = {"observation": np.uint8, "action": np.int32, "reward": np.float32,
               "terminal": np.uint8}
_CHECKPOINT_FILE = re.compile(r"^\$store\$_observation_ckpt\.(\d+)\.gz$")


class ReplayFormatError(ValueError):
    """A replay file is not what Dopamine writes; the message names the file."""


def file_name(kind: str, number: int | str) -> str:
    """Dopamine's file name for one array of checkpoint `number` (a pattern may pass a str)."""
    if kind in STORE_KINDS:
        return f"$store$_{kind}_ckpt.{number}.gz"
    if kind in ("add_count", "invalid_range"):
        return f"{kind}_ckpt.{number}.gz"
    raise ValueError(f"unknown replay file kind {kind!r}; expected one of {FILE_KINDS}")


def checkpoint_files(number: int) -> list[str]:
    return [file_name(kind, number) for kind in FILE_KINDS]


def number_ranges(numbers: Iterable[int], limit: int = 12) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'; past `limit` spans the rest is counted, not listed."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in spans[:limit])
    return text + (f" and {len(spans) - limit} more ranges" if len(spans) > limit else "")


def checkpoint_numbers(directory: str | Path) -> list[int]:
    """Checkpoint numbers that have an observation file in `directory`, ascending."""
    found = (_CHECKPOINT_FILE.match(p.name) for p in Path(directory).iterdir())
    return sorted(int(m.group(1)) for m in found if m)


# --- gzip'd .npy, streamed -------------------------------------------------------------------


class GzipReader:
    """Exact sequential reads from a gzip file, with its CRC and length checked at the end.

    Decompresses through `INFLATER` (isal or zlib) in bounded pieces, so reading a 7 GB member
    never holds more than a few tens of MB. Optionally hashes the compressed bytes (md5) as they
    go by.
    """

    # Small pieces keep the inflated output in cache until it is copied out (measured: 1.6x
    # faster than 4 MB / 32 MB pieces, on par with the gzip module).
    RAW_CHUNK = 1 << 17
    MAX_OUT = 1 << 19

    def __init__(self, path: str | Path, hash_raw: bool = False) -> None:
        self.path = Path(path)
        self._file = open(self.path, "rb")
        self._inflater = INFLATER
        self._inflate = self._inflater.decompressobj(wbits=31)
        self._pending = memoryview(b"")
        self.md5 = hashlib.md5() if hash_raw else None
        self.raw_bytes = 0

    def __enter__(self) -> GzipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _error(self, what: str) -> ReplayFormatError:
        return ReplayFormatError(f"{self.path}: {what}")

    def _raw(self) -> bytes:
        raw = self._file.read(self.RAW_CHUNK)
        self.raw_bytes += len(raw)
        if self.md5 is not None:
            self.md5.update(raw)
        return raw

    def _inflate_more(self) -> bytes | None:
        """Next decompressed piece; None at the clean end of the last gzip member."""
        try:
            while True:
                if self._inflate.eof:
                    rest = self._inflate.unused_data or self._raw()
                    if not rest:
                        return None
                    self._inflate = self._inflater.decompressobj(wbits=31)  # another gzip member
                    data = self._inflate.decompress(rest, self.MAX_OUT)
                elif self._inflate.unconsumed_tail:
                    data = self._inflate.decompress(self._inflate.unconsumed_tail, self.MAX_OUT)
                else:
                    raw = self._raw()
                    if not raw:
                        raise self._error("truncated: the gzip stream ends before its end marker "
                                          f"(after {self.raw_bytes} compressed bytes)")
                    data = self._inflate.decompress(raw, self.MAX_OUT)
                if data:
                    return data
        except _INFLATE_ERRORS as err:
            # One message whichever library inflates; its own wording stays in the chained cause.
            raise self._error("corrupt gzip data: the deflate stream or its CRC-32 check is "
                              "broken") from err

    def readinto(self, out: memoryview) -> None:
        """Fill `out` completely or raise: a short read means a truncated file."""
        self._take(out.cast("B") if out.format != "B" else out, out.nbytes)

    def skip(self, size: int) -> None:
        """Pass over `size` bytes without copying them anywhere (checked like a read)."""
        self._take(None, size)

    def _take(self, out: memoryview | None, need: int) -> None:
        filled = 0
        while filled < need:
            if not self._pending:
                data = self._inflate_more()
                if data is None:
                    raise self._error(f"truncated: expected {need - filled} more bytes of array "
                                      "data, but the stream ended")
                self._pending = memoryview(data)
            take = min(len(self._pending), need - filled)
            if out is not None:
                out[filled:filled + take] = self._pending[:take]
            self._pending = self._pending[take:]
            filled += take

    def read(self, size: int) -> bytes:
        buf = bytearray(size)
        self.readinto(memoryview(buf))
        return bytes(buf)

    def expect_end(self) -> None:
        """Check that nothing follows the array and that the gzip trailer (CRC, size) is valid."""
        if self._pending or self._inflate_more() is not None:
            raise self._error("unexpected data after the end of the .npy array")


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


# numpy parses a .npy header with ast.literal_eval; CPython 3.11.7 can fail that with "AST
# constructor recursion depth mismatch" when threads parse at once (the fetch verifies files in
# parallel), so headers are parsed one at a time.
_HEADER_LOCK = threading.Lock()


def read_npy_header(reader: GzipReader) -> NpyHeader:
    try:
        version = np.lib.format.read_magic(reader)
        with _HEADER_LOCK:
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(reader)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(reader)
    except ReplayFormatError:
        raise
    except (ValueError, EOFError) as err:
        raise ReplayFormatError(f"{reader.path}: not a .npy array inside the gzip ({err})") from None
    if fortran and len(shape) > 1:
        raise ReplayFormatError(f"{reader.path}: Fortran-ordered array; Dopamine writes C order")
    if dtype.hasobject:
        raise ReplayFormatError(f"{reader.path}: holds Python objects; expected a numeric array")
    return NpyHeader(tuple(shape), dtype)


def check_header(path: Path, header: NpyHeader, dtype: type, shape: tuple[int, ...]) -> None:
    expected = np.dtype(dtype).newbyteorder("<")
    if header.dtype != expected and header.dtype != np.dtype(dtype):
        raise ReplayFormatError(f"{path}: expected dtype {np.dtype(dtype).name}, found "
                                f"{header.dtype.name} ({header.dtype.str})")
    if header.shape != shape:
        raise ReplayFormatError(f"{path}: expected shape {shape}, found {header.shape}")


def read_npy_gz(path: str | Path, dtype: type | None = None,
                shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a whole (small) gzip'd .npy, checking dtype and shape when given."""
    path = Path(path)
    if not path.is_file():
        raise ReplayFormatError(f"{path}: file not found")
    with GzipReader(path) as reader:
        header = read_npy_header(reader)
        if dtype is not None and shape is not None:
            check_header(path, header, dtype, shape)
        array = np.empty(header.shape, dtype=header.dtype.newbyteorder("="))
        if header.nbytes:
            reader.readinto(memoryview(array.reshape(-1).view(np.uint8)))
        reader.expect_end()
    return array


def read_frame(path: str | Path, slot: int) -> np.ndarray:
    """Frame `slot` of a gzip'd observation array, streamed up to it (nothing else is kept)."""
    with GzipReader(path) as reader:
        header = read_npy_header(reader)
        if len(header.shape) != 3 or not 0 <= slot < header.shape[0]:
            raise ReplayFormatError(f"{reader.path}: no frame {slot} in an array of shape "
                                    f"{header.shape}")
        frame_bytes = header.shape[1] * header.shape[2]
        reader.skip(slot * frame_bytes)
        return np.frombuffer(reader.read(frame_bytes), np.uint8).reshape(header.shape[1:])


def verify_npy_gz(path: str | Path, block_bytes: int = 1 << 25) -> NpyHeader:
    """Decompress a whole gzip'd .npy once: gzip CRC and length, header, payload length."""
    with GzipReader(path) as reader:
        header = read_npy_header(reader)
        block = memoryview(bytearray(min(block_bytes, max(header.nbytes, 1))))
        left = header.nbytes
        while left:
            take = min(left, len(block))
            reader.readinto(block[:take])
            left -= take
        reader.expect_end()
    return header


def write_npy_gz(path: str | Path, data: np.ndarray | Iterable[np.ndarray], *,
                 shape: tuple[int, ...] | None = None, dtype: type | None = None,
                 compresslevel: int = 6) -> None:
    """Write a gzip'd .npy as Dopamine does (np.save inside gzip), atomically.

    `data` is an array, or an iterable of row blocks with `shape` and `dtype` given, so a
    7 GB observation array can be written without existing in memory at once.
    """
    if isinstance(data, np.ndarray):
        shape, dtype, blocks = data.shape, data.dtype, [data]
    else:
        if shape is None or dtype is None:
            raise ValueError("write_npy_gz: shape and dtype are required when writing blocks")
        blocks = data
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": tuple(shape)}
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    written = 0
    # No name in the gzip header (it would be the temporary file's, with its PID) and no time:
    # the same array gives the same bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=compresslevel,
                          mtime=0) as out:
        np.lib.format.write_array_header_1_0(out, header)
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=dtype)
            out.write(memoryview(block.reshape(-1).view(np.uint8)))
            written += block.nbytes
        if written != expected:
            raise ValueError(f"write_npy_gz: {path}: wrote {written} bytes, shape {shape} "
                             f"needs {expected}")


# --- one checkpoint -----------------------------------------------------------------------------


def invalid_range(cursor: int, capacity: int) -> np.ndarray:
    """Dopamine's invalid_range for stack size 4, update horizon 1: cursor-1 .. cursor+3."""
    return np.array([(cursor - 1 + i) % capacity for i in range(STACK_SIZE + 1)], dtype=np.int64)


def snapshot_add_count(number: int, capacity: int) -> int:
    """add_count of a regular snapshot: batch_rl logs file N when the cursor reaches C-1."""
    return number * capacity + capacity - 1


def padding_rows(terminal: np.ndarray, starts_with_padding: bool) -> np.ndarray:
    """Which of these chronological rows are padding: the 3 after each terminal (and the first 3
    when the sequence begins a run). Found by position, never by content (docs/method.md §1)."""
    n = len(terminal)
    padding = np.zeros(n, dtype=bool)
    starts = np.flatnonzero(terminal) + 1
    if starts_with_padding:
        starts = np.concatenate([[0], starts])
    for k in range(PADDING_ROWS):
        rows = starts + k
        padding[rows[rows < n]] = True
    return padding


def check_padding(where: str | Path, replay_index: np.ndarray, padding: np.ndarray,
                  action: np.ndarray, reward: np.ndarray, terminal: np.ndarray, *,
                  checkpoint: ReplayCheckpoint | None = None) -> None:
    """Padding rows are all zero (Dopamine's zero transitions); anything else means the rows are
    not laid out as written, e.g. a shifted add_count or a foreign array. With the `checkpoint`
    the rows are from, the message names its file that holds the value and its add_count file,
    which placed the rows."""
    bad = padding & ((action != 0) | (reward != 0) | (terminal != 0))
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        kind = "terminal" if terminal[row] else "action" if action[row] else "reward"
        what = ("a terminal" if terminal[row] else
                f"action {int(action[row])}, reward {float(reward[row])}")
        files = ""
        if checkpoint is not None:
            files = (f" ({checkpoint.file(kind)}; the rows are placed by "
                     f"{checkpoint.file('add_count')}, add_count {checkpoint.add_count}, which "
                     "may be shifted)")
        raise ReplayFormatError(
            f"{where}: replay index {int(replay_index[row])} falls in the {PADDING_ROWS} padding "
            f"rows after an episode end, which Dopamine writes as zeros, but holds {what}{files}")


@dataclass
class ReplayCheckpoint:
    """The small arrays of one checkpoint, validated; the observation stays on disk."""

    directory: Path
    number: int
    capacity: int
    add_count: int
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    invalid_range: np.ndarray

    @property
    def cursor(self) -> int:
        """Write position at snapshot time; C-1 for every file but a run's last."""
        return self.add_count % self.capacity

    @property
    def is_partial(self) -> bool:
        """True for a run's last file (batch_rl's final log), whose slots cursor..C-2 are stale."""
        return self.add_count != snapshot_add_count(self.number, self.capacity)

    @property
    def observation_path(self) -> Path:
        return self.file("observation")

    def file(self, kind: str) -> Path:
        """The path of this checkpoint's file of one kind."""
        return self.directory / file_name(kind, self.number)

    def new_slots(self) -> np.ndarray:
        """Slots written since the previous snapshot, in the order they were written."""
        if self.number > 0 and self.is_partial and self.cursor == self.capacity - 1:
            return np.zeros(0, dtype=np.int64)  # logged right after a snapshot: nothing new
        head = [self.capacity - 1] if self.number > 0 else []
        return np.concatenate([np.array(head, dtype=np.int64), np.arange(self.cursor, dtype=np.int64)])

    def stale_slots(self) -> np.ndarray:
        """Slots of a run's last file that still hold the previous file's rows."""
        if not self.is_partial:
            return np.zeros(0, dtype=np.int64)
        new = np.zeros(self.capacity, dtype=bool)
        new[self.new_slots()] = True
        if self.number == 0:
            new[self.capacity - 1] = True  # never written at all, not a copy of anything
        return np.flatnonzero(~new)

    def replay_indices(self, slots: np.ndarray) -> np.ndarray:
        """Global add index of each slot (chronological position in the run)."""
        slots = np.asarray(slots, dtype=np.int64)
        base = self.number * self.capacity
        return np.where(slots == self.capacity - 1, base - 1, base + slots)


def load_checkpoint(directory: str | Path, number: int) -> ReplayCheckpoint:
    """Read and validate checkpoint `number`: files present, dtypes, shapes, add_count."""
    directory = Path(directory)
    missing = [name for name in checkpoint_files(number) if not (directory / name).is_file()]
    if missing:
        raise ReplayFormatError(f"{directory}: checkpoint {number} is incomplete, missing "
                                f"{', '.join(missing)} (a checkpoint is these six files: "
                                f"{', '.join(checkpoint_files(number))})")
    terminal_path = directory / file_name("terminal", number)
    terminal = read_npy_gz(terminal_path)
    if terminal.ndim != 1 or terminal.dtype != np.uint8:
        raise ReplayFormatError(f"{terminal_path}: expected a 1-D uint8 array, found "
                                f"{terminal.dtype.name} of shape {terminal.shape}")
    capacity = terminal.shape[0]
    arrays = {"terminal": terminal}
    for kind in ("action", "reward"):
        arrays[kind] = read_npy_gz(directory / file_name(kind, number), _ROW_DTYPES[kind], (capacity,))
    add_count = int(read_npy_gz(directory / file_name("add_count", number), np.int64, ()))
    ranges = read_npy_gz(directory / file_name("invalid_range", number), np.int64, (STACK_SIZE + 1,))
    with GzipReader(directory / file_name("observation", number)) as reader:
        check_header(reader.path, read_npy_header(reader), np.uint8, (capacity, *FRAME_SHAPE))
    checkpoint = ReplayCheckpoint(directory, number, capacity, add_count, arrays["action"],
                                  arrays["reward"], terminal, ranges)
    check_consistency(checkpoint)
    return checkpoint


def check_consistency(ckpt: ReplayCheckpoint) -> None:
    """add_count, invalid_range, the checkpoint number and the padding must tell one story."""
    number, capacity, add_count = ckpt.number, ckpt.capacity, ckpt.add_count
    regular = snapshot_add_count(number, capacity)
    final = 0 <= add_count < capacity and (number > 0 or add_count < capacity - 1)
    if add_count != regular and not final:
        raise ReplayFormatError(
            f"{ckpt.directory / file_name('add_count', number)}: add_count {add_count} does not "
            f"belong to checkpoint {number}: a snapshot holds {number}*{capacity} + {capacity - 1}"
            f" = {regular} and a run's last file its cursor (below {capacity}); a snapshot "
            "boundary was skipped or the file is from another checkpoint")
    expected = invalid_range(ckpt.cursor, capacity)
    if not np.array_equal(ckpt.invalid_range, expected):
        # Either file may be the wrong one: name both, with what each says.
        raise ReplayFormatError(
            f"{ckpt.file('add_count')} and {ckpt.file('invalid_range')} disagree on where the "
            f"writer stopped: invalid_range {ckpt.invalid_range.tolist()} does not match "
            f"add_count {add_count} (cursor {ckpt.cursor} gives {expected.tolist()})")
    slots = ckpt.new_slots()
    terminal = ckpt.terminal[slots]
    check_padding(f"{ckpt.directory} (checkpoint {number})", ckpt.replay_indices(slots),
                  padding_rows(terminal, starts_with_padding=number == 0),
                  ckpt.action[slots], ckpt.reward[slots], terminal, checkpoint=ckpt)


# --- episodes --------------------------------------------------------------------------------


@dataclass
class Transitions:
    """The transitions (padding excluded) of one checkpoint, in the order they were written."""

    slot: np.ndarray
    replay_index: np.ndarray
    episode_id: np.ndarray
    step: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    truncated: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    episode_complete: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.slot)


def _check_neighbours(target: ReplayCheckpoint, previous: ReplayCheckpoint | None,
                      following: ReplayCheckpoint | None) -> None:
    for other, offset in ((previous, -1), (following, 1)):
        if other is None:
            continue
        if other.number != target.number + offset or other.capacity != target.capacity:
            raise ValueError(f"checkpoint {other.number} (capacity {other.capacity}) is not the "
                             f"neighbour {target.number + offset} of checkpoint {target.number}")
    if previous is not None and previous.is_partial:
        raise ReplayFormatError(f"{previous.directory}: checkpoint {previous.number} is a run's last, "
                                f"partial snapshot (add_count {previous.add_count}), yet checkpoint "
                                f"{target.number} follows it")
    if previous is not None and not previous.terminal[previous.new_slots()].any():
        raise ReplayFormatError(f"{previous.directory}: checkpoint {previous.number} has no episode "
                                f"end, so an episode spans more than two files; a file of "
                                f"{previous.capacity} rows must hold a whole episode and its padding")
    if following is not None and target.is_partial:
        raise ReplayFormatError(f"{target.directory}: checkpoint {target.number} is a run's last, "
                                f"partial snapshot (add_count {target.add_count}), yet checkpoint "
                                f"{following.number} follows it")
    for last, before in ((target, previous), (following, target)):
        if last is not None and before is not None:
            _check_stale_copy(last, before)
            _check_cursor_not_shifted_forward(last, before)


def _check_stale_copy(last: ReplayCheckpoint, before: ReplayCheckpoint) -> None:
    """A run's last file keeps the previous file's rows beyond its cursor; rows that differ there
    mean its add_count (and invalid_range) do not say where the writer really stopped."""
    stale = last.stale_slots()
    for kind in ("terminal", "action", "reward"):
        differ = stale[getattr(last, kind)[stale] != getattr(before, kind)[stale]]
        if len(differ):
            raise ReplayFormatError(
                f"{last.directory / file_name(kind, last.number)}: slot {int(differ[0])} should be a "
                f"stale copy of checkpoint {before.number} (add_count {last.add_count} puts the "
                f"cursor at {last.cursor}), but its {kind} differs; add_count and invalid_range do "
                "not say where the writer stopped")


def _check_cursor_not_shifted_forward(last: ReplayCheckpoint, before: ReplayCheckpoint) -> None:
    """A run's last file whose add_count (and invalid_range) claim more rows than were written
    passes every other check: the extra rows are stale copies of the file before, laid out
    like transitions. The row just before the cursor is the last one written, so it is the
    previous file's row only if the cursor was moved forward: refuse when it equals the same
    slot of `before` in every array, its frame included (read only when the small arrays
    match). A real row never does: Dopamine writes padding only with the transition after it."""
    if not last.is_partial or last.cursor == 0 or last.cursor == last.capacity - 1:
        return
    slot = last.cursor - 1
    if any(getattr(last, kind)[slot] != getattr(before, kind)[slot]
           for kind in ("action", "reward", "terminal")):
        return
    if not np.array_equal(read_frame(last.observation_path, slot),
                          read_frame(before.observation_path, slot)):
        return
    # Where the copy begins, by the small arrays: the writer's true cursor is at most there.
    start = slot
    while start > 0 and all(getattr(last, kind)[start - 1] == getattr(before, kind)[start - 1]
                            for kind in ("action", "reward", "terminal")):
        start -= 1
    raise ReplayFormatError(
        f"{last.file('add_count')}: add_count {last.add_count} puts the cursor at {last.cursor}, "
        f"but slot {slot}, the last row it calls new, is identical (frame included) to slot "
        f"{slot} of checkpoint {before.number}: a stale copy, not a row the writer added. "
        f"add_count and {last.file('invalid_range').name} were moved forward (the copy begins "
        f"at slot {start} or earlier), so stale rows would be read as transitions")


def episode_transitions(target: ReplayCheckpoint, previous: ReplayCheckpoint | None = None,
                        following: ReplayCheckpoint | None = None,
                        episode_cap: int = 27_000) -> Transitions:
    """Split the rows of `target` into padding and transitions, with their episodes.

    `previous` and `following` are the neighbouring checkpoints when available: an episode is
    shorter than a file, so it spans at most two, and the neighbours decide where the episodes at
    the edges of `target` start and end. Without `previous` (and unless target is checkpoint 0,
    which starts with padding) the first episode's start is unknown: it is kept, its steps count
    from the first row seen, and it is marked incomplete, as is an episode still open at the end.
    An episode of exactly `episode_cap` steps ends in a time-limit cut: its last row is truncated.
    """
    _check_neighbours(target, previous, following)
    parts = [c for c in (previous, target, following) if c is not None]
    slots = [c.new_slots() for c in parts]
    terminal = np.concatenate([c.terminal[s] for c, s in zip(parts, slots)]).astype(bool)
    reward = np.concatenate([c.reward[s] for c, s in zip(parts, slots)])
    replay_index = np.concatenate([c.replay_indices(s) for c, s in zip(parts, slots)])
    rows = len(terminal)
    starts_with_padding = parts[0].number == 0

    ends = np.flatnonzero(terminal)
    first_row = np.concatenate([[PADDING_ROWS if starts_with_padding else 0], ends + 1 + PADDING_ROWS])
    position = np.arange(rows)
    episode = np.searchsorted(ends, position, side="left")  # terminals strictly before the row
    step = position - first_row[episode]
    padding = step < 0
    # Padding that crosses a file edge is only seen here, with the neighbours.
    action = np.concatenate([c.action[s] for c, s in zip(parts, slots)])
    bounds = np.cumsum([0] + [len(s) for s in slots])
    for part, lo, hi in zip(parts, bounds[:-1], bounds[1:]):
        check_padding(f"{part.directory} (checkpoint {part.number})", replay_index[lo:hi],
                      padding[lo:hi], action[lo:hi], reward[lo:hi], terminal[lo:hi],
                      checkpoint=part)
    episodes = len(ends) + 1
    is_transition = ~padding
    length = np.bincount(episode[is_transition], minlength=episodes)
    total = np.bincount(episode[is_transition], weights=reward[is_transition].astype(np.float64),
                        minlength=episodes)
    start_known = np.arange(episodes) > 0
    start_known[0] = starts_with_padding
    complete = start_known & (np.arange(episodes) < len(ends))
    first_seen = np.minimum(first_row, rows - 1)
    episode_id = np.where(start_known, replay_index[first_seen], replay_index[0])

    own_part = 1 if previous is not None else 0
    offset = len(slots[0]) if previous is not None else 0
    own = slice(offset, offset + len(slots[own_part]))
    keep = np.flatnonzero(is_transition[own]) + offset
    ep = episode[keep]
    truncated = terminal[keep] & complete[ep] & (length[ep] == episode_cap)
    own_padding = int(padding[own].sum())
    own_episodes = np.unique(ep)
    counts = {
        "rows_new": int(own.stop - own.start),
        "transitions": int(len(keep)),
        "padding_rows": own_padding,
        "unused_slots": int(target.capacity - (own.stop - own.start)),
        "episodes": int(len(own_episodes)),
        "episodes_ending_here": int(terminal[keep].sum()),
        "episodes_complete": int(complete[own_episodes].sum()),
        "episodes_truncated": int(truncated.sum()),
    }
    own_slots = np.concatenate(slots)[keep]
    return Transitions(
        slot=own_slots,
        replay_index=replay_index[keep],
        episode_id=episode_id[ep],
        step=step[keep].astype(np.int32),
        action=target.action[own_slots].astype(np.int32),
        reward=reward[keep].astype(np.float32),
        terminal=terminal[keep],
        truncated=truncated,
        episode_return=total[ep].astype(np.float32),
        episode_length=length[ep].astype(np.int32),
        episode_complete=complete[ep],
        counts=counts,
    )


# --- writing, as Dopamine's logger does ---------------------------------------------------------


def write_checkpoint(directory: str | Path, number: int, *, observation: np.ndarray | Iterable[np.ndarray],
                     action: np.ndarray, reward: np.ndarray, terminal: np.ndarray, add_count: int,
                     compresslevel: int = 6) -> None:
    """Write the six files of checkpoint `number`, byte-compatible with Dopamine's.

    `observation` is the (C, 84, 84) uint8 array or an iterable of row blocks of it. Each file is
    written atomically; the observation goes last, so a set with it present is complete.
    """
    directory = Path(directory)
    capacity = len(terminal)
    write_npy_gz(directory / file_name("action", number), np.asarray(action, np.int32), compresslevel=compresslevel)
    write_npy_gz(directory / file_name("reward", number), np.asarray(reward, np.float32), compresslevel=compresslevel)
    write_npy_gz(directory / file_name("terminal", number), np.asarray(terminal, np.uint8), compresslevel=compresslevel)
    write_npy_gz(directory / file_name("add_count", number), np.array(add_count, dtype=np.int64),
                 compresslevel=compresslevel)
    write_npy_gz(directory / file_name("invalid_range", number),
                 invalid_range(add_count % capacity, capacity), compresslevel=compresslevel)
    write_npy_gz(directory / file_name("observation", number), observation,
                 shape=(capacity, *FRAME_SHAPE), dtype=np.uint8, compresslevel=compresslevel)


class CircularReplayWriter:
    """Logs transitions the way Dopamine's replay buffer did for the DQN Replay Dataset.

    A circular store of `capacity` rows; three zero rows before each episode; a snapshot (one
    checkpoint) each time the cursor reaches capacity-1; `close()` writes the run's last, partial
    snapshot if rows were added since the previous one. Rows beyond `limit` are not taken.
    """

    def __init__(self, directory: str | Path, capacity: int, *, limit: int | None = None,
                 compresslevel: int = 6) -> None:
        self.directory = Path(directory)
        self.capacity = capacity
        self.limit = limit
        self.compresslevel = compresslevel
        self.observation = np.zeros((capacity, *FRAME_SHAPE), dtype=np.uint8)
        self.action = np.zeros(capacity, dtype=np.int32)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminal = np.zeros(capacity, dtype=np.uint8)
        self.add_count = 0
        self.snapshots: list[int] = []
        self._snapshot_at = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.add_count >= self.limit

    def _append(self, frame: np.ndarray | None, action: int, reward: float, terminal: bool) -> None:
        if self.full:
            return
        slot = self.add_count % self.capacity
        if frame is None:
            self.observation[slot] = 0
        else:
            self.observation[slot] = frame
        self.action[slot], self.reward[slot], self.terminal[slot] = action, reward, terminal
        self.add_count += 1
        if self.add_count % self.capacity == self.capacity - 1:
            self.snapshot()

    def add(self, frame: np.ndarray, action: int, reward: float, terminal: bool) -> None:
        """Add one transition; padding first when it begins an episode."""
        last = (self.add_count - 1) % self.capacity
        if self.add_count == 0 or self.terminal[last]:
            for _ in range(PADDING_ROWS):
                self._append(None, 0, 0.0, False)
        self._append(frame, action, reward, terminal)

    def snapshot(self, *, final: bool = False) -> None:
        """Log the buffer as checkpoint add_count // C. The run's last file is written as
        batch_rl's `log_final_buffer` does: its add_count is the cursor, not the total."""
        number = self.add_count // self.capacity
        add_count = self.add_count % self.capacity if final else self.add_count
        write_checkpoint(self.directory, number, observation=self.observation, action=self.action,
                         reward=self.reward, terminal=self.terminal, add_count=add_count,
                         compresslevel=self.compresslevel)
        self.snapshots.append(number)
        self._snapshot_at = self.add_count

    def close(self) -> None:
        if self.add_count > self._snapshot_at:
            self.snapshot(final=True)
