"""Important-state mining (SPEC §3): cells whose best and worst actions differ most in return.

Over a sequence of transitions (the statistics set, in the order they were sampled), given each
transition's cell, action, clipped reward, whether it is an allowed step, whether a life was lost
and whether it may be chosen (it lies inside the training set):

1. returns: per trajectory, in one backward pass, the discounted return G_t = r_t + gamma G_{t+1},
   plus the life-loss penalty P when a life is lost within S steps ahead (see `discounted_returns`);
2. statistics per (cell, action): the mean of the returns collected by the reference's rules
   (`collect_returns`), first visit per trajectory;
3. ranking: cells with two or more actions and a positive gap between the best action's mean and
   the worst's, by gap, descending (`rank_cells`);
4. sampling: per ranked cell the first chosen-able index where the best action was taken, then the
   first where the worst was; optionally more occurrences ("all cell pairs") and a window that
   drops entries too close to earlier ones (`important_states`).

Where the reference's rules decide which states are chosen they are kept, and marked "reference:".
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Reference: life loss is looked for from this many steps ahead (its detectors lag in these games).
LIFE_LOSS_OFFSET = {"Pong": 6, "Seaquest": 9}


def discounted_returns(rewards: np.ndarray, trajectory_ends: np.ndarray, gamma: float, *,
                       life_loss: np.ndarray | None = None, penalty: float = 0.0,
                       horizon: int = 0, offset: int = 0) -> np.ndarray:
    """G_t over each trajectory in one backward pass, with the life-loss penalty.

    Reference rule for the penalty: P is added to G_t when a life is lost at one of the steps
    t+offset .. t+horizon-1 of the same trajectory, or when the trajectory ends within `horizon`
    steps (t + horizon >= its end). No penalty when `penalty` is 0 or `horizon` is 0 and no end
    is near.
    """
    n = len(rewards)
    out = np.empty(n, dtype=np.float64)
    start = 0
    for end in trajectory_ends:
        running = 0.0
        for t in range(end - 1, start - 1, -1):
            running = float(rewards[t]) + gamma * running
            out[t] = running
        start = end
    if penalty and (horizon > 0):
        out += penalty * _life_lost_ahead(life_loss, trajectory_ends, n, horizon, offset)
    return out


def _life_lost_ahead(life_loss: np.ndarray | None, trajectory_ends: np.ndarray, n: int,
                     horizon: int, offset: int) -> np.ndarray:
    """Per step: a life is lost in [t+offset, t+horizon) within the trajectory, or it ends
    within `horizon` steps."""
    ends = np.asarray(trajectory_ends)
    t = np.arange(n)
    end_of = ends[np.searchsorted(ends, t, side="right")]
    near_end = t + horizon >= end_of
    if life_loss is None or offset >= horizon:
        return near_end
    # Count of life losses before each index, per whole sequence; windows never pass an end
    # because a window reaching the end is already `near_end`.
    before = np.concatenate([[0], np.cumsum(np.asarray(life_loss, dtype=np.int64))])
    lo = np.minimum(t + offset, end_of)
    hi = np.minimum(t + horizon, end_of)
    return near_end | (before[hi] - before[lo] > 0)


@dataclass
class CellStatistics:
    """Collected returns: per cell (dense id) its actions, in the order first met, each with
    [sum, count] of its returns (memory per (cell, action), not per transition)."""

    returns: dict[int, dict[int, list[float]]] = field(default_factory=dict)
    # Chosen-able allowed occurrences per cell, in order: (index, action).
    occurrences: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    skipped: int = 0  # allowed steps of cells first met outside the chosen-able positions
    from_disallowed: int = 0  # steps not allowed that added to a cell already a candidate


def collect_returns(cells: np.ndarray, actions: np.ndarray, returns: np.ndarray,
                    allowed: np.ndarray, choosable: np.ndarray, trajectory_ends: np.ndarray, *,
                    first_visit: bool = True) -> CellStatistics:
    """Gather returns per (cell, action) by the reference's rules, in sequence order.

    - A cell becomes a candidate at its first allowed step that may be chosen; allowed steps of a
      cell not yet a candidate are skipped (and counted).
    - Allowed steps of a candidate add their return, once per (cell, action) per trajectory when
      `first_visit` (an action new to the cell is always added).
    - Reference: a step that is not allowed still adds to a candidate cell, for an action the cell
      does not have yet or one that was first added by such a step (and then on every visit).
    `cells` are dense integer ids (see `dense_cells`).
    """
    stats = CellStatistics()
    table = stats.returns
    from_disallowed: dict[int, set[int]] = {}
    seen: set[tuple[int, int]] = set()
    ends = set(int(e) for e in trajectory_ends)
    # Only steps of cells that become candidates matter, plus allowed steps (they fill `seen`).
    first_candidate = _first_index(cells, allowed & choosable)
    relevant = allowed | (first_candidate[cells] <= np.arange(len(cells)))
    boundaries = np.asarray(sorted(ends), dtype=np.int64)
    for i in np.flatnonzero(relevant | np.isin(np.arange(len(cells)) + 1, boundaries)):
        i = int(i)
        cell, action, value = int(cells[i]), int(actions[i]), float(returns[i])
        if relevant[i]:
            if not allowed[i]:
                if cell in table:
                    stats.from_disallowed += 1
                    actions_of = table[cell]
                    if action not in actions_of:
                        actions_of[action] = [value, 1]
                        from_disallowed.setdefault(cell, set()).add(action)
                    elif action in from_disallowed.get(cell, ()):
                        _add(actions_of[action], value)
            else:
                if choosable[i]:
                    stats.occurrences.setdefault(cell, []).append((i, action))
                if cell not in table:
                    if choosable[i]:
                        table[cell] = {action: [value, 1]}
                    else:
                        stats.skipped += 1
                elif action not in table[cell]:
                    table[cell][action] = [value, 1]
                elif not first_visit or (cell, action) not in seen:
                    _add(table[cell][action], value)
                seen.add((cell, action))
        if i + 1 in ends:
            seen = set()
    return stats


def _add(total: list[float], value: float) -> None:
    total[0] += value
    total[1] += 1


def _first_index(cells: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per dense cell id, the first index where `mask` holds (len(cells) where it never does)."""
    first = np.full(int(cells.max()) + 1 if len(cells) else 0, len(cells), dtype=np.int64)
    where = np.flatnonzero(mask)
    np.minimum.at(first, cells[where], where)
    return first


def dense_cells(digests: np.ndarray) -> np.ndarray:
    """(n, 2) uint64 digests -> dense int ids (equal digests, equal ids)."""
    _, inverse = np.unique(digests, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class RankedCell:
    cell: int
    best_action: int
    worst_action: int
    best_mean: float
    worst_mean: float

    @property
    def gap(self) -> float:
        return self.best_mean - self.worst_mean


def rank_cells(stats: CellStatistics) -> list[RankedCell]:
    """Cells with >= 2 actions and a positive gap, by gap descending.

    Ties (equal means, equal gaps) keep the order actions and cells were first met: the first
    action with the largest mean is best, the first with the smallest is worst.
    """
    ranked = []
    for cell, by_action in stats.returns.items():
        if len(by_action) < 2:
            continue
        means = {action: total / count for action, (total, count) in by_action.items()}
        best = max(means, key=means.__getitem__)
        worst = min(means, key=means.__getitem__)
        if means[best] - means[worst] > 0:
            ranked.append(RankedCell(cell, best, worst, means[best], means[worst]))
    return sorted(ranked, key=lambda r: r.gap, reverse=True)


@dataclass(frozen=True)
class ImportantState:
    index: int  # position in the statistics sequence
    rank: int  # rank of its cell, from 0
    action: int  # the action taken there in the data
    kind: str  # "best", "worst", "first" (neither was taken where it may be chosen) or "extra"


def important_states(ranked: Sequence[RankedCell], stats: CellStatistics, *,
                     extra_per_cell: int = 0, window: int = 0) -> tuple[list[ImportantState], int]:
    """The ordered list of important states, and how many the window dropped.

    Default: per ranked cell, the first occurrence where its best action was taken, then the first
    where its worst was; if neither, its first occurrence. With `extra_per_cell` n > 0 (all cell
    pairs), more occurrences of the cell follow, in order; reference: its check lets n + 1 through.
    With `window` w > 0, an entry is dropped when an earlier entry (dropped or not) lies within w
    positions of it.
    """
    chosen: list[ImportantState] = []
    for rank, cell in enumerate(ranked):
        occurrences = stats.occurrences.get(cell.cell, [])
        picked: list[int] = []
        for wanted, kind in ((cell.best_action, "best"), (cell.worst_action, "worst")):
            for index, action in occurrences:
                if action == wanted:
                    chosen.append(ImportantState(index, rank, action, kind))
                    picked.append(index)
                    break
        if not picked and occurrences:
            index, action = occurrences[0]
            chosen.append(ImportantState(index, rank, action, "first"))
            picked.append(index)
        if extra_per_cell > 0:
            initial = len(picked)
            for index, action in occurrences:
                if len(picked) - initial > extra_per_cell:
                    break
                if index in picked:
                    continue
                chosen.append(ImportantState(index, rank, action, "extra"))
                picked.append(index)
    if window <= 0:
        return chosen, 0
    kept: list[ImportantState] = []
    earlier: list[int] = []  # every earlier entry's index, sorted
    for state in chosen:
        at = bisect.bisect_left(earlier, state.index - window)
        near = at < len(earlier) and earlier[at] <= state.index + window
        if not near:
            kept.append(state)
        bisect.insort(earlier, state.index)
    return kept, len(chosen) - len(kept)
