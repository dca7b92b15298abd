"""Important-state mining (method.md §3): cells whose best and worst actions differ most in return.

Over a sequence of transitions (the statistics set, in the order they were sampled), given each
transition's cell, action, clipped reward, whether it is an allowed step, whether a life was lost
and whether it may be chosen (it lies inside the training set):

1. returns: per trajectory, G_t = sum over n of gamma^n r_{t+n}, plus the life-loss penalty P when
   a life is lost within S steps ahead (see `discounted_returns`);
2. statistics per (cell, action): the mean of the returns collected by the reference's rules
   (`collect_returns`), first visit per trajectory;
3. ranking: cells with two or more actions and a positive gap between the best action's mean and
   the worst's, by gap, descending (`rank_cells`);
4. sampling: per ranked cell the first chosen-able index where the best action was taken, then the
   first where the worst was; optionally more occurrences ("all cell pairs") and a window that
   drops entries too close to earlier ones (`important_states`).

Where the reference's rules decide which states are chosen they are kept, and marked "reference:".

Arithmetic (reference, method.md §3): returns, means and gaps are float32, summed in the order and
grouping numpy 1.x uses, because the ranking is by the float32 gap and near-ties must come out
in the reference's order. The reference computes each G_t on its own as `np.sum` of the float32
products gamma^n r_{t+n} over the rest of the trajectory (gamma^n from `math.pow`, then rounded
to float32), and each mean as `np.asarray(returns).mean()` of a list of float32 returns. numpy
1.x sums a float32 array pairwise (blocks of 8 running sums up to 128 elements, halves above)
within chunks of 8,192 elements (its reduction buffer) and adds the chunks in order; the mean
is that sum divided by the count in float64, rounded to float32. `reduce_sum` reproduces this
sum exactly, compiled, whatever numpy is installed (numpy 2 no longer chunks).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

# numpy 1.x's reduction buffer: a float32 sum is pairwise within chunks of this many elements.
REDUCE_CHUNK = 8192


# Levels of halving a pairwise sum can have (n < 2^64): bounds the explicit stacks below.
_MAX_LEVELS = 64


@numba.njit(cache=True, nogil=True)
def _pairwise_block(offsets, values, first, last, lo, n):  # pragma: no cover - compiled
    """numpy's sum of a block of at most 128 elements (see `_pairwise`)."""
    if n < 8:
        total = np.float32(0.0)
        for k in range(first, last):
            total += values[k]
        return total
    sums = np.zeros(8, np.float32)
    blocked = lo + n - n % 8
    k = first
    while k < last and offsets[k] < blocked:
        sums[(offsets[k] - lo) % 8] += values[k]
        k += 1
    total = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5])
                                                           + (sums[6] + sums[7]))
    while k < last:
        total += values[k]
        k += 1
    return total


@numba.njit(cache=True, nogil=True)
def _pairwise(offsets, values, first, last, lo, n):  # pragma: no cover - compiled
    """numpy's pairwise float32 sum of the n elements at positions lo..lo+n-1 of an array that
    is zero except at `offsets[first:last]` (sorted, inside the range), holding `values`.

    Adding a zero leaves a float sum unchanged, so only the nonzero elements are visited, in
    numpy's grouping: below 8 elements one running sum; up to 128, 8 running sums (element i
    into sum i % 8) combined as ((0+1)+(2+3))+((4+5)+(6+7)), then the last n % 8 elements;
    above, the two halves (the first rounded down to a multiple of 8), each summed so.

    The halves are walked with explicit stacks, not recursion: numba's on-disk cache cannot
    link a recursive function into a kernel compiled in another process ("LLVM ERROR: Symbol
    not found ... _pairwise", issue 27), so no cached kernel here may recurse.
    """
    # Work items (first, last, lo, n, combine): combine 1 means both halves of this range are
    # summed and wait on `sums` (left below right); 0 means the range is still to be summed.
    work = np.empty((2 * _MAX_LEVELS + 1, 5), np.int64)
    sums = np.empty(_MAX_LEVELS + 2, np.float32)
    pending = 0
    work[0, 0], work[0, 1], work[0, 2], work[0, 3], work[0, 4] = first, last, lo, n, 0
    top = 1
    while top > 0:
        top -= 1
        f, l, start, size, combine = work[top, 0], work[top, 1], work[top, 2], work[top, 3], work[top, 4]
        if combine:
            pending -= 1
            sums[pending - 1] = sums[pending - 1] + sums[pending]
        elif f == l:
            sums[pending] = np.float32(0.0)
            pending += 1
        elif size <= 128:
            sums[pending] = _pairwise_block(offsets, values, f, l, start, size)
            pending += 1
        else:
            half = size // 2
            half -= half % 8
            split = f + np.searchsorted(offsets[f:l], start + half)
            # Popped in reverse: the left half first, then the right, then their sum.
            work[top, 4] = 1
            work[top + 1, 0], work[top + 1, 1], work[top + 1, 2] = split, l, start + half
            work[top + 1, 3], work[top + 1, 4] = size - half, 0
            work[top + 2, 0], work[top + 2, 1], work[top + 2, 2] = f, split, start
            work[top + 2, 3], work[top + 2, 4] = half, 0
            top += 3
    return sums[0]


@numba.njit(cache=True, nogil=True)
def _reduce_sum(offsets, values, first, last, length):  # pragma: no cover - compiled
    """numpy 1.x's float32 sum of an array of `length` elements, zero except at `offsets`: from
    0, each chunk of REDUCE_CHUNK elements summed pairwise, added in order."""
    total = np.float32(0.0)
    k = first
    for lo in range(0, length, REDUCE_CHUNK):
        n = min(REDUCE_CHUNK, length - lo)
        end = k
        while end < last and offsets[end] < lo + n:
            end += 1
        if end > k:
            total += _pairwise(offsets, values, k, end, lo, n)
        k = end
    return total


def reduce_sum(values: np.ndarray) -> np.float32:
    """The float32 sum numpy 1.x computes for `np.sum(values)` of a float32 array."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    return _reduce_sum(np.arange(len(values), dtype=np.int64), values, 0, len(values), len(values))


def reduce_mean(values: np.ndarray) -> np.float32:
    """The reference's `np.asarray(values).mean()` of float32 values: the float32 sum divided by
    the count in float64, rounded to float32."""
    return np.float32(np.float64(reduce_sum(values)) / len(values))


def discount_factors(gamma: float, length: int) -> np.ndarray:
    """Reference: gamma^n for n < length, each `math.pow` (float64) rounded to float32, cut
    where they reach 0 (all later ones are 0 too, and add nothing)."""
    factors = np.array([math.pow(gamma, n) for n in range(length)], dtype=np.float32)
    zero = np.flatnonzero(factors == 0)
    return factors[:zero[0]] if len(zero) else factors


@numba.njit(cache=True, nogil=True)
def _returns_kernel(rewards, trajectory_ends, factors, out):  # pragma: no cover - compiled
    """G_t of every row: the reference's float32 sum over the rest of its trajectory of the
    float32 products factors[n] * r_{t+n}, only the nonzero ones visited."""
    horizon = len(factors)
    offsets = np.empty(horizon, np.int64)
    terms = np.empty(horizon, np.float32)
    start = 0
    for end in trajectory_ends:
        nonzero = np.flatnonzero(rewards[start:end]) + start
        first = 0  # the first nonzero reward at or after t
        for t in range(start, end):
            while first < len(nonzero) and nonzero[first] < t:
                first += 1
            k = 0
            for p in nonzero[first:]:
                if p - t >= horizon:
                    break
                term = factors[p - t] * rewards[p]
                if term != 0:
                    offsets[k] = p - t
                    terms[k] = term
                    k += 1
            out[t] = _reduce_sum(offsets, terms, 0, k, end - t)
        start = end


def discounted_returns(rewards: np.ndarray, trajectory_ends: np.ndarray, gamma: float, *,
                       life_loss: np.ndarray | None = None, penalty: float = 0.0,
                       horizon: int = 0, offset: int = 0) -> np.ndarray:
    """G_t of each row over its trajectory, float32 as the reference computes it (see the
    module's notes), with the life-loss penalty.

    Reference rule for the penalty: P is added to G_t when a life is lost at one of the steps
    t+offset .. t+horizon-1 of the same trajectory, or when the trajectory ends within `horizon`
    steps (t + horizon >= its end). No penalty when `penalty` is 0 or `horizon` is 0 and no end
    is near. Reference: G_t + P is computed in float64 (numpy 1.x promotes a float32 scalar plus
    a Python number) and stored as float32.
    """
    rewards = np.ascontiguousarray(rewards, dtype=np.float32)
    ends = np.asarray(trajectory_ends, dtype=np.int64)
    n = len(rewards)
    out = np.zeros(n, dtype=np.float32)
    if n:
        longest = int(np.diff(ends, prepend=0).max())
        _returns_kernel(rewards, ends, discount_factors(gamma, longest), out)
    if penalty and (horizon > 0):
        hit = _life_lost_ahead(life_loss, ends, n, horizon, offset)
        out[hit] = (out[hit].astype(np.float64) + penalty).astype(np.float32)
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
    """Collected returns: per cell (dense id) its actions in the order first met, each with the
    id of its (cell, action) pair, and per pair the count and float32 mean of its returns.

    Memory is per row and per pair, never per visit: while collecting, each row records the pair
    its return went to (or none); the means are taken once at the end (`pair_means`), because
    numpy's pairwise grouping depends on the final count, so a running float32 sum cannot give
    the reference's mean beyond 128 returns.
    """

    pairs: dict[int, dict[int, int]] = field(default_factory=dict)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    means: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # Chosen-able allowed occurrences per cell, in order: (index, action).
    occurrences: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    skipped: int = 0  # allowed steps of cells first met outside the chosen-able positions
    from_disallowed: int = 0  # steps not allowed that added to a cell already a candidate

    @classmethod
    def from_returns(cls, returns: Mapping[int, Mapping[int, Sequence[float]]],
                     occurrences: Mapping[int, list[tuple[int, int]]] | None = None
                     ) -> CellStatistics:
        """Statistics from each (cell, action)'s returns, in the order they were collected."""
        pairs: dict[int, dict[int, int]] = {}
        values: list[np.ndarray] = []
        for cell, by_action in returns.items():
            pairs[cell] = {}
            for action, collected in by_action.items():
                pairs[cell][action] = len(values)
                values.append(np.asarray(collected, dtype=np.float32))
        counts = np.array([len(v) for v in values], dtype=np.int64)
        means = np.array([reduce_mean(v) for v in values], dtype=np.float32)
        return cls(pairs, counts, means, dict(occurrences or {}))

    def summary(self) -> dict[int, dict[int, tuple[float, int]]]:
        """(mean, count) per cell and action, in first-met order."""
        return {cell: {action: (float(self.means[pair]), int(self.counts[pair]))
                       for action, pair in by_action.items()}
                for cell, by_action in self.pairs.items()}


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
    `cells` are dense integer ids (see `dense_cells`); `returns` are taken as float32.
    """
    stats = CellStatistics()
    table = stats.pairs
    pair_of_row = np.full(len(cells), -1, dtype=np.int32)  # the pair each row's return went to
    num_pairs = 0
    from_disallowed: dict[int, set[int]] = {}
    seen: set[tuple[int, int]] = set()
    ends = set(int(e) for e in trajectory_ends)
    # Only steps of cells that become candidates matter, plus allowed steps (they fill `seen`).
    first_candidate = _first_index(cells, allowed & choosable)
    relevant = allowed | (first_candidate[cells] <= np.arange(len(cells)))
    boundaries = np.asarray(sorted(ends), dtype=np.int64)
    for i in np.flatnonzero(relevant | np.isin(np.arange(len(cells)) + 1, boundaries)):
        i = int(i)
        cell, action = int(cells[i]), int(actions[i])
        if relevant[i]:
            if not allowed[i]:
                if cell in table:
                    stats.from_disallowed += 1
                    actions_of = table[cell]
                    if action not in actions_of:
                        actions_of[action] = pair_of_row[i] = num_pairs
                        num_pairs += 1
                        from_disallowed.setdefault(cell, set()).add(action)
                    elif action in from_disallowed.get(cell, ()):
                        pair_of_row[i] = actions_of[action]
            else:
                if choosable[i]:
                    stats.occurrences.setdefault(cell, []).append((i, action))
                if cell not in table:
                    if choosable[i]:
                        table[cell] = {action: num_pairs}
                        pair_of_row[i] = num_pairs
                        num_pairs += 1
                    else:
                        stats.skipped += 1
                elif action not in table[cell]:
                    table[cell][action] = pair_of_row[i] = num_pairs
                    num_pairs += 1
                elif not first_visit or (cell, action) not in seen:
                    pair_of_row[i] = table[cell][action]
                seen.add((cell, action))
        if i + 1 in ends:
            seen = set()
    stats.counts, stats.means = pair_means(pair_of_row, returns, num_pairs)
    return stats


def pair_means(pair_of_row: np.ndarray, returns: np.ndarray,
               num_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the count and the reference's float32 mean of the returns of the rows that went
    to it, in row order (the order the reference appended them)."""
    rows = np.flatnonzero(pair_of_row >= 0)
    pair = pair_of_row[rows]
    order = np.argsort(pair, kind="stable")
    values = np.ascontiguousarray(np.asarray(returns, dtype=np.float32)[rows[order]])
    counts = np.bincount(pair, minlength=num_pairs).astype(np.int64)
    sums = np.zeros(num_pairs, dtype=np.float32)
    _group_sums(values, np.concatenate([[0], np.cumsum(counts)]), sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums.astype(np.float64) / counts).astype(np.float32)
    return counts, means


@numba.njit(cache=True, nogil=True)
def _group_sums(values, bounds, out):  # pragma: no cover - compiled
    for g in range(len(out)):
        n = bounds[g + 1] - bounds[g]
        out[g] = _reduce_sum(np.arange(n), values[bounds[g]:bounds[g + 1]], 0, n, n)


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
    best_mean: float  # float32 values
    worst_mean: float
    gap: float  # best_mean - worst_mean in float32, as the reference ranks


def rank_cells(stats: CellStatistics) -> list[RankedCell]:
    """Cells with >= 2 actions and a positive float32 gap, by gap descending.

    Ties (equal means, equal gaps) keep the order actions and cells were first met: the first
    action with the largest mean is best, the first with the smallest is worst.
    """
    ranked = []
    for cell, by_action in stats.pairs.items():
        if len(by_action) < 2:
            continue
        means = {action: stats.means[pair] for action, pair in by_action.items()}
        best = max(means, key=means.__getitem__)
        worst = min(means, key=means.__getitem__)
        gap = means[best] - means[worst]  # np.float32 - np.float32: float32
        if gap > 0:
            ranked.append(RankedCell(cell, best, worst, float(means[best]),
                                     float(means[worst]), float(gap)))
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
