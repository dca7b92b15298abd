"""Minari datasets from a local folder (a user's copy, laid out as MINARI_DATASETS_PATH keeps it:
<root>/<dataset id>/data/metadata.json plus main_data.hdf5, or one Arrow folder per episode,
data/<episode id>/, as minari 0.5 writes them), read through the `minari` package's own readers,
checked and turned into our episodes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fdt.continuous.environments import (
    ContinuousInputError,
    check_environment,
    check_sizes,
    make_env,
    task_sizes,
)
from fdt.continuous.episodes import Episodes
from fdt.continuous.generate import reference_return


def data_folder(root: str | Path, dataset_id: str) -> Path:
    return Path(root) / dataset_id / "data"


def check_minari_folder(root: str | Path, dataset_id: str) -> dict[str, Any]:
    """The dataset's metadata, or one sentence naming the missing file."""
    folder = data_folder(root, dataset_id)
    metadata_file = folder / "metadata.json"
    if not metadata_file.is_file():
        raise ContinuousInputError(f"continuous.minari_path: Minari dataset {dataset_id!r} has no "
                                   f"{metadata_file} (expected <minari_path>/<dataset id>/data/"
                                   "metadata.json, as MINARI_DATASETS_PATH lays it out)")
    try:
        metadata = json.loads(metadata_file.read_text())
    except json.JSONDecodeError as err:
        raise ContinuousInputError(f"{metadata_file}: not JSON ({err})") from err
    data_format = metadata.get("data_format", "hdf5")
    if data_format == "hdf5" and not (folder / "main_data.hdf5").is_file():
        raise ContinuousInputError(f"continuous.minari_path: Minari dataset {dataset_id!r} is in "
                                   f"HDF5 format but {folder / 'main_data.hdf5'} is missing")
    if data_format == "arrow":  # one folder per episode, named by its id: data/0/, data/1/, ...
        wanted = int(metadata.get("total_episodes", 0))
        missing = [i for i in range(wanted) if not (folder / str(i)).is_dir()]
        if missing:
            raise ContinuousInputError(f"{metadata_file}: Minari dataset {dataset_id!r} lists "
                                       f"{wanted} episodes, but {folder} has no folder for "
                                       f"episode(s) {_listed(missing)} (Arrow episodes lie in "
                                       "data/<episode id>/)")
    if int(metadata.get("total_episodes", 0)) < 1:
        raise ContinuousInputError(f"{metadata_file}: Minari dataset {dataset_id!r} holds no "
                                   "episodes (total_episodes is "
                                   f"{metadata.get('total_episodes')!r})")
    if "env_spec" not in metadata:
        raise ContinuousInputError(f"{metadata_file}: no env_spec, so the environment to evaluate "
                                   "in is unknown")
    return metadata


def minari_env_id(metadata: dict[str, Any]) -> str:
    spec = metadata["env_spec"]
    return json.loads(spec)["id"] if isinstance(spec, str) else spec["id"]


def minari_references(metadata: dict[str, Any]) -> dict[str, float] | None:
    """Minari's own reference returns (ref_min_score, ref_max_score), when the dataset has them."""
    low, high = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if low is None or high is None:
        return None
    return {"random": float(low), "expert": float(high)}


def _listed(numbers: list[int], most: int = 10) -> str:
    """A short list of numbers: a broken dataset may miss thousands."""
    shown = ", ".join(str(n) for n in numbers[:most])
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def _episode_place(folder: Path, data_format: str, episode_id: int) -> str:
    """Where one episode's arrays lie, as errors name it."""
    if data_format == "arrow":
        return str(folder / str(episode_id))
    return f"{folder / 'main_data.hdf5'}, episode_{episode_id}"


@contextlib.contextmanager
def _reading(place: str) -> Iterator[None]:
    """minari's readers fail with h5py's, pyarrow's and numpy's own errors (a truncated or
    garbage file, a missing episode, a malformed array); each leaves as one sentence naming the
    file."""
    import pyarrow as pa

    try:
        yield
    except (OSError, KeyError, ValueError, TypeError, AssertionError, pa.ArrowException) as err:
        raise ContinuousInputError(f"{place}: cannot be read as a Minari dataset "
                                   f"({type(err).__name__}: {err})") from err


def _check_episode(episode: Any, place: str) -> int:
    """One episode's arrays agree with each other: `steps` rewards, actions, terminations and
    truncations, one observation more (Minari keeps the final one), and no end before the last
    step (a longer flag array would move the episodes' ends). Returns its number of steps."""
    if not isinstance(episode.observations, np.ndarray):
        raise ContinuousInputError(f"{place}: dictionary observations are not supported (a flat "
                                   "Box observation space is)")
    steps = len(episode.rewards)
    if steps == 0:
        raise ContinuousInputError(f"{place}: the episode has no steps (0 rewards)")
    rows = {name: len(getattr(episode, name)) for name in
            ("observations", "actions", "rewards", "terminations", "truncations")}
    if rows != {**dict.fromkeys(rows, steps), "observations": steps + 1}:
        found = ", ".join(f"{name} {count}" for name, count in rows.items())
        raise ContinuousInputError(f"{place}: arrays of lengths that do not fit together "
                                   f"({found}); Minari keeps one observation more than the "
                                   "steps of the others")
    ended = np.flatnonzero(np.asarray(episode.terminations, bool)[:-1]
                           | np.asarray(episode.truncations, bool)[:-1])
    if len(ended):
        raise ContinuousInputError(f"{place}: the episode ends at step {ended[0]} (terminations or "
                                   f"truncations), before its last step {steps - 1}")
    return steps


def read_minari(root: str | Path, dataset_id: str) -> Episodes:
    """Every episode of a local Minari dataset, HDF5 or Arrow, read through minari's own readers
    (observations without the final one Minari adds). Any file that is not what minari wrote
    is named in one sentence."""
    metadata = check_minari_folder(root, dataset_id)
    folder = data_folder(root, dataset_id)
    data_format = metadata.get("data_format", "hdf5")
    from minari import MinariDataset

    if data_format == "hdf5":  # a truncated, garbage or empty file is named as itself
        import h5py

        with _reading(str(folder / "main_data.hdf5")), h5py.File(folder / "main_data.hdf5", "r"):
            pass
    with _reading(str(folder / "metadata.json")):
        dataset = MinariDataset(folder)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("episode", "step", "observations", "actions",
                                                           "rewards", "terminated", "truncated")}
    width = None
    for episode_id in (int(i) for i in dataset.episode_indices):
        place = _episode_place(folder, data_format, episode_id)
        # One episode at a time, so an error names its episode (minari's Arrow reader opens
        # every episode's file before yielding the first).
        with _reading(place):
            episode = next(iter(dataset.iterate_episodes([episode_id])))
        steps = _check_episode(episode, place)
        observations = episode.observations[:steps].reshape(steps, -1)
        if width is not None and observations.shape[1] != width:
            raise ContinuousInputError(f"{place}: observations of size {observations.shape[1]}, "
                                       f"where the episodes before have {width}")
        width = observations.shape[1]
        parts["episode"].append(np.full(steps, episode_id))
        parts["step"].append(np.arange(steps))
        parts["observations"].append(observations)
        parts["actions"].append(np.asarray(episode.actions).reshape(steps, -1))
        parts["rewards"].append(episode.rewards)
        parts["terminated"].append(episode.terminations)
        parts["truncated"].append(episode.truncations)
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    policy = metadata.get("algorithm_name") or "minari"
    return Episodes(minari_env_id(metadata), joined["episode"].astype(np.int64),
                    joined["step"].astype(np.int64), joined["observations"].astype(np.float32),
                    joined["actions"].astype(np.float32), joined["rewards"].astype(np.float32),
                    joined["terminated"].astype(bool), joined["truncated"].astype(bool),
                    np.full(len(joined["step"]), str(policy)))


def minari_dataset(root: str | Path, dataset_id: str, reference_episodes: int
                   ) -> tuple[Episodes, dict[str, Any]]:
    """A local Minari dataset checked against its environment, and the normalisation's
    references: Minari's own when the dataset has them, else a random policy's mean return and
    the dataset's best episode."""
    metadata = check_minari_folder(root, dataset_id)  # before any work
    where = f"{data_folder(root, dataset_id) / 'metadata.json'}: Minari dataset {dataset_id!r}"
    env_id = minari_env_id(metadata)
    check_environment(env_id, where)
    env = make_env(env_id)
    episodes = read_minari(root, dataset_id)
    check_sizes(env_id, task_sizes(env), episodes.observation_size, episodes.action_size, where)
    references = minari_references(metadata)
    if references is not None:
        return episodes, {**references, "source": "Minari metadata (ref_min_score, ref_max_score)"}
    return episodes, {"random": reference_return(env, "random", None, reference_episodes, 0),
                      "expert": float(episodes.returns().max()),
                      "source": "random policy's mean return; the dataset's best episode"}
