"""RA-DT's retrieval cost beside a training step, at 20,000 and 2,000,000 keys (synthetic).

One run prints, side by side: the retrieval of one training batch (queries of the batch's
windows, own-trajectory exclusion, near-copy cutoff, reweighting) and of one evaluation step
(the live environments' queries) for the exact index and the approximate ones (HNSW at 20,000
keys only: its deterministic one-thread build of 2,000,000 takes too long here), with their
recall of the exact top_k; a radt training step (forward + backward, retrieved frames encoded)
at the chosen sizes; the share of that step the retrieval takes; and the memory build rate
(sub-trajectories embedded per second by the frozen DT).

    .venv/bin/python benchmarks/retrieval.py                # paper sizes (width 128, K = C = 30)
    .venv/bin/python benchmarks/retrieval.py --quick        # 20,000 keys only, smaller model
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fdt.models.transformer import DecisionTransformer, ModelConfig
from fdt.retrieval.index import IndexParams, recall, search
from fdt.retrieval.memory import mean_state_embedding, normalise
from fdt.retrieval.model import RetrievalDecisionTransformer, radt_config
from fdt.retrieval.retrieve import RetrievalParams, Retriever


def best_of(fn, repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def synthetic_memory(n: int, width: int, items_per_trajectory: int, seed: int = 0):
    """Clustered unit keys (as embeddings of neighbouring sub-trajectories are), a trajectory
    per run of items, returns per trajectory."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 200), width)).astype(np.float32)
    keys = centres[rng.integers(len(centres), size=n)]
    keys += 0.5 * rng.standard_normal((n, width)).astype(np.float32)
    trajectory = np.arange(n) // items_per_trajectory
    returns = rng.random(trajectory.max() + 1).astype(np.float32)[trajectory] * 100
    return normalise(keys), trajectory, returns


def model_inputs(batch: int, K: int, R: int, C: int, width: int, actions: int = 4):
    """Own windows of K steps and R retrieved items of the past and next C steps (2C)."""
    own = (torch.randint(0, 256, (batch, K, 4, 84, 84), dtype=torch.uint8),
           torch.randint(0, actions, (batch, K)), torch.rand(batch, K), torch.zeros(batch))
    S = 2 * C
    context = {"context_features": torch.randn(batch, R, S, width),
               "context_actions": torch.randint(0, actions, (batch, R, S)),
               "context_returns_to_go": torch.rand(batch, R, S),
               "context_timesteps": torch.zeros(batch, R, dtype=torch.long),
               "context_valid": torch.ones(batch, R, S, dtype=torch.bool)}
    return own, context


def training_step_seconds(config: ModelConfig, batch: int, R: int, C: int, repeat: int) -> float:
    model = RetrievalDecisionTransformer(radt_config(config, R, C, config.n_embd))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    (states, actions, rtg, timesteps), context = model_inputs(batch, config.context_length, R, C,
                                                              config.n_embd)

    def step() -> None:
        logits = model(states, actions, rtg, timesteps, **context)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 actions.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return best_of(step, repeat)


def build_rate(config: ModelConfig, batch: int, C: int) -> float:
    """Sub-trajectories per second through the memory build: each of its C rows' stacks encoded
    once, its key (one window of C steps) and its rows' C queries (windows of K = C steps)."""
    model = DecisionTransformer(config).eval()
    (states, actions, rtg, timesteps), _ = model_inputs(batch, C, 1, 1, config.n_embd)

    @torch.inference_mode()
    def build() -> None:
        tokens = model.encode_states(states.reshape(-1, 4, 84, 84)).reshape(batch, C, -1)
        for _ in range(1 + C):  # the key, then the C queries
            mean_state_embedding(model, {"state_tokens": tokens, "actions": actions,
                                         "returns_to_go": rtg, "timesteps": timesteps})

    return batch / best_of(build, 2)


def retrieval_seconds(retriever: Retriever, train_queries: np.ndarray, own: np.ndarray,
                      eval_queries: np.ndarray) -> tuple[float, float]:
    """One training batch's retrieval (own trajectories excluded), one evaluation step's."""
    return (best_of(lambda: retriever.retrieve(train_queries, own), 3),
            best_of(lambda: retriever.retrieve(eval_queries), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 keys, a small model")
    parser.add_argument("--batch", type=int, default=128, help="training batch (paper: 128)")
    parser.add_argument("--envs", type=int, default=64, help="live environments (default 64)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    width, K, layers, heads = (32, 10, 2, 4) if args.quick else (128, 30, 6, 8)
    sizes = [20_000] if args.quick else [20_000, 2_000_000]
    C, R = K, 1
    params = RetrievalParams()  # top_k 50, reweight_top_k 1, sim_cutoff 0.98, exclusion on
    config = ModelConfig(num_actions=4, context_length=K, max_timestep=10_000, n_layer=layers,
                         n_head=heads, n_embd=width)
    print(f"threads {args.threads}; width {width}, K = C = {K}, {layers} layers; training batch "
          f"{args.batch}, {args.envs} envs; top_k {params.top_k}, keep {params.reweight_top_k}")
    step = training_step_seconds(config, args.batch, R, C, repeat=1 if not args.quick else 2)
    print(f"radt training step (forward + backward, batch {args.batch}): {step * 1e3:.0f} ms")
    rate = build_rate(config, 32, C)
    print(f"memory build: {rate:,.1f} sub-trajectories/s of {C} steps ({rate * C:,.0f} "
          "training-set rows/s: each row's stack encoded once, its window's query, 1/C of a key)")
    rng = np.random.default_rng(1)
    header = (f"{'keys':>10} {'index':>6} {'build s':>8} {'batch ms':>9} {'share':>7} "
              f"{'step ms':>8} {'recall':>7}")
    print(header)
    for n in sizes:
        keys, trajectory, returns = synthetic_memory(n, width, items_per_trajectory=33)
        picks = rng.integers(n, size=args.batch)
        train_queries = normalise(keys[picks] + 0.3 * rng.standard_normal(
            (args.batch, width)).astype(np.float32))
        eval_queries = train_queries[: args.envs] if args.envs <= args.batch else normalise(
            rng.standard_normal((args.envs, width)).astype(np.float32))
        exact_ids = None
        kinds = ["exact", "hnsw", "ivf"] if n <= 100_000 else ["exact", "ivf"]
        for kind in kinds:
            started = time.perf_counter()
            # IVF's cells: about 4 sqrt(N) at 20,000 keys; 1,024 at 2,000,000 (k-means over
            # 5,657 cells would take this CPU most of an hour)
            index = IndexParams(kind=kind, nlist=0 if n <= 100_000 else 1024)
            retriever = Retriever(keys, trajectory, returns, params, index)
            built = time.perf_counter() - started
            batch_s, eval_s = retrieval_seconds(retriever, train_queries, trajectory[picks],
                                                eval_queries)
            _, ids = search(retriever.index, train_queries, params.top_k)
            if exact_ids is None:
                exact_ids = ids
            print(f"{n:>10,} {kind:>6} {built:>8.1f} {batch_s * 1e3:>9.1f} "
                  f"{batch_s / step:>7.1%} {eval_s * 1e3:>8.1f} "
                  f"{recall(ids, exact_ids):>7.3f}")
    print("share: one training batch's retrieval / one radt training step on this machine; "
          "step ms: one evaluation step's retrieval for the live environments")


if __name__ == "__main__":
    main()
