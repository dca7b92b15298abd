"""A tiny training set, its mined states and an oracle's labels, for the labelling app's tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fdt.dataset.training_set import MANIFEST, save_arrays
from fdt.io import write_json
from fdt.oracle.labels import Verdicts, label_states
from fdt.teacher.bundle import BundleParams, build_bundle
from fdt.teacher.clips import ClipSettings

NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]  # Breakout's minimal action set
LENGTHS = [30, 25, 20]  # trajectories of the training set
STATE_POSITIONS = [40, 5, 70, 33, 12, 58, 21, 47, 64, 2, 29, 54]  # mined states in rank order


def frame_of(row: int) -> np.ndarray:
    """A frame that tells rows apart: a gray level and a bright square that moves."""
    frame = np.full((84, 84), (row * 37) % 200, np.uint8)
    frame[(row * 5) % 76:(row * 5) % 76 + 8, 10:18] = 255
    return frame


def training_set(folder: Path, seed: int = 0, lengths: list[int] = LENGTHS) -> Path:
    """Rows 0..74 in three trajectories (or `lengths`); row i shows frame i + 1; actions seeded."""
    n = sum(lengths)
    ends = np.cumsum(lengths).astype(np.int64)
    starts = ends - np.array(lengths)
    frames = np.stack([np.zeros((84, 84), np.uint8)] + [frame_of(i) for i in range(n)])
    stacks = np.zeros((n, 4), np.int32)
    for start, end in zip(starts, ends, strict=True):
        for i in range(start, end):
            stacks[i] = [max(start, i - back) + 1 for back in (3, 2, 1, 0)]
    actions = np.random.default_rng(seed).integers(0, 4, n).astype(np.int32)
    arrays = {"frames": frames, "stacks": stacks, "actions": actions,
              "rewards": np.zeros(n, np.float32), "returns_to_go": np.zeros(n, np.float32),
              "timesteps": np.concatenate([np.arange(k) for k in lengths]).astype(np.int32),
              "buffer": np.zeros(n, np.int32), "slot": np.arange(n, dtype=np.int32),
              "replay_index": np.arange(100, 100 + n, dtype=np.int64),
              "padding": np.zeros(n, bool), "trajectory_ends": ends}
    folder.mkdir(parents=True, exist_ok=True)
    entries = save_arrays(folder, arrays)
    write_json(folder / MANIFEST, {"arrays": entries, "num_actions": 4,
                                   "max_timestep": max(lengths) - 1,
                                   "sampling": {"transitions": n}})
    return folder


def mined_states(path: Path, data: Path, positions: list[int] = STATE_POSITIONS) -> Path:
    """states.parquet with the mining stage's columns and types."""
    actions = np.load(data / "actions.npy")
    k = len(positions)
    positions = np.array(positions, np.int64)
    table = {"order": np.arange(k, dtype=np.int64), "rank": np.arange(k, dtype=np.int64),
             "kind": ["best"] * k, "position": positions, "replay_index": positions + 100,
             "buffer": np.zeros(k, np.int32), "slot": positions.astype(np.int32),
             "cell": [f"c{i}" for i in range(k)],
             "best_action": ((actions[positions] + 1) % 4).astype(np.int32),
             "worst_action": ((actions[positions] + 2) % 4).astype(np.int32),
             "gap": np.linspace(2.0, 0.5, k), "action": actions[positions].astype(np.int32),
             "allowed": np.ones(k, bool)}
    pq.write_table(pa.table(table), path)
    return path


class StubOracle:
    """An oracle whose greedy action is the dataset action on even orders, the next one on odd."""

    def __init__(self) -> None:
        self.description = {"kind": "stub"}

    def verdicts(self, data: SimpleNamespace, positions: np.ndarray, progress: bool) -> Verdicts:
        actions = np.asarray(data.actions)[positions]
        rank = np.array([STATE_POSITIONS.index(int(p)) for p in positions])
        oracle = np.where(rank % 2 == 0, actions, (actions + 1) % 4).astype(np.int32)
        return Verdicts((oracle == actions).astype(np.int8), oracle, None)


def oracle_labels(out_dir: Path, data: Path, states: Path) -> Path:
    """The oracle's labels.parquet, made by the labelling stage itself (its exact schema)."""
    label_states(data, states, out_dir, StubOracle(), progress=False)
    return out_dir / "labels.parquet"


def world(root: Path, queries: int = 5, gold_rate: float = 0.6) -> SimpleNamespace:
    """A training set, its states, the oracle's labels and a bundle of `queries` queries."""
    data = training_set(root / "dataset")
    states = mined_states(root / "states.parquet", data)
    labels = oracle_labels(root / "oracle", data, states)
    bundle = build_bundle(data, states, root / "queries", "Breakout",
                          BundleParams(queries=queries, gold_rate=gold_rate,
                                       clip=ClipSettings(before=4, after=2, scale=2, fps=10)),
                          gold_labels=labels, names=NAMES, progress=False)
    return SimpleNamespace(data=data, states=states, labels=labels, bundle=bundle,
                           bundle_dir=root / "queries")
