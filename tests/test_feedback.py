"""The FDT loss against a hand computation; feedback arrays from labels, with the budget."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from fdt.models.feedback import Feedback, FeedbackError, fdt_loss, load_feedback

# One window of 5 positions, 3 actions:
#   0: no feedback                          -> normal
#   1: positive (action 1, a* = 2)          -> normal, and -log p(1) in the feedback term
#   2: negative (action 2, a* = 1)          -> counted: not imitated, -log p(1) in the term
#   3: negative (action 0, a* = 0)          -> ignored: a normal position, not counted
#   4: negative, no a*                      -> ignored: a normal position, not counted
LOGITS = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 0.0], [0.0, 2.0, 2.0]]
ACTIONS = [0, 1, 2, 0, 1]
FEEDBACK = [-1, 1, 0, 0, 0]
BEST = [-1, 2, 1, 0, -1]


def nll(row: list[float], action: int) -> float:
    return -(row[action] - math.log(sum(math.exp(v) for v in row)))


def test_fdt_loss_equals_hand_computation() -> None:
    lam = 0.5
    normal = [nll(LOGITS[0], 0), nll(LOGITS[1], 1), nll(LOGITS[3], 0), nll(LOGITS[4], 1)]
    term = (nll(LOGITS[1], 1) + nll(LOGITS[2], 1)) / 2
    expected = sum(normal) / 4 + lam * term
    # e.g. position 2, a* = 1: -log p = log(e^0 + e^0 + e^3)
    assert nll(LOGITS[2], 1) == pytest.approx(3 + math.log(1 + 2 * math.exp(-3)), rel=1e-12)
    loss, parts = fdt_loss(torch.tensor([LOGITS]), torch.tensor([ACTIONS]),
                           torch.tensor([FEEDBACK]), torch.tensor([BEST]), lam)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert parts["feedback_positions"].item() == 2
    assert parts["normal_loss"].item() == pytest.approx(sum(normal) / 4, rel=1e-6)


def test_no_feedback_is_plain_cross_entropy() -> None:
    logits, actions = torch.tensor(LOGITS), torch.tensor(ACTIONS)
    none = torch.full((5,), -1)
    loss, parts = fdt_loss(logits, actions, none, none, lam=10.0)
    # Bit for bit, on any CPU: FDT without feedback is DT.
    assert torch.equal(loss, F.cross_entropy(logits, actions))
    assert parts["feedback_positions"].item() == 0


def test_only_counted_negatives_leave_no_imitation_term() -> None:
    """Every position a counted negative: the imitation term is 0 (not 0/0) and the gradient
    only pushes toward a*."""
    logits = torch.tensor(LOGITS[:3], requires_grad=True)
    actions, best = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    negative = torch.zeros(3, dtype=torch.long)
    loss, parts = fdt_loss(logits, actions, negative, best, lam=1.0)
    assert parts["normal_loss"].item() == 0.0
    expected = (nll(LOGITS[0], 1) + nll(LOGITS[1], 2) + nll(LOGITS[2], 0)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # d/dz of -log softmax(z)[a*] / 3 is (softmax(z) - onehot(a*)) / 3
    want = (torch.softmax(logits.detach(), -1) - F.one_hot(best, 3)) / 3
    assert torch.allclose(logits.grad, want, atol=1e-7)


def test_composition_counts() -> None:
    fb = Feedback(np.array(FEEDBACK, np.int8), np.array(BEST, np.int32))
    assert fb.composition(np.array(ACTIONS)) == {
        "feedback_states": 4, "positives": 1, "positives_best_action_share": 0.0,
        "negatives": 3, "negatives_ignored": 2, "negatives_ignored_share": pytest.approx(2 / 3)}


def write_labels(path: Path, positions: list[int], actions: list[int], feedback: list[int],
                 best: list[int]) -> Path:
    pq.write_table(pa.table({
        "order": np.arange(len(positions), dtype=np.int64), "position": np.array(positions),
        "action": np.array(actions, np.int32), "best_action": np.array(best, np.int32),
        "feedback": np.array(feedback, np.int8)}), path)
    return path


def test_budget_takes_the_first_states(tmp_path: Path) -> None:
    actions = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    path = write_labels(tmp_path / "labels.parquet", [5, 2, 7], [1, 2, 3], [1, 0, 1], [1, 0, 3])
    fb = load_feedback(path, 8, budget=2, dataset_actions=actions)
    assert fb.feedback.tolist() == [-1, -1, 0, -1, -1, 1, -1, -1]
    assert fb.best_action.tolist() == [-1, -1, 0, -1, -1, 1, -1, -1]
    assert load_feedback(path, 8, 10, actions).feedback.tolist() == [-1, -1, 0, -1, -1, 1, -1, 1]
    with pytest.raises(FeedbackError, match="position 2 has action 2, the training set has 3"):
        load_feedback(path, 8, 3, np.array([0, 1, 3, 3, 0, 1, 2, 3]))
    with pytest.raises(FeedbackError, match="training set holds 6 rows"):
        load_feedback(path, 6, 3, actions[:6])
