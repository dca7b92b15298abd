"""Preferences: the reward model's training rate and the sort tree's comparisons per clip, side by
side in one run.

    python benchmarks/preferences.py                 # CPU (torch's default threads)
    python benchmarks/preferences.py --device cuda   # a GPU
    python benchmarks/preferences.py --tree-only     # the sort tree's counts (no reward model)

Reward model: minibatch updates of fdt.preferences.reward_model on random clips (speed does not
depend on the values), Bradley-Terry (two clips per comparison) and ordinal (one clip per
target), one member and an ensemble of three, beside the same update with the Nature torso (the
oracle's and the agents' CNN) in place of our small CNN, and the relabelling's prediction rate.

Sort tree: comparisons per inserted clip for trees of n clips with distinct true returns, inserted
in random order and in ascending order (an unbalanced binary tree's worst case, n/2 per clip on
average), against log2(n), the least any comparison sort needs on average.

Pre-sorting: the same clips, order and answers, each clip inserted from the root or from where a
reward model's predicted returns place it. The predictions are the true returns plus Gaussian
noise (sd a multiple of the returns' sd), standing in for reward models of the rank accuracy
printed beside them; the trees' order is checked to be the same.

"Can't tell": a labeller who cannot tell two clips apart when their true returns differ by at
most a margin (and says equal when they are equal), sorted with the clip set aside (ours) or
bound to the node as equal (rl-teacher-atari); the rank agreement of the tree's order with the
true returns over the sorted clips, the fraction sorted, and over all pairs of clips with
different returns (a pair with an unsorted clip counts as unordered).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fdt.oracle.c51 import NatureTorso
from fdt.preferences.comparisons import Answer, synthetic_labeller
from fdt.preferences.reward_model import (
    RewardNet,
    RewardParams,
    TrainingData,
    predict_rewards,
    rank_accuracy,
    train_reward_model,
)
from fdt.preferences.tree import sort_clips
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE


class NatureReward(nn.Module):
    """The same per-step reward head on the Nature torso, for comparison."""

    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.torso = NatureTorso()
        self.out = nn.Linear(512 + num_actions, 1)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(actions.long(), self.num_actions).float()
        return self.out(torch.cat([self.torso(states), one_hot], 1)).squeeze(1)


def random_clips(count: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    states = rng.integers(0, 256, (count, length, STACK_SIZE, *FRAME_SHAPE), dtype=np.uint8)
    return states, rng.integers(0, 4, (count, length))


def training_rate(loss: str, ensemble: int, states: np.ndarray, actions: np.ndarray,
                  updates: int, batch: int, device: torch.device) -> float:
    """Clips per second through fdt.preferences.reward_model.train_reward_model."""
    n = len(states)
    rng = np.random.default_rng(1)
    if loss == "bradley_terry":
        indices = rng.integers(0, n, (4 * n, 2))
    else:
        indices = rng.integers(0, n, 4 * n)
    data = TrainingData(states, actions, indices, rng.random(len(indices)).astype(np.float32))
    params = RewardParams(seed=0, loss=loss, ensemble=ensemble, updates=updates, batch_size=batch)
    _, fit = train_reward_model(data, params, 4, device, progress=False)
    return fit["clips_per_s"]


def network_rate(net: nn.Module, states: np.ndarray, actions: np.ndarray, batch: int,
                 updates: int, device: torch.device) -> float:
    """Clips per second of forward, backward and Adam step of a per-step reward network."""
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters())
    s = torch.from_numpy(states[:batch]).to(device).flatten(0, 1)
    a = torch.from_numpy(actions[:batch]).to(device).flatten()

    def step() -> None:
        loss = net(s, a).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(updates):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * updates / (time.perf_counter() - started)


def comparisons_per_clip(n: int, ascending: bool) -> float:
    values = list(range(n))
    order = values if ascending else list(np.random.default_rng(n).permutation(n))
    tree, _ = sort_clips(order, synthetic_labeller(values, 0.0, np.random.default_rng(0)))
    return len(tree.comparisons) / n


def presorted_comparisons(n: int, noise_sd: float, seed: int = 0) -> tuple[float, float, float]:
    """Comparisons per clip from the root and pre-sorted, on the same clips, order and answers,
    and the predictions' rank accuracy."""
    rng = np.random.default_rng(seed)
    values = {clip: float(v) for clip, v in enumerate(rng.permutation(n))}
    predicted = {clip: v + noise_sd * n / math.sqrt(12) * rng.standard_normal()
                 for clip, v in values.items()}
    order = [int(c) for c in rng.permutation(n)]
    labeller = synthetic_labeller(values, 0.0, rng)
    root, _ = sort_clips(order, labeller)
    presorted, _ = sort_clips(order, labeller, predicted=predicted)
    assert presorted.ordinals() == root.ordinals()  # the same order, fewer questions
    accuracy = rank_accuracy([predicted[c] for c in values], list(values.values()))
    return len(root.comparisons) / n, len(presorted.comparisons) / n, accuracy


def hesitant_labeller(values: dict[int, float], margin: float):
    """Equal when the true returns are equal, can't tell when they differ by at most `margin`."""
    exact = synthetic_labeller(values, 0.0, np.random.default_rng(0))

    def answer(left: int, right: int) -> Answer:
        if 0 < abs(values[left] - values[right]) <= margin:
            return Answer.CANT_TELL
        return exact(left, right)
    return answer


def cant_tell_agreement(values: dict[int, float], margin: float, policy: str) -> tuple[float, float, float]:
    """(rank agreement over the sorted clips, fraction sorted, agreement over all clips)."""
    order = [int(c) for c in np.random.default_rng(5).permutation(len(values))]
    tree, _ = sort_clips(order, hesitant_labeller(values, margin), cant_tell=policy)
    ordinals = tree.ordinals()
    sorted_agreement = rank_accuracy(list(ordinals.values()), [values[c] for c in ordinals])
    clips = list(values)
    true = np.array([values[c] for c in clips])
    i, j = np.triu_indices(len(clips), k=1)
    strict = true[i] != true[j]
    right = [c1 in ordinals and c2 in ordinals and
             np.sign(ordinals[c1] - ordinals[c2]) == np.sign(values[c1] - values[c2])
             for c1, c2 in zip(np.array(clips)[i[strict]], np.array(clips)[j[strict]])]
    return sorted_agreement, len(ordinals) / len(values), float(np.mean(right))


def sort_tree_counts(quick: bool = False) -> None:
    """Comparisons per clip (root, ascending, pre-sorted) and the can't-tell policies' agreement
    (quick: the smallest sizes only)."""
    print(f"\n{'sort tree, n clips':<20} {'log2 n':>7} {'random order':>13} {'ascending':>10} "
          f"{'random / log2 n':>16}")
    for n in (100,) if quick else (100, 1000, 10000):
        shuffled, ascending = comparisons_per_clip(n, False), comparisons_per_clip(n, True)
        print(f"{n:<20} {math.log2(n):>7.2f} {shuffled:>13.2f} {ascending:>10.2f} "
              f"{shuffled / math.log2(n):>16.2f}")
    print("an unbalanced tree would take n/2 comparisons per clip in ascending order "
          "(50, 500, 5000)")

    print(f"\n{'pre-sorting, n clips':<20} {'prediction noise sd':>20} {'rank acc.':>10} "
          f"{'from root':>10} {'pre-sorted':>11}   (comparisons per clip, same clips and answers)")
    for n in (120,) if quick else (120, 1000):
        for noise_sd in (0.0, 0.05, 0.2, 0.5, 2.0):
            root, presorted, accuracy = presorted_comparisons(n, noise_sd)
            print(f"{n:<20} {noise_sd:>20.2f} {accuracy:>10.3f} {root:>10.2f} {presorted:>11.2f}")

    print(f"\n{'cant tell when |diff| <= margin':<36} {'policy':>10} {'agreement (sorted)':>19} "
          f"{'sorted':>7} {'agreement (all)':>16}")
    rng = np.random.default_rng(4)
    atari = {clip: float(v) for clip, v in enumerate(rng.poisson(2.0, 120))}  # clipped returns
    smooth = {clip: float(v) for clip, v in enumerate(rng.random(120))}
    for label, values, margin in (("120 integer returns (Poisson 2), 1", atari, 1.0),
                                  ("120 uniform returns, 0.05", smooth, 0.05),
                                  ("120 uniform returns, 0.2", smooth, 0.2)):
        for policy in ("set_aside", "equal"):
            agreement, share, overall = cant_tell_agreement(values, margin, policy)
            print(f"{label:<36} {policy:>10} {agreement:>19.3f} {share:>7.2f} {overall:>16.3f}")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--updates", type=int, default=10, help="timed updates per setting")
    parser.add_argument("--clip-length", type=int, default=22)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tree-only", action="store_true",
                        help="only the sort tree's comparisons (pre-sorting, can't tell)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: the test suite's check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.updates, args.clip_length, args.batch_size = 2, 4, 4
    if args.tree_only:
        sort_tree_counts(args.quick)
        return
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, clips of "
          f"{args.clip_length} steps, batch {args.batch_size}")
    states, actions = random_clips(64, args.clip_length)

    training_rate("ordinal", 1, states, actions, 2, args.batch_size, device)  # warm up
    print(f"\n{'reward model update':<34} {'clips/s':>9} {'vs ordinal x1':>14}")
    base = training_rate("ordinal", 1, states, actions, args.updates, args.batch_size, device)
    for loss, members in (("ordinal", 1), ("bradley_terry", 1), ("ordinal", 3),
                          ("bradley_terry", 3)):
        rate = base if (loss, members) == ("ordinal", 1) else training_rate(
            loss, members, states, actions, args.updates, args.batch_size, device)
        print(f"{loss + ' x' + str(members):<34} {rate:>9.1f} {rate / base:>14.2f}")
    ours = network_rate(RewardNet(4), states, actions, args.batch_size, args.updates, device)
    nature = network_rate(NatureReward(4), states, actions, args.batch_size, args.updates, device)
    print(f"{'our CNN (network only)':<34} {ours:>9.1f}")
    print(f"{'Nature torso (network only)':<34} {nature:>9.1f}   ours is {ours / nature:.1f}x faster")

    rows = len(states) * args.clip_length
    frames = states.reshape(rows, STACK_SIZE, *FRAME_SHAPE)[:, -1]
    stacks = np.arange(rows * STACK_SIZE).reshape(rows, STACK_SIZE) % rows
    started = time.perf_counter()
    predict_rewards(RewardNet(4).to(device).eval(), frames, stacks, actions.reshape(-1), device)
    print(f"relabelling: {rows / (time.perf_counter() - started):,.0f} rows/s predicted")

    sort_tree_counts(args.quick)

if __name__ == "__main__":
    main()
