"""Minari datasets from a local folder (a user's copy, laid out as MINARI_DATASETS_PATH keeps it:
<root>/<dataset id>/data/metadata.json plus main_data.hdf5 or the Arrow episode folders), read
through the `minari` package's own readers and turned into our episodes."""

from __future__ import annotations

import json
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
    if data_format == "arrow":
        wanted = int(metadata.get("total_episodes", 0))
        found = sum(1 for p in folder.glob("episode_*") if p.is_dir())
        if found < wanted:
            raise ContinuousInputError(f"continuous.minari_path: Minari dataset {dataset_id!r} lists "
                                       f"{wanted} episodes but {folder} holds {found} episode_* folders")
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


def read_minari(root: str | Path, dataset_id: str) -> Episodes:
    """Every episode of a local Minari dataset (observations without the final one Minari adds)."""
    metadata = check_minari_folder(root, dataset_id)
    from minari import MinariDataset

    dataset = MinariDataset(data_folder(root, dataset_id))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("episode", "step", "observations", "actions",
                                                           "rewards", "terminated", "truncated")}
    for episode in dataset.iterate_episodes():
        steps = len(episode.rewards)
        if not isinstance(episode.observations, np.ndarray):
            raise ContinuousInputError(f"Minari dataset {dataset_id!r}: dictionary observations are "
                                       "not supported (a flat Box observation space is)")
        parts["episode"].append(np.full(steps, episode.id))
        parts["step"].append(np.arange(steps))
        parts["observations"].append(episode.observations[:steps].reshape(steps, -1))
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
    where = f"Minari dataset {dataset_id!r}"
    metadata = check_minari_folder(root, dataset_id)  # before any work
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
