"""Feedback for FDT: per-position labels from the oracle's verdicts, and the feedback loss (method.md §5).

Per training-set position, f is -1 (no feedback), 0 (negative: the oracle disagrees with the
dataset action) or 1 (positive: it agrees), and a* is the best action of the state's cell (from
mining; -1 where none). A budget B gives feedback to the first B important states in mining order.

The loss on a batch of windows:
- a negative whose a* exists and differs from the dataset action is "counted": its dataset action
  is not imitated, and it adds -log pi(a*) to the feedback term;
- every other position (no feedback, positives, and the "ignored" negatives whose dataset action
  already is a*, or whose cell has no a*) is a normal position: mean cross-entropy on the dataset
  action;
- positives add -log pi(dataset action) to the feedback term;
- loss = mean normal cross-entropy + lambda * R / N, where R sums the feedback terms and N counts
  positives and counted negatives (no term when N = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

NONE, NEGATIVE, POSITIVE = -1, 0, 1
IGNORED = -100  # cross-entropy's default ignore_index, so the DT call and ours are one op
LABEL_COLUMNS = ("order", "position", "action", "best_action", "feedback")


class FeedbackError(ValueError):
    pass


@dataclass(frozen=True)
class Feedback:
    """Per-position feedback over a training set of n rows."""

    feedback: np.ndarray  # (n,) int8 in {-1, 0, 1}
    best_action: np.ndarray  # (n,) int32, -1 where the cell has none

    def composition(self, actions: np.ndarray) -> dict[str, Any]:
        """Table 10 of the appendix: positives, share of them already the best action,
        negatives, and the share of negatives ignored (dataset action is a*, or no a*)."""
        positive = self.feedback == POSITIVE
        negative = self.feedback == NEGATIVE
        aligned = positive & (actions == self.best_action)
        ignored = negative & ((self.best_action < 0) | (actions == self.best_action))
        return {
            "feedback_states": int(positive.sum() + negative.sum()),
            "positives": int(positive.sum()),
            "positives_best_action_share": _share(aligned.sum(), positive.sum()),
            "negatives": int(negative.sum()),
            "negatives_ignored": int(ignored.sum()),
            "negatives_ignored_share": _share(ignored.sum(), negative.sum()),
        }


def _share(part: int, whole: int) -> float | None:
    return float(part) / float(whole) if whole else None


def load_feedback(labels_path: str | Path, transitions: int, budget: int,
                  dataset_actions: np.ndarray) -> Feedback:
    """Feedback for the first `budget` labelled states of `labels.parquet`, by training-set
    position; checks that each label's dataset action is the training set's."""
    table = pq.read_table(labels_path, columns=list(LABEL_COLUMNS)).sort_by("order")
    rows = table.slice(0, budget)
    position = rows["position"].to_numpy().astype(np.int64)
    if len(position) and (position.min() < 0 or position.max() >= transitions):
        raise FeedbackError(f"{labels_path}: positions up to {int(position.max())}, but the "
                            f"training set holds {transitions} rows (labels of another training "
                            "set?)")
    action = rows["action"].to_numpy()
    differs = np.flatnonzero(dataset_actions[position] != action)
    if len(differs):
        k = int(differs[0])
        raise FeedbackError(f"{labels_path}: state {k} at position {int(position[k])} has action "
                            f"{int(action[k])}, the training set has "
                            f"{int(dataset_actions[position[k]])} (labels of another training set?)")
    if len(np.unique(position)) != len(position):
        raise FeedbackError(f"{labels_path}: a position is labelled twice")
    feedback = np.full(transitions, NONE, dtype=np.int8)
    best = np.full(transitions, -1, dtype=np.int32)
    feedback[position] = rows["feedback"].to_numpy().astype(np.int8)
    best[position] = rows["best_action"].to_numpy().astype(np.int32)
    return Feedback(feedback, best)


def fdt_loss(logits: torch.Tensor, actions: torch.Tensor, feedback: torch.Tensor,
             best_action: torch.Tensor, lam: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The FDT loss on logits (..., A) with per-position actions, feedback and a* (same shape)."""
    logits = logits.float().reshape(-1, logits.shape[-1])
    actions, feedback, best = actions.reshape(-1), feedback.reshape(-1), best_action.reshape(-1)
    counted_negative = (feedback == NEGATIVE) & (best >= 0) & (best != actions)
    positive = feedback == POSITIVE
    # Counted negatives leave the imitation term through cross-entropy's own ignore_index, so
    # that without them this is DT's loss bit for bit (a masked sum over a count rounds
    # differently on some CPUs); where every position is one, the term is 0, not 0/0.
    imitated = actions.masked_fill(counted_negative, IGNORED)
    normal_loss = torch.where(counted_negative.all(), 0.0,
                              F.cross_entropy(logits, imitated, ignore_index=IGNORED))
    ce = F.cross_entropy(logits, actions, reduction="none")
    ce_best = F.cross_entropy(logits, best.clamp(min=0), reduction="none")
    extra = (ce * positive).sum() + (ce_best * counted_negative).sum()
    count = positive.sum() + counted_negative.sum()
    feedback_term = extra / count.clamp(min=1)
    loss = normal_loss + lam * feedback_term
    return loss, {"normal_loss": normal_loss.detach(), "feedback_loss": feedback_term.detach(),
                  "feedback_positions": count.detach()}
