"""Cells for important-state mining (method.md §3): a frame stack's identity after masking and pooling.

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

The digest is a 128-bit hash (two independent 64-bit lanes, multiply-xorshift mixing of each
8-byte word in order, then a finaliser). Equal pooled stacks always get equal digests; for
different ones a collision has probability about n^2 / 2^129 over n cells, negligible at 50M.

The masks are defined once, in the game registry (`fdt.games`, `Game.cell_mask`). `pooled_frame_digests` masks, pools and hashes each
frame in one compiled pass (numba); `cell_view`, `pool_frames` and `frame_digests` are the same
in plain numpy, the readable form the tests hold the kernel to.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from fdt.games import game_facts
from fdt.replay.dopamine import STACK_SIZE

KERNEL = 7
PREFETCH_AHEAD = 2  # frames ahead whose window rows the kernel asks the CPU to fetch
WIDTH = 84  # frame width: a constant, so the compiled loops over a row are unrolled
DIGEST_WORDS = 2  # 2 x 64 bits


def cell_view(game: str, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(n, 84, 84) frames with the game's mask applied, in numpy; `frames` is not changed.

    The readable form of what the compiled kernel does (tests hold them equal). Games that mask
    copy the frames first, into `out` when given (a reusable buffer of at least n frames).
    """
    mask = game_facts(game).cell_mask
    if mask.zero or mask.lut_row >= 0:
        if out is None:
            out = np.empty_like(frames)
        view = out[:len(frames)]
        np.copyto(view, frames)
        if mask.lut_row >= 0:
            view[:, mask.lut_row] = mask.lut()[view[:, mask.lut_row]]
        view &= mask.keep()
        frames = view
    return frames[:, mask.top:, :]


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


@numba.njit(cache=True, nogil=True)
def _fmix(x):  # pragma: no cover - compiled
    """MurmurHash3's 64-bit finaliser, of a uint64 or (in place) of a uint64 array; one
    definition for the numpy path and the compiled kernels."""
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
    """128-bit digest of each frame stack (n, 4) of frame indices, oldest first -> (n, 2).

    The hash of the stack's 4 frame digests (8 words), as `hash_words` computes it, compiled.
    """
    if stacks.ndim != 2 or stacks.shape[1] != STACK_SIZE:
        raise ValueError(f"stacks must be (n, {STACK_SIZE}) frame indices, got {stacks.shape}")
    out = np.empty((len(stacks), DIGEST_WORDS), dtype=np.uint64)
    _stack_hash_kernel(np.ascontiguousarray(frame_digest), np.ascontiguousarray(stacks, np.int64),
                       _MULTIPLIERS, _SEEDS, _STEP, out)
    return out


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _stack_hash_kernel(frame_digest, stacks, multipliers, seeds, step,
                       out):  # pragma: no cover - compiled
    width = stacks.shape[1] * 2
    for t in range(stacks.shape[0]):
        for lane in range(2):
            acc = seeds[lane, 63] ^ np.uint64(width)
            for j in range(width):
                word = frame_digest[stacks[t, j // 2], j % 2]
                v = (word ^ seeds[lane, j]) * multipliers[lane, j]
                v ^= v >> np.uint64(29)
                acc = (acc ^ v) * step + v
            out[t, lane] = _fmix(acc)


@intrinsic
def _prefetch(typingctx, array, index):  # pragma: no cover - compiled
    """Ask the CPU to bring the cache line of byte `index` of a contiguous array's data into
    cache (LLVM's prefetch: a hint, no effect on results)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        pointer = builder.gep(builder.bitcast(data, ir.IntType(8).as_pointer()), [args[1]])
        i32 = ir.IntType(32)
        function = builder.module.declare_intrinsic(
            "llvm.prefetch", [pointer.type],
            ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]))
        builder.call(function, [pointer, i32(0), i32(3), i32(1)])  # read, keep, data cache
        return context.get_dummy_value()

    return types.void(array, index), codegen


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=True, error_model="numpy")
def _pool_hash_kernel(frames, top, keep, plain, lut_row, lut, multipliers, seeds, step,
                      out):  # pragma: no cover - compiled
    """Mask, 7x7 max-pool and hash each frame; the same bytes and hash as the numpy path.

    Three passes per frame, each a loop the compiler vectorises: the maxima of each window row's
    7 frame rows (`plain[R]` says that window row holds no masked pixel, skipping the AND with
    `keep`), then running maxima of column pairs and quads over all window rows at once (one
    long loop, not one short loop per row with a scalar tail each), then 2 quads per cell.
    The rows of a frame `PREFETCH_AHEAD` frames on are prefetched, so that reading memory
    overlaps the work (1.2-1.5x when frames come from RAM, measured).
    """
    n = frames.shape[0]
    rows = (frames.shape[1] - top) // 7
    cols = frames.shape[2] // 7
    width = (rows * cols + 7) // 8
    span = rows * WIDTH
    pooled = np.zeros(width * 8, dtype=np.uint8)
    words = pooled.view(np.uint64)
    lines = np.zeros(span + 3, dtype=np.uint8)  # + 3: the pair and quad passes read past the end
    pair = np.zeros(span + 3, dtype=np.uint8)
    quad = np.zeros(span, dtype=np.uint8)
    frame_bytes = frames.shape[1] * frames.shape[2]
    for i in range(n):
        for R in range(rows):
            r0 = top + 7 * R
            o = R * WIDTH
            if i + PREFETCH_AHEAD < n:
                ahead = (i + PREFETCH_AHEAD) * frame_bytes + r0 * WIDTH
                for b in range(0, 7 * WIDTH, 64):
                    _prefetch(frames, ahead + b)
            if plain[R]:
                for c in range(WIDTH):
                    a = max(frames[i, r0, c], frames[i, r0 + 1, c])
                    b = max(frames[i, r0 + 2, c], frames[i, r0 + 3, c])
                    d = max(frames[i, r0 + 4, c], frames[i, r0 + 5, c])
                    lines[o + c] = max(max(a, b), max(d, frames[i, r0 + 6, c]))
            else:  # masked pixels read as 0 (`keep` is 0 there, and on the LUT row)
                for c in range(WIDTH):
                    a = max(frames[i, r0, c] & keep[r0, c], frames[i, r0 + 1, c] & keep[r0 + 1, c])
                    b = max(frames[i, r0 + 2, c] & keep[r0 + 2, c],
                            frames[i, r0 + 3, c] & keep[r0 + 3, c])
                    d = max(frames[i, r0 + 4, c] & keep[r0 + 4, c],
                            frames[i, r0 + 5, c] & keep[r0 + 5, c])
                    lines[o + c] = max(max(a, b), max(d, frames[i, r0 + 6, c] & keep[r0 + 6, c]))
                if lut_row >= r0 and lut_row < r0 + 7:
                    for c in range(WIDTH):
                        lines[o + c] = max(lines[o + c], lut[frames[i, lut_row, c]])
        # Columns 7C..7C+6 of a window row are the quads starting at 7C and 7C+3; a pair or quad
        # that runs into the next row is never used.
        for c in range(span):
            pair[c] = max(lines[c], lines[c + 1])
        for c in range(span):
            quad[c] = max(pair[c], pair[c + 2])
        for R in range(rows):
            for C in range(cols):
                pooled[R * cols + C] = max(quad[R * WIDTH + 7 * C], quad[R * WIDTH + 7 * C + 3])
        # Both 64-bit lanes in one loop: two independent multiply chains overlap.
        acc0 = seeds[0, 63] ^ np.uint64(width)
        acc1 = seeds[1, 63] ^ np.uint64(width)
        for j in range(width):
            v0 = (words[j] ^ seeds[0, j]) * multipliers[0, j]
            v1 = (words[j] ^ seeds[1, j]) * multipliers[1, j]
            v0 ^= v0 >> np.uint64(29)
            v1 ^= v1 >> np.uint64(29)
            acc0 = (acc0 ^ v0) * step + v0
            acc1 = (acc1 ^ v1) * step + v1
        out[i, 0] = _fmix(acc0)
        out[i, 1] = _fmix(acc1)


def pooled_frame_digests(game: str, frames: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Mask, pool and hash each frame once -> (n, 2) uint64, with a compiled kernel.

    Equal to `frame_digests(pool_frames(cell_view(game, frames)))` (tested); `frames` may be a
    memory map larger than RAM (it is read a chunk at a time).
    """
    mask = game_facts(game).cell_mask
    keep, lut = mask.keep(), mask.lut()
    if mask.lut_row >= 0:
        keep[mask.lut_row] = 0  # the kernel adds that row through the LUT (of its raw values)
    rows = (84 - mask.top) // KERNEL
    windows = [slice(mask.top + KERNEL * r, mask.top + KERNEL * (r + 1)) for r in range(rows)]
    plain = np.array([keep[w].all() and not (w.start <= mask.lut_row < w.stop) for w in windows])
    digest = np.empty((len(frames), DIGEST_WORDS), dtype=np.uint64)
    for first in range(0, len(frames), chunk):
        block = np.ascontiguousarray(frames[first:first + chunk])
        _pool_hash_kernel(block, mask.top, keep, plain, mask.lut_row, lut, _MULTIPLIERS, _SEEDS,
                          _STEP, digest[first:first + len(block)])
    return digest


def cell_digests(game: str, frames: np.ndarray, stacks: np.ndarray) -> np.ndarray:
    """Cells of the transitions whose states are `frames[stacks]` -> (n, 2) uint64 digests."""
    return stack_digests(pooled_frame_digests(game, frames), np.asarray(stacks))


def digest_hex(digest: np.ndarray) -> list[str]:
    """(n, 2) uint64 digests as 32-character hex strings."""
    return [f"{int(a):016x}{int(b):016x}" for a, b in digest]
