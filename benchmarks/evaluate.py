"""The batched evaluator against a one-environment, batch-of-one loop (the reference's way),
on the same model (the paper's size: 6 layers, width 128, K 30) and the same episodes.

    python benchmarks/evaluate.py                     # this machine, CPU
    python benchmarks/evaluate.py --device cuda --envs 256 --workers 15   # a GPU machine

Both run `fdt.evaluation.rollout.rollout` on Breakout under the FDT protocol with a step cap: the reference
way re-encodes every state of its window at every step with batch 1 and one environment; the
batched evaluator plays `--envs` episodes at once, encodes each new state once, and (with
`--workers`) steps environments in worker processes while the model works. Environments are
created before timing (a one-off 0.1-0.2 s per slot, reported apart). The estimate for the
full protocol of one model (6 setups x 10 seeds x 10 episodes; argmax without no-ops 1 episode
per seed: 510 episodes) uses the measured environment rate per core, an assumed mean episode
length, and the measured or assumed model time per batched step.

Then the two environment backends side by side (`evaluation.backend`): our worker processes and
ale-py's C++ vector environment, in alternating rounds (the order swapped each round, so load
from other work falls on both), each with `--backend-workers` processes or threads, on the
full-cap protocol (no `--max-steps`: Breakout's 27,000) with the uniform-random policy, so the
environments are what is timed; both play the same episodes (checked: the same returns).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fdt.evaluation.environments import EnvSlots, make_pool
from fdt.evaluation.policies import ModelPolicy, Policy, UniformPolicy
from fdt.evaluation.protocols import PROTOCOLS, SETUPS, Job, protocol_jobs
from fdt.evaluation.rollout import rollout
from fdt.models.transformer import DecisionTransformer, ModelConfig

PROTOCOL_EPISODES = 6 * 10 * 10 - 9 * 10  # argmax without no-ops plays 1 episode per seed


def env_rate(steps: int = 2000) -> float:
    """Agent steps per second of one environment in this process (one core)."""
    slots = EnvSlots("Breakout", PROTOCOLS["fdt"])
    slots.start(0, 0, 0)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(steps):
        _, _, over, _ = slots.step(0, int(rng.integers(4)))
        if over:
            slots.start(0, 0, 0)
    return steps / (time.perf_counter() - started)


def model_seconds_per_window(model: DecisionTransformer, batch: int, device: str,
                             repeats: int = 5) -> float:
    """Seconds of model time per window (best of `repeats`) for one batched step of full
    windows: encoding the new states and the forward at the chosen state, nothing else."""
    k = model.config.context_length
    states = torch.zeros((batch, 4, 84, 84), dtype=torch.uint8, device=device)
    tokens = torch.randn((batch, k, model.config.n_embd), device=device)
    actions = torch.zeros((batch, k - 1), dtype=torch.long, device=device)
    returns = torch.ones((batch, k), device=device)
    steps = torch.full((batch,), 100, device=device)
    last = torch.full((batch,), k - 1, device=device)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            model.encode_states(states)
            model.forward_tokens(tokens, actions, returns, steps, at_step=last).cpu()
            best = min(best, time.perf_counter() - started)
    return best / batch


def timed_rollout(model: DecisionTransformer | None, jobs: list, envs: int, workers: int,
                  cache: bool, max_steps: int | None, device: str, backend: str = "processes",
                  protocol: str = "fdt") -> tuple[float, int, float, list[dict], int | None]:
    """(env steps/s, env steps, seconds to create the environments, the episodes, the vector
    environment's ROM reloads); without a model the uniform-random policy plays."""
    pool = make_pool("Breakout", PROTOCOLS[protocol], backend=backend, envs=envs,
                     workers=workers)
    started = time.perf_counter()
    pool.run([("start", slot, 0, 0) for slot in range(envs)])  # create every slot's ALE
    created = time.perf_counter() - started
    try:
        policy: Policy = (UniformPolicy(4, envs) if model is None
                          else ModelPolicy(model, device, cache_states=cache, slots=envs))
        started = time.perf_counter()
        rows = rollout(policy, "Breakout", jobs, PROTOCOLS[protocol], envs=envs,
                       max_steps=max_steps, pool=pool)
        seconds = time.perf_counter() - started
    finally:
        pool.close()
    steps = sum(r["steps"] for r in rows)
    return steps / seconds, steps, created, rows, getattr(pool, "reloads", None)


def compare_backends(args: argparse.Namespace) -> None:
    """Worker processes against ale-py's vector environment, alternating rounds, per protocol:
    env steps/s of each and their ratio, and whether both played the same episodes."""
    for protocol in args.protocols.split(","):
        if protocol == "fdt":  # every setup of the paper's protocol, its no-ops and FIRE rules
            jobs = protocol_jobs(list(SETUPS), [90.0], list(range(args.backend_seeds)),
                                 args.backend_episodes)
        else:  # the agents' and the oracle's: sticky actions, no no-ops, no forced FIRE;
            # sampled, since greedy over the random policy's equal logits never serves the ball
            jobs = [Job("sample", 0.0, seed, e) for seed in range(args.backend_seeds)
                    for e in range(args.backend_episodes)]
        rates: dict[str, list[float]] = {"processes": [], "vector": []}
        episodes: dict[str, list] = {}
        for round_ in range(args.rounds):
            order = ["processes", "vector"] if round_ % 2 == 0 else ["vector", "processes"]
            for backend in order:
                rate, steps, _, rows, reloads = timed_rollout(
                    None, jobs, args.backend_envs, args.backend_workers, True,
                    args.backend_max_steps, "cpu", backend, protocol)
                rates[backend].append(rate)
                episodes[backend] = sorted((r["setup"], r["test_seed"], r["episode"],
                                            r["return"], r["steps"]) for r in rows)
                reloaded = f", {reloads} no-op reloads" if reloads and protocol == "fdt" else ""
                print(f"  {protocol} round {round_ + 1} {backend:>9}: {rate:8.1f} env steps/s "
                      f"({steps} steps, {len(rows)} episodes{reloaded})", flush=True)
        ratios = [v / p for v, p in zip(rates["vector"], rates["processes"])]
        same = episodes["vector"] == episodes["processes"]
        print(f"{protocol} protocol, {len(jobs)} episodes, cap "
              f"{args.backend_max_steps or PROTOCOLS[protocol].cap('Breakout')}, "
              f"{args.backend_envs} envs, {args.backend_workers} processes / threads: vector / "
              f"processes {min(ratios):.2f}-{max(ratios):.2f}x (median "
              f"{float(np.median(ratios)):.2f}x); same episodes and returns: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=128, help="episodes for the batched run")
    parser.add_argument("--reference-episodes", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--episode-steps", type=int, default=3000,
                        help="assumed mean episode length of the full protocol (estimate)")
    parser.add_argument("--cores", type=int, default=16, help="cores of the target machine")
    parser.add_argument("--gpu-ms-per-step", type=float, default=5.0,
                        help="assumed model time per batched step on the target GPU")
    parser.add_argument("--backends-only", action="store_true",
                        help="only the comparison of the two environment backends")
    parser.add_argument("--protocols", default="fdt,dopamine")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per backend")
    parser.add_argument("--backend-envs", type=int, default=16)
    parser.add_argument("--backend-workers", type=int, default=2,
                        help="worker processes, or the vector environment's threads per group")
    parser.add_argument("--backend-seeds", type=int, default=2)
    parser.add_argument("--backend-episodes", type=int, default=4)
    parser.add_argument("--backend-max-steps", type=int, default=None,
                        help="default: the protocol's own cap (27,000 on Breakout)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.envs, args.episodes, args.reference_episodes, args.max_steps = 2, 16, 1, 5
        args.rounds, args.backend_envs, args.backend_workers = 2, 2, 1
        args.backend_seeds, args.backend_episodes, args.backend_max_steps = 1, 1, 5
    if args.backends_only:
        compare_backends(args)
        return
    torch.manual_seed(0)
    sizes = {"n_layer": 1, "n_head": 2, "n_embd": 16} if args.quick else {}
    model = DecisionTransformer(ModelConfig(num_actions=4, context_length=30, max_timestep=3000,
                                            **sizes))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, model 6x128, K 30")
    jobs = protocol_jobs(["sample+noop"], [90.0], list(range(16)), args.episodes // 16)
    ref_rate, ref_steps, *_ = timed_rollout(model, jobs[:args.reference_episodes], 1, 0, False,
                                            args.max_steps, args.device)
    print(f"reference loop (1 env, batch 1, re-encoding): {ref_rate:8.1f} env steps/s "
          f"({ref_steps} steps)")
    rate, steps, created, *_ = timed_rollout(model, jobs, args.envs, args.workers, True,
                                             args.max_steps, args.device)
    print(f"batched evaluator ({args.envs} envs, {args.workers} workers): {rate:8.1f} env "
          f"steps/s ({steps} steps; creating {args.envs} environments took {created:.1f} s "
          "before timing)")
    print(f"speedup: {rate / ref_rate:.2f}x")
    per_core = env_rate(50 if args.quick else 2000)
    print(f"environment alone: {per_core:8.1f} agent steps/s per core")
    group = max(1, args.envs // 2)
    model_only = model_seconds_per_window(model.to(args.device).eval(), group, args.device)
    print(f"model alone, batch {group} (one group): {1000 * model_only:.2f} ms per window; bound "
          f"on the speedup if environments and bookkeeping cost nothing: "
          f"{1 / (model_only * ref_rate):.2f}x")
    model_ms = 1000 * (1 / rate - 1 / per_core) * args.envs if args.workers == 0 else None
    if model_ms is not None:
        print(f"model + bookkeeping per batched step of {args.envs} windows here: "
              f"{model_ms:.0f} ms")
    total = PROTOCOL_EPISODES * args.episode_steps
    workers = args.cores - 1
    env_seconds = total / (workers * per_core)
    batches = total / max(args.envs, 256)
    model_seconds = batches * args.gpu_ms_per_step / 1000
    print(f"estimate, full protocol of one model ({PROTOCOL_EPISODES} episodes x "
          f"{args.episode_steps} steps = {total:,} env steps) on {args.cores} cores + a GPU: "
          f"environments {env_seconds / 60:.1f} min on {workers} workers, model "
          f"{model_seconds / 60:.1f} min at {args.gpu_ms_per_step} ms per step of 256 windows; "
          f"pipelined, about {max(env_seconds, model_seconds) / 60:.1f} min")
    compare_backends(args)


if __name__ == "__main__":
    main()
