"""Learning histories on disk: one Parquet file per task, generated here or read from a local
copy of the anchor's published datasets.

A history is every transition of one learner on one task, in the order it was collected:
columns task, episode, t, row, col, action, reward. Generation writes each task's file
atomically and skips tasks already written, so a killed job resumes where it stopped.

The anchor's published files (Hugging Face ml-jku/dark_room, ml.jku.at .../minihack/dark_room)
are one file per task named "[0,0]_[x,y].pkl" (key-door: "..._[kx,ky].pkl"), each a pickled
Stable-Baselines3 ReplayBuffer (observations, actions, rewards, dones; n_envs 1), or the same
arrays as .npz (src/buffers/trajectory_buffer.py, load_trajectory_dataset). They are read
without importing Stable-Baselines3: the unpickler maps its classes to a plain attribute holder
and refuses every other class.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from fdt.incontext.environments import GridWorld, InContextInputError, Task, TaskSplit
from fdt.incontext.learner import PPOParams, learning_history
from fdt.io import atomic_path

COLUMNS = ("task", "episode", "t", "row", "col", "action", "reward")


def task_file(folder: str | Path, index: int) -> Path:
    return Path(folder) / f"task{index:03d}.parquet"


def write_history(path: Path, task: int, history: dict[str, np.ndarray]) -> None:
    frame = pd.DataFrame({"task": np.full(len(history["t"]), task, np.int64),
                          **{c: history[c] for c in COLUMNS[1:]}})
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def generate(split: TaskSplit, tasks: Iterable[int], steps: int, params: PPOParams, seed: int,
             folder: str | Path, progress: Callable[[int, float], None] | None = None) -> list[Path]:
    """Each task's learning history, skipping those already on disk (resume after a kill)."""
    paths = []
    for index in tasks:
        path = task_file(folder, index)
        if not path.exists():
            world = GridWorld(split.train[index], split.size, split.max_episode_steps)
            history = learning_history(world, steps, params, seed * 1000 + index)
            write_history(path, index, history)
            if progress is not None:
                progress(index, float(history["reward"].sum()))
        paths.append(path)
    return paths


def read_history(path: str | Path, size: int = 10) -> pd.DataFrame:
    """One task's history, checked: a damaged file or one of another grid is one clear error."""
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several kinds for a truncated or foreign file
        raise InContextInputError(f"{path}: not a readable learning history ({err})") from err
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InContextInputError(f"{path}: a learning history needs columns {list(COLUMNS)}; "
                                  f"missing {missing}")
    if len(frame) == 0:
        raise InContextInputError(f"{path}: an empty learning history")
    high = int(max(frame["row"].max(), frame["col"].max()))
    if high >= size or int(min(frame["row"].min(), frame["col"].min())) < 0:
        raise InContextInputError(f"{path}: positions up to {high}, outside a {size}x{size} "
                                  "grid (a dataset of another grid size?)")
    return frame


# --- the anchor's published format -----------------------------------------------------------

class _Holder:
    """Stands in for Stable-Baselines3's buffer classes: only their attributes are read."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _AnchorUnpickler(pickle.Unpickler):
    ALLOWED_MODULES = ("numpy", "collections", "builtins", "copyreg")

    def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
        if module.startswith(("stable_baselines3", "src.", "gym", "gymnasium")):
            return _Holder
        if module.split(".")[0] in self.ALLOWED_MODULES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _arrays_from(obj: object, path: Path) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) or isinstance(obj, np.lib.npyio.NpzFile):
        source = obj
    else:
        source = getattr(obj, "__dict__", {})
    needed = ("observations", "actions", "rewards", "dones")
    if not all(k in source for k in needed):
        raise InContextInputError(f"{path}: expected a replay buffer with {list(needed)}; found "
                                  f"{sorted(source)[:10]}")
    arrays = {k: np.asarray(source[k]) for k in needed}
    if "pos" in source:  # an SB3 buffer: valid rows up to pos unless it is full
        end = len(arrays["observations"]) if source.get("full") else int(source["pos"])
        arrays = {k: v[:end] for k, v in arrays.items()}
    return arrays


def read_anchor_file(path: str | Path, task: int, size: int = 10,
                     max_episode_steps: int = 100) -> pd.DataFrame:
    """One of the anchor's task files (.pkl or .npz) as our history columns."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as npz:
                arrays = _arrays_from(dict(npz), path)
        else:
            arrays = _arrays_from(_AnchorUnpickler(io.BytesIO(path.read_bytes())).load(), path)
    except InContextInputError:
        raise
    except Exception as err:
        raise InContextInputError(f"{path}: not a readable RA-DT dataset file ({err})") from err
    obs = arrays["observations"].reshape(len(arrays["observations"]), -1)
    if obs.shape[1] != 2:
        raise InContextInputError(f"{path}: observations of width {obs.shape[1]}, expected the "
                                  "cursor position (2)")
    dones = arrays["dones"].reshape(-1).astype(bool)
    episode = np.concatenate([[0], np.cumsum(dones)[:-1]]).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], dones[:-1]]))
    t = np.arange(len(dones)) - np.repeat(starts, np.diff(np.append(starts, len(dones))))
    frame = pd.DataFrame({"task": np.full(len(dones), task, np.int64), "episode": episode,
                          "t": t.astype(np.int64), "row": obs[:, 0].astype(np.int64),
                          "col": obs[:, 1].astype(np.int64),
                          "action": arrays["actions"].reshape(-1).astype(np.int64),
                          "reward": arrays["rewards"].reshape(-1).astype(np.float32)})
    if int(t.max()) >= max_episode_steps:
        raise InContextInputError(f"{path}: episodes of {int(t.max()) + 1} steps; the "
                                  f"environment's have {max_episode_steps}")
    if int(obs.max()) >= size or int(obs.min()) < 0:
        raise InContextInputError(f"{path}: positions up to {int(obs.max())}, outside a "
                                  f"{size}x{size} grid (a dataset of another grid size?)")
    return frame


def import_local(split: TaskSplit, tasks: Iterable[int], local: str | Path,
                 folder: str | Path) -> list[Path]:
    """The anchor's files for `tasks` under `local` (its layout: <local>/<task name>.pkl), each
    converted to our Parquet; a missing task names the file it looked for."""
    paths = []
    for index in tasks:
        task: Task = split.train[index]
        candidates = [Path(local) / f"{task.name}{ext}" for ext in (".pkl", ".npz")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise InContextInputError(f"{candidates[0]}: missing; incontext.local_path should "
                                      "hold the anchor's files, one per training task")
        path = task_file(folder, index)
        if not path.exists():
            frame = read_anchor_file(found, index, split.size, split.max_episode_steps)
            with atomic_path(path) as tmp:
                frame.to_parquet(tmp, index=False)
        paths.append(path)
    return paths
