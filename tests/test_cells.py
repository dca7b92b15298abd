"""Cells: per-game masks, max-pooling as torch's MaxPool2d, 128-bit digests of pooled stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdt.mining.cells import cell_digests, cell_view, frame_digests, pool_frames, stack_digests


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 84, 84), dtype=np.uint8)


@pytest.mark.parametrize("game, shape", [("Breakout", (12, 12)), ("Qbert", (12, 12)),
                                         ("Pong", (10, 12)), ("Seaquest", (9, 12)),
                                         ("MsPacman", (12, 12))])
def test_pooling_equals_torch_maxpool_on_the_stack(game: str, shape: tuple[int, int]) -> None:
    frames = _frames(4 * 70, seed=1)
    pooled = pool_frames(cell_view(game, frames), chunk=64)
    assert pooled.shape == (len(frames), *shape)
    stacks = torch.from_numpy(cell_view(game, frames).astype(np.float32)).reshape(70, 4, *cell_view(game, frames).shape[1:])
    reference = torch.nn.MaxPool2d(7, stride=7)(stacks).numpy().astype(np.uint8)
    assert np.array_equal(pooled.reshape(70, 4, *shape), reference)


def _same_cell(game: str, a: np.ndarray, b: np.ndarray) -> bool:
    stacks = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    digests = cell_digests(game, np.stack([a, b]), stacks)
    return bool(np.array_equal(digests[0], digests[1]))


def test_masks_hide_the_score_and_nothing_else() -> None:
    base = np.full((84, 84), 40, dtype=np.uint8)
    changed = base.copy()
    changed[0:6, 0:48] = 255  # Breakout's score area
    assert _same_cell("Breakout", base, changed)
    changed[6, 10] = 255  # the row below it counts
    assert not _same_cell("Breakout", base, changed)
    changed = base.copy()
    changed[2:12, 17:38] = 255
    assert _same_cell("Qbert", base, changed)
    changed[12, 20] = 255
    assert not _same_cell("Qbert", base, changed)
    changed = base.copy()
    changed[0:11, :] = 255  # Pong's score rows are cropped away
    assert _same_cell("Pong", base, changed)
    changed[11, 0] = 255
    assert not _same_cell("Pong", base, changed)
    changed = base.copy()
    changed[0:18, :] = 255  # Seaquest: score and lives cropped, oxygen bar zeroed
    changed[61:70, :] = 0
    changed[18, :] = 250  # ship band rows 18, 19, 21 are zeroed
    assert _same_cell("Seaquest", base, changed)
    assert not _same_cell("MsPacman", base, changed)  # no mask for other games


def test_seaquest_ship_band_is_thresholded() -> None:
    frame = np.zeros((1, 84, 84), dtype=np.uint8)
    frame[0, 20, 0:3] = [99, 100, 250]
    frame[0, 19, 5] = 200
    view = cell_view("Seaquest", frame)
    assert view.shape == (1, 66, 84)
    assert view[0, 2, 0:3].tolist() == [0, 172, 172]  # row 20 of the frame is row 2 of the view
    assert view[0, 1, 5] == 0


def test_digests_identify_pooled_stacks() -> None:
    pooled = np.random.default_rng(2).integers(0, 4, (20_000, 12, 12), dtype=np.uint8)
    pooled[1] = pooled[0]
    digest = frame_digests(pooled)
    assert np.array_equal(digest[0], digest[1])
    distinct = len(np.unique(pooled.reshape(len(pooled), -1), axis=0))
    assert len(np.unique(digest, axis=0)) == distinct
    # One byte more or less changes the digest.
    nudged = pooled[:1].copy()
    nudged[0, 11, 11] ^= 1
    assert not np.array_equal(frame_digests(nudged)[0], digest[0])
    stacks = np.array([[2, 3, 4, 5], [2, 3, 4, 5], [3, 2, 4, 5], [0, 3, 4, 5], [1, 3, 4, 5]])
    cells = stack_digests(digest, stacks)
    assert np.array_equal(cells[0], cells[1])  # same frames, same cell
    assert not np.array_equal(cells[0], cells[2])  # order matters
    assert np.array_equal(cells[3], cells[4])  # frames 0 and 1 are equal
    assert frame_digests(pooled[:3]).tolist() == digest[:3].tolist()  # stable across calls


@pytest.mark.parametrize("game", ["Breakout", "Qbert", "Pong", "Seaquest", "MsPacman"])
def test_compiled_kernel_equals_the_numpy_path(game: str) -> None:
    from fdt.mining.cells import pooled_frame_digests

    frames = _frames(300, seed=3)
    frames[:, 18:22, :] = np.random.default_rng(4).integers(90, 110, (300, 4, 84))  # Seaquest band
    expected = frame_digests(pool_frames(cell_view(game, frames)))
    assert np.array_equal(pooled_frame_digests(game, frames, chunk=128), expected)


def test_compiled_stack_digests_equal_hashing_the_words() -> None:
    from fdt.mining.cells import hash_words

    digest = frame_digests(np.random.default_rng(5).integers(0, 9, (50, 12, 12), dtype=np.uint8))
    stacks = np.random.default_rng(6).integers(0, 50, (200, 4))
    words = digest[stacks].reshape(200, 8)
    assert np.array_equal(stack_digests(digest, stacks), hash_words(words))
