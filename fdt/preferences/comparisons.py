"""Comparisons of two clips: the answers, the synthetic labeller, and the comparisons file.

An answer says which clip of a pair is better: "left", "right", "equal" or "cant_tell" (the
feedback pages' four buttons). The synthetic labeller (rl-teacher's synthetic mode) answers from
the clips' true clipped returns, and with probability `noise` answers at random instead (left or
right, equally likely), as a careless person would.

A comparisons file (JSON) names the clip bundle its clip ids refer to (`bundle`, the bundle's
digest): comparisons of another bundle's clips are refused, since the same ids mean other clips
there.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdt.io import write_json
from fdt.keys import canonical_json

FORMAT_VERSION = 1


class Answer(enum.StrEnum):
    LEFT = "left"
    RIGHT = "right"
    EQUAL = "equal"
    CANT_TELL = "cant_tell"


class ComparisonsError(ValueError):
    """A comparisons file that does not fit its clips, or too few comparisons to learn from."""


@dataclass(frozen=True)
class Comparison:
    left: int
    right: int
    answer: Answer
    labeller: str = ""
    time: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"left": self.left, "right": self.right, "answer": str(self.answer),
                "labeller": self.labeller, "time": self.time}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(int(data["left"]), int(data["right"]), Answer(data["answer"]),
                   str(data.get("labeller", "")), str(data.get("time", "")))


def synthetic_labeller(returns: Mapping[int, float] | Sequence[float], noise: float,
                       rng: np.random.Generator) -> Callable[[int, int], Answer]:
    """rl-teacher's synthetic labeller: the clip with the larger true return is better (equal
    returns are equal); with probability `noise`, a random left or right instead."""
    def answer(left: int, right: int) -> Answer:
        if noise > 0 and rng.random() < noise:
            return Answer.LEFT if rng.random() < 0.5 else Answer.RIGHT
        difference = float(returns[left]) - float(returns[right])
        if difference == 0:
            return Answer.EQUAL
        return Answer.LEFT if difference > 0 else Answer.RIGHT
    return answer


def random_pairs(clips: Sequence[int], count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """`count` pairs of distinct clips drawn uniformly (rl-teacher's random queries)."""
    if len(clips) < 2:
        raise ComparisonsError(f"pairs need at least 2 clips; there are {len(clips)}")
    pairs = []
    for _ in range(count):
        i, j = rng.choice(len(clips), size=2, replace=False)
        pairs.append((int(clips[i]), int(clips[j])))
    return pairs


def label_pairs(pairs: Sequence[tuple[int, int]], labeller: Callable[[int, int], Answer],
                name: str) -> list[Comparison]:
    return [Comparison(left, right, labeller(left, right), name) for left, right in pairs]


def comparisons_digest(bundle: str, comparisons: Sequence[Comparison]) -> str:
    """A digest of the comparisons (and the bundle they refer to): it keys what is learnt."""
    payload = canonical_json({"bundle": bundle, "comparisons": [c.to_dict() for c in comparisons]})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_comparisons(path: str | Path, bundle: str, comparisons: Sequence[Comparison],
                      heldout: Sequence[Comparison], **details: Any) -> str:
    """Write the training and held-out comparisons of a bundle; return their digest."""
    digest = comparisons_digest(bundle, [*comparisons, *heldout])
    write_json(path, {"format_version": FORMAT_VERSION, "bundle": bundle, "digest": digest,
                      "comparisons": [c.to_dict() for c in comparisons],
                      "heldout": [c.to_dict() for c in heldout], **details})
    return digest


def read_comparisons(path: str | Path, bundle: str,
                     clip_ids: Sequence[int]) -> tuple[list[Comparison], list[Comparison], dict[str, Any]]:
    """The training and held-out comparisons of a file, checked against the clip bundle."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ComparisonsError(f"{path}: not a readable comparisons file ({err})") from None
    if data.get("bundle") != bundle:
        raise ComparisonsError(f"{path}: comparisons of clip bundle {data.get('bundle')!r}, but the "
                               f"clips are bundle {bundle!r}: the clip ids mean other clips there")
    try:
        train = [Comparison.from_dict(c) for c in data["comparisons"]]
        heldout = [Comparison.from_dict(c) for c in data.get("heldout", [])]
    except (KeyError, TypeError, ValueError) as err:
        raise ComparisonsError(f"{path}: a comparison is malformed ({err}); expected "
                               "{left, right, answer: left|right|equal|cant_tell}") from None
    known = set(clip_ids)
    unknown = sorted({i for c in [*train, *heldout] for i in (c.left, c.right)} - known)
    if unknown:
        raise ComparisonsError(f"{path}: clips {unknown[:5]} are not in bundle {bundle} "
                               f"(it has clips 0..{len(clip_ids) - 1})")
    return train, heldout, data


def without_repeats(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """People's answers as they count: a clip against itself dropped, and of the answers one
    labeller gave to the same two clips (either side left), the first only."""
    seen: set[tuple[str, frozenset[int]]] = set()
    kept = []
    for c in comparisons:
        key = (c.labeller, frozenset((c.left, c.right)))
        if c.left != c.right and key not in seen:
            seen.add(key)
            kept.append(c)
    return kept


def check_people_answers(path: str | Path, comparisons: Sequence[Comparison]) -> None:
    """Refuse a file of people's answers holding a clip compared with itself or one labeller's
    repeated answer to the same two clips (which would count twice in the reward model)."""
    for c in comparisons:
        if c.left == c.right:
            raise ComparisonsError(f"{path}: clip {c.left} is compared with itself (labeller "
                                   f"{c.labeller!r}); a comparison is of two clips")
    kept = without_repeats(comparisons)
    if len(kept) != len(comparisons):
        repeats = len(comparisons) - len(kept)
        raise ComparisonsError(f"{path}: {repeats} repeated answer(s): the same labeller answered "
                               "the same two clips more than once; export the answers again "
                               "(the app's export keeps each labeller's first answer per pair)")


def informative(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons a reward model learns from: all but "can't tell"."""
    return [c for c in comparisons if c.answer is not Answer.CANT_TELL]


def preference_targets(comparisons: Sequence[Comparison]) -> np.ndarray:
    """Probability that the left clip is the better: 1, 0, or 0.5 for equal (rl-teacher)."""
    values = {Answer.LEFT: 1.0, Answer.RIGHT: 0.0, Answer.EQUAL: 0.5}
    return np.array([values[c.answer] for c in comparisons], dtype=np.float32)
