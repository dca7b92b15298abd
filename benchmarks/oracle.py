"""The C51 oracle's speed: labelling (greedy inference, states/s) and offline C51 training
(updates/s and transitions/s), on this machine's CPU or a GPU.

    python benchmarks/oracle.py                    # CPU, all threads torch uses by default
    python benchmarks/oracle.py --device cuda      # a GPU

Random uint8 states and weights (speed does not depend on their values). Labelling times
`fdt.oracle.c51.greedy_actions` at several batch sizes; training times `fdt.oracle.training.c51_loss` plus the
Adam step at batch 32 (Dopamine's), frames gathered from an in-memory table as `train_oracle` does.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fdt.oracle.c51 import C51Network, greedy_actions
from fdt.oracle.training import c51_loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def labelling_rate(net: C51Network, states: np.ndarray, batch: int, device: torch.device) -> float:
    greedy_actions(net, states[:batch], batch_size=batch, device=device)  # warm up
    sync(device)
    started = time.perf_counter()
    greedy_actions(net, states, batch_size=batch, device=device)
    sync(device)
    return len(states) / (time.perf_counter() - started)


def training_rate(num_actions: int, frames: int, updates: int, batch: int,
                  device: torch.device) -> float:
    rng = np.random.default_rng(0)
    table = torch.from_numpy(rng.integers(0, 256, (frames, 84, 84), dtype=np.uint8)).to(device)
    online, target = C51Network(num_actions).to(device), C51Network(num_actions).to(device)
    optimizer = torch.optim.Adam(online.parameters(), lr=2.5e-4, eps=3.125e-4)

    def step() -> None:
        rows = torch.randint(0, frames - 4, (batch,), device=device)
        stacks = rows[:, None] + torch.arange(4, device=device)
        batch_data = {"state": table[stacks], "next_state": table[stacks + 1],
                      "action": torch.randint(0, num_actions, (batch,), device=device),
                      "reward": torch.zeros(batch, device=device),
                      "terminal": torch.zeros(batch, dtype=torch.bool, device=device)}
        loss = c51_loss(online, target, batch_data, 0.99)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    sync(device)
    started = time.perf_counter()
    for _ in range(updates):
        step()
    sync(device)
    return updates / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--states", type=int, default=4096)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--actions", type=int, default=4)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.states, args.updates = 64, 2
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    rng = np.random.default_rng(1)
    states = rng.integers(0, 256, (args.states, 4, 84, 84), dtype=np.uint8)
    net = C51Network(args.actions)
    for batch in (1, 64, 512):
        n = args.states if batch > 1 else min(args.states, 256)
        rate = labelling_rate(net, states[:n], batch, device)
        print(f"labelling, batch {batch:4d}: {rate:10,.0f} states/s")
    rate = training_rate(args.actions, 500 if args.quick else 20_000, args.updates, 32, device)
    print(f"offline C51 training, batch 32: {rate:8.1f} updates/s = {rate * 32:10,.0f} "
          "transitions/s")


if __name__ == "__main__":
    main()
