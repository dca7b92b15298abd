"""Relabelling: the training set with the reward model's rewards and returns-to-go.

A learnt reward is known only up to a constant per step and a scale (the Bradley-Terry loss sees
differences of returns, the ordinal targets are in standard deviations), while DT is conditioned
on returns-to-go and evaluated at target returns in game points. So the predicted rewards are
shifted so the lowest predicted reward of a transition is 0 (Atari's clipped rewards are mostly 0
or positive, and a negative step reward would make long trajectories look bad), then scaled so the
largest learnt return-to-go equals the training set's largest true return-to-go. The evaluation's
targets then mean what they mean for DT.

The relabelled set is a training set folder (same arrays and manifest) so the trainer reads it as
it reads any: the frames and the other arrays are symbolic links to the original's (copies where
links are refused), `rewards.npy` and `returns_to_go.npy` are new, and the manifest says where
they came from.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdt.dataset.training_set import MANIFEST, TrainingSet, returns_to_go, save_arrays
from fdt.io import atomic_path, write_json
from fdt.preferences.reward_model import load_reward_model, predict_rewards

RELABELLED = ("rewards", "returns_to_go")


class RelabelError(ValueError):
    """A reward model or training set that gives no usable learnt returns."""


def scale_rewards(predicted: np.ndarray, padding: np.ndarray, ends: np.ndarray,
                  true_max_return: float) -> tuple[np.ndarray, float, float]:
    """Shift and scale predicted rewards (documented above); padding rows get 0.

    Returns the rewards, the shift subtracted and the scale applied."""
    real = ~np.asarray(padding, dtype=bool)
    if not real.any():
        raise RelabelError("the training set has no transitions to relabel")
    if true_max_return <= 0:
        raise RelabelError(f"the training set's largest true return-to-go is {true_max_return:g}: "
                           "there is no range of returns to scale the learnt reward to")
    shift = float(predicted[real].min())
    shifted = np.where(real, predicted.astype(np.float64) - shift, 0.0)
    learnt_max = float(returns_to_go(shifted, ends).max())
    if learnt_max <= 0:
        raise RelabelError("the reward model predicts the same reward for every transition: "
                           "it has learnt nothing to relabel with")
    scale = true_max_return / learnt_max
    return (shifted * scale).astype(np.float32), shift, scale


def relabel_training_set(source: TrainingSet, reward_model: str | Path, out_dir: str | Path,
                         device: torch.device, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write the relabelled training set to `out_dir`; return its manifest (written last)."""
    net = load_reward_model(reward_model, device)
    predicted = predict_rewards(net, source.frames, source.stacks, source.actions, device)
    ends = np.asarray(source.trajectory_ends)
    true_max = float(source.manifest["max_return"])
    rewards, shift, scale = scale_rewards(predicted, source.padding, ends, true_max)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = dict(source.manifest["arrays"])
    for name in entries:
        if name not in RELABELLED:
            link_or_copy(source.folder / f"{name}.npy", out_dir / f"{name}.npy")
    rtg = returns_to_go(rewards, ends)
    entries.update(save_arrays(out_dir, {"rewards": rewards, "returns_to_go": rtg}))
    true_rewards = np.asarray(source.rewards, dtype=np.float64)
    real = ~np.asarray(source.padding, dtype=bool)
    manifest = {
        **source.manifest,
        "key": provenance.get("key", source.manifest.get("key")),
        "arrays": entries,
        "max_return": float(rtg.max()),
        "relabelled": {
            **provenance,
            "shift": shift, "scale": scale, "true_max_return": true_max,
            # how far the learnt reward follows the true one, over the transitions
            "reward_correlation": _correlation(rewards[real], true_rewards[real]),
            "return_correlation": _correlation(rtg[real], np.asarray(source.returns_to_go)[real]),
        },
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def link_or_copy(source: Path, target: Path) -> None:
    """A relative symbolic link to an unchanged array (a copy where links are refused),
    atomically. Not a hard link: Snakemake judges freshness by modification times, and a hard
    link shares them with the original, so touching the relabelled set would make the training
    set look newer than everything built from it."""
    with atomic_path(target) as tmp:
        try:
            os.symlink(os.path.relpath(source, target.parent), tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
