"""Train AD, DT, RA-DT or RA-DT (domain-agnostic) on the training tasks' learning histories.

Cross-entropy on the actions the learner took (the anchor's loss_fn "ce"), AdamW with linear
warm-up and cosine decay. A checkpoint (model, optimiser, step, random state) is written
atomically every `checkpoint_every` steps; a killed job resumes from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdt.incontext.model import InContextTransformer, ModelParams
from fdt.incontext.sequences import Memory, Stream, gather, retrieved_tokens, window_starts
from fdt.io import atomic_path

METHODS = ("ad", "dt", "radt", "radt_lm")


@dataclass(frozen=True)
class TrainParams:
    method: str = "ad"
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # how to run, outside the key: cuda when there is one


def pick_device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        ("cpu" if name == "auto" else name))


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_params(method: str, base: ModelParams) -> ModelParams:
    """AD: no return conditioning (rtg_condition False); DT and RA-DT: one episode's context,
    return-conditioned; RA-DT: cross-attention to what it retrieves."""
    from dataclasses import replace
    if method not in METHODS:
        raise ValueError(f"unknown in-context method {method!r}; known: {list(METHODS)}")
    if method == "ad":
        return replace(base, rtg=False, cross_attention=False)
    context = min(base.context, base.max_episode_steps)
    return replace(base, rtg=True, cross_attention=method.startswith("radt"), context=context)


def _lr(step: int, p: TrainParams) -> float:
    if step < p.warmup_steps:
        return p.learning_rate * (step + 1) / p.warmup_steps
    progress = (step - p.warmup_steps) / max(1, p.steps - p.warmup_steps)
    return p.learning_rate * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(stream: Stream, mp: ModelParams, p: TrainParams, out_dir: str | Path,
          memory: Memory | None = None,
          log: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train and write model.pt, curve.csv; returns the metrics (samples/s among them)."""
    out = Path(out_dir)
    checkpoint = out / "checkpoint.pt"
    torch.manual_seed(p.seed)
    rng = np.random.default_rng(p.seed)
    device = pick_device(p.device)
    model = InContextTransformer(mp).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    within = p.method != "ad"
    if memory is not None:
        starts = memory.starts  # RA-DT trains on its memory's items, neighbours precomputed
    else:
        starts = window_starts(stream, mp.context, within_episode=within)
    if len(starts) == 0:
        raise ValueError(f"no training window of {mp.context} steps in the histories")
    step, curve = 0, []
    if checkpoint.exists():  # resume after a kill
        state = torch.load(checkpoint, weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, curve = state["step"], state["curve"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
    model.train()
    began, first = time.perf_counter(), step
    while step < p.steps:
        pick = rng.integers(0, len(starts), p.batch_size)
        batch = to_device(gather(stream, starts[pick], mp.context, within), device)
        tokens = pad = None
        if memory is not None:
            tokens, pad = retrieved_tokens(model, stream, memory, memory.neighbours[pick])
            pad = pad.to(device)
        for group in opt.param_groups:
            group["lr"] = _lr(step, p)
        loss = model.loss(batch, tokens, pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        value = loss.item()
        curve.append((step, value))
        if log is not None and step % p.log_every == 0:
            log(step, {"loss": value})
        if step % p.checkpoint_every == 0 and step < p.steps:
            with atomic_path(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "step": step, "curve": curve, "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state()}, tmp)
    seconds = time.perf_counter() - began
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()},
                    "params": asdict(mp)}, tmp)
    with atomic_path(out / "curve.csv") as tmp:
        tmp.write_text("step,loss\n" + "".join(f"{s},{v:.6f}\n" for s, v in curve))
    checkpoint.unlink(missing_ok=True)
    done = step - first
    return {"final_loss": float(np.mean([v for _, v in curve[-20:]])), "steps": step,
            "samples_per_s": done * p.batch_size / seconds if done and seconds > 0 else None}


def load_model(path: str | Path, device: str = "cpu") -> InContextTransformer:
    state = torch.load(path, weights_only=False, map_location="cpu")
    model = InContextTransformer(ModelParams(**state["params"]))
    model.load_state_dict(state["model"])
    return model.to(pick_device(device)).eval()
