"""In-context RL on Dark-Room: how fast each piece runs on this machine.

Prints: environment steps/s of the grid-world alone and of history generation (PPO learning as
it plays); training samples/s of AD (context across episodes) and RA-DT (one episode's context
plus cross-attention to the retrieved sub-trajectory); and retrieval's share of a RA-DT step,
at training (embedding the batch's queries and searching the memory, beside the update it feeds)
and at in-context evaluation (query, search and reading the items, beside the whole step).

    .venv/bin/python benchmarks/incontext.py            # config/incontext.yaml's sizes
    .venv/bin/python benchmarks/incontext.py --quick    # tiny sizes, seconds

The full sizes are read from config/incontext.yaml (merged over config/config.yaml as the workflow
merges them): its PPO steps per task (on 4 of the training tasks), model, batch, memory and
retrieval settings; evaluation plays all 20 unseen goals for 3 episodes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from snakemake.utils import update_config

from fdt.config import validate_config
from fdt.incontext.environments import GridWorld, load_split
from fdt.incontext.evaluation import EvalParams, evaluate
from fdt.incontext.learner import PPOParams, learning_history
from fdt.incontext.model import InContextTransformer, ModelParams
from fdt.incontext.sequences import build_memory, build_stream, gather, retrieved_tokens
from fdt.incontext.stages import base_params, retrieval_params
from fdt.incontext.training import TrainParams, model_params, train
from fdt.retrieval.retrieve import RetrievalParams
from fdt.settings import params_from

REPO = Path(__file__).resolve().parents[1]


def comparison_config() -> dict:
    """config/incontext.yaml's `incontext` section as the workflow sees it (defaults filled)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "incontext.yaml").read_text()))
    return validate_config(config)["incontext"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    split = load_split("dark_room")
    c = comparison_config()
    steps = 2000 if quick else c["steps_per_task"]
    tasks = 2 if quick else 4
    train_steps = 5 if quick else 100
    base = (ModelParams(context=100, n_layer=1, n_head=2, n_embd=16) if quick
            else base_params(c, split))
    batch = 4 if quick else c["train"]["batch_size"]
    ppo = PPOParams() if quick else params_from(PPOParams, c["ppo"])

    world, rng = GridWorld(split.train[0]), np.random.default_rng(0)
    world.reset()
    began = time.perf_counter()
    for action in rng.integers(0, 5, steps):
        if world.step(int(action))[3]:
            world.reset()
    print(f"environment: {steps / (time.perf_counter() - began):,.0f} steps/s (random actions)")

    began = time.perf_counter()
    frames = [pd.DataFrame({"task": i, **learning_history(GridWorld(split.train[i]), steps,
                                                          ppo, seed=i)})
              for i in range(tasks)]
    seconds = time.perf_counter() - began
    print(f"generation (PPO learning while it plays): {tasks * steps / seconds:,.0f} env steps/s")
    stream = build_stream(frames)

    retrieval = (RetrievalParams(top_k=5, reweight_top_k=1, sim_cutoff=0.98, eval_top_k=5)
                 if quick else retrieval_params(c))
    length = 20 if quick else c["memory"]["length"]
    stride = 10 if quick else c["memory"]["stride"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        dt_params = model_params("dt", base)
        train(stream, dt_params, TrainParams(method="dt", steps=2, batch_size=batch), out / "dt")
        embedder = InContextTransformer(dt_params).eval()
        embed = lambda b: embedder.embed(b).numpy()  # noqa: E731
        began = time.perf_counter()
        memory = build_memory(stream, embed, length, stride, retrieval)
        print(f"RA-DT memory: {len(memory.starts):,} items keyed in "
              f"{time.perf_counter() - began:.1f} s")
        rates = {}
        for method in ("ad", "radt"):
            mp = model_params(method, base)
            mem = memory if method == "radt" else None
            if mem is not None:
                mp = replace(mp, context=length)
            metrics = train(stream, mp, TrainParams(method=method, steps=train_steps,
                                                    batch_size=batch, warmup_steps=1),
                            out / method, mem)
            rates[method] = metrics["samples_per_s"]
            print(f"training {method}: {metrics['samples_per_s']:,.0f} samples/s "
                  f"(batch {batch}, context {mp.context})")

        # training: the online retrieval of a batch (embed the queries, search) beside its update
        mp = replace(model_params("radt", base), context=length)
        model = InContextTransformer(mp)
        opt = torch.optim.AdamW(model.parameters())
        pick = np.random.default_rng(1).integers(0, len(memory.starts), batch)
        windows = gather(stream, memory.starts[pick], length, True)
        retrieve_s = update_s = 0.0
        for _ in range(3):
            began = time.perf_counter()
            queries = embed(windows).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True) + 1e-8
            ids = memory.retriever.retrieve(queries, stream.episode[memory.starts[pick]]).ids
            retrieve_s += time.perf_counter() - began
            began = time.perf_counter()
            tokens, pad = retrieved_tokens(model, stream, memory, ids)
            loss = model.loss(windows, tokens, pad)
            opt.zero_grad()
            loss.backward()
            opt.step()
            update_s += time.perf_counter() - began
        print(f"retrieval share of a RA-DT training step: {retrieve_s / (retrieve_s + update_s):.1%}"
              f" (memory of {len(memory.starts):,} items, top_k {retrieval.top_k})")

        eval_split = replace(split, max_episode_steps=100 if not quick else 20)
        evaluation = {} if quick else {k: c["evaluation"][k] for k in
                                       ("target_return", "retrieve_every", "item_stride")}
        _, timing = evaluate(model.eval(), "radt", eval_split,
                             list(range(2 if quick else len(split.evaluation))),
                             EvalParams(episodes=2 if quick else 3, **evaluation), embed, length,
                             retrieval, memory.keys.shape[1])
        print(f"retrieval share of a RA-DT evaluation step: {timing['retrieval_share']:.1%} "
              f"({timing['env_steps_per_s']:,.0f} env steps/s over the goals in one batch)")


if __name__ == "__main__":
    main()
