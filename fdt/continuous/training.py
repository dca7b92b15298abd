"""Train a continuous Decision Transformer as CORL's dt.py does, evaluating on the way.

AdamW with a linear warmup (then constant), gradient norm clipped, MSE on the real steps of each
window; every `eval_every` updates and at the end the model plays every target return. A
checkpoint every `checkpoint_every` updates lets an interrupted job resume where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fdt.continuous.environments import TaskSizes, normalized_score
from fdt.continuous.episodes import Episodes, write_csv
from fdt.continuous.evaluation import EpisodeResult, Prompting, evaluate_targets
from fdt.continuous.model import ContinuousDecisionTransformer, ModelShape
from fdt.continuous.sequences import SequenceSampler, Window
from fdt.device import resolve_device
from fdt.io import atomic_path, write_json
from fdt.models.trainer import lr_multiplier
from fdt.settings import defaults
from fdt.torchfile import load_torch_file
from fdt.tracking import flat_values, mlflow_names

log = logging.getLogger(__name__)


_DT = defaults("continuous", "dt")
_RUN = defaults("continuous", "run")


@dataclass(frozen=True)
class DTParams:
    """CORL's TrainConfig (configs/offline/dt/<task>/<dataset>.yaml); defaults in the schema."""

    embedding_dim: int = _DT["embedding_dim"]
    num_layers: int = _DT["num_layers"]
    num_heads: int = _DT["num_heads"]
    seq_len: int = _DT["seq_len"]
    episode_len: int = _DT["episode_len"]
    attention_dropout: float = _DT["attention_dropout"]
    residual_dropout: float = _DT["residual_dropout"]
    embedding_dropout: float = _DT["embedding_dropout"]
    learning_rate: float = _DT["learning_rate"]
    betas: tuple[float, float] = _DT["betas"]
    weight_decay: float = _DT["weight_decay"]
    clip_grad: float | None = _DT["clip_grad"]
    batch_size: int = _DT["batch_size"]
    update_steps: int = _DT["update_steps"]
    warmup_steps: int = _DT["warmup_steps"]
    reward_scale: float = _DT["reward_scale"]
    target_returns: tuple[float, ...] = _DT["target_returns"]
    eval_episodes: int = _DT["eval_episodes"]
    eval_every: int = _DT["eval_every"]
    eval_seed: int = _DT["eval_seed"]
    eval_seeding: str = _DT["eval_seeding"]  # corl | per_episode (fdt.continuous.evaluation)
    max_action: float | None = _DT["max_action"]  # CORL's 1.0; None: the environment's bound
    seed: int = 10
    # how to run (not part of the weights' recipe)
    device: str = "cpu"
    envs: int = _RUN["envs"]
    checkpoint_every: int = _RUN["checkpoint_every"]
    log_every: int = _RUN["log_every"]


def window_tensors(window: Window, device: torch.device) -> list[torch.Tensor]:
    return [torch.as_tensor(a, device=device) for a in
            (window.states, window.actions, window.returns_to_go, window.time_steps, window.mask)]


def masked_mse(predicted: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CORL's loss: squared errors of the real steps, averaged over every element of the window."""
    return ((predicted - actions) ** 2 * mask.unsqueeze(-1)).mean()


def action_bound(sizes: TaskSizes, params: DTParams) -> float:
    """The bound the tanh head is scaled to: CORL's fixed max_action (1.0, the bound of D4RL's
    MuJoCo tasks), or the environment's own when max_action is None."""
    if params.max_action is None:
        return sizes.max_action
    if params.max_action < sizes.max_action:
        log.warning("continuous.dt.max_action %g is below the environment's action bound %g: the "
                    "model cannot reach the dataset's largest actions (null uses the bound)",
                    params.max_action, sizes.max_action)
    return params.max_action


def build_model(sizes: TaskSizes, params: DTParams) -> ContinuousDecisionTransformer:
    names = {"embedding_dim", "num_layers", "num_heads", "seq_len", "episode_len",
             "attention_dropout", "residual_dropout", "embedding_dropout"}
    return ContinuousDecisionTransformer(ModelShape(
        observation_size=sizes.observation_size, action_size=sizes.action_size,
        max_action=action_bound(sizes, params),
        **{k: v for k, v in asdict(params).items() if k in names}))


def make_optimizer(model: torch.nn.Module, params: DTParams
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate,
                                  betas=params.betas, weight_decay=params.weight_decay)
    # CORL: min((step + 1) / warmup, 1); the cosine of lr_multiplier is floored at 1 (constant)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step + 1, params.warmup_steps, math.inf, 1.0))
    return optimizer, schedule


def scored_rows(results: list[EpisodeResult], step: int, references: dict[str, float]) -> list[dict]:
    return [{"step": step, "target": r.target, "episode": r.episode, "seed": r.seed,
             "score": r.score, "length": r.length,
             "normalized": float(normalized_score(r.score, references["random"], references["expert"]))}
            for r in results]


def summarize(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean and std of score and normalized score per target, at the rows' last step."""
    last = rows[rows["step"] == rows["step"].max()]
    return {f"{target:g}": {"score_mean": float(g["score"].mean()), "score_std": float(g["score"].std(ddof=0)),
                            "normalized_mean": float(g["normalized"].mean()),
                            "normalized_std": float(g["normalized"].std(ddof=0)), "episodes": len(g)}
            for target, g in last.groupby("target")}


def train_dt(episodes: Episodes, sizes: TaskSizes, make_env: Callable[[], Any], params: DTParams,
             references: dict[str, float], out_dir: str | Path, tracker: Any = None) -> dict[str, Any]:
    """Train, evaluate and write model.pt, curve.csv, evaluation.csv and metrics.json in out_dir."""
    out = Path(out_dir)
    device = resolve_device(params.device, "continuous.run.device")
    torch.manual_seed(params.seed)
    sampler = SequenceSampler(episodes, params.seq_len, params.reward_scale, params.seed)
    model = build_model(sizes, params).to(device)
    optimizer, schedule = make_optimizer(model, params)
    prompting = Prompting(sampler.state_mean, sampler.state_std, params.reward_scale)
    curve: list[dict] = []
    evaluations: list[dict] = []
    step, run_id = _resume(out / "checkpoint.pt", model, optimizer, schedule, sampler, curve, evaluations)
    if tracker is not None:  # a resumed job continues its MLflow run
        run_id = tracker.start(run_id)
        tracker.log_params(mlflow_names(flat_values({**asdict(params), "transitions": len(episodes)})))

    def evaluate(at: int) -> None:
        results = evaluate_targets(model, make_env, params.target_returns, params.eval_episodes,
                                   params.envs, params.eval_seed, prompting, device,
                                   params.eval_seeding)
        rows = scored_rows(results, at, references)
        evaluations.extend(rows)
        summary = summarize(pd.DataFrame(rows))
        log.info("step %d: %s", at, {t: round(s["normalized_mean"], 1) for t, s in summary.items()})
        if tracker is not None:
            tracker.log_metrics({f"eval_{t}_normalized": s["normalized_mean"] for t, s in summary.items()},
                                step=at)

    model.train()
    while step < params.update_steps:
        states, actions, returns, time_steps, mask = window_tensors(sampler.sample(params.batch_size), device)
        loss = masked_mse(model(states, actions, returns, time_steps), actions, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if params.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.clip_grad)
        optimizer.step()
        schedule.step()
        step += 1
        if step % params.log_every == 0 or step == params.update_steps:
            curve.append({"step": step, "loss": loss.item(), "learning_rate": schedule.get_last_lr()[0]})
            log.info("step %d/%d loss %.5f", step, params.update_steps, curve[-1]["loss"])
            if tracker is not None:
                tracker.log_metrics({"loss": curve[-1]["loss"], "learning_rate": curve[-1]["learning_rate"]}, step)
        if step % params.eval_every == 0 and step < params.update_steps:
            evaluate(step)
        if step % params.checkpoint_every == 0 and step < params.update_steps:
            _save_checkpoint(out / "checkpoint.pt", step, model, optimizer, schedule, sampler, curve,
                             evaluations, run_id)
    evaluate(step)
    return _finish(out, model, sizes, params, prompting, references, curve, evaluations)


def _save_checkpoint(path: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: Any, sampler: SequenceSampler, curve: list, evaluations: list,
                     run_id: str | None) -> None:
    state = {"step": step, "tracking_run_id": run_id, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict(), "sampler_rng": sampler.rng.bit_generator.state,
             "torch_rng": torch.get_rng_state(), "curve": curve, "evaluations": evaluations}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
            sampler: SequenceSampler, curve: list, evaluations: list) -> tuple[int, str | None]:
    """Restore an interrupted run's checkpoint, if there is one; the step it had reached and its
    MLflow run."""
    if not path.is_file():
        return 0, None
    state = load_torch_file(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    sampler.rng.bit_generator.state = state["sampler_rng"]
    torch.set_rng_state(state["torch_rng"])
    curve.extend(state["curve"])
    evaluations.extend(state["evaluations"])
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"]), state["tracking_run_id"]


def _finish(out: Path, model: ContinuousDecisionTransformer, sizes: TaskSizes, params: DTParams,
            prompting: Prompting, references: dict[str, float], curve: list, evaluations: list) -> dict:
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"model": model.state_dict(), "shape": asdict(model.shape),
                    "state_mean": torch.as_tensor(prompting.state_mean),
                    "state_std": torch.as_tensor(prompting.state_std),
                    "reward_scale": prompting.reward_scale}, tmp)
    write_csv(pd.DataFrame(curve, columns=["step", "loss", "learning_rate"]), out / "curve.csv")
    table = pd.DataFrame(evaluations)
    write_csv(table, out / "evaluation.csv")
    metrics = {"updates": params.update_steps, "final_loss": curve[-1]["loss"] if curve else None,
               "references": references, "targets": summarize(table),
               "sizes": asdict(sizes)}
    write_json(out / "metrics.json", metrics)
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return metrics


def load_model(path: str | Path) -> tuple[ContinuousDecisionTransformer, Prompting]:
    saved = load_torch_file(path)
    model = ContinuousDecisionTransformer(ModelShape(**saved["shape"]))
    model.load_state_dict(saved["model"])
    return model, Prompting(saved["state_mean"].numpy(), saved["state_std"].numpy(),
                            saved["reward_scale"])
