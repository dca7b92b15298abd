"""Cells for important-state mining (SPEC §3): a frame stack's identity after masking and pooling.

A transition's cell is its 4x84x84 frame stack with the score/HUD masked per game, max-pooled with
kernel 7 stride 7 (floor mode, as torch's MaxPool2d), then identified by a 128-bit digest of the
pooled bytes. The masks are the reference's, per frame (they are the same for every frame of a
stack), so each frame is masked and pooled once and a stack's digest combines its 4 frames':

- Breakout: rows 0-5 x cols 0-47 (score) zeroed;
- Qbert: rows 2-11 x cols 17-37 (score) zeroed;
- Pong: rows 0-10 (score) cropped away;
- Seaquest: the ship band rows 18-21 thresholded (below 100 -> 0, then rows 18, 19 and 21 zeroed,
  the rest -> 172), the oxygen bar rows 61-69 zeroed, rows 0-17 (score, lives) cropped away;
- any other game: the frame as it is (no mask is known for it).

The digest is a vectorised 128-bit hash (two independent 64-bit lanes, multiply-xorshift mixing of
each 8-byte word in order, then a finaliser). Equal pooled stacks always get equal digests; for
different ones a collision has probability about n^2 / 2^129 over n cells, negligible at 50M.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fdt.dopamine import STACK_SIZE

KERNEL = 7
DIGEST_WORDS = 2  # 2 x 64 bits


def _breakout(frames: np.ndarray) -> np.ndarray:
    frames[:, :6, :48] = 0
    return frames


def _qbert(frames: np.ndarray) -> np.ndarray:
    frames[:, 2:12, 17:38] = 0
    return frames


def _pong(frames: np.ndarray) -> np.ndarray:
    return frames[:, 11:, :]


def _seaquest(frames: np.ndarray) -> np.ndarray:
    band = frames[:, 18:22, :]
    band[band < 100] = 0
    band[:, [0, 1, 3], :] = 0  # rows 18, 19 and 21: only row 20 outlines the ship
    band[band >= 100] = 172
    frames[:, 61:70, :] = 0  # the oxygen bar
    return frames[:, 18:, :]


# Each view masks in place (on a copy the caller owns) and may crop (a view, no copy).
CELL_VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Breakout": _breakout,
    "Qbert": _qbert,
    "Pong": _pong,
    "Seaquest": _seaquest,
}
_MASKS_IN_PLACE = {"Breakout", "Qbert", "Seaquest"}


def cell_view(game: str, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(n, 84, 84) frames with the game's score/HUD masked or cropped; `frames` is not changed.

    Games that mask copy the frames first, into `out` when given (a reusable buffer of at least
    n frames, which avoids allocating a fresh copy per chunk).
    """
    view = CELL_VIEWS.get(game)
    if view is None:
        return frames
    if game in _MASKS_IN_PLACE:
        if out is None:
            frames = frames.copy()
        else:
            np.copyto(out[:len(frames)], frames)
            frames = out[:len(frames)]
    return view(frames)


def pool_frames(frames: np.ndarray, kernel: int = KERNEL, chunk: int = 256) -> np.ndarray:
    """Max-pool (n, H, W) uint8 frames with a square kernel and equal stride (floor mode).

    Rows are pooled first (maxima of whole row segments), then columns, a chunk of frames at a
    time so the intermediate stays in cache.
    """
    n, height, width = frames.shape
    rows, cols = height // kernel, width // kernel
    frames = frames[:, :rows * kernel, :cols * kernel]
    out = np.empty((n, rows, cols), dtype=np.uint8)
    row_max = np.empty((chunk, rows, cols * kernel), dtype=np.uint8)
    for first in range(0, n, chunk):
        block = frames[first:first + chunk]
        m = len(block)
        grouped = block.reshape(m, rows, kernel, cols * kernel)
        partial = row_max[:m]
        np.maximum(grouped[:, :, 0, :], grouped[:, :, 1, :], out=partial)
        for k in range(2, kernel):
            np.maximum(partial, grouped[:, :, k, :], out=partial)
        pieces = partial.reshape(m, rows, cols, kernel)
        target = out[first:first + m]
        np.maximum(pieces[..., 0], pieces[..., 1], out=target)
        for k in range(2, kernel):
            np.maximum(target, pieces[..., k], out=target)
    return out


# Fixed odd multipliers and seeds (from a seeded generator, so digests are stable across runs).
_RNG = np.random.default_rng(0xFD7)
_MULTIPLIERS = _RNG.integers(1, 2**63, size=(DIGEST_WORDS, 64), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_SEEDS = _RNG.integers(0, 2**63, size=(DIGEST_WORDS, 64), dtype=np.uint64)
_STEP = np.uint64(0x9E3779B97F4A7C15)


def _fmix(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (in place on a fresh array)."""
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def hash_words(words: np.ndarray) -> np.ndarray:
    """128-bit digests (n, 2) uint64 of rows of 64-bit words (n, w), w <= 64."""
    n, width = words.shape
    if width > _MULTIPLIERS.shape[1]:
        raise ValueError(f"hash_words takes at most {_MULTIPLIERS.shape[1]} words, got {width}")
    out = np.empty((n, DIGEST_WORDS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lane in range(DIGEST_WORDS):
            acc = np.full(n, _SEEDS[lane, 63] ^ np.uint64(width), dtype=np.uint64)
            for j in range(width):
                v = (words[:, j] ^ _SEEDS[lane, j]) * _MULTIPLIERS[lane, j]
                v ^= v >> np.uint64(29)
                acc = (acc ^ v) * _STEP + v
            out[:, lane] = _fmix(acc)
    return out


def frame_digests(pooled: np.ndarray) -> np.ndarray:
    """128-bit digest of each pooled frame (n, h, w) uint8 -> (n, 2) uint64."""
    flat = pooled.reshape(len(pooled), -1)
    pad = (-flat.shape[1]) % 8
    if pad:
        flat = np.concatenate([flat, np.zeros((len(flat), pad), np.uint8)], axis=1)
    return hash_words(np.ascontiguousarray(flat).view("<u8"))


def stack_digests(frame_digest: np.ndarray, stacks: np.ndarray) -> np.ndarray:
    """128-bit digest of each frame stack (n, 4) of frame indices, oldest first -> (n, 2)."""
    if stacks.shape[1] != STACK_SIZE:
        raise ValueError(f"stacks must be (n, {STACK_SIZE}) frame indices, got {stacks.shape}")
    words = frame_digest[stacks].reshape(len(stacks), STACK_SIZE * DIGEST_WORDS)
    return hash_words(words)


def pooled_frame_digests(game: str, frames: np.ndarray, chunk: int = 512,
                         hash_chunk: int = 16384) -> np.ndarray:
    """Mask, pool and hash each frame once -> (n, 2) uint64.

    `frames` may be a memory map larger than RAM. Masking copies a small chunk into one reused
    buffer (warm in cache for the pooling that follows); hashing runs on larger batches of
    pooled frames, where numpy's per-call cost is spread thin.
    """
    digest = np.empty((len(frames), DIGEST_WORDS), dtype=np.uint64)
    buffer = np.empty((chunk, *frames.shape[1:]), dtype=np.uint8)
    for outer in range(0, len(frames), hash_chunk):
        pooled = []
        for first in range(outer, min(outer + hash_chunk, len(frames)), chunk):
            block = np.asarray(frames[first:min(first + chunk, outer + hash_chunk)])
            pooled.append(pool_frames(cell_view(game, block, out=buffer)))
        batch = np.concatenate(pooled)
        digest[outer:outer + len(batch)] = frame_digests(batch)
    return digest


def cell_digests(game: str, frames: np.ndarray, stacks: np.ndarray) -> np.ndarray:
    """Cells of the transitions whose states are `frames[stacks]` -> (n, 2) uint64 digests."""
    return stack_digests(pooled_frame_digests(game, frames), np.asarray(stacks))


def digest_hex(digest: np.ndarray) -> list[str]:
    """(n, 2) uint64 digests as 32-character hex strings."""
    return [f"{int(a):016x}{int(b):016x}" for a, b in digest]
