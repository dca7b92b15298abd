"""The evaluation stage: one trained model played through the protocol, episodes and scores
written for the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fdt.atari import minimal_action_count
from fdt.evaluation.play import EvalParams, check_protocol, play_protocol
from fdt.evaluation.policies import ModelPolicy
from fdt.evaluation.protocols import EvaluationError
from fdt.games import check_game
from fdt.models.transformer import DecisionTransformer


def check_model_fits(model: DecisionTransformer, game: str, model_game: str | None,
                     rom_dir: str | None = None) -> int:
    """A clear error before any episode when the model is not for this game."""
    check_game(game)
    if model_game is not None and model_game != game:
        raise EvaluationError(f"the model was trained on {model_game}, not {game}")
    actions = minimal_action_count(game, rom_dir)
    if model.config.num_actions != actions:
        raise EvaluationError(f"the model has {model.config.num_actions} actions, but {game}'s "
                              f"minimal action set has {actions}")
    return actions


# --- the stage --------------------------------------------------------------------------------

__all__ = ["EvalParams", "check_model_fits", "evaluate_model", "play_protocol"]


def evaluate_model(model_path: str | Path, game: str, params: EvalParams, out_dir: str | Path, *,
                   model_name: str, train_seed: int, progress: bool = True) -> dict[str, Any]:
    """Play the protocol with one trained model; write `episodes.parquet` and `summary.json`."""
    from fdt.models.trainer import load_model
    from fdt.torchfile import load_torch_file

    check_protocol(params)
    if not params.targets:
        raise EvaluationError(f"no target return-to-go given for {game}")
    payload_game = load_torch_file(model_path).get("game")
    model = load_model(model_path, params.device)
    check_model_fits(model, game, payload_game, params.rom_dir)
    policy = ModelPolicy(model, params.device, timestep=params.timestep, slots=params.envs)
    return play_protocol(policy, game, params, out_dir, model_name=model_name,
                         train_seed=train_seed, progress=progress)
