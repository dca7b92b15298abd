"""Grayscale PNG export of frame stacks, with numpy and zlib only (no imaging library needed)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fdt.io import atomic_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a (h, w) uint8 image."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"png_bytes takes a (h, w) uint8 image, got {image.shape} {image.dtype}")
    height, width = image.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image], axis=1)  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b""))


def write_png(path: str | Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(image))


def stack_strip(stack: np.ndarray, gap: int = 2) -> np.ndarray:
    """A (4, 84, 84) frame stack side by side, oldest first, with white gaps."""
    frames = list(stack)
    height = frames[0].shape[0]
    pieces = []
    for k, frame in enumerate(frames):
        if k:
            pieces.append(np.full((height, gap), 255, np.uint8))
        pieces.append(frame)
    return np.concatenate(pieces, axis=1)


def contact_sheet(images: Sequence[np.ndarray], columns: int = 2, gap: int = 4) -> np.ndarray:
    """Equal-sized images in a grid, row by row, on white."""
    if not images:
        return np.full((1, 1), 255, np.uint8)
    height, width = images[0].shape
    rows = -(-len(images) // columns)
    sheet = np.full((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap),
                    255, np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        sheet[r * (height + gap):r * (height + gap) + height,
              c * (width + gap):c * (width + gap) + width] = image
    return sheet
