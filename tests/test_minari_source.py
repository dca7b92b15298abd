"""A local Minari dataset: both layouts minari 0.5 writes (HDF5, and Arrow folders per episode)
are read, and a damaged one is one sentence naming its file (issue 28 item 9)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from fdt.continuous.environments import ContinuousInputError
from fdt.continuous.minari_source import minari_dataset, read_minari
from tests.test_continuous_generate import write_minari_dataset

DATASET = "test/pendulum/simple-v0"
STEPS = [6, 19, 6]  # the three constant-action episodes' lengths (actions -0.5, 0, 0.5)
RETURNS = [5.0, 18.0, 5.0]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One dataset of each layout, copied by each test that damages it."""
    roots = {}
    for data_format in ("hdf5", "arrow"):
        roots[data_format] = tmp_path_factory.mktemp(data_format)
        assert write_minari_dataset(roots[data_format], DATASET, data_format) == RETURNS
    return roots


def _copy(written: dict[str, Path], data_format: str, tmp_path: Path) -> Path:
    shutil.copytree(written[data_format], tmp_path / "root")
    return tmp_path / "root"


def test_an_arrow_dataset_as_minari_writes_it_is_read(written: dict[str, Path]) -> None:
    data = written["arrow"] / DATASET / "data"
    assert sorted(p.name for p in data.iterdir()) == ["0", "1", "2", "metadata.json"]
    episodes = read_minari(written["arrow"], DATASET)
    hdf5 = read_minari(written["hdf5"], DATASET)
    assert episodes.lengths().tolist() == STEPS and episodes.returns().tolist() == RETURNS
    assert episodes.actions[episodes.starts()].ravel().tolist() == [-0.5, 0.0, 0.5]
    assert episodes.terminated.sum() == 3 and episodes.terminated[np.cumsum(STEPS) - 1].all()
    np.testing.assert_array_equal(episodes.observations, hdf5.observations)
    checked, references = minari_dataset(written["arrow"], DATASET, 2)
    assert len(checked) == sum(STEPS) and references["random"] == 1.0


def _rewrite(file: Path, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    with h5py.File(file, "a") as h5:
        values = h5[name][:]
        del h5[name]
        h5[name] = change(values)


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.write_bytes(f.read_bytes()[:f.stat().st_size // 2]),
     "{file}: cannot be read as a Minari dataset (OSError: Unable to synchronously open file (truncated file"),
    (lambda f: f.write_bytes(b"\x17garbage" * 600),
     "{file}: cannot be read as a Minari dataset (OSError: Unable to synchronously open file (file signature not found))"),
    (lambda f: f.write_bytes(b""),
     "{file}: cannot be read as a Minari dataset (OSError: Unable to synchronously open file (file signature not found))"),
    (lambda f: _rewrite(f, "episode_1/rewards", lambda v: v[:-2]),
     "{file}, episode_1: arrays of lengths that do not fit together (observations 20, actions 19, "
     "rewards 17, terminations 19, truncations 19); Minari keeps one observation more than the steps of the others"),
    (lambda f: _rewrite(f, "episode_2/terminations", lambda v: np.r_[v, [False] * 3]),
     "{file}, episode_2: arrays of lengths that do not fit together (observations 7, actions 6, "
     "rewards 6, terminations 9, truncations 6); Minari keeps one observation more than the steps of the others"),
    (lambda f: _rewrite(f, "episode_0/truncations", lambda v: np.r_[False, True, v[2:]]),
     "{file}, episode_0: the episode ends at step 1 (terminations or truncations), before its last step 5"),
])
def test_a_damaged_hdf5_dataset_names_its_file(written: dict[str, Path], tmp_path: Path,
                                                damage: Callable[[Path], None], message: str) -> None:
    root = _copy(written, "hdf5", tmp_path)
    file = root / DATASET / "data" / "main_data.hdf5"
    damage(file)
    with pytest.raises(ContinuousInputError) as info:
        read_minari(root, DATASET)
    assert str(info.value).startswith(message.format(file=file))


def test_a_missing_hdf5_episode_names_the_file_and_the_episode(written: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(written, "hdf5", tmp_path)
    file = root / DATASET / "data" / "main_data.hdf5"
    with h5py.File(file, "a") as h5:
        del h5["episode_1"]
    with pytest.raises(ContinuousInputError) as info:
        read_minari(root, DATASET)
    assert str(info.value) == (f"{file}, episode_1: cannot be read as a Minari dataset (KeyError: "
                               "\"Unable to synchronously open object (object 'episode_1' doesn't exist)\")")


def test_a_damaged_arrow_dataset_names_its_folder(written: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(written, "arrow", tmp_path)
    data = root / DATASET / "data"
    part = data / "1" / "part-0.arrow"
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(ContinuousInputError) as info:
        read_minari(root, DATASET)
    assert str(info.value).startswith(f"{data / '1'}: cannot be read as a Minari dataset (")
    shutil.rmtree(data / "1")
    with pytest.raises(ContinuousInputError) as info:
        read_minari(root, DATASET)
    assert str(info.value) == (f"{data / 'metadata.json'}: Minari dataset {DATASET!r} lists 3 episodes, "
                               f"but {data} has no folder for episode(s) 1 (Arrow episodes lie in "
                               "data/<episode id>/)")
