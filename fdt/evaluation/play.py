"""Playing the evaluation protocol with any policy: every setup, target, test seed and episode,
written as `episodes.parquet` and `summary.json`; and the uniform-random policy scored that way.

Kept apart from the model's stage (fdt.evaluation.stage) so that the random policy's code version
does not include the trainer's modules: editing the trainer must not rerun the random policy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fdt.atari import minimal_action_count
from fdt.evaluation.policies import Policy, UniformPolicy
from fdt.evaluation.protocols import PROTOCOLS, EvaluationError, protocol_jobs
from fdt.evaluation.rollout import rollout
from fdt.games import check_game
from fdt.settings import defaults

_EVALUATION = defaults("evaluation")  # the schema's, the one place they live


@dataclass(frozen=True)
class EvalParams:
    protocol: str = _EVALUATION["protocol"]
    setups: tuple[str, ...] = _EVALUATION["setups"]
    test_seeds: tuple[int, ...] = _EVALUATION["test_seeds"]
    episodes: int = _EVALUATION["episodes"]
    targets: tuple[float, ...] = ()
    max_steps: int | None = _EVALUATION["max_steps"]  # below the protocol's cap, for quick runs
    envs: int = _EVALUATION["envs"]
    workers: int = _EVALUATION["workers"]
    # how environments step (fdt.evaluation.environments.make_pool); the same episodes either way
    backend: str = _EVALUATION.get("backend", "processes")
    device: str = "cpu"
    timestep: str = _EVALUATION["timestep"]
    rom_dir: str | None = _EVALUATION["rom_dir"]


def check_protocol(params: EvalParams) -> None:
    if params.protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {params.protocol!r}; expected one of "
                              f"{', '.join(PROTOCOLS)}")


# What a random policy is scored with: uniform actions at every step (the `sample` setup over
# equal logits), no target, under the same protocol, seeds, episodes and cap as the models.
RANDOM_SETUP = "sample"


def evaluate_random(game: str, params: EvalParams, out_dir: str | Path, *,
                    progress: bool = True) -> dict[str, Any]:
    """Score the uniform-random policy under the protocol: the floor the models' scores are read
    against (and the `random` of a normalized score, measured here rather than quoted)."""
    check_protocol(params)
    check_game(game)
    policy = UniformPolicy(minimal_action_count(game, params.rom_dir), slots=params.envs)
    random_params = replace(params, setups=(RANDOM_SETUP,), targets=(0.0,))
    return play_protocol(policy, game, random_params, out_dir, model_name="random",
                         train_seed=0, progress=progress)


def play_protocol(policy: Policy, game: str, params: EvalParams, out_dir: str | Path, *,
                  model_name: str, train_seed: int, progress: bool = True) -> dict[str, Any]:
    """Every setup, target, test seed and episode with one policy; `episodes.parquet` (a row per
    episode) and `summary.json` (scores per setup and target, env-steps/s) in `out_dir`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from fdt.evaluation.scores import score_table
    from fdt.io import atomic_path, write_json

    jobs = protocol_jobs(params.setups, params.targets, params.test_seeds, params.episodes)
    bar = tqdm(total=len(jobs), desc=f"evaluate {model_name} on {game}", unit="episode",
               disable=not progress)
    started = time.perf_counter()
    try:
        rows = rollout(policy, game, jobs, PROTOCOLS[params.protocol], envs=params.envs,
                       workers=params.workers, max_steps=params.max_steps,
                       rom_dir=params.rom_dir, progress=bar.update, backend=params.backend)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    for row in rows:
        row.update(game=game, model=model_name, train_seed=train_seed, protocol=params.protocol)
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: (r["setup"], r["target"],
                                                              r["test_seed"], r["episode"])))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "episodes.parquet") as tmp:
        pq.write_table(table, tmp)
    scores = score_table(table.to_pandas())
    steps = int(sum(r["steps"] for r in rows))
    summary = {"game": game, "model": model_name, "train_seed": train_seed,
               "params": asdict(params), "episodes": len(rows), "env_steps": steps,
               "seconds": seconds, "env_steps_per_s": steps / seconds if seconds else None,
               "scores": scores.to_dict(orient="records")}
    write_json(out_dir / "summary.json", summary)
    return summary
