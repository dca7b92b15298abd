"""Continuous DT speed: our training step beside CORL's dt.py on the same synthetic arrays, and
evaluation env-steps/s with batched inference against one environment at a time.

CORL's algorithms/offline/dt.py is imported at run time from a checkout (or a bare git dir) given
with --corl, never copied here; its imports that do not install with current MuJoCo or that only
log (d4rl, gym, wandb, pyrallis) are stubbed. Both sides train the same architecture (CORL's
TrainConfig: width 128, 3 layers, 1 head, sequence length 20) on the same trajectories with their
own sampler, loss, AdamW, warmup and clipping, one thread, no data-loader workers.

    .venv/bin/python benchmarks/continuous_dt.py --corl /path/to/CORL [--steps 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from fdt.continuous.environments import TaskSizes
from fdt.continuous.episodes import EpisodeRecorder, Episodes
from fdt.continuous.evaluation import Prompting, evaluate_targets
from fdt.continuous.sequences import SequenceSampler
from fdt.continuous.training import (
    DTParams,
    build_model,
    make_optimizer,
    masked_mse,
    window_tensors,
)

OBSERVATION, ACTION = 11, 3  # Hopper's sizes


def synthetic_episodes(count: int = 40, seed: int = 0) -> Episodes:
    """Trajectories of 100..1000 steps with random observations, actions in [-1, 1], rewards."""
    rng = np.random.default_rng(seed)
    record = EpisodeRecorder("Hopper-v5")
    for episode in range(count):
        length = int(rng.integers(100, 1001))
        for step in range(length):
            record.add(episode, step, rng.normal(size=OBSERVATION), rng.uniform(-1, 1, ACTION),
                       float(rng.uniform(0, 3)), step == length - 1, False, "synthetic")
    return record.episodes()


def corl_source(path: Path) -> str:
    """CORL's dt.py from a checkout, or from a bare git dir (the fetch tool's mirror)."""
    file = path / "algorithms" / "offline" / "dt.py"
    if file.is_file():
        return file.read_text()
    return subprocess.run(["git", "--git-dir", str(path), "show", "HEAD:algorithms/offline/dt.py"],
                          capture_output=True, text=True, check=True).stdout


def import_corl(path: Path) -> types.ModuleType:
    """CORL's dt.py as a module, its unavailable imports stubbed (only their names are used at
    import time: gym.Env in annotations, pyrallis.wrap as a decorator)."""
    gym = types.ModuleType("gym")
    gym.Env = object  # type: ignore[attr-defined]
    pyrallis = types.ModuleType("pyrallis")
    pyrallis.wrap = lambda *a, **k: (lambda f: f)  # type: ignore[attr-defined]
    for name, module in (("gym", gym), ("pyrallis", pyrallis), ("d4rl", types.ModuleType("d4rl")),
                         ("wandb", types.ModuleType("wandb"))):
        sys.modules.setdefault(name, module)
    folder = Path(tempfile.mkdtemp(prefix="corl-"))  # a bare git dir has no file to import
    (folder / "corl_dt.py").write_text(corl_source(path))
    spec = importlib.util.spec_from_file_location("corl_dt", folder / "corl_dt.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["corl_dt"] = module  # its dataclass looks its module up while it is created
    spec.loader.exec_module(module)
    return module


def corl_trainer(corl: types.ModuleType, episodes: Episodes, batch_size: int, params: DTParams):
    """CORL's SequenceDataset (its trajectories set directly, as load_d4rl_trajectories makes
    them), model, loss and optimiser step, as its train() loop runs them."""
    dataset = corl.SequenceDataset.__new__(corl.SequenceDataset)
    starts, ends = episodes.starts(), np.r_[episodes.starts()[1:], len(episodes)]
    dataset.dataset = [{"observations": episodes.observations[a:b], "actions": episodes.actions[a:b],
                        "rewards": episodes.rewards[a:b],
                        "returns": corl.discounted_cumsum(episodes.rewards[a:b], 1.0)}
                       for a, b in zip(starts, ends)]
    dataset.reward_scale, dataset.seq_len = params.reward_scale, params.seq_len
    dataset.state_mean = episodes.observations.mean(0, keepdims=True)
    dataset.state_std = episodes.observations.std(0, keepdims=True) + 1e-6
    lengths = episodes.lengths()
    dataset.sample_prob = lengths / lengths.sum()
    loader = iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0))
    model = corl.DecisionTransformer(
        state_dim=OBSERVATION, action_dim=ACTION, seq_len=params.seq_len, episode_len=params.episode_len,
        embedding_dim=params.embedding_dim, num_layers=params.num_layers, num_heads=params.num_heads,
        attention_dropout=params.attention_dropout, residual_dropout=params.residual_dropout,
        embedding_dropout=params.embedding_dropout, max_action=1.0)
    optim = torch.optim.AdamW(model.parameters(), lr=params.learning_rate,
                              weight_decay=params.weight_decay, betas=params.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min((s + 1) / params.warmup_steps, 1))

    def step() -> None:
        states, actions, returns, time_steps, mask = next(loader)
        predicted = model(states=states.float(), actions=actions.float(), returns_to_go=returns.float(),
                          time_steps=time_steps, padding_mask=~mask.to(torch.bool))
        loss = torch.nn.functional.mse_loss(predicted, actions.float().detach(), reduction="none")
        loss = (loss * mask.unsqueeze(-1)).mean()
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.clip_grad)
        optim.step()
        scheduler.step()

    return step


def our_trainer(episodes: Episodes, batch_size: int, params: DTParams):
    sampler = SequenceSampler(episodes, params.seq_len, params.reward_scale, seed=0)
    model = build_model(TaskSizes(OBSERVATION, ACTION, 1.0, params.episode_len), params)
    optimizer, schedule = make_optimizer(model, params)
    device = torch.device("cpu")

    def step() -> None:
        states, actions, returns, time_steps, mask = window_tensors(sampler.sample(batch_size), device)
        loss = masked_mse(model(states, actions, returns, time_steps), actions, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.clip_grad)
        optimizer.step()
        schedule.step()

    return step


def samples_per_second(step, batch_size: int, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def evaluation_rates(episodes: int, horizon: int) -> tuple[float, float]:
    """Env-steps/s of an untrained DT on HalfCheetah-v5 (no early termination) capped at `horizon`
    steps: all episodes at once (one forward pass for all), then one at a time."""
    import gymnasium

    torch.manual_seed(0)
    sizes = TaskSizes(17, 6, 1.0, 1000)
    model = build_model(sizes, DTParams())
    prompting = Prompting(np.zeros(17, np.float32), np.ones(17, np.float32), 0.001)

    def make() -> object:
        return gymnasium.make("HalfCheetah-v5", max_episode_steps=horizon)

    rates = []
    for parallel in (episodes, 1):
        start = time.perf_counter()
        results = evaluate_targets(model, make, [6000.0], episodes, parallel, 0, prompting,
                                   torch.device("cpu"))
        rates.append(sum(r.length for r in results) / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corl", type=Path, help="CORL checkout or bare git dir (required "
                        "but with --quick, which times ours alone)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per case")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--episodes", type=int, default=16, help="evaluation episodes")
    parser.add_argument("--horizon", type=int, default=100, help="steps per evaluation episode")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.corl is None and not args.quick:
        parser.error("--corl is required (or --quick, which times ours alone)")
    if args.quick:
        args.steps, args.batches, args.episodes, args.horizon = 2, [8], 2, 5
    torch.set_num_threads(1)
    corl = import_corl(args.corl) if args.corl else None
    data = synthetic_episodes(8 if args.quick else 40)
    params = DTParams()
    print(f"training: {len(data)} transitions, {len(data.lengths())} trajectories, CORL's architecture "
          f"(width {params.embedding_dim}, {params.num_layers} layers, sequence {params.seq_len}), 1 thread")
    print(f"{'batch':>6} {'ours samples/s':>15} {'CORL samples/s':>15} {'ours/CORL':>10}")
    for batch in args.batches:
        torch.manual_seed(0)
        ours = samples_per_second(our_trainer(data, batch, params), batch, args.steps)
        if corl is None:
            print(f"{batch:>6} {ours:>15.1f} {'-':>15} {'-':>10}", flush=True)
            continue
        torch.manual_seed(0)
        theirs = samples_per_second(corl_trainer(corl, data, batch, params), batch, args.steps)
        print(f"{batch:>6} {ours:>15.1f} {theirs:>15.1f} {ours / theirs:>9.2f}x", flush=True)
    batched, single = evaluation_rates(args.episodes, args.horizon)
    print(f"evaluation, HalfCheetah-v5, {args.episodes} episodes of {args.horizon} steps: "
          f"batched {batched:.0f} env-steps/s, one at a time {single:.0f} env-steps/s, "
          f"{batched / single:.2f}x")


if __name__ == "__main__":
    main()
