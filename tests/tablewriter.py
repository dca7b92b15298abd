"""A small writer of TensorFlow checkpoint indexes (LevelDB-format tables), for tests."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from fdt.oracle.tfbundle import FOOTER_SIZE, TABLE_MAGIC, masked_crc32c

HEADER = b"\x08\x01"  # BundleHeaderProto: one shard, little-endian


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    value = shift = 0
    while True:
        byte = buf[pos]
        value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def block_spans(index_file: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the index block and of the data blocks it points to, read from an
    intact index file."""
    footer = index_file[-FOOTER_SIZE:]
    pos = read_varint(footer, read_varint(footer, 0)[1])[1]  # past the metaindex handle
    offset, pos = read_varint(footer, pos)
    spans = [(offset, read_varint(footer, pos)[0])]
    index = index_file[offset:offset + spans[0][1]]
    limit = len(index) - 4 - 4 * int.from_bytes(index[-4:], "little")
    pos = 0
    while pos < limit:
        shared, pos = read_varint(index, pos)
        unshared, pos = read_varint(index, pos)
        length, pos = read_varint(index, pos)
        handle = index[pos + unshared:pos + unshared + length]
        offset, after = read_varint(handle, 0)
        spans.append((offset, read_varint(handle, after)[0]))
        pos += unshared + length
    return spans


def reseal(index_file: bytes, offset: int, size: int) -> bytes:
    """The file with the crc32c of the block at (offset, size) recomputed over its contents."""
    crc = masked_crc32c(index_file[offset:offset + size + 1])
    return index_file[:offset + size + 1] + struct.pack("<I", crc) + index_file[offset + size + 5:]


def tensor_entry(shape: tuple[int, ...], offset: int = 0) -> bytes:
    """A BundleEntryProto of a float32 tensor in shard 0 (no crc32c)."""
    dims = b"".join(b"\x12" + varint(len(dim)) + dim
                    for dim in (b"\x08" + varint(n) for n in shape))
    return (b"\x08\x01" + b"\x12" + varint(len(dims)) + dims + b"\x20" + varint(offset)
            + b"\x28" + varint(4 * math.prod(shape)))


def block(entries: Sequence[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    """A block's contents: entries sharing each key's prefix with the key before, except at
    every `restart_interval`-th entry, then the restart array and its count."""
    out, restarts, previous = bytearray(), [], b""
    for n, (key, value) in enumerate(entries):
        shared = 0
        if n % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        previous = key
    restarts = restarts or [0]
    return bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I",
                                                                                   len(restarts))


def table(data_blocks: Sequence[bytes], index_keys: Sequence[bytes], *,
          alter_index: Callable[[bytes], bytes] = lambda raw: raw) -> bytes:
    """A table of these block contents (each sealed with its type byte and crc32c), an empty
    metaindex, the index block (one key and handle per data block, passed through
    `alter_index` before it is sealed) and the footer."""
    out, handles = bytearray(), []

    def put(raw: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(raw))
        out.extend(raw + b"\0" + struct.pack("<I", masked_crc32c(raw + b"\0")))
        return handle

    for raw in data_blocks:
        handles.append(put(raw))
    metaindex = put(block([]))
    index = put(alter_index(block(list(zip(index_keys, handles)), restart_interval=1)))
    return bytes(out) + (metaindex + index).ljust(FOOTER_SIZE - 8, b"\0") + struct.pack(
        "<Q", TABLE_MAGIC)


def index_file(entries: Sequence[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    """An index of one data block holding these (sorted) entries."""
    return table([block(entries, restart_interval)], [entries[-1][0]])
