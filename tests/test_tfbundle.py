"""The TF bundle reader on hostile and damaged indexes: linear in the file, and every
malformation a BundleError naming the file."""

from __future__ import annotations

import re
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fdt.oracle.tfbundle import Bundle, BundleError
from tests.tablewriter import HEADER, block_spans, index_file, reseal, table, tensor_entry, varint

FIXTURES = Path(__file__).parent / "fixtures" / "tf_checkpoint"
NAME = "tf_ckpt-199"


def test_prefix_bomb_is_refused_in_memory_linear_in_the_file(tmp_path: Path) -> None:
    """40,000 entries after one restart point, each adding a byte to the key before: 700 KB of
    index that spell out 800 MB of names (the reader once built them all, 812 MB at its peak)."""
    n, value = 40_000, tensor_entry((1,))
    entries = b"".join(varint(i) + varint(1) + varint(len(value)) + b"a" + value for i in range(n))
    raw = entries + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")  # one restart, at 0
    index = tmp_path / "bomb.index"
    index.write_bytes(table([raw], [b"b"]))
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=rf"^{re.escape(str(index))}: .*more than 16 entries"):
            Bundle(tmp_path / "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * index.stat().st_size


def test_many_prefix_shared_names_read_in_full(tmp_path: Path) -> None:
    """40,000 long names sharing most of their bytes, restarting every 16 as TensorFlow writes."""
    names = [b"Online/" + b"x" * 200 + b"/%08d" % i for i in range(40_000)]
    (tmp_path / "many.index").write_bytes(
        index_file([(b"", HEADER)] + [(name, tensor_entry((i % 7 + 1,))) for i, name in
                                      enumerate(names)]))
    bundle = Bundle(tmp_path / "many")
    assert bundle.names() == [name.decode() for name in names]
    assert bundle.entries[names[12345].decode()].shape == (12345 % 7 + 1,)


def _copy_fixture(tmp_path: Path) -> tuple[Path, bytes]:
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(FIXTURES / (NAME + suffix), tmp_path / (NAME + suffix))
    return tmp_path / (NAME + ".index"), (FIXTURES / (NAME + ".index")).read_bytes()


def _read_or_named_error(prefix: Path, expected: dict[str, np.ndarray] | None) -> bool:
    """Reads the bundle: True if it reads (the same tensors as `expected`, where given), False
    if it fails with a BundleError naming the file; any other exception escapes."""
    try:
        tensors = Bundle(prefix).read_all()
    except BundleError as err:
        assert str(prefix) in str(err), err
        return False
    if expected is not None:  # the crc32cs never let damage through as other weights
        assert tensors.keys() == expected.keys()
        assert all(np.array_equal(tensors[k], expected[k]) for k in expected)
    return True


def test_damaged_fixture_index_fails_only_with_named_errors(tmp_path: Path) -> None:
    index, original = _copy_fixture(tmp_path)
    expected = Bundle(FIXTURES / NAME).read_all()
    prefix, refused = tmp_path / NAME, 0
    for cut in range(len(original)):
        index.write_bytes(original[:cut])
        refused += not _read_or_named_error(prefix, expected)
    for position in range(len(original)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(original)
            damaged[position] ^= mask
            index.write_bytes(bytes(damaged))
            refused += not _read_or_named_error(prefix, expected)
    assert refused > 3 * len(original)  # all but flips in unused footer bytes


def test_fixture_damaged_behind_valid_checksums_fails_with_named_errors(tmp_path: Path) -> None:
    """Bits of the fixture's blocks flipped and each block's crc32c recomputed, so the damage
    reaches the parsers (which once let struct.error, IndexError and UnicodeDecodeError out)."""
    index, original = _copy_fixture(tmp_path)
    spans = block_spans(original)
    assert len(spans) == 2  # the index block and one data block
    refused = 0
    for offset, size in spans:
        for position in range(offset, offset + size):
            for mask in (0x01, 0x80, 0xFF):
                damaged = bytearray(original)
                damaged[position] ^= mask
                index.write_bytes(reseal(bytes(damaged), offset, size))
                refused += not _read_or_named_error(tmp_path / NAME, None)
    assert refused > sum(size for _, size in spans)


def test_truncated_blocks_with_valid_checksums_fail_with_named_errors(tmp_path: Path) -> None:
    """The fixture's data block and index block cut at every length, in tables whose handles and
    crc32cs fit the cut blocks, so the parsers see entries and restart arrays that end early."""
    index, original = _copy_fixture(tmp_path)
    (index_offset, index_size), (data_offset, data_size) = block_spans(original)
    raw = original[data_offset:data_offset + data_size]
    index_block = original[index_offset:index_offset + index_size]
    keys = [b"h"]  # the fixture's index key (TensorFlow's short separator after the last name)
    index.write_bytes(table([raw], keys))
    assert _read_or_named_error(tmp_path / NAME, Bundle(FIXTURES / NAME).read_all())
    refused = 0
    for cut in range(len(raw)):
        index.write_bytes(table([raw[:cut]], keys))
        refused += not _read_or_named_error(tmp_path / NAME, None)
    for cut in range(len(index_block)):
        index.write_bytes(table([raw], keys, alter_index=lambda _, c=cut: index_block[:c]))
        refused += not _read_or_named_error(tmp_path / NAME, None)
    assert refused == len(raw) + len(index_block)
