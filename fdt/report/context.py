"""What makes a run's scores readable: the behaviour policy's return in each checkpoint of the
replay it learned from, and the uniform-random policy's score under the same protocol.

The behaviour returns come from the Parquet store: an episode counts in the checkpoint that holds
its first step (one that crosses a file edge is in both files), and only complete episodes count.
They are sums of the stored rewards, which the dataset clips to [-1, 1], so they are not game
scores (a Breakout brick of the top rows scores 7 but is stored as 1); the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

BEHAVIOUR_COLUMNS = ["game", "run", "checkpoint", "episodes", "mean_return", "std_return",
                     "min_return", "max_return", "mean_length"]
_READ = ["buffer", "episode_id", "step", "episode_return", "episode_length", "episode_complete"]


def behaviour_returns(game: str, run: int, buffer_paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per checkpoint: the complete episodes that start in it and their clipped returns."""
    rows = []
    for path in buffer_paths:
        table = pq.read_table(path, columns=_READ).to_pandas()
        starts = table[(table["step"] == 0) & table["episode_complete"]]
        returns = starts["episode_return"].astype(float)
        checkpoint = int(table["buffer"].iloc[0]) if len(table) else _number(path)
        rows.append({"game": game, "run": run, "checkpoint": checkpoint,
                     "episodes": len(starts),
                     "mean_return": returns.mean() if len(starts) else None,
                     "std_return": returns.std(ddof=0) if len(starts) else None,
                     "min_return": returns.min() if len(starts) else None,
                     "max_return": returns.max() if len(starts) else None,
                     "mean_length": starts["episode_length"].mean() if len(starts) else None})
    return pd.DataFrame(rows, columns=BEHAVIOUR_COLUMNS).sort_values("checkpoint",
                                                                     ignore_index=True)


def _number(path: str | Path) -> int:
    """The checkpoint of a store file named `buffer{N}.parquet` (for an empty file)."""
    return int(Path(path).stem.removeprefix("buffer"))


RANDOM_COLUMNS = ["game", "episodes", "mean_return", "std_return", "mean_steps"]


def random_scores(episode_files: Sequence[str | Path]) -> pd.DataFrame:
    """The uniform-random policy's raw score per game, over every test seed and episode."""
    rows = []
    for path in episode_files:
        episodes = pd.read_parquet(path)
        for game, mine in episodes.groupby("game"):
            rows.append({"game": game, "episodes": len(mine),
                         "mean_return": mine["return"].mean(),
                         "std_return": mine["return"].std(ddof=0),
                         "mean_steps": mine["steps"].mean()})
    return pd.DataFrame(rows, columns=RANDOM_COLUMNS)
