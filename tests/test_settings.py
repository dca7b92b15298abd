"""Settings: each default in one place (the schema), parameter objects built from config."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from fdt.config import validate_config
from fdt.dataset.sampling import SamplingParams
from fdt.evaluation.stage import EvalParams
from fdt.mining.stage import MiningParams
from fdt.models.trainer import TrainParams
from fdt.models.transformer import ModelConfig
from fdt.oracle.training import OracleParams
from fdt.settings import defaults, params_from
from tests.conftest import REPO


@pytest.mark.parametrize("cls, section", [
    (TrainParams, ("train",)), (ModelConfig, ("train",)), (OracleParams, ("oracle", "offline")),
    (MiningParams, ("mining",)), (EvalParams, ("evaluation",)), (SamplingParams, ("dataset",)),
])
def test_dataclass_defaults_are_the_schemas(cls: type, section: tuple[str, ...]) -> None:
    schema = defaults(*section)
    shared = [f for f in dataclasses.fields(cls) if f.name in schema
              and f.default is not dataclasses.MISSING]
    assert shared, cls
    for f in shared:
        if (cls, f.name) in ((EvalParams, "device"), (EvalParams, "targets")):
            continue  # the resolved device, not "auto"; one game's targets, not all games'

        assert f.default == schema[f.name], (cls.__name__, f.name)


def test_params_from_a_config_section() -> None:
    config = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    train = params_from(TrainParams, config["train"], {"model": "fdt"}, seed=7, budget=10)
    assert (train.seed, train.model, train.budget) == (7, "fdt", 10)
    assert train.betas == (0.9, 0.95) and isinstance(train.betas, tuple)  # a YAML list
    assert train.epochs == config["train"]["epochs"]
    mining = params_from(MiningParams, config["mining"], config["dataset"], seed=1,
                         context_length=10)
    assert mining.runs == tuple(config["mining"]["runs"])
    assert mining.transitions == config["dataset"]["transitions"]  # the later mapping wins
    assert mining.gamma == config["mining"]["gamma"]
    with pytest.raises(TypeError):
        params_from(MiningParams, {"gamma": 0.9}, seed=1)  # required fields stay required
