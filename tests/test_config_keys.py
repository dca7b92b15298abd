"""Config validation messages and the artifact-key scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdt import keys
from fdt.config import ConfigError, episode_cap, load_config, parse_buffers, validate_config
from fdt.games import check_game, rom_id
from tests.conftest import REPO

BASE = {"games": ["Breakout"], "runs": [1], "buffers": [0, 1],
        "dataset": {"num_buffers": 2, "buffers_end": 2, "capacity": 1000}}


def test_embedded_default_is_valid() -> None:
    config = load_config(REPO / "config" / "config.yaml")
    assert config["source"]["kind"] == "demo"
    assert config["replay"]["row_group_rows"] == 4096
    assert episode_cap(config) == config["demo"]["max_episode_steps"] == 2000


def test_defaults_are_filled() -> None:
    config = validate_config(BASE)
    assert config["source"] == {"kind": "demo", "bucket": "atari-replay-datasets", "prefix": "dqn",
                                "endpoint": "https://storage.googleapis.com", "url": None,
                                "storage_options": {}, "path": None, "workers": 4,
                                "verify_gzip": True}
    assert episode_cap({**config, "source": {**config["source"], "kind": "gcs"}}) == 27000


@pytest.mark.parametrize("change, message", [
    ({"games": ["Breakot"]}, r"at games: unknown game 'Breakot'"),
    ({"dataset": {"num_buffers": 3, "buffers_end": 3, "capacity": 1000}},
     r"at dataset\.buffers_end: the training set draws from checkpoints 0\.\.2, but buffers does "
     r"not ingest 2$"),
    ({"dataset": {"num_buffers": 2, "buffers_end": 2, "capacity": 5000}},
     r"at dataset\.capacity: 5000 slots per buffer, but demo files hold 4000"),
    ({"dataset": {"num_buffers": 2, "buffers_end": 2, "capacity": 1000, "run": 2}},
     r"at dataset\.run: run 2 is not among runs \[1\]"),
    ({"train": {"n_embd": 100, "n_head": 8}}, r"at train\.n_embd: 100 is not a multiple"),
    ({"train": {"game_overrides": {"Pong": {"batch_size": 256}}}},
     r"at train\.game_overrides\.Pong: not one of games"),
    ({"train": {"device": "gpu"}}, r"at train\.device: 'gpu' does not match"),
    ({"games": ["breakout"]}, r"Did you mean 'Breakout'\?"),
    ({"source": {"kind": "gcss"}}, r"at source\.kind: 'gcss' is not one of"),
    ({"source": {"kind": "https"}}, r"at source\.url: source kind 'https' needs a url template"),
    ({"source": {"kind": "local"}}, r"at source\.path: source kind 'local' needs the folder"),
    ({"runs": [6]}, r"at runs\.0: 6 is greater than the maximum of 5"),
    ({"buffers": [0, 9]}, r"at buffers: the demo source writes checkpoints 0\.\.4 .* asks for 9$"),
    # A huge range is named in one short line, not listed (it once printed 1.5 MB).
    ({"buffers": "0-200000"}, r"at buffers: the demo source writes checkpoints 0\.\.4 .* asks for 5-200000$"),
    ({"buffers": "0-x"}, r"at buffers: '0-x' does not match"),
    ({"source": {"kind": "https", "url": "https://h/{game}/{run}/replay_logs/{nmae}"}},
     r"at source\.url: url template .* uses \{nmae\}; it may use only \{game\}, \{run\}, \{name\}"),
    ({"source": {"kind": "https", "url": "https://h/{}/{name}"}}, r"at source\.url: .* positional field"),
    ({"source": {"kind": "https", "url": "https://h/{game/{name}"}}, r"at source\.url: .* is malformed"),
    ({"models": ["fdt"], "oracle": {"kind": "dopamine", "source": {"kind": "https", "url": "https://h/{run}"}}},
     r"at oracle\.source\.url: url template 'https://h/\{run\}' has no \{name\}"),
    ({"source": {"kind": "fsspec"}},
     r"at source\.url: source kind 'fsspec' needs a url template such as 's3://bucket/dqn/\{game\}"),
    ({"source": {"kind": "fsspec", "url": "s3://b/{game}/{run}/replay_logs/{nmae}"}},
     r"at source\.url: url template .* uses \{nmae\}; it may use only"),
    ({"source": {"kind": "fsspec", "url": "/data/{game}/{run}/replay_logs/{name}"}},
     r"at source\.url: url template '/data/.*' names no protocol; write an fsspec URL"),
    ({"source": {"kind": "fsspec", "url": "nosuchfs://b/{game}/{run}/{name}"}},
     r"at source\.url: .* uses protocol 'nosuchfs', which fsspec does not know"),
    ({"source": {"kind": "fsspec", "url": "s3://b/{game}/{run}/{name}",
                 "storage_options": {"anon": False, "client_kwargs": {"aws_secret_access_key": "s"}}}},
     r"at source\.storage_options\.client_kwargs\.aws_secret_access_key: credentials do not belong"),
    ({"source": {"kind": "gcs", "storage_options": {"anon": True}}},
     r"at source\.storage_options: only source kind 'fsspec' reads it, and source\.kind is 'gcs'"),
    ({"source": {"kind": "fsspec", "url": "s3://b/{game}/{run}/{name}", "storage_options": []}},
     r"at source\.storage_options: \[\] is not of type 'object'"),
    ({"models": ["fdt"], "oracle": {"kind": "dopamine", "source": {"kind": "fsspec"}}},
     r"at oracle\.source\.url: oracle source kind 'fsspec' needs it"),
    ({"models": ["fdt"], "oracle": {"kind": "dopamine", "source": {"kind": "fsspec", "url": "gs://b/{game}/{run}"}}},
     r"at oracle\.source\.url: url template 'gs://b/\{game\}/\{run\}' has no \{name\}"),
    ({"demo": {"capacity": 100, "max_episode_steps": 200, "final_rows": 10}}, r"at demo\.capacity: 100 rows cannot hold"),
    ({"replay": {"zstd_level": "high"}}, r"at replay\.zstd_level: 'high' is not of type 'integer'"),
    ({"replay": {"zstd_level": -11}}, r"at replay\.zstd_level: -11 is less than the minimum of -10"),
    ({"sources": {}}, r"Additional properties are not allowed \('sources' was unexpected\)"),
    ({"models": ["fdt"], "oracle": {"kind": "published"}},
     r"at oracle\.labels_path: oracle kind 'published' needs the folder"),
    ({"models": ["fdt"], "oracle": {"kind": "dopamine", "source": {"kind": "local"}}},
     r"at oracle\.source\.path: oracle source kind 'local' needs it"),
    ({"models": ["gpt"]}, r"at models\.0: 'gpt' is not one of \['dt', 'bc', 'fdt'"),  # and the added models
    ({"oracle": {"format": "onnx"}}, r"at oracle\.format: 'onnx' is not one of"),
    ({"games": ["Breakout", "MsPacman"], "models": ["dt", "fdt"],
      "evaluation": {"targets": {"Breakout": [90], "MsPacman": [3000]}}},
     r"at games: no allowed-step detector for MsPacman, so FDT cannot mine"),
    ({"models": ["fdt"], "mining": {"runs": [2, 1]}},
     r"at mining\.runs: the statistics set starts in the training set's run \(dataset\.run = 1\)"),
    ({"models": ["fdt"], "mining": {"random_rows": 100}},
     r"at mining\.random_rows: 100 is below dataset\.transitions \(500000\)"),
    ({"models": ["fdt"], "mining": {"runs": [1]}},
     r"at mining\.runs: 50000000 rows \(mining\.transitions\) go past 1 run\(s\) of 47000000"),
    ({"mining": {"runs": [1, 1]}}, r"at mining\.runs: \[1, 1\] has non-unique elements"),
])
def test_config_errors_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config({**BASE, **change}, origin="my.yaml")


def test_fsspec_source_is_valid_and_keyed_by_url_and_options() -> None:
    from fdt.plan import StagePlan
    from fdt.replay.sources import FsspecSource, source_from_config

    source = {"kind": "fsspec", "url": "s3://mirror/dqn/{game}/{run}/replay_logs/{name}",
              "storage_options": {"endpoint_url": "http://127.0.0.1:9000", "anon": True}}
    oracle = {"kind": "dopamine", "source": {"kind": "fsspec", "url": "gs://c51/{game}/{run}/{name}",
                                             "storage_options": {"token": "anon"}}}
    config = validate_config({**BASE, "source": source, "models": ["fdt"], "oracle": oracle})
    description = StagePlan(config, code={}).source_description()
    assert description == {"kind": "fsspec", "url": source["url"], "storage_options": source["storage_options"]}
    assert source_from_config(description).describe() == description  # what fetch records
    other = {**source, "storage_options": {"endpoint_url": "http://127.0.0.1:9001", "anon": True}}
    assert StagePlan(validate_config({**BASE, "source": other}), code={"convert": "c"}).replay().key != \
        StagePlan(config, code={"convert": "c"}).replay().key
    assert isinstance(source_from_config(config["oracle"]["source"], folder=""), FsspecSource)


def test_paper_config_mines_the_references_statistics_set() -> None:
    mining = load_config(REPO / "config" / "paper.yaml")["mining"]
    assert (mining["transitions"], mining["random_rows"], mining["ordered_trajectories_per_visit"],
            mining["rows_per_run"], mining["runs"]) == (50_000_000, 550_000, 1500, 47_000_000,
                                                        [1, 2])
    demo = load_config(REPO / "config" / "config.yaml")["mining"]
    assert demo["random_rows"] < demo["transitions"] <= demo["rows_per_run"]  # ordered, one run


def test_a_game_without_a_detector_is_planned_without_fdt() -> None:
    config = validate_config({**BASE, "games": ["MsPacman"], "models": ["dt", "bc"],
                              "evaluation": {"targets": {"MsPacman": [3000]}}})
    assert config["games"] == ["MsPacman"]


def test_buffers_range_string() -> None:
    assert parse_buffers("0-3") == [0, 1, 2, 3]
    assert parse_buffers([3, 1, 1]) == [1, 3]
    with pytest.raises(ConfigError, match="ends before it starts"):
        parse_buffers("5-2")
    with pytest.raises(ConfigError, match="'5-' is not a range such as '0-49'"):
        parse_buffers("5-")


def test_games() -> None:
    assert rom_id("MsPacman") == "ms_pacman" and rom_id("UpNDown") == "up_n_down"
    assert check_game("Seaquest") == "Seaquest"


def test_artifact_key_covers_params_inputs_and_code() -> None:
    key = keys.artifact_key({"gamma": 0.9, "budget": 2500}, ["abc"], "c1")
    assert key == keys.artifact_key({"budget": 2500, "gamma": 0.9}, ["abc"], "c1")  # order-free
    assert len(key) == keys.KEY_LENGTH
    assert key != keys.artifact_key({"gamma": 0.95, "budget": 2500}, ["abc"], "c1")
    assert key != keys.artifact_key({"gamma": 0.9, "budget": 2500}, ["abd"], "c1")
    assert key != keys.artifact_key({"gamma": 0.9, "budget": 2500}, ["abc"], "c2")


def test_code_version_follows_only_the_named_modules(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    before_a, before_b = keys.code_version(["a"], tmp_path), keys.code_version(["b"], tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert keys.code_version(["a"], tmp_path) != before_a
    assert keys.code_version(["b"], tmp_path) == before_b
    with pytest.raises(ValueError, match="no module fdt.missing"):
        keys.code_version(["missing"], tmp_path)


def test_write_params(tmp_path: Path) -> None:
    from fdt.io import read_json

    key = keys.write_params(tmp_path, "mine", {"gamma": 0.9}, ["k1"], "c")
    assert read_json(tmp_path / "params.json") == {"stage": "mine", "key": key, "params": {"gamma": 0.9},
                                                   "inputs": ["k1"], "code": "c"}


def test_an_offline_agent_as_the_oracle() -> None:
    from fdt.plan import StagePlan

    config = validate_config({**BASE, "models": ["fdt"],
                              "oracle": {"kind": "agent", "agent": {"name": "qr_dqn", "seed": 3}}})
    plan = StagePlan(config)
    oracle = plan.oracle("Breakout")
    assert oracle.params == {"kind": "agent", "game": "Breakout", "agent": "qr_dqn", "seed": 3}
    assert oracle.inputs == (plan.agent("Breakout", "qr_dqn").key,)  # the agent decides the labels
    assert plan.labels("Breakout").inputs[0] == oracle.key
    with pytest.raises(ConfigError, match=r"at oracle\.agent\.name: 'c52' is not an offline agent"):
        validate_config({**BASE, "models": ["fdt"],
                         "oracle": {"kind": "agent", "agent": {"name": "c52"}}})
