"""A synthetic labeller (rl-teacher's): another oracle's labels of the mined states, with flip
noise and a label budget, so label noise and budget can be studied without people.

The budget schedule says which `budget` states get a label: `rank` the first in rank order (as a
person working down the queue would), `spread` evenly over the whole ranking, `random` a seeded
draw. Each chosen label's feedback bit is flipped with probability `epsilon` (seeded). The output
keeps the base labels' schema (every column, the rows chosen), so FDT trains on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fdt.io import atomic_path, write_json

SCHEDULES = ("rank", "spread", "random")


@dataclass(frozen=True)
class SyntheticParams:
    epsilon: float = 0.0  # probability of flipping a feedback bit
    budget: int | None = None  # states labelled (None: all)
    schedule: str = "rank"
    seed: int = 0


def budget_rows(n: int, budget: int | None, schedule: str, rng: np.random.Generator) -> np.ndarray:
    """Which of `n` ranked states are labelled, in rank order."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown budget schedule {schedule!r}; expected one of "
                         f"{', '.join(SCHEDULES)}")
    count = n if budget is None else min(budget, n)
    if schedule == "rank" or count == n:
        return np.arange(count)
    if schedule == "spread":
        return np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))
    return np.sort(rng.choice(n, size=count, replace=False))


def synthetic_labels(base_labels: str | Path, out_dir: str | Path,
                     params: SyntheticParams) -> dict[str, Any]:
    """Write the noisy, budgeted labels.parquet and agreement.json; return the summary."""
    if not 0 <= params.epsilon <= 1:
        raise ValueError(f"flip noise epsilon {params.epsilon} is outside [0, 1]")
    base = pq.read_table(base_labels).sort_by("order")
    rng = np.random.default_rng(params.seed)
    rows = budget_rows(base.num_rows, params.budget, params.schedule, rng)
    chosen = base.take(pa.array(rows, pa.int64()))
    truth = chosen["feedback"].to_numpy().astype(np.int8)
    flipped = rng.random(len(truth)) < params.epsilon
    noisy = np.where(flipped, 1 - truth, truth).astype(np.int8)
    column = chosen.schema.get_field_index("feedback")
    table = chosen.set_column(column, chosen.schema.field("feedback"), pa.array(noisy))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "labels.parquet") as tmp:
        pq.write_table(table, tmp)
    n = len(noisy)
    summary = {
        "oracle": {"kind": "synthetic", "epsilon": params.epsilon, "budget": params.budget,
                   "schedule": params.schedule, "seed": params.seed, "base": str(base_labels)},
        "states": {"count": n, "positives": int(noisy.sum()), "negatives": int(n - noisy.sum()),
                   "agreement": float(noisy.mean()) if n else None},
        "flipped": int(flipped.sum()),
        "base_states": base.num_rows,
    }
    write_json(out_dir / "agreement.json", summary)
    return summary
