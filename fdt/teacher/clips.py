"""The images a labeller sees: a clip around a state as an animated GIF a browser plays, and the
state's 4-frame stack as one PNG strip. Frames are the training set's 84x84 grayscale screens,
upscaled by pixel repetition (no smoothing: Atari sprites stay sharp).

Shared by every page family of the app (fdt.teacher.app): a comparison page shows the same clips.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

MARK_WIDTH = 3  # pixels of the frame of the labelled state's border, after upscaling


@dataclass(frozen=True)
class ClipSettings:
    before: int = 16  # steps shown before the state
    after: int = 8  # steps shown after it
    scale: int = 3  # 84 px -> 252 px
    fps: int = 10


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """A (h, w) frame enlarged `scale` times by repeating pixels."""
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def clip_window(position: int, trajectory_start: int, trajectory_end: int,
                settings: ClipSettings) -> tuple[int, int]:
    """Training-set positions [first, stop) of the clip, inside the state's trajectory."""
    first = max(trajectory_start, position - settings.before)
    stop = min(trajectory_end, position + settings.after + 1)
    return first, stop


def marked(frame: np.ndarray) -> np.ndarray:
    """An RGB copy of a grayscale frame with a red border: the state being asked about."""
    rgb = np.repeat(frame[:, :, None], 3, axis=2)
    red = np.array([230, 30, 30], np.uint8)
    w = MARK_WIDTH
    rgb[:w], rgb[-w:], rgb[:, :w], rgb[:, -w:] = red, red, red, red
    return rgb


def clip_gif(frames: np.ndarray, state_index: int, settings: ClipSettings) -> bytes:
    """An endlessly looping animated GIF of `frames` (n, 84, 84) with frame `state_index` marked."""
    images = []
    for i, frame in enumerate(frames):
        big = upscale(frame, settings.scale)
        rgb = marked(big) if i == state_index else np.repeat(big[:, :, None], 3, axis=2)
        images.append(Image.fromarray(rgb, "RGB"))
    # The marked state is held three frames long, so the eye catches it.
    durations = [3000 // settings.fps if i == state_index else 1000 // settings.fps
                 for i in range(len(images))]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=durations, optimize=False)
    return out.getvalue()


def stack_png(stack: np.ndarray, scale: int, gap: int = 4) -> bytes:
    """The 4 frames of a state (oldest first) side by side, `gap` white pixels apart."""
    tiles = [upscale(frame, scale) for frame in stack]
    height = tiles[0].shape[0]
    spacer = np.full((height, gap), 255, np.uint8)
    strip = np.concatenate([part for tile in tiles for part in (tile, spacer)][:-1], axis=1)
    out = io.BytesIO()
    Image.fromarray(strip, "L").save(out, format="PNG", optimize=True)
    return out.getvalue()
