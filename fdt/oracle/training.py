"""An oracle when no published C51 checkpoint can be had: offline C51 on the logged transitions.

The batch-RL recipe (Agarwal et al., "An Optimistic Perspective on Offline RL"): Dopamine's C51
network and distributional Bellman update, trained on transitions drawn uniformly from the replay
logs instead of from an agent's own play. Targets use the target network for both the greedy next
action and its distribution; the target support r + gamma * z (z for non-terminal rows) is
projected onto the 51 atoms. Adam with Dopamine's C51 settings (lr 2.5e-4, epsilon 3.125e-4).
Training writes a checkpoint every `checkpoint_every` updates and resumes from it.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fdt.device import resolve_device
from fdt.io import atomic_path, write_json
from fdt.keys import canonical_json
from fdt.oracle.c51 import C51Network, save_network
from fdt.replay.dopamine import FRAME_SHAPE, STACK_SIZE
from fdt.replay.store import frames_numpy
from fdt.settings import defaults
from fdt.torchfile import load_torch_file

COLUMNS = ["replay_index", "episode_id", "step", "action", "reward", "terminal"]


class OracleTrainingError(RuntimeError):
    pass


_OFFLINE = defaults("oracle", "offline")  # the schema's, the one place they live


@dataclass(frozen=True)
class OracleParams:
    seed: int = _OFFLINE["seed"]
    updates: int = _OFFLINE["updates"]
    batch_size: int = _OFFLINE["batch_size"]
    learning_rate: float = _OFFLINE["learning_rate"]
    adam_epsilon: float = _OFFLINE["adam_epsilon"]
    gamma: float = _OFFLINE["gamma"]
    target_update_period: int = _OFFLINE["target_update_period"]
    checkpoint_every: int = _OFFLINE["checkpoint_every"]
    device: str = _OFFLINE["device"]

    def digest(self) -> str:
        learning = {k: v for k, v in asdict(self).items() if k not in ("device", "checkpoint_every")}
        return hashlib.sha256(canonical_json(learning).encode()).hexdigest()[:16]


@dataclass
class TransitionTable:
    """Logged transitions in replay order: state and next-state stacks index `frames`, whose
    last row is the zero frame of the stacking padding."""

    frames: np.ndarray  # (N + 1, 84, 84) uint8
    state: np.ndarray  # (N, 4) int64
    next_state: np.ndarray  # (N, 4) int64
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    usable: np.ndarray  # rows whose next state was logged (or that are terminal)


def load_transitions(paths: Sequence[str | Path], progress: bool = True) -> TransitionTable:
    """Every transition of the given converted checkpoints, with its 4-frame state and next state
    (zeros before an episode's first frame, as the dataset's states are)."""
    tables, frames = [], []
    for path in tqdm(paths, desc="load transitions", unit="file", disable=not progress):
        table = pq.read_table(path, columns=COLUMNS + ["frame"])
        frames.append(frames_numpy(table["frame"]))
        tables.append(table.drop_columns(["frame"]))
    table = pa.concat_tables(tables)
    order = np.argsort(table["replay_index"].to_numpy(), kind="stable")
    cols = {c: table[c].to_numpy()[order] for c in COLUMNS}
    n = len(order)
    all_frames = np.empty((n + 1, *FRAME_SHAPE), np.uint8)
    all_frames[:n] = np.concatenate(frames)[order]
    all_frames[n] = 0
    row = np.arange(n)
    episode, step = cols["episode_id"], cols["step"]
    state = np.full((n, STACK_SIZE), n, dtype=np.int64)
    for k in range(STACK_SIZE):
        back = STACK_SIZE - 1 - k
        source = row - back
        inside = (step >= back) & (source >= 0)
        inside[inside] &= episode[source[inside]] == episode[inside]
        state[inside, k] = source[inside]
    follows = np.zeros(n, bool)
    follows[:-1] = (episode[1:] == episode[:-1]) & (cols["replay_index"][1:] ==
                                                  cols["replay_index"][:-1] + 1)
    terminal = cols["terminal"].astype(bool)
    next_state = state.copy()
    next_state[follows] = state[np.flatnonzero(follows) + 1]
    return TransitionTable(all_frames, state, next_state, cols["action"].astype(np.int64),
                           cols["reward"].astype(np.float32), terminal, follows | terminal)


def project_distribution(next_probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
                         support: torch.Tensor) -> torch.Tensor:
    """C51's projection of r + discount * z (per row) onto the fixed support."""
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (len(support) - 1)
    target = (rewards[:, None] + discounts[:, None] * support[None, :]).clamp(v_min, v_max)
    b = (target - v_min) / delta
    lower, upper = b.floor().long(), b.ceil().long()
    out = torch.zeros_like(next_probs)
    # Where b lands on an atom (lower == upper) all its mass goes there.
    out.scatter_add_(1, lower, next_probs * (upper.float() - b + (lower == upper).float()))
    out.scatter_add_(1, upper, next_probs * (b - lower.float()))
    return out


def c51_loss(online: C51Network, target: C51Network, batch: dict[str, torch.Tensor],
             gamma: float) -> torch.Tensor:
    logits = online(batch["state"])
    chosen = logits[torch.arange(len(logits)), batch["action"]]
    with torch.no_grad():
        next_logits = target(batch["next_state"])
        next_probs = F.softmax(next_logits, dim=-1)
        next_action = (next_probs * target.support).sum(-1).argmax(-1)
        probs = next_probs[torch.arange(len(next_probs)), next_action]
        discounts = gamma * (~batch["terminal"]).float()
        projected = project_distribution(probs, batch["reward"], discounts, target.support)
    return -(projected * F.log_softmax(chosen, dim=-1)).sum(-1).mean()


def train_oracle(paths: Sequence[str | Path], num_actions: int, out_dir: str | Path,
                 params: OracleParams, *, progress: bool = True) -> dict[str, Any]:
    """Train the offline C51 oracle; write `oracle.pt` and `metrics.json` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_transitions(paths, progress)
    usable = np.flatnonzero(data.usable)
    if len(usable) < params.batch_size:
        raise OracleTrainingError(f"only {len(usable)} usable transitions in {len(paths)} files, "
                                  f"fewer than a batch of {params.batch_size}")
    if data.action.max() >= num_actions:
        raise OracleTrainingError(f"logged action {int(data.action.max())} is outside the game's "
                                  f"{num_actions} actions")
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    online, target = C51Network(num_actions).to(device), C51Network(num_actions).to(device)
    target.load_state_dict(online.state_dict())
    optimizer = torch.optim.Adam(online.parameters(), lr=params.learning_rate,
                                 eps=params.adam_epsilon)
    rng = np.random.default_rng(params.seed)
    frames = torch.from_numpy(data.frames).to(device)
    tensors = {"state": torch.from_numpy(data.state).to(device),
               "next_state": torch.from_numpy(data.next_state).to(device),
               "action": torch.from_numpy(data.action).to(device),
               "reward": torch.from_numpy(data.reward).to(device),
               "terminal": torch.from_numpy(data.terminal).to(device)}
    step, history = 0, []
    checkpoint = out_dir / "checkpoint.pt"
    if checkpoint.is_file():
        payload = load_torch_file(checkpoint, device)
        if payload["digest"] == params.digest():
            online.load_state_dict(payload["online"])
            target.load_state_dict(payload["target"])
            optimizer.load_state_dict(payload["optimizer"])
            rng.bit_generator.state = payload["rng"]
            torch.set_rng_state(payload["torch_rng"])
            step, history = payload["step"], payload["history"]
            print(f"resuming offline C51 from {checkpoint} at update {step}", file=sys.stderr)
    started, loss_sum, window = time.perf_counter(), 0.0, 0
    bar = tqdm(total=params.updates, initial=step, desc="offline C51", unit="update",
               mininterval=1.0, disable=not progress)
    while step < params.updates:
        rows = torch.from_numpy(usable[rng.integers(0, len(usable), params.batch_size)]).to(device)
        batch = {"state": frames[tensors["state"][rows]],
                 "next_state": frames[tensors["next_state"][rows]],
                 **{k: tensors[k][rows] for k in ("action", "reward", "terminal")}}
        loss = c51_loss(online, target, batch, params.gamma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_sum, window = loss_sum + float(loss.detach()), window + 1
        if step % params.target_update_period == 0:
            target.load_state_dict(online.state_dict())
        if step % params.checkpoint_every == 0 or step == params.updates:
            history.append({"update": step, "loss": loss_sum / window})
            bar.set_postfix(loss=f"{loss_sum / window:.4f}")
            loss_sum, window = 0.0, 0
            with atomic_path(checkpoint) as tmp:
                torch.save({"digest": params.digest(), "online": online.state_dict(),
                            "target": target.state_dict(), "optimizer": optimizer.state_dict(),
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                            "step": step, "history": history}, tmp)
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    save_network(online.cpu(), out_dir / "oracle.pt", source="offline_c51", params=asdict(params))
    metrics = {"updates": step, "transitions": int(len(data.action)), "usable": int(len(usable)),
               "final_loss": history[-1]["loss"] if history else None, "history": history,
               "seconds_this_run": seconds, "device": str(device)}
    write_json(out_dir / "metrics.json", metrics)
    return metrics
