"""Reading TensorFlow checkpoints (the TF1 "V2 bundle") with numpy only, no TensorFlow.

A bundle is `{prefix}.index` plus `{prefix}.data-NNNNN-of-MMMMM`. The index is a LevelDB-format
sorted table: data blocks of prefix-compressed key/value entries, an index block pointing at
them, a 48-byte footer. Each key is a tensor name and each value a `BundleEntryProto` (dtype,
shape, shard, offset, size, masked crc32c of the bytes); the empty key holds the
`BundleHeaderProto` (shard count, endianness). The data files hold the raw little-endian tensors.
Every block and every tensor is checked against its crc32c, so a damaged file is an error, never
silently wrong weights; a malformed index, checksums and all, is a BundleError naming the file.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

FOOTER_SIZE = 48
TABLE_MAGIC = 0xDB4775248B80FB57
BLOCK_TRAILER = 5  # compression type (1 byte) + masked crc32c (4 bytes)
MASK_DELTA = 0xA282EAD8
# Entries between restart points: TensorFlow's table builder restarts every 16 entries.
MAX_RESTART_RUN = 16

# TensorFlow's DataType enum values for the numeric types a checkpoint holds.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}


class BundleError(ValueError):
    """A checkpoint bundle that cannot be read; the message names the file."""


class _Unreadable(Exception):
    """A malformation found while parsing the index; Bundle reports it as a BundleError naming
    the file."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None


def masked_crc32c(data: bytes) -> int:
    """LevelDB/TensorFlow's masked crc32c: rotate right by 15, add a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Unreadable("a varint runs past the end of its field")
        if shift > 63:
            raise _Unreadable("a varint longer than 10 bytes")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, fixed32/64 as int,
    length-delimited as bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise _Unreadable(f"a fixed-width field {number} runs past its message")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Unreadable(f"field {number} of {length} bytes runs past its message")
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise _Unreadable(f"unsupported protobuf wire type {wire}")
        yield number, value


def _message(buf: bytes) -> dict[int, int | bytes]:
    """A message's fields by number (the last of a repeated field, as protobuf merges)."""
    return dict(_proto_fields(buf))


def _as_number(value: int | bytes, number: int) -> int:
    if not isinstance(value, int):
        raise _Unreadable(f"field {number} holds bytes where a number belongs")
    return value


def _as_message(value: int | bytes, number: int) -> bytes:
    if not isinstance(value, bytes):
        raise _Unreadable(f"field {number} holds a number where a message belongs")
    return value


def _number(fields: dict[int, int | bytes], number: int, default: int = 0) -> int:
    return _as_number(fields.get(number, default), number)


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2:  # TensorShapeProto.dim
            size = _number(_message(_as_message(value, number)), 1)
            if size >= 2**63:  # int64 -1: a dimension of unknown size
                raise _Unreadable("a tensor dimension of unknown size")
            dims.append(size)
        elif number == 3 and value:
            raise _Unreadable("a tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: bytes) -> TensorEntry:
    fields = _message(buf)
    if 7 in fields:
        raise _Unreadable(f"tensor {name!r} is stored in slices (partitioned variables are not "
                          "supported)")
    return TensorEntry(name=name, dtype=_number(fields, 1),
                       shape=_shape(_as_message(fields.get(2, b""), 2)),
                       shard=_number(fields, 3), offset=_number(fields, 4),
                       size=_number(fields, 5), crc32c=_number(fields, 6) if 6 in fields else None)


class _Table:
    """The LevelDB-format table of a `.index` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        if len(self.data) < FOOTER_SIZE:
            raise BundleError(f"{path}: {len(self.data)} bytes, too short for a checkpoint index")
        footer = self.data[-FOOTER_SIZE:]
        if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
            raise BundleError(f"{path}: not a TensorFlow checkpoint index (bad table magic)")
        _, pos = _varint(footer, 0)  # metaindex offset
        _, pos = _varint(footer, pos)  # metaindex size
        self.index_offset, pos = _varint(footer, pos)
        self.index_size, _ = _varint(footer, pos)

    def _block(self, offset: int, size: int) -> bytes:
        end = offset + size
        if end + BLOCK_TRAILER > len(self.data) - FOOTER_SIZE:
            raise BundleError(f"{self.path}: block at {offset} runs past the end (truncated file?)")
        block = self.data[offset:end]
        kind = self.data[end]
        stored = struct.unpack_from("<I", self.data, end + 1)[0]
        if masked_crc32c(self.data[offset:end + 1]) != stored:
            raise BundleError(f"{self.path}: block at offset {offset} fails its crc32c")
        if kind != 0:
            raise BundleError(f"{self.path}: compressed block (type {kind}); TensorFlow writes "
                              "bundle indexes uncompressed")
        return block

    @staticmethod
    def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
        """A block's (key, value) entries. Each key repeats a prefix of the key before, except at
        the restart points listed at the block's end. TensorFlow puts one every 16 entries; a
        longer run is refused, since it would let a small file spell out quadratically many
        bytes of names (each of thousands of entries adding one byte to a shared prefix)."""
        if len(block) < 4:
            raise _Unreadable(f"a block of {len(block)} bytes, too short for its restart count")
        count = struct.unpack_from("<I", block, len(block) - 4)[0]
        limit = len(block) - 4 - 4 * count
        if count == 0 or limit < 0:
            raise _Unreadable(f"a block of {len(block)} bytes claims {count} restart points")
        restarts = struct.unpack_from(f"<{count}I", block, limit)
        pos, key, run, upcoming = 0, b"", 0, 0
        while pos < limit:
            while upcoming < count and restarts[upcoming] < pos:
                upcoming += 1  # a restart point inside an entry, or repeated: never reached
            at_restart = upcoming < count and restarts[upcoming] == pos
            shared, pos = _varint(block, pos)
            unshared, pos = _varint(block, pos)
            length, pos = _varint(block, pos)
            if at_restart:
                run, upcoming = 0, upcoming + 1
                if shared:
                    raise _Unreadable("a key at a restart point shares a prefix")
            run += 1
            if run > MAX_RESTART_RUN:
                raise _Unreadable(f"more than {MAX_RESTART_RUN} entries between restart points")
            if shared > len(key):
                raise _Unreadable(f"a key shares {shared} bytes of a {len(key)}-byte key")
            end = pos + unshared + length
            if end > limit:
                raise _Unreadable("an entry runs past the end of its block")
            key = key[:shared] + block[pos:pos + unshared]
            yield key, block[pos + unshared:end]
            pos = end

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for _, handle in self._entries(self._block(self.index_offset, self.index_size)):
            offset, pos = _varint(handle, 0)
            size, _ = _varint(handle, pos)
            yield from self._entries(self._block(offset, size))


class Bundle:
    """A checkpoint's tensors by name: `Bundle(prefix).read(name)` or `.read_all()`.

    `prefix` is the path without `.index` (e.g. `.../tf_ckpt-199`).
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(str(prefix).removesuffix(".index"))
        index = Path(f"{self.prefix}.index")
        if not index.is_file():
            raise BundleError(f"{index}: checkpoint index not found")
        self.entries: dict[str, TensorEntry] = {}
        self.num_shards = 1
        try:
            self._read_index(index)
        except _Unreadable as err:
            raise BundleError(f"{index}: not a readable checkpoint index: {err}") from None
        self._shards: dict[int, bytes] = {}

    def _read_index(self, index: Path) -> None:
        for key, value in _Table(index).items():
            if key == b"":
                header = _message(value)
                self.num_shards = _number(header, 1, 1)
                if self.num_shards < 1:
                    raise _Unreadable("the header counts no data shards")
                if _number(header, 2) != 0:
                    raise BundleError(f"{index}: big-endian checkpoint; only little-endian is read")
                continue
            try:
                name = key.decode()
            except UnicodeDecodeError:
                raise _Unreadable(f"tensor name {key[:60]!r} is not UTF-8") from None
            self.entries[name] = _entry(name, value)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return list(self.entries)

    def _shard(self, shard: int) -> bytes:
        if shard not in self._shards:
            path = Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")
            if not path.is_file():
                raise BundleError(f"{path}: checkpoint data file not found")
            self._shards[shard] = path.read_bytes()
        return self._shards[shard]

    def read(self, name: str) -> np.ndarray:
        """One tensor, checked against its crc32c."""
        entry = self.entries.get(name)
        if entry is None:
            raise BundleError(f"{self.prefix}: no tensor {name!r} in the checkpoint")
        if entry.dtype not in DTYPES:
            raise BundleError(f"{self.prefix}: tensor {name!r} has TensorFlow dtype {entry.dtype}, "
                              "which this reader does not decode")
        dtype = DTYPES[entry.dtype]
        count = math.prod(entry.shape)
        if count * dtype.itemsize != entry.size:
            raise BundleError(f"{self.prefix}: tensor {name!r} of shape {entry.shape} should take "
                              f"{count * dtype.itemsize} bytes, the index says {entry.size}")
        data = self._shard(entry.shard)
        raw = data[entry.offset:entry.offset + entry.size]
        if len(raw) != entry.size:
            raise BundleError(f"{self.prefix}: tensor {name!r} runs past the end of data shard "
                              f"{entry.shard} (truncated file?)")
        if entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
            raise BundleError(f"{self.prefix}: tensor {name!r} fails its crc32c (damaged file)")
        try:
            return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()
        except ValueError:  # an empty tensor with dimensions too large for numpy
            raise BundleError(f"{self.prefix}: tensor {name!r} has shape {entry.shape}, which "
                              "numpy cannot hold") from None

    def read_all(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self.entries}
