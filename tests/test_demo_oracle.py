"""oracle.kind demo: the demo records its scripted controller's action at every logged row, and
the labels stage reads it by replay index, through the same label schema as the C51 oracle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fdt.config import ConfigError, load_config, validate_config
from fdt.dataset.sampling import SamplingParams
from fdt.dataset.training_set import TrainingSet, build_training_set
from fdt.oracle.labels import DemoController, LabelError, label_states
from fdt.plan import STAGE_SCRIPTS, StagePlan
from fdt.replay.demo import CONTROLLER_FILE, NO_ACTION, simulate_run
from fdt.replay.dopamine import load_checkpoint
from tests.conftest import REPO
from tests.test_labels import _states_parquet

ROWS = 34  # conftest's episode_run logs replay indices 0..33
PADDING = [0, 1, 2, 7, 8, 9, 14, 15, 16, 23, 24, 25, 29, 30, 31]


def _controller(replay_index: np.ndarray) -> np.ndarray:
    """A made-up controller for the hand-made record: (3 * replay index + 1) mod 4."""
    return (3 * replay_index + 1) % 4


def _record(folder: Path, store: list[Path], rows: int = ROWS) -> Path:
    """A demo folder's record for conftest's episode_run: the logged actions (from the store),
    the made-up controller's action, NO_ACTION on padding rows; and demo.json's row count."""
    logged = np.zeros(rows, np.int32)
    light = pa.concat_tables([pq.read_table(p, columns=["replay_index", "action"]) for p in store])
    index = light["replay_index"].to_numpy()
    keep = index < rows
    logged[index[keep]] = light["action"].to_numpy()[keep]
    controller = _controller(np.arange(rows)).astype(np.int32)
    controller[[i for i in PADDING if i < rows]] = NO_ACTION
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"replay_index": np.arange(rows, dtype=np.int64), "action": logged,
                             "controller_action": controller}), folder / CONTROLLER_FILE)
    (folder / "demo.json").write_text(json.dumps({"rows": ROWS}))
    return folder


@pytest.fixture
def training_set(episode_store: list[Path], tmp_path: Path) -> Path:
    """test_labels' hand-checked training set: positions 0..19 at replay indices 0-6, 10-13,
    20-28; actions 0 0 0 0 1 2 3 0 1 2 3 3 0 1 0 0 0 2 3 0; padding at 0-2 and 14-16."""
    params = SamplingParams(seed=0, transitions=20, num_buffers=3, buffers_end=3, capacity=10,
                            trajectories_per_visit=1, context_length=2)
    build_training_set(dict(enumerate(episode_store)), tmp_path / "set", params, num_actions=4,
                       progress=False)
    data = TrainingSet(tmp_path / "set")
    assert np.asarray(data.replay_index).tolist() == [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 20,
                                                     21, 22, 23, 24, 25, 26, 27, 28]
    return tmp_path / "set"


def test_labels_are_the_recorded_controller_action(training_set: Path, episode_store: list[Path],
                                                   tmp_path: Path) -> None:
    demo = _record(tmp_path / "demo", episode_store)
    # positions 4, 8, 5, 13: replay indices 4, 11, 5, 22; dataset actions 1, 1, 2, 1
    states = _states_parquet(tmp_path / "states.parquet", [4, 8, 5, 13], [1, 1, 2, 1])
    summary = label_states(training_set, states, tmp_path / "out", DemoController(demo),
                           all_transitions=True, progress=False)
    labels = pq.read_table(tmp_path / "out" / "labels.parquet").to_pandas()
    # the controller at 4, 11, 5, 22: 13 % 4, 34 % 4, 16 % 4, 67 % 4
    assert labels["oracle_action"].tolist() == [1, 2, 0, 3]
    assert labels["feedback"].tolist() == [1, 0, 0, 0]
    assert list(labels.columns) == ["order", "position", "replay_index", "buffer", "slot",
                                    "action", "best_action", "worst_action", "gap",
                                    "oracle_action", "feedback"]  # the C51 oracle's, no Q-values
    assert summary["oracle"] == {"kind": "demo", "path": str(demo / CONTROLLER_FILE)}
    assert summary["states"] == {"count": 4, "positives": 1, "negatives": 3, "agreement": 0.25,
                                 "oracle_is_best_action": 0.25, "oracle_actions": {0: 1, 1: 1, 2: 1, 3: 1}}
    # the 14 transitions (replay 3-6, 10-13, 20-22, 26-28): the controller agrees at 4, 6, 21
    every = pq.read_table(tmp_path / "out" / "transitions.parquet").to_pandas()
    assert every["oracle_action"].tolist() == [2, 1, 0, 3, 3, 2, 1, 0, 1, 0, 3, 3, 2, 1]
    assert summary["transitions"]["count"] == 14 and summary["transitions"]["positives"] == 3


def test_a_record_of_another_length_is_refused_naming_it(training_set: Path,
                                                         episode_store: list[Path],
                                                         tmp_path: Path) -> None:
    demo = _record(tmp_path / "demo", episode_store, rows=30)
    with pytest.raises(LabelError, match=rf"{CONTROLLER_FILE}: 30 rows recorded, but the demo "
                                         r"logged 34 rows \(.*demo.json\)"):
        DemoController(demo)
    with pytest.raises(LabelError, match=f"{tmp_path / 'none' / CONTROLLER_FILE}: no controller"):
        DemoController(tmp_path / "none")


def test_a_record_of_another_run_is_refused(training_set: Path, episode_store: list[Path],
                                            tmp_path: Path) -> None:
    demo = _record(tmp_path / "demo", episode_store)
    table = pq.read_table(demo / CONTROLLER_FILE).to_pandas()
    table.loc[11, "action"] = 3  # the training set logged 1 at replay index 11
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), demo / CONTROLLER_FILE)
    states = _states_parquet(tmp_path / "states.parquet", [8], [1])
    with pytest.raises(LabelError, match="at replay index 11 the record logged action 3 but the "
                                         "training set has 1"):
        label_states(training_set, states, tmp_path / "out", DemoController(demo),
                     progress=False)


def test_the_demo_records_its_controller_at_every_row(tmp_path: Path) -> None:
    """Without exploration the behaviour is the controller: every logged row's action is the
    recorded controller action; with full exploration they part, and the logs are unchanged."""
    summary = simulate_run(tmp_path / "greedy", "Breakout", seed=1, capacity=300, checkpoints=1,
                           final_rows=100, max_episode_steps=290, epsilon_start=0.0,
                           epsilon_end=0.0, progress=False)
    record = pq.read_table(tmp_path / "greedy" / CONTROLLER_FILE).to_pandas()
    assert len(record) == summary["rows"] == 399
    assert record["replay_index"].tolist() == list(range(399))
    padding = record["controller_action"] == NO_ACTION
    assert record.loc[:2, "controller_action"].tolist() == [NO_ACTION] * 3
    assert (record.loc[~padding, "action"] == record.loc[~padding, "controller_action"]).all()
    assert (record.loc[padding, "action"] == 0).all()
    # the record's logged actions are the Dopamine files' (slots 0..298 of checkpoint 0)
    first = load_checkpoint(tmp_path / "greedy", 0)
    assert np.array_equal(first.action[:299], record["action"].to_numpy()[:299])

    simulate_run(tmp_path / "random", "Breakout", seed=1, capacity=300, checkpoints=1,
                 final_rows=100, max_episode_steps=290, epsilon_start=1.0, epsilon_end=1.0,
                 progress=False)
    record = pq.read_table(tmp_path / "random" / CONTROLLER_FILE).to_pandas()
    moved = record[record["controller_action"] != NO_ACTION]
    assert (moved["action"] != moved["controller_action"]).mean() > 0.5  # random: ~3/4 differ


def test_oracle_kind_demo_needs_the_demo_source() -> None:
    config = load_config(REPO / "config" / "config.yaml")
    config["oracle"]["kind"] = "demo"
    config = validate_config(config, origin="config.yaml")
    plan = StagePlan(config, code={stage: "c" for stage in STAGE_SCRIPTS})  # keys, not code
    assert plan.oracle("Breakout").params == {"kind": "demo", "game": "Breakout", "run": 1}
    assert plan.oracle("Breakout").inputs == (plan.demo().key,)
    assert not plan.oracle_is_network()  # nothing to train or score
    config = load_config(REPO / "config" / "config.yaml")
    config["oracle"]["kind"] = "demo"
    config["source"] = {"kind": "local", "path": "/data/dqn"}
    with pytest.raises(ConfigError, match="at oracle.kind: oracle kind 'demo' labels with the "
                                          "demo simulator's scripted controller, which only "
                                          "source kind 'demo' records; source.kind is 'local'"):
        validate_config(config, origin="x.yaml")
