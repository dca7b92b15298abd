"""PNG export, read back by hand: signature, header, and the pixel rows in the IDAT stream."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from fdt.mining.images import contact_sheet, png_bytes, stack_strip


def _read_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        crc = struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0]
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 0)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:]


def test_png_round_trip() -> None:
    image = np.random.default_rng(0).integers(0, 256, (84, 130), dtype=np.uint8)
    assert np.array_equal(_read_png(png_bytes(image)), image)


def test_strip_and_sheet_layout() -> None:
    stack = np.stack([np.full((84, 84), v, np.uint8) for v in (10, 20, 30, 40)])
    strip = stack_strip(stack)
    assert strip.shape == (84, 4 * 84 + 3 * 2)
    assert strip[0, 0] == 10 and strip[0, 84] == 255 and strip[0, 86] == 20 and strip[0, -1] == 40
    sheet = contact_sheet([strip] * 3, columns=2, gap=4)
    assert sheet.shape == (2 * 84 + 4, 2 * strip.shape[1] + 4)
    assert sheet[84 + 4, 0] == 10 and sheet[84 + 4, strip.shape[1] + 4] == 255  # no third cell
