"""Mining arithmetic is the reference's float32 (method.md §3): returns, means, gaps and near-ties.

The reference here is a literal, slow rendering of what method.md §3 describes, on numpy: each G_t a
`np.sum` of float32 products over the rest of its trajectory, each mean `np.asarray(list).mean()`
of float32 returns, the ranking a stable sort by the float32 gap. Arrays stay below 8,192
elements, where every numpy version sums alike (numpy 1.x, the reference's, sums longer arrays in
chunks of 8,192; `test_sums_longer_than_a_chunk_are_numpy_1_chunks` covers that).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fdt.mining.ranking import collect_returns, discounted_returns, rank_cells


def reference_returns(rewards: np.ndarray, ends: np.ndarray, gamma: float, life_loss: np.ndarray,
                      penalty: float, horizon: int, offset: int) -> np.ndarray:
    rewards = rewards.astype(np.float32)
    out = np.zeros(len(rewards), dtype=np.float32)
    start = 0
    for end in ends:
        for t in range(start, end):
            rest = rewards[t:end]
            factors = np.array([math.pow(gamma, n) for n in range(len(rest))], dtype=np.float32)
            out[t] = np.sum(factors * rest)
            if len(rest) <= horizon or np.any(life_loss[t:end][offset:horizon]):
                out[t] = np.float64(out[t]) + penalty
        start = end
    return out


def reference_ranking(cells: list[int], actions: list[int],
                      returns: np.ndarray) -> list[tuple[int, int, int, float]]:
    """Every row its own trajectory, allowed and choosable: every return is collected."""
    collected: dict[int, dict[int, list[np.float32]]] = {}
    for cell, action, value in zip(cells, actions, returns.astype(np.float32)):
        collected.setdefault(cell, {}).setdefault(action, []).append(value)
    gaps = {}
    for cell, by_action in collected.items():
        means = {action: np.asarray(values).mean() for action, values in by_action.items()}
        if len(means) < 2:
            continue
        best = max(means, key=means.get)
        worst = min(means, key=means.get)
        if means[best] - means[worst] > 0:
            gaps[cell] = (best, worst, means[best] - means[worst])
    ranked = sorted(gaps.items(), key=lambda item: item[1][2], reverse=True)
    return [(cell, best, worst, float(gap)) for cell, (best, worst, gap) in ranked]


def ranking(cells: list[int], actions: list[int],
            returns: np.ndarray) -> list[tuple[int, int, int, float]]:
    n = len(cells)
    stats = collect_returns(np.array(cells), np.array(actions), returns, np.ones(n, bool),
                            np.ones(n, bool), np.arange(1, n + 1))
    return [(r.cell, r.best_action, r.worst_action, r.gap) for r in rank_cells(stats)]


ULP = 2.0 ** -23  # float32's spacing just above 1


def test_a_float32_tie_keeps_first_met_order() -> None:
    # Cell 0, met first: means 1 and 0, gap 1. Cell 1: action 0 took 1 and 1 + 2^-23, whose
    # float32 sum 2 + 2^-23 rounds to 2 (ties to even): mean 1, gap 1, a tie; in float64 its
    # mean is 1 + 2^-24 and cell 1 would come first.
    cells = [0, 0, 1, 1, 1]
    actions = [0, 1, 0, 0, 1]
    returns = np.array([1, 0, 1, 1 + ULP, 0], dtype=np.float32)
    assert reference_ranking(cells, actions, returns) == [(0, 0, 1, 1.0), (1, 0, 1, 1.0)]
    assert ranking(cells, actions, returns) == [(0, 0, 1, 1.0), (1, 0, 1, 1.0)]


def test_ranking_equals_the_references_on_near_ties() -> None:
    """Many lengths (pairwise grouping changes at 8 and 128 values) of returns one float32 ulp
    apart, so that float32 means often tie where float64 means differ, and the other way."""
    rng = np.random.default_rng(13)
    values = np.array([1, 1 + ULP, 1 + 2 * ULP, 1 - ULP / 2, 3, 3 + 2 * ULP, 0.1, 0.7],
                      dtype=np.float32)
    for trial in range(60):
        cells: list[int] = []
        actions: list[int] = []
        returns: list[np.float32] = []
        for cell in range(8):
            for action in range(int(rng.integers(2, 4))):
                count = int(rng.choice([1, 2, 3, 7, 8, 9, 17, 129, 300]))
                pick = rng.choice(len(values), size=count, p=[.3, .2, .1, .1, .1, .1, .05, .05])
                cells += [cell] * count
                actions += [action] * count
                returns += list(values[pick])
        order = rng.permutation(len(cells))
        cells = [cells[i] for i in order]
        actions = [actions[i] for i in order]
        shuffled = np.array([returns[i] for i in order], dtype=np.float32)
        got = ranking(cells, actions, shuffled)
        expected = reference_ranking(cells, actions, shuffled)
        assert [r[:3] for r in got] == [r[:3] for r in expected], f"trial {trial}: order"
        assert got == expected, f"trial {trial}: gaps"


@pytest.mark.parametrize("gamma, penalty, horizon, offset", [
    (0.9, 0, 0, 0), (0.9, -14, 10, 0), (0.95, -5, 12, 6), (0.99, -200, 15, 9), (0.99, -0.3, 4, 0)])
def test_returns_are_the_references_float32_sums(gamma: float, penalty: float, horizon: int,
                                                 offset: int) -> None:
    rng = np.random.default_rng(7)
    ends = np.cumsum([1, 3, 9, 40, 300, 1500])
    n = int(ends[-1])
    rewards = np.where(rng.random(n) < 0.08, rng.choice([-1.0, 1.0], n), 0.0).astype(np.float32)
    life_loss = rng.random(n) < 0.02
    got = discounted_returns(rewards, ends, gamma, life_loss=life_loss, penalty=penalty,
                             horizon=horizon, offset=offset)
    expected = reference_returns(rewards, ends, gamma, life_loss, penalty, horizon, offset)
    assert np.array_equal(got.astype(np.float32), expected)  # bit for bit
    assert got.dtype == np.float32


def test_sums_longer_than_a_chunk_are_numpy_1_chunks() -> None:
    from fdt.mining.ranking import reduce_mean, reduce_sum

    values = np.zeros(8193, dtype=np.float32)
    values[[0, 8191, 8192]] = [2.0 ** 24, 1, 1]
    # numpy 1.x: the first 8,192 sum to 2^24 + 1 -> 2^24, then + 1 -> 2^24. One pairwise sum
    # over all (numpy 2) would give 2^24 + 2.
    assert reduce_sum(values) == 2.0 ** 24
    assert reduce_mean(values) == np.float32(2.0 ** 24 / 8193)
    rng = np.random.default_rng(3)
    for n in [0, 1, 7, 8, 9, 127, 128, 129, 136, 1000, 8192]:
        short = (rng.standard_normal(n) * np.exp(4 * rng.standard_normal(n))).astype(np.float32)
        assert reduce_sum(short) == np.add.reduce(short)


_PAIR_MEANS_FIRST = ("import numpy as np\n"
                     "from fdt.mining.ranking import pair_means\n"
                     "print(pair_means(np.array([0, 1, 0, -1, 1]), np.arange(5, dtype=np.float32), 2)[1])")
_RETURNS_FIRST = ("import numpy as np\n"
                  "from fdt.mining.ranking import discounted_returns\n"
                  "r = np.zeros(100, np.float32); r[[3, 60, 99]] = 1\n"
                  "print(discounted_returns(r, np.array([50, 100]), 0.99)[0])")


@pytest.mark.parametrize("first, second", [(_PAIR_MEANS_FIRST, _RETURNS_FIRST),
                                           (_RETURNS_FIRST, _PAIR_MEANS_FIRST)])
def test_cached_kernels_load_in_any_order_of_processes(tmp_path, first: str, second: str) -> None:
    """Issue 27: a process that cached `pair_means`'s kernels first made the next process's
    `discounted_returns` abort in LLVM (a recursive kernel cannot be linked from numba's cache).
    Two fresh processes share one fresh cache directory, in both orders; each must finish and
    print what the same code prints uncached."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    outputs = []
    for code in (first, second, first, second):  # the second round loads everything cached
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs.append(run.stdout.strip())
    assert outputs[:2] == outputs[2:]
    by_code = dict(zip((first, second), outputs[:2]))
    assert by_code[_PAIR_MEANS_FIRST] == "[1.  2.5]"
    # G_0 of the first trajectory: one reward at step 3, 0.99^3 as float32.
    assert float(by_code[_RETURNS_FIRST]) == pytest.approx(float(np.float32(0.99 ** 3)), rel=1e-6)


def test_no_cached_kernel_recurses() -> None:
    """numba's on-disk cache and recursion do not mix (see above): no function compiled with
    cache=True anywhere in fdt/ calls itself."""
    import ast
    from pathlib import Path

    import fdt

    cached = 0
    for path in Path(fdt.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            if not any(isinstance(d, ast.Call) and any(k.arg == "cache" and
                                                       getattr(k.value, "value", False) is True
                                                       for k in d.keywords)
                       for d in node.decorator_list):
                continue
            cached += 1
            calls = {c.func.id for c in ast.walk(node)
                     if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
            assert node.name not in calls, f"{path}: cached kernel {node.name} calls itself"
    assert cached >= 8  # the mining kernels (cells and ranking) were seen
