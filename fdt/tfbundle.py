"""Reading TensorFlow checkpoints (the TF1 "V2 bundle") with numpy only, no TensorFlow.

A bundle is `{prefix}.index` plus `{prefix}.data-NNNNN-of-MMMMM`. The index is a LevelDB-format
sorted table: data blocks of prefix-compressed key/value entries, an index block pointing at
them, a 48-byte footer. Each key is a tensor name and each value a `BundleEntryProto` (dtype,
shape, shard, offset, size, masked crc32c of the bytes); the empty key holds the
`BundleHeaderProto` (shard count, endianness). The data files hold the raw little-endian tensors.
Every block and every tensor is checked against its crc32c, so a damaged file is an error, never
silently wrong weights.
"""

from __future__ import annotations

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

# TensorFlow's DataType enum values for the numeric types a checkpoint holds.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}


class BundleError(ValueError):
    """A checkpoint bundle that cannot be read; the message names the file."""


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
            raise BundleError("truncated varint")
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
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2:  # TensorShapeProto.dim
            size = next((v for n, v in _proto_fields(value) if n == 1), 0)
            dims.append(int(size))
        elif number == 3 and value:
            raise BundleError("tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: bytes) -> TensorEntry:
    fields: dict[int, int | bytes] = {}
    for number, value in _proto_fields(buf):
        fields[number] = value
    if 7 in fields:
        raise BundleError(f"tensor {name!r} is stored in slices (partitioned variables are not "
                          "supported)")
    return TensorEntry(name=name, dtype=int(fields.get(1, 0)), shape=_shape(fields.get(2, b"")),
                       shard=int(fields.get(3, 0)), offset=int(fields.get(4, 0)),
                       size=int(fields.get(5, 0)),
                       crc32c=int(fields[6]) if 6 in fields else None)


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
        restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
        limit = len(block) - 4 - 4 * restarts
        pos, key = 0, b""
        while pos < limit:
            shared, pos = _varint(block, pos)
            unshared, pos = _varint(block, pos)
            length, pos = _varint(block, pos)
            key = key[:shared] + block[pos:pos + unshared]
            pos += unshared
            yield key, block[pos:pos + length]
            pos += length

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
        for key, value in _Table(index).items():
            if key == b"":
                header = dict(_proto_fields(value))
                self.num_shards = int(header.get(1, 1))
                if int(header.get(2, 0)) != 0:
                    raise BundleError(f"{index}: big-endian checkpoint; only little-endian is read")
                continue
            name = key.decode()
            self.entries[name] = _entry(name, value)
        self._shards: dict[int, bytes] = {}

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
        count = int(np.prod(entry.shape, dtype=np.int64))
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
        return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()

    def read_all(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self.entries}
