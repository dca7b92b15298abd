"""Oracle feedback on the mined states (method.md §4): label = 1 when the oracle's greedy action is the
dataset action, else 0.

Three oracle sources:
- a C51 network (Dopamine's published TF or JAX checkpoint, or our offline-trained one): batched
  inference on each state's frame stack, keeping the oracle action and its Q-values;
- the FDT authors' published labels (`$store$_feedback_ckpt.N.gz`, int64, one per file slot
  0..capacity-2 of checkpoint N): the label of a training-set row is that of its (buffer, slot);
- the demo's scripted controller (`oracle.kind: demo`): the action it would have taken at the
  row, recorded by the simulator in `controller.parquet` (fdt.replay.demo), found by replay index.

Outputs: `labels.parquet` (the mined states in order with position, replay index, buffer, slot,
dataset action, best and worst action of the cell, oracle action, Q-values, feedback) and
`agreement.json` (counts and agreement rates; with `all_transitions`, over every transition of the
training set too, whose per-position labels go to `transitions.parquet`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.dataset.training_set import TrainingSet
from fdt.io import atomic_path, read_json, write_json
from fdt.oracle.c51 import C51Network, greedy_actions
from fdt.replay.demo import CONTROLLER_FILE, NO_ACTION
from fdt.replay.dopamine import ReplayFormatError, read_npy_gz

PUBLISHED_NAME = "$store$_feedback_ckpt.{number}.gz"


class LabelError(ValueError):
    pass


@dataclass(frozen=True)
class Verdicts:
    """The oracle's verdict on some training-set positions."""

    feedback: np.ndarray  # (n,) int8: 1 agrees with the dataset action, 0 not
    oracle_action: np.ndarray  # (n,) int32, -1 where the source gives labels only
    q_values: np.ndarray | None  # (n, A) float32, None for published labels


class NetworkOracle:
    """A C51 network labelling frame stacks from the training set."""

    def __init__(self, net: C51Network, description: Mapping[str, Any], *, batch_size: int = 512,
                 device: str = "cpu") -> None:
        self.net, self.description = net, dict(description)
        self.batch_size, self.device = batch_size, device

    def verdicts(self, data: TrainingSet, positions: np.ndarray, progress: bool) -> Verdicts:
        actions = np.empty(len(positions), np.int32)
        q = np.empty((len(positions), self.net.num_actions), np.float32)
        chunk = 16 * self.batch_size
        frames, stacks = data.frames, np.asarray(data.stacks)
        for first in tqdm(range(0, len(positions), chunk), desc="label", unit="chunk",
                          disable=not progress):
            where = positions[first:first + chunk]
            states = np.asarray(frames[stacks[where]])
            actions[first:first + len(where)], q[first:first + len(where)] = greedy_actions(
                self.net, states, batch_size=self.batch_size, device=self.device)
        agree = actions == np.asarray(data.actions)[positions]
        return Verdicts(agree.astype(np.int8), actions, q)


class PublishedLabels:
    """The FDT authors' label files, `$store$_feedback_ckpt.N.gz` in `folder`."""

    def __init__(self, folder: str | Path, file_capacity: int) -> None:
        self.folder, self.file_capacity = Path(folder), file_capacity
        self.description = {"kind": "published", "path": str(self.folder)}
        self._files: dict[int, np.ndarray] = {}

    def labels_of(self, buffer: int) -> np.ndarray:
        if buffer not in self._files:
            path = self.folder / PUBLISHED_NAME.format(number=buffer)
            # The reference labels file slots 0..capacity-2 (its buffer reads 999,999 slots).
            try:
                self._files[buffer] = read_npy_gz(path, np.int64, (self.file_capacity - 1,))
            except ReplayFormatError as err:
                raise LabelError(f"published labels do not match replay checkpoint {buffer} "
                                 f"({self.file_capacity} slots, so {self.file_capacity - 1} "
                                 f"labels expected): {err}") from None
            values = np.unique(self._files[buffer])
            if not set(values.tolist()) <= {0, 1}:
                raise LabelError(f"{path}: labels must be 0 or 1, found {values[:5].tolist()}")
        return self._files[buffer]

    def verdicts(self, data: TrainingSet, positions: np.ndarray, progress: bool) -> Verdicts:
        buffers, slots = np.asarray(data.buffer)[positions], np.asarray(data.slot)[positions]
        feedback = np.empty(len(positions), np.int8)
        for b in np.unique(buffers):
            mine = buffers == b
            labels = self.labels_of(int(b))
            beyond = slots[mine] >= len(labels)
            if np.any(beyond):
                raise LabelError(f"checkpoint {int(b)}: slot {int(slots[mine][beyond][0])} has no "
                                 f"published label (the files cover slots 0..{len(labels) - 1})")
            feedback[mine] = labels[slots[mine]]
        return Verdicts(feedback, np.full(len(positions), -1, np.int32), None)


class DemoController:
    """The demo simulator's record of its controller's action at every logged row of one run
    (`controller.parquet` in the run's demo folder, beside `demo.json`)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / CONTROLLER_FILE
        self.description = {"kind": "demo", "path": str(self.path)}
        if not self.path.is_file():
            raise LabelError(f"{self.path}: no controller record (demo logs simulated before the "
                             "controller's actions were recorded? delete the folder and rerun)")
        table = pq.read_table(self.path)
        missing = {"replay_index", "action", "controller_action"} - set(table.column_names)
        if missing:
            raise LabelError(f"{self.path}: expected columns replay_index, action and "
                             f"controller_action; missing {', '.join(sorted(missing))}")
        summary = self.folder / "demo.json"
        try:
            rows = int(read_json(summary)["rows"])
        except (OSError, KeyError, ValueError) as err:
            raise LabelError(f"{summary}: cannot read the demo's row count ({err})") from None
        if table.num_rows != rows:
            raise LabelError(f"{self.path}: {table.num_rows} rows recorded, but the demo logged "
                             f"{rows} rows ({summary}); the record belongs to another run")
        index = table["replay_index"].to_numpy()
        if not np.array_equal(index, np.arange(rows)):
            raise LabelError(f"{self.path}: replay_index must run 0..{rows - 1} in order")
        self.action = table["action"].to_numpy().astype(np.int64)
        self.controller_action = table["controller_action"].to_numpy().astype(np.int32)

    def verdicts(self, data: TrainingSet, positions: np.ndarray, progress: bool) -> Verdicts:
        replay_index = np.asarray(data.replay_index)[positions].astype(np.int64)
        outside = (replay_index < 0) | (replay_index >= len(self.action))
        if np.any(outside):
            first = int(np.flatnonzero(outside)[0])
            raise LabelError(f"{self.path}: position {int(positions[first])} of the training set "
                             f"has replay index {int(replay_index[first])}, outside the "
                             f"{len(self.action)} rows recorded")
        dataset_actions = np.asarray(data.actions)[positions].astype(np.int64)
        differs = self.action[replay_index] != dataset_actions
        if np.any(differs):
            first = int(np.flatnonzero(differs)[0])
            raise LabelError(f"{self.path}: at replay index {int(replay_index[first])} the record "
                             f"logged action {int(self.action[replay_index[first]])} but the "
                             f"training set has {int(dataset_actions[first])} (a record of "
                             "another run?)")
        actions = self.controller_action[replay_index]
        if np.any(actions == NO_ACTION):
            first = int(np.flatnonzero(actions == NO_ACTION)[0])
            raise LabelError(f"{self.path}: replay index {int(replay_index[first])} is a padding "
                             "row, where the controller chose no action")
        return Verdicts((actions == dataset_actions).astype(np.int8), actions, None)


def label_states(training_set: str | Path, states_path: str | Path, out_dir: str | Path,
                 oracle: NetworkOracle | PublishedLabels | DemoController, *, all_transitions: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Label the mined states of one training set; write labels.parquet and agreement.json."""
    data = TrainingSet(training_set)
    states = pq.read_table(states_path).sort_by("order")
    positions = states["position"].to_numpy().astype(np.int64)
    if len(positions) and positions.max() >= len(data):
        raise LabelError(f"{states_path}: position {int(positions.max())} is beyond the training "
                         f"set's {len(data)} rows (states mined for another training set?)")
    dataset_actions = np.asarray(data.actions)
    if not np.array_equal(dataset_actions[positions], states["action"].to_numpy()):
        raise LabelError(f"{states_path}: the states' actions differ from the training set's at "
                         "their positions (states mined for another training set?)")
    verdicts = oracle.verdicts(data, positions, progress)
    best = states["best_action"].to_numpy()
    table = {name: states[name] for name in ("order", "position", "replay_index", "buffer", "slot",
                                             "action", "best_action", "worst_action", "gap")}
    table["oracle_action"] = pa.array(verdicts.oracle_action)
    table["feedback"] = pa.array(verdicts.feedback)
    if verdicts.q_values is not None:
        table["q_values"] = pa.FixedSizeListArray.from_arrays(
            pa.array(verdicts.q_values.reshape(-1)), verdicts.q_values.shape[1])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "labels.parquet") as tmp:
        pq.write_table(pa.table(table), tmp)
    summary: dict[str, Any] = {"oracle": oracle.description,
                               "states": _agreement(verdicts, best)}
    if all_transitions:
        every = np.flatnonzero(~np.asarray(data.padding))
        all_verdicts = oracle.verdicts(data, every, progress)
        with atomic_path(out_dir / "transitions.parquet") as tmp:
            pq.write_table(pa.table({"position": every, "oracle_action": all_verdicts.oracle_action,
                                     "feedback": all_verdicts.feedback}), tmp)
        summary["transitions"] = _agreement(all_verdicts, None)
    write_json(out_dir / "agreement.json", summary)
    return summary


def _agreement(verdicts: Verdicts, best_action: np.ndarray | None) -> dict[str, Any]:
    n = len(verdicts.feedback)
    out: dict[str, Any] = {"count": n, "positives": int(verdicts.feedback.sum()),
                           "negatives": int(n - verdicts.feedback.sum()),
                           "agreement": float(verdicts.feedback.mean()) if n else None}
    if best_action is not None and n and verdicts.oracle_action.min() >= 0:
        out["oracle_is_best_action"] = float(np.mean(verdicts.oracle_action == best_action))
    if n and verdicts.oracle_action.min() >= 0:
        counts = np.bincount(verdicts.oracle_action)
        out["oracle_actions"] = {int(a): int(c) for a, c in enumerate(counts) if c}
    return out
