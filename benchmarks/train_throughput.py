"""Training throughput of DT at the reference config (batch 128, context 30), and where time goes.

    python benchmarks/train_throughput.py                      # CPU: one short epoch + breakdown
    python benchmarks/train_throughput.py --transitions 500000 --epochs 5   # the full run (GPU)

It also runs, side by side in one process, our training step against a loop written after our
reading of the reference's Atari trainer (kzl/decision-transformer, mingpt/trainer_atari.py and
model_atari.py): a torch Dataset that builds each window on its own (frames copied and converted
to float per item), a DataLoader, and the reference's model as we read it (separate key, query and
value projections, attention scores masked by a stored triangle, softmax and dropout written out,
tokens interleaved into a zero tensor, the encoder on contiguous floats). A third loop gives the
reference's data path our model, so the two sources of the difference show apart. All at batch 32
and 128, context 30, the same number of steps; it prints the ratios of samples/s.

A synthetic training set (random frames, trajectories of 1,000 rows) of the requested size is
written to --workdir; `fdt.models.trainer.train` then runs on it as the workflow runs it (samples/s and
wall time are its own numbers). The breakdown times the phases of one step separately, synchronised:
gathering a batch's windows, the state encoder forward+backward, the transformer forward+backward
on the encoder's output, and the optimizer step (clipping included).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from fdt.dataset.training_set import (
    MANIFEST,
    TrainingSet,
    array_entry,
    returns_to_go,
    save_arrays,
    timesteps_of,
)
from fdt.device import resolve_device, reusing_freed_memory
from fdt.io import write_json
from fdt.models.trainer import TrainParams, WindowBatches, train
from fdt.models.transformer import DecisionTransformer, model_config_for, optimizer_groups


def synthetic_training_set(folder: Path, transitions: int, trajectory: int = 1000,
                           num_actions: int = 4, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ends = np.arange(trajectory, transitions + trajectory, trajectory)
    ends[-1] = transitions
    ends = np.unique(np.minimum(ends, transitions))
    rewards = (rng.random(transitions) < 0.05).astype(np.float32)
    frames_count = transitions + 1
    path = folder / "frames.npy"
    table = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                      shape=(frames_count, 84, 84))
    table[0] = 0
    for first in range(1, frames_count, 65536):
        last = min(first + 65536, frames_count)
        table[first:last] = rng.integers(0, 256, (last - first, 84, 84), dtype=np.uint8)
    table.flush()
    del table
    row = np.arange(transitions, dtype=np.int64)
    stacks = np.clip(row[:, None] - np.arange(3, -1, -1)[None, :], -1, None) + 1
    arrays = {
        "stacks": stacks.astype(np.int32),
        "actions": rng.integers(0, num_actions, transitions).astype(np.int32),
        "rewards": rewards,
        "returns_to_go": returns_to_go(rewards, ends),
        "timesteps": timesteps_of(ends, transitions),
        "buffer": np.zeros(transitions, np.int32),
        "slot": row.astype(np.int32),
        "replay_index": row,
        "padding": np.zeros(transitions, bool),
        "trajectory_ends": ends.astype(np.int64),
    }
    entries = save_arrays(folder, arrays)
    entries["frames"] = array_entry(path, (frames_count, 84, 84), np.dtype(np.uint8))
    write_json(folder / MANIFEST, {
        "format_version": 1, "mode": "synthetic", "num_actions": num_actions,
        "sampling": {"context_length": 50}, "max_timestep": int(arrays["timesteps"].max()),
        "arrays": entries, "counts": {"transitions": transitions}})


def _timed(device: torch.device, fn, repeats: int) -> float:
    fn()  # warm up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def breakdown(folder: Path, params: TrainParams, repeats: int) -> dict[str, float]:
    """Milliseconds per step of each phase, measured separately."""
    device = resolve_device(params.device)
    data = TrainingSet(folder, verify=False)
    batches = WindowBatches(data, params.context_length, device)
    config = model_config_for("dt", num_actions=data.num_actions,
                              context_length=params.context_length,
                              max_timestep=data.max_timestep, n_layer=params.n_layer,
                              n_head=params.n_head, n_embd=params.n_embd)
    model = DecisionTransformer(config).to(device).train()
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95),
                                  **({"fused": True} if device.type == "cuda" else {}))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    order = batches.order(0, 0)
    samples = order[:params.batch_size]
    batch = batches.batch(samples)
    B, K = batch["actions"].shape

    def gather() -> None:
        batches.batch(samples)

    def encoder() -> None:
        with autocast:
            out = model.encode_states(batch["states"].reshape(B * K, 4, 84, 84))
        out.float().sum().backward()

    def transformer() -> None:
        with autocast:
            tokens = torch.randn(B, 3 * K, config.n_embd, device=device)
            x = model.blocks(tokens + model.pos_emb[:, :3 * K])
            logits = model.head(model.ln_f(x))[:, 1::3]
        F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                        batch["actions"].reshape(-1)).backward()

    def step() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def whole() -> None:
        b = batches.batch(samples)
        with autocast:
            logits = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                               b["actions"].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        step()

    with reusing_freed_memory():  # as `train` runs (it matters on the CPU only)
        whole()  # gradients exist for the optimizer phase
        phases = {name: 1000 * _timed(device, fn, repeats) for name, fn in
                  [("gather", gather), ("encoder_fwd_bwd", encoder),
                   ("transformer_fwd_bwd", transformer), ("optimizer", step),
                   ("whole_step", whole)]}
    phases["samples_per_s_whole_step"] = params.batch_size / (phases["whole_step"] / 1000)
    return phases


class _ReferenceWindows(torch.utils.data.Dataset):
    """The reference's StateActionReturnDataset, as we read it: a window of K rows from a random
    start, cut at the trajectory's end, built per item from numpy arrays in float32."""

    def __init__(self, data: TrainingSet, context_length: int) -> None:
        self.data, self.k = data, context_length
        self.frames = np.asarray(data.frames)
        self.stacks = np.asarray(data.stacks)
        self.ends = np.asarray(data.trajectory_ends)

    def __len__(self) -> int:
        return len(self.stacks) - self.k

    def __getitem__(self, idx: int):
        end = int(self.ends[np.searchsorted(self.ends, idx, side="right")])
        idx = min(idx, end - self.k)
        rows = slice(idx, idx + self.k)
        states = torch.tensor(self.frames[self.stacks[rows]], dtype=torch.float32).reshape(self.k, -1)
        states = states / 255.0
        actions = torch.tensor(np.asarray(self.data.actions[rows]), dtype=torch.long).unsqueeze(1)
        rtgs = torch.tensor(np.asarray(self.data.returns_to_go[rows]),
                            dtype=torch.float32).unsqueeze(1)
        timesteps = torch.tensor([[int(self.data.timesteps[idx])]], dtype=torch.int64)
        return states, actions, rtgs, timesteps


class _ReferenceAttention(nn.Module):
    """Causal self-attention as the reference writes it: three projections, the scores masked
    with a stored lower triangle, then softmax and dropout on the weights, all written out."""

    def __init__(self, d: int, heads: int, positions: int, p: float) -> None:
        super().__init__()
        self.key, self.query, self.value, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.attn_drop, self.resid_drop = nn.Dropout(p), nn.Dropout(p)
        self.register_buffer("mask", torch.tril(torch.ones(positions, positions))[None, None])
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        k, q, v = (f(x).view(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for f in (self.key, self.query, self.value))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        att = self.attn_drop(F.softmax(att.masked_fill(self.mask[:, :, :T, :T] == 0,
                                                       float("-inf")), dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class _ReferenceBlock(nn.Module):
    def __init__(self, d: int, heads: int, positions: int, p: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = _ReferenceAttention(d, heads, positions, p)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class _ReferenceDT(nn.Module):
    """The reference's reward-conditioned GPT for Atari, as we read it, at our config's sizes."""

    def __init__(self, num_actions: int, context_length: int, max_timestep: int, d: int = 128,
                 layers: int = 6, heads: int = 8, p: float = 0.1) -> None:
        super().__init__()
        positions = 3 * context_length + 1
        self.d = d
        self.pos_emb = nn.Parameter(torch.zeros(1, positions, d))
        self.global_pos_emb = nn.Parameter(torch.zeros(1, max_timestep + 1, d))
        self.drop = nn.Dropout(p)
        self.blocks = nn.Sequential(*[_ReferenceBlock(d, heads, positions, p)
                                      for _ in range(layers)])
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, num_actions, bias=False)
        self.state_encoder = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3136, d), nn.Tanh())
        self.ret_emb = nn.Sequential(nn.Linear(1, d), nn.Tanh())
        self.action_embeddings = nn.Sequential(nn.Embedding(num_actions, d), nn.Tanh())

    def forward(self, states: torch.Tensor, actions: torch.Tensor, rtgs: torch.Tensor,
                timesteps: torch.Tensor) -> torch.Tensor:
        B, K = states.shape[:2]
        state_tokens = self.state_encoder(
            states.reshape(-1, 4, 84, 84).type(torch.float32).contiguous()).reshape(B, K, self.d)
        tokens = torch.zeros(B, 3 * K, self.d)
        tokens[:, ::3] = self.ret_emb(rtgs.type(torch.float32))
        tokens[:, 1::3] = state_tokens
        tokens[:, 2::3] = self.action_embeddings(actions.type(torch.long).squeeze(-1))
        global_pos = torch.gather(torch.repeat_interleave(self.global_pos_emb, B, dim=0), 1,
                                  torch.repeat_interleave(timesteps, self.d, dim=-1))
        x = self.drop(tokens + global_pos + self.pos_emb[:, :3 * K])
        return self.head(self.ln_f(self.blocks(x)))[:, 1::3]


def _optimise(model: nn.Module, states, actions, rtgs, timesteps, opt) -> None:
    logits = model(states, actions, rtgs, timesteps)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), actions.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def _reference_rate(data: TrainingSet, config, batch_size: int, context_length: int, steps: int,
                    own_model: bool) -> float:
    """The reference's loader; its model as we read it, or (own_model) ours on the same float
    windows (its encoder in the default layout, frames already scaled)."""
    torch.manual_seed(0)
    if own_model:
        model = DecisionTransformer(config).train()
        model.state_encoder.to(memory_format=torch.contiguous_format)
        model.encode_states = lambda s: model.state_encoder(s.float())  # frames already /255
    else:
        model = _ReferenceDT(data.num_actions, context_length, data.max_timestep).train()
    opt = torch.optim.AdamW(optimizer_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95))
    loader = torch.utils.data.DataLoader(_ReferenceWindows(data, context_length),
                                         batch_size=batch_size, shuffle=True)
    it = iter(loader)

    def one_step() -> None:
        states, actions, rtgs, timesteps = next(it)
        if own_model:
            states = states.reshape(-1, context_length, 4, 84, 84)
            actions, rtgs, timesteps = actions[..., 0], rtgs[..., 0], timesteps[:, 0, 0]
        _optimise(model, states, actions, rtgs, timesteps, opt)

    one_step()  # warm up
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    return steps * batch_size / (time.perf_counter() - started)


def _our_rate(data: TrainingSet, config, batch_size: int, context_length: int, steps: int,
              with_compile: bool) -> tuple[float, float]:
    """Our training step as `train` runs it on the CPU (the allocator keeping freed memory);
    samples/s and the first step's seconds (the compile time, with `with_compile`)."""
    torch.manual_seed(0)
    model = DecisionTransformer(config).train()
    forward = torch.compile(model) if with_compile else model
    opt = torch.optim.AdamW(optimizer_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95))
    batches = WindowBatches(data, context_length, torch.device("cpu"))
    order = batches.order(0, 0)
    with reusing_freed_memory():
        b = batches.batch(order[:batch_size])
        started = time.perf_counter()
        _optimise(forward, b["states"], b["actions"], b["returns_to_go"], b["timesteps"], opt)
        first = time.perf_counter() - started
        started = time.perf_counter()
        for k in range(steps):
            b = batches.batch(order[(k + 1) * batch_size:(k + 2) * batch_size])
            _optimise(forward, b["states"], b["actions"], b["returns_to_go"], b["timesteps"], opt)
        return steps * batch_size / (time.perf_counter() - started), first


def _loop_rate(loop: str, folder: Path, batch_size: int, context_length: int,
               steps: int) -> tuple[float, float]:
    """One loop's samples/s (and first-step seconds), in the process that calls it."""
    data = TrainingSet(folder, verify=False)
    config = model_config_for("dt", num_actions=data.num_actions, context_length=context_length,
                              max_timestep=data.max_timestep)
    if loop.startswith("reference"):
        own = loop == "reference_loader_our_model"
        return _reference_rate(data, config, batch_size, context_length, steps, own), 0.0
    return _our_rate(data, config, batch_size, context_length, steps, loop == "ours_compiled")


def compare_with_reference(folder: Path, batch_size: int, context_length: int, steps: int,
                           compiled: bool = False) -> dict[str, float]:
    """samples/s of the reference-style loop, of the reference's data path feeding our model, and
    of ours, alternating; with `compiled`, also ours under torch.compile (its compile time is
    the first step's extra). Each loop runs in a fresh process, so each finds the allocator as
    its own code leaves it (glibc's defaults for the reference, `train`'s setting for ours)."""
    loops = ["reference", "reference_loader_our_model", "ours"]
    if compiled:
        loops.append("ours_compiled")
    rates: dict[str, list[float]] = {name: [] for name in loops}
    compile_seconds: list[float] = []
    spawn = multiprocessing.get_context("spawn")
    for _ in range(2):  # alternate, so load changes hit all
        for name in loops:
            with spawn.Pool(1) as pool:
                rate, first = pool.apply(_loop_rate, (name, folder, batch_size, context_length,
                                                      steps))
                # let the worker exit on its own: the pool's exit would kill it, leaking
                # the semaphores of torch.compile's own worker pool
                pool.close()
                pool.join()
            rates[name].append(rate)
            if name == "ours_compiled":
                compile_seconds.append(first)
    best = {name: max(values) for name, values in rates.items()}
    out: dict[str, float] = {"batch_size": batch_size}
    for name, rate in best.items():
        out[f"{name}_samples_per_s"] = round(rate, 1)
    for name in ("reference_loader_our_model", "ours", "ours_compiled"):
        if name in best:
            out[f"{name}_over_reference"] = round(best[name] / best["reference"], 2)
    if compiled:
        out["compile_seconds"] = round(compile_seconds[0], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=128 * 12 + 90)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--context-length", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--compare-steps", type=int, default=6,
                        help="steps per loop in the side-by-side comparison (0: skip it)")
    parser.add_argument("--compare-compile", action="store_true",
                        help="also ours under torch.compile in the comparison (compile time shown)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.transitions, args.batch_size, args.context_length = 200, 8, 5
        args.repeats, args.compare_steps, args.device = 1, 0, "cpu"

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fdt-bench-"))
    folder = workdir / "training_set"
    started = time.perf_counter()
    if not (folder / MANIFEST).is_file():
        synthetic_training_set(folder, args.transitions)
    made = time.perf_counter() - started
    params = TrainParams(model="dt", seed=0, context_length=args.context_length,
                         batch_size=args.batch_size, epochs=args.epochs, device=args.device,
                         compile=args.compile, log_every=50)
    report: dict[str, object] = {
        "device": str(resolve_device(args.device)),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "transitions": args.transitions, "batch_size": args.batch_size,
        "context_length": args.context_length, "epochs": args.epochs,
        "synthetic_set_seconds": round(made, 1),
    }
    report["breakdown_ms"] = {k: round(v, 2) for k, v in breakdown(folder, params, args.repeats).items()}
    if args.compare_steps and report["device"] == "cpu":
        need = (2 * args.compare_steps + 4) * 128 + args.context_length
        if args.transitions < need:
            print(f"(comparison skipped: it needs --transitions {need})")
        else:
            report["vs_reference_loop"] = [
                compare_with_reference(folder, b, args.context_length, args.compare_steps,
                                       compiled=args.compare_compile)
                for b in (32, 128)]
    started = time.perf_counter()
    # A fresh folder per run: `train` resumes a finished checkpoint in a reused one, and would
    # report that run's old rate.
    model_dir = Path(tempfile.mkdtemp(prefix="model-", dir=workdir))
    metrics = train(folder, model_dir, params, progress=False, verify=False)
    report["train_wall_seconds"] = round(time.perf_counter() - started, 1)
    report["train_samples_per_s"] = [round(r["samples_per_s"], 1) for r in metrics["history"]]
    report["steps"] = metrics["steps"]
    report["frames_on_device"] = metrics["frames_on_device"]
    if torch.cuda.is_available():
        report["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
