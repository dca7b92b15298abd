"""Training DT, BC and FDT on a training set: the reference's optimisation, fast on a GPU, resumable.

Optimisation as the reference (method.md §5): AdamW (0.9, 0.95), weight decay 0.1 on linear/conv
weights, gradient clipping 1.0, the learning rate scheduled by tokens (linear warmup, then cosine
to a floor of 0.1x, final_tokens = 2 * samples * 3K), the reference's sample count per epoch
(n - 3K windows, shuffled). One step's learning rate is the schedule at the tokens counted after
that step's batch (the reference sets it after the step, so its first step runs at the full rate).

On CUDA the frames stay on the GPU when they fit and stacks are gathered there; bf16 autocast,
fused attention and AdamW, optional torch.compile. A checkpoint is written after every epoch
(model, optimizer, tokens, RNG states); `resume` continues from it exactly, since each epoch's
order is drawn from (seed, epoch).

FDT is DT trained with the feedback loss of fdt.models.feedback on the labels of the first `budget`
important states, weighted by `feedback_lambda`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fdt.dataset.training_set import TrainingSet, window_starts
from fdt.device import resolve_device, reusing_freed_memory
from fdt.io import atomic_path, write_json
from fdt.keys import canonical_json
from fdt.models.feedback import Feedback, fdt_loss, load_feedback
from fdt.models.transformer import (
    MODELS,
    DecisionTransformer,
    ModelConfig,
    model_config_for,
    optimizer_groups,
)
from fdt.settings import defaults
from fdt.torchfile import NUMPY_RNG_STATE, TorchFileError, load_torch_file

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
METRICS = "metrics.json"
CURVE = "curve.csv"


class TrainingError(RuntimeError):
    pass


_TRAIN = defaults("train")  # the schema's, the one place they live


@dataclass(frozen=True)
class TrainParams:
    model: str
    seed: int
    context_length: int = _TRAIN["context_length"]
    batch_size: int = _TRAIN["batch_size"]
    epochs: int = _TRAIN["epochs"]
    learning_rate: float = _TRAIN["learning_rate"]
    betas: tuple[float, float] = _TRAIN["betas"]
    weight_decay: float = _TRAIN["weight_decay"]
    grad_norm_clip: float = _TRAIN["grad_norm_clip"]
    warmup_tokens: int = _TRAIN["warmup_tokens"]
    lr_floor: float = _TRAIN["lr_floor"]
    n_layer: int = _TRAIN["n_layer"]
    n_head: int = _TRAIN["n_head"]
    n_embd: int = _TRAIN["n_embd"]
    dropout: float = _TRAIN["dropout"]
    encoder_init: str = _TRAIN["encoder_init"]
    # FDT only: the feedback budget B and the weight lambda of the feedback term.
    budget: int = 0
    feedback_lambda: float = 0.0
    # How to run, not what is learnt (left out of the resume check's digest).
    device: str = _TRAIN["device"]
    precision: str = _TRAIN["precision"]  # bf16 autocast on CUDA, fp32 on CPU
    compile: bool = _TRAIN["compile"]
    log_every: int = _TRAIN["log_every"]

    def learning_digest(self) -> str:
        """Digest of the values that decide the weights: a checkpoint resumes only if equal."""
        run = {"device", "precision", "compile", "log_every"}
        learning = {k: v for k, v in asdict(self).items() if k not in run}
        return hashlib.sha256(canonical_json(learning).encode()).hexdigest()[:16]


def lr_multiplier(tokens: float, warmup_tokens: float, final_tokens: float, floor: float) -> float:
    """Linear warmup over `warmup_tokens`, then cosine decay to `floor` at `final_tokens`."""
    if tokens < warmup_tokens:
        return tokens / max(1.0, warmup_tokens)
    progress = (tokens - warmup_tokens) / max(1.0, final_tokens - warmup_tokens)
    return max(floor, 0.5 * (1.0 + math.cos(math.pi * progress)))


class WindowBatches:
    """The training set's arrays as tensors, gathering windows of K steps on the device.

    Frames are moved to the device when they fit in its free memory (with room to spare);
    otherwise they stay in pinned host memory, windows are gathered there and copied over.
    """

    def __init__(self, data: TrainingSet, context_length: int, device: torch.device,
                 feedback: Feedback | None = None) -> None:
        self.device = device
        self.context_length = context_length
        self.starts = torch.from_numpy(
            window_starts(len(data), np.asarray(data.trajectory_ends), context_length)).to(device)
        frames = data.frames
        self.frames_on_device = device.type == "cpu" or _fits(frames.nbytes, device)
        where = device if self.frames_on_device else torch.device("cpu")
        self.frames = _frames_tensor(frames, where, pin=device.type == "cuda")
        self.gather_device = where
        self.stacks = torch.from_numpy(np.array(data.stacks, dtype=np.int64)).to(where)
        self.actions = torch.from_numpy(np.array(data.actions, dtype=np.int64)).to(device)
        self.returns_to_go = torch.from_numpy(np.array(data.returns_to_go, dtype=np.float32)).to(device)
        self.timesteps = torch.from_numpy(np.array(data.timesteps, dtype=np.int64)).to(device)
        self.offsets = torch.arange(context_length, device=device)
        self.feedback = self.best_action = None
        if feedback is not None:
            self.feedback = torch.from_numpy(feedback.feedback.astype(np.int64)).to(device)
            self.best_action = torch.from_numpy(feedback.best_action.astype(np.int64)).to(device)

    def __len__(self) -> int:
        return len(self.starts)

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """The epoch's shuffled sample order, a function of (seed, epoch) only (drawn on the
        CPU, so it is the same on every device), moved to the device once."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(len(self.starts), generator=generator).to(self.device)

    def batch(self, samples: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows of the given samples; indices stay on the device, as do the frames if they fit."""
        return self.windows(self.starts[samples])

    def windows(self, starts: torch.Tensor, length: int | None = None) -> dict[str, torch.Tensor]:
        """The windows of `length` rows (default K) beginning at the given rows (any shape S):
        states (*S, length, 4, 84, 84), actions and returns-to-go (*S, length), timesteps (*S)."""
        offsets = self.offsets if length is None else torch.arange(length, device=self.device)
        rows = starts[..., None] + offsets  # (*S, K)
        frame_ids = self.stacks[rows.to(self.gather_device)]  # (B, K, 4)
        states = self.frames[frame_ids]  # (B, K, 4, 84, 84) uint8
        if states.device != self.device:
            states = states.pin_memory().to(self.device, non_blocking=True)
        batch = {
            "states": states,
            "actions": self.actions[rows],
            "returns_to_go": self.returns_to_go[rows],
            "timesteps": self.timesteps[starts],
        }
        if self.feedback is not None:
            batch["feedback"] = self.feedback[rows]
            batch["best_action"] = self.best_action[rows]
        return batch


def _fits(nbytes: int, device: torch.device, spare: float = 0.3) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < (1.0 - spare) * free


def _frames_tensor(frames: np.ndarray, where: torch.device, pin: bool,
                   chunk: int = 1 << 16) -> torch.Tensor:
    """Copy the (memory-mapped) frame table to `where` in chunks, never holding two copies."""
    out = torch.empty(frames.shape, dtype=torch.uint8, device=where,
                      pin_memory=pin and where.type == "cpu")
    for first in range(0, len(frames), chunk):
        piece = torch.from_numpy(np.array(frames[first:first + chunk]))
        out[first:first + len(piece)].copy_(piece)
    return out


@dataclass
class TrainState:
    """Everything a checkpoint restores."""

    epoch: int = 0  # epochs completed
    step: int = 0
    tokens: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    tracking_run_id: str | None = None


StepHook = Callable[[int, DecisionTransformer], None]


class TrainingExtension(Protocol):
    """What a model beyond DT, BC and FDT brings to this trainer (e.g. RA-DT's retrieval,
    fdt.retrieval.training): its model, extra forward inputs per batch, and what else decides
    its weights. The optimisation, checkpoints, resume and tracking stay the trainer's."""

    base_model: str  # the model whose sizes and conditioning it extends (dt, bc)

    def check(self, data: TrainingSet, params: TrainParams) -> None: ...

    def build_model(self, config: ModelConfig) -> DecisionTransformer: ...

    def prepare(self, batches: WindowBatches) -> None: ...

    def inputs(self, samples: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def digest(self) -> str: ...

    def payload(self) -> dict[str, Any]: ...


def train(training_set: str | Path, out_dir: str | Path, params: TrainParams, *,
          labels: str | Path | None = None, tracker: Any | None = None, resume: bool = True,
          on_step: StepHook | None = None, progress: bool = True,
          verify: bool = True, extension: TrainingExtension | None = None) -> dict[str, Any]:
    """Train one model; write `model.pt`, `metrics.json` and `curve.csv` to `out_dir`.

    FDT needs `labels` (a `labels.parquet` of the labelling stage for this training set).

    With `resume`, a checkpoint in `out_dir` from the same parameters is continued. `tracker`
    (see fdt.tracking) receives params, per-step loss, learning rate and samples/s.
    `on_step(step, model)` is called after each optimizer step (tests use it to interrupt).
    An `extension` trains its own model (see TrainingExtension).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = TrainingSet(training_set, verify=verify)
    device = resolve_device(params.device, "train.device")
    torch.manual_seed(params.seed)
    np.random.seed(params.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    _check_sizes(data, params, extension is not None)
    if extension is not None:
        extension.check(data, params)
    feedback = None
    if params.model == "fdt":
        if labels is None:
            raise TrainingError("FDT needs the labels of its important states (labels=...)")
        feedback = load_feedback(labels, len(data), params.budget, np.asarray(data.actions))
        composition = feedback.composition(np.asarray(data.actions))
        print(f"feedback: {composition}", file=sys.stderr, flush=True)
    config = model_config_for(extension.base_model if extension else params.model,
                              num_actions=data.num_actions,
                              context_length=params.context_length,
                              max_timestep=data.max_timestep, n_layer=params.n_layer,
                              n_head=params.n_head, n_embd=params.n_embd, dropout=params.dropout,
                              encoder_init=params.encoder_init)
    model = (extension.build_model(config) if extension else DecisionTransformer(config)).to(device)
    optimizer = torch.optim.AdamW(optimizer_groups(model, params.weight_decay),
                                  lr=params.learning_rate, betas=params.betas,
                                  **({"fused": True} if device.type == "cuda" else {}))
    batches = WindowBatches(data, params.context_length, device, feedback)
    digest = params.learning_digest() + (extension.digest() if extension else "")
    if extension is not None:
        extension.prepare(batches)
    steps_per_epoch = math.ceil(len(batches) / params.batch_size)
    final_tokens = 2 * len(batches) * params.context_length * 3
    state = TrainState()
    checkpoint_path = out_dir / CHECKPOINT
    if resume and checkpoint_path.is_file():
        state = _restore(checkpoint_path, digest, model, optimizer, device)
        if state.epoch:
            print(f"resuming from {checkpoint_path}: {state.epoch} of {params.epochs} epochs done, "
                  f"step {state.step}", file=sys.stderr, flush=True)
    forward = torch.compile(model) if params.compile else model
    autocast = _autocast(device, params.precision)

    if tracker is not None:
        state.tracking_run_id = tracker.start(state.tracking_run_id)
        tracker.log_params({**asdict(params), "transitions": len(data), "samples": len(batches),
                            "steps_per_epoch": steps_per_epoch, "final_tokens": final_tokens,
                            "frames_on_device": batches.frames_on_device,
                            "device": str(device),
                            **({f"feedback_{k}": v for k, v in composition.items()}
                               if feedback is not None else {})})

    bar = tqdm(total=params.epochs * steps_per_epoch, initial=state.step, unit="step",
               desc=f"train {params.model} seed {params.seed}", mininterval=1.0,
               disable=not progress)
    model.train()
    cleanup = contextlib.ExitStack()
    cleanup.callback(bar.close)
    if device.type == "cpu":
        cleanup.enter_context(reusing_freed_memory())
    with cleanup:
        while state.epoch < params.epochs:
            epoch = state.epoch
            order = batches.order(params.seed, epoch)
            started = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            nonfinite = torch.zeros((), dtype=torch.bool, device=device)
            window_sum, window_count = torch.zeros((), device=device), 0
            for index in range(steps_per_epoch):
                samples = order[index * params.batch_size:(index + 1) * params.batch_size]
                batch = batches.batch(samples)
                extra = extension.inputs(samples) if extension is not None else {}
                with autocast:
                    logits = forward(batch["states"], batch["actions"], batch["returns_to_go"],
                                     batch["timesteps"], **extra)
                if feedback is not None:
                    loss, _ = fdt_loss(logits, batch["actions"], batch["feedback"],
                                       batch["best_action"], params.feedback_lambda)
                else:
                    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                           batch["actions"].reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_norm_clip)
                state.tokens += batch["actions"].numel()
                lr = params.learning_rate * lr_multiplier(state.tokens, params.warmup_tokens,
                                                          final_tokens, params.lr_floor)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
                state.step += 1
                detached = loss.detach()
                nonfinite |= ~torch.isfinite(detached)
                loss_sum += detached
                window_sum += detached
                window_count += 1
                if on_step is not None:
                    on_step(state.step, model)
                if window_count == params.log_every or index == steps_per_epoch - 1:
                    if bool(nonfinite):
                        _diverged(state, epoch, checkpoint_path)
                    window_loss = float(window_sum) / window_count
                    rate = (index + 1) * params.batch_size / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{window_loss:.4f}", lr=f"{lr:.2e}")
                    if tracker is not None:
                        tracker.log_metrics({"loss": window_loss, "lr": lr,
                                             "samples_per_s": rate}, step=state.step)
                    window_sum.zero_()
                    window_count = 0
                bar.update(1)
            seconds = time.perf_counter() - started
            state.epoch += 1
            record = {"epoch": state.epoch, "step": state.step, "tokens": state.tokens,
                      "loss": float(loss_sum) / steps_per_epoch, "lr": lr,
                      "seconds": seconds, "samples_per_s": len(batches) / seconds}
            state.history.append(record)
            if not all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()):
                _diverged(state, epoch, checkpoint_path)
            _save_checkpoint(checkpoint_path, digest, model, optimizer, state, device)
            if tracker is not None:
                tracker.log_metrics({"epoch_loss": record["loss"],
                                     "epoch_samples_per_s": record["samples_per_s"]},
                                    step=state.step)

    metrics = _finish(out_dir, params, model, state, data, batches, device, final_tokens,
                      extension.payload() if extension is not None else {})
    if feedback is not None:
        metrics["feedback"] = composition
        write_json(out_dir / METRICS, metrics)
    if tracker is not None:
        tracker.log_metrics({"final_loss": metrics["final_loss"]}, step=state.step)
        tracker.log_artifact(out_dir / MODEL)
        tracker.log_artifact(out_dir / CURVE)
    return metrics


def _check_sizes(data: TrainingSet, params: TrainParams, extended: bool = False) -> None:
    """Sizes that do not fit give one clear sentence before any work."""
    if params.model not in MODELS and not extended:
        raise TrainingError(f"this trainer trains {', '.join(MODELS)}; got model {params.model!r}")
    if params.n_embd % params.n_head:
        raise TrainingError(f"train.n_embd ({params.n_embd}) must be a multiple of train.n_head "
                            f"({params.n_head})")
    built = data.manifest["sampling"]["context_length"]
    if built < params.context_length:
        raise TrainingError(f"{data.folder} was sampled for context length {built} (it keeps "
                            f"trajectories of at least {built} rows), shorter than train "
                            f"context_length {params.context_length}")
    if len(data) <= 3 * params.context_length:
        raise TrainingError(f"{data.folder} holds {len(data)} transitions, too few for windows of "
                            f"{params.context_length} steps (more than {3 * params.context_length} "
                            "needed)")
    rtg = np.asarray(data.returns_to_go)
    if not np.all(np.isfinite(rtg)):
        raise TrainingError(f"{data.folder}/returns_to_go.npy holds non-finite values")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise TrainingError(f"train.precision must be auto, fp32 or bf16, not {precision!r}")


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _save_checkpoint(path: Path, digest: str, model: DecisionTransformer,
                     optimizer: torch.optim.Optimizer, state: TrainState,
                     device: torch.device) -> None:
    payload = {
        "params_digest": digest,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": asdict(state),
        "rng": _rng_state(device),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _restore(path: Path, digest: str, model: DecisionTransformer,
             optimizer: torch.optim.Optimizer, device: torch.device) -> TrainState:
    try:
        payload = load_torch_file(path, device, allow=NUMPY_RNG_STATE)
    except TorchFileError:
        raise  # a pickle that could run code: refuse it, never overwrite it silently
    except Exception as err:  # a torn or foreign file: start over rather than fail
        import warnings
        warnings.warn(f"{path}: unreadable checkpoint ({err}); training starts from scratch",
                      stacklevel=2)
        return TrainState()
    if payload.get("params_digest") != digest:
        import warnings
        warnings.warn(f"{path}: checkpoint of other parameters; training starts from scratch",
                      stacklevel=2)
        return TrainState()
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    rng = payload["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    np.random.set_state(rng["numpy"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)
    return TrainState(**payload["state"])


def _diverged(state: TrainState, epoch: int, checkpoint: Path) -> None:
    kept = (f"the last good checkpoint ({state.epoch} epochs) is kept at {checkpoint}"
            if checkpoint.is_file() else "no checkpoint was written yet")
    raise TrainingError(f"the loss became NaN or infinite in epoch {epoch + 1} (by step "
                        f"{state.step}); {kept}. Lower train.learning_rate or check the data.")


def _finish(out_dir: Path, params: TrainParams, model: DecisionTransformer,
            state: TrainState, data: TrainingSet, batches: WindowBatches, device: torch.device,
            final_tokens: int, extra_payload: dict[str, Any]) -> dict[str, Any]:
    with atomic_path(out_dir / MODEL) as tmp:
        torch.save({"model": model.state_dict(), "config": model.config.to_dict(),
                    "params": asdict(params), "training_set": data.manifest.get("key"),
                    "game": data.manifest.get("game"), **extra_payload}, tmp)
    with atomic_path(out_dir / CURVE) as tmp:
        lines = ["epoch,step,tokens,loss,lr,seconds,samples_per_s"]
        lines += [",".join(str(r[k]) for k in ("epoch", "step", "tokens", "loss", "lr", "seconds",
                                               "samples_per_s")) for r in state.history]
        tmp.write_text("\n".join(lines) + "\n")
    last = state.history[-1] if state.history else {}
    metrics = {
        "model": params.model,
        "seed": params.seed,
        "epochs": state.epoch,
        "steps": state.step,
        "tokens": state.tokens,
        "final_tokens": final_tokens,
        "final_loss": last.get("loss"),
        "samples_per_epoch": len(batches),
        "samples_per_s": last.get("samples_per_s"),
        "transitions": len(data),
        "device": str(device),
        "frames_on_device": batches.frames_on_device,
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": state.history,
        "tracking_run_id": state.tracking_run_id,
    }
    write_json(out_dir / METRICS, metrics)
    return metrics


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DecisionTransformer:
    """A trained model from `model.pt`, in eval mode."""
    payload = load_torch_file(path, device)
    model = DecisionTransformer(ModelConfig(**payload["config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval()

