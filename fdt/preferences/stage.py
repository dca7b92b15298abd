"""The preference stages' work: make (or import) the comparisons, then learn the reward model.

Comparisons come from the synthetic labeller (rl-teacher's synthetic mode) or from a file the
feedback app exported. In tree mode the training clips are sorted into a sort tree one after
another until the comparisons reach the budget; in pairs mode `budget` random pairs are asked.
The held-out clips are only ever compared among themselves (`heldout_comparisons` pairs), so
the held-out accuracy measures clips the model never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdt.dataset.training_set import TrainingSet
from fdt.io import read_json, write_json
from fdt.preferences.clips import ClipBundle, clip_states
from fdt.preferences.comparisons import (
    Answer,
    Comparison,
    ComparisonsError,
    check_people_answers,
    informative,
    label_pairs,
    preference_targets,
    random_pairs,
    read_comparisons,
    synthetic_labeller,
    write_comparisons,
)
from fdt.preferences.reward_model import (
    RewardParams,
    TrainingData,
    ordinal_targets,
    pair_accuracy,
    predicted_clip_returns,
    rank_accuracy,
    save_reward_model,
    train_reward_model,
)
from fdt.preferences.tree import Placement, SortTree, predicted_start, sort_clips
from fdt.settings import defaults

log = logging.getLogger(__name__)

SYNTHETIC_LABELLER = "synthetic"


_PREFERENCES = defaults("preferences")  # the schema's, the one place they live


@dataclass(frozen=True)
class ComparisonParams:
    seed: int
    source: str = _PREFERENCES["source"]  # synthetic | file
    mode: str = _PREFERENCES["mode"]  # tree | pairs
    budget: int = _PREFERENCES["budget"]
    noise: float = _PREFERENCES["noise"]  # synthetic only
    heldout_comparisons: int = _PREFERENCES["heldout_comparisons"]  # synthetic only
    cant_tell: str = _PREFERENCES["cant_tell"]  # tree mode: equal (rl-teacher-atari) | set_aside
    presort_every: int | None = _PREFERENCES["presort_every"]  # synthetic tree mode; None: root
    file: str | None = None


# A reward model fitted to a sort tree: each clip's predicted return.
Predict = Callable[[SortTree], Mapping[int, float]]


def sort_presorted(order: Sequence[int], labeller: Callable[[int, int], Answer], budget: int,
                   name: str, cant_tell: str, every: int,
                   predict: Predict) -> tuple[SortTree, list[Placement]]:
    """Insert clips in turn until the comparisons reach `budget`; the first `every` from the
    root, then each from where the latest fit of `predict` (refitted every `every` insertions)
    places it. A fit the tree cannot feed yet (no informative answer) keeps the last one."""
    tree = SortTree(cant_tell)
    placements: list[Placement] = []
    predicted: Mapping[int, float] | None = None
    for count, clip in enumerate(order):
        if len(tree.comparisons) >= budget:
            break
        if count and count % every == 0:
            try:
                predicted = predict(tree)
            except ComparisonsError as err:
                log.info("pre-sorting: no refit after %d clips (%s)", count, err)
        at = predicted_start(tree, predicted, clip) if predicted is not None else None
        placements.append(tree.insert(clip, labeller, name, at))
    return tree, placements


def reward_predictor(bundle: ClipBundle, states: np.ndarray, actions: np.ndarray,
                     num_actions: int, params: RewardParams, device: torch.device) -> Predict:
    """The stage's reward model (same loss and settings) fitted to a tree's answers so far."""
    def predict(tree: SortTree) -> dict[int, float]:
        data = reward_training_data(bundle, states, actions, tree.comparisons, tree, params.loss,
                                    1, "pre-sorting")
        net, _ = train_reward_model(data, params, num_actions, device, progress=False)
        returns = predicted_clip_returns(net, states, actions, device)
        return {clip_id: float(value) for clip_id, value in zip(bundle.ids, returns)}
    return predict


def make_comparisons(bundle: ClipBundle, params: ComparisonParams, out_dir: str | Path,
                     predict: Predict | None = None) -> dict[str, Any]:
    """Write `comparisons.json` (and `tree.json` in tree mode) to `out_dir`; return a summary.
    `predict` is the reward model pre-sorting refits (needed with `presort_every`)."""
    out_dir = Path(out_dir)
    tree: SortTree | None = None
    if params.source == "synthetic":
        rng = np.random.default_rng(params.seed)
        labeller = synthetic_labeller(bundle.returns, params.noise, rng)
        order = [int(i) for i in rng.permutation(bundle.training_ids)]
        if params.mode == "tree":
            if params.presort_every is None:
                tree, placements = sort_clips(order, labeller, params.budget, SYNTHETIC_LABELLER,
                                              params.cant_tell)
            elif predict is None:
                raise ValueError("preferences.presort_every needs the reward model to pre-sort with")
            else:
                tree, placements = sort_presorted(order, labeller, params.budget, SYNTHETIC_LABELLER,
                                                  params.cant_tell, params.presort_every, predict)
            for placement in placements:
                log.info(placement.describe())
            train = list(tree.comparisons)
        else:
            train = label_pairs(random_pairs(order, params.budget, rng), labeller, SYNTHETIC_LABELLER)
        heldout = label_pairs(random_pairs(list(bundle.heldout), params.heldout_comparisons, rng),
                              labeller, SYNTHETIC_LABELLER) if len(bundle.heldout) >= 2 else []
        dropped = 0
    else:
        assert params.file is not None
        train, heldout, dropped = split_imported(params.file, bundle)
        train = train[:params.budget]
        if params.mode == "tree":
            tree = replay_tree(train, params.cant_tell)
    summary: dict[str, Any] = {"comparisons": len(train), "heldout": len(heldout),
                               "informative": len(informative(train)),
                               "answers": _answer_counts(train), "dropped_mixed": dropped}
    if tree is not None:
        contradictions = tree.contradictions()
        ordinals = tree.ordinals()
        returns = dict(zip(bundle.ids, bundle.returns))
        placed = tree.clip_count + len(tree.set_aside)
        summary.update(tree_size=tree.size, tree_depth=tree.depth(), sorted_clips=tree.clip_count,
                       comparisons_per_clip=len(train) / placed if placed else float("nan"),
                       set_aside=len(tree.set_aside), contradictions=len(contradictions),
                       # how well the tree's order follows the true returns (1: exactly)
                       true_order_accuracy=rank_accuracy(list(ordinals.values()),
                                                         [returns[c] for c in ordinals]))
        log.info("sort tree: %d clips in %d nodes, depth %d, %d set aside, after %d comparisons; "
                 "%d answers disagree with the final order (a noisy labeller's cycles)",
                 tree.clip_count, tree.size, tree.depth(), len(tree.set_aside), len(train),
                 len(contradictions))
        write_json(out_dir / "tree.json", tree.to_dict())
    summary["digest"] = write_comparisons(out_dir / "comparisons.json", bundle.digest, train,
                                          heldout, summary=summary)
    return summary


def split_imported(path: str | Path, bundle: ClipBundle) -> tuple[list[Comparison], list[Comparison], int]:
    """An exported file's comparisons, split by the bundle's held-out clips: both held out ->
    held out, both training clips -> training, one of each -> dropped (counted)."""
    train, heldout, _ = read_comparisons(path, bundle.digest, bundle.ids)
    check_people_answers(path, [*train, *heldout])
    held = set(bundle.heldout)
    kept_train, kept_heldout, dropped = [], [], 0
    for c in [*train, *heldout]:
        inside = (c.left in held) + (c.right in held)
        if inside == 0:
            kept_train.append(c)
        elif inside == 2:
            kept_heldout.append(c)
        else:
            dropped += 1
    return kept_train, kept_heldout, dropped


def replay_tree(comparisons: Sequence[Comparison], cant_tell: str = "equal") -> SortTree:
    """Rebuild a sort tree from the answers recorded while it was built (the app's export),
    "can't tell" treated as `cant_tell` says (fdt.preferences.tree).

    Clips are inserted in the order they first appear as the new (right) clip, after the first
    comparison's left clip, the root; a clip whose insertion the comparisons do not complete
    (a budget cut in the middle) is left out, and said so."""
    if not comparisons:
        return SortTree(cant_tell)
    answers = {(c.left, c.right): c for c in comparisons}
    order = [comparisons[0].left]
    for c in comparisons:
        if c.right not in order:
            order.append(c.right)
    tree = SortTree(cant_tell)
    for clip in order:
        insertion = tree.start(clip)
        recorded = len(tree.comparisons)
        while insertion.placement is None:
            found = answers.get((insertion.left_clip, clip))
            if found is None:
                log.info("clip %d left out of the sort tree: no answer against clip %d",
                         clip, insertion.left_clip)
                del tree.comparisons[recorded:]
                break
            insertion.answer(found.answer, found.labeller, found.time)
    return tree


def _answer_counts(comparisons: Sequence[Comparison]) -> dict[str, int]:
    return {str(a): sum(c.answer is a for c in comparisons) for a in Answer}


def reward_training_data(bundle: ClipBundle, states: np.ndarray, actions: np.ndarray,
                         comparisons: Sequence[Comparison], tree: SortTree | None, loss: str,
                         min_comparisons: int, where: str) -> TrainingData:
    """The pairs and preference targets (bradley_terry) or clips and ordinal targets (ordinal)."""
    usable = informative(comparisons)
    if len(usable) < min_comparisons:
        raise ComparisonsError(
            f"{where}: {len(usable)} informative comparisons (of {len(comparisons)}; \"can't "
            f"tell\" answers teach nothing), fewer than preferences.min_comparisons = "
            f"{min_comparisons}: label more clips, raise the budget or lower the minimum")
    position = {clip_id: i for i, clip_id in enumerate(bundle.ids)}
    if loss == "bradley_terry":
        pairs = np.array([[position[c.left], position[c.right]] for c in usable], dtype=np.int64)
        return TrainingData(states, actions, pairs, preference_targets(usable))
    if tree is None:
        raise ComparisonsError(f"{where}: the ordinal loss regresses on sort-tree order, but these "
                               "comparisons were made in pairs mode (use preferences.mode: tree)")
    ordinals = tree.ordinals()
    clips = np.array([position[c] for c in ordinals], dtype=np.int64)
    length = bundle.clips[0].length
    targets = ordinal_targets(list(ordinals.values()), tree.size, std=float(length))
    return TrainingData(states, actions, clips, targets)


def learn_reward(data: TrainingSet, bundle: ClipBundle, comparisons_dir: str | Path,
                 params: RewardParams, min_comparisons: int, out_path: str | Path,
                 device: torch.device, progress: bool = True) -> dict[str, Any]:
    """Train the reward model on the comparisons, score it on the held-out clips, save it."""
    comparisons_dir = Path(comparisons_dir)
    train, heldout, _ = read_comparisons(comparisons_dir / "comparisons.json", bundle.digest,
                                         bundle.ids)
    tree_path = comparisons_dir / "tree.json"
    tree = SortTree.from_dict(read_json(tree_path)) if tree_path.is_file() else None
    states, actions = clip_states(data, bundle.clips)
    training = reward_training_data(bundle, states, actions, train, tree, params.loss,
                                    min_comparisons, str(comparisons_dir / "comparisons.json"))
    net, fit = train_reward_model(training, params, data.num_actions, device, progress)
    predicted = predicted_clip_returns(net, states, actions, device)
    metrics = {**fit, "loss": params.loss, "ensemble": params.ensemble, "comparisons": len(train),
               **held_out_scores(bundle, predicted, heldout)}
    save_reward_model(out_path, net, params, {"bundle": bundle.digest})
    return metrics


def held_out_scores(bundle: ClipBundle, predicted: np.ndarray,
                    heldout: Sequence[Comparison]) -> dict[str, Any]:
    """Accuracy on the held-out comparisons (strict answers) and on the held-out clips' true
    order, with the training clips' rank accuracy beside them."""
    position = {clip_id: i for i, clip_id in enumerate(bundle.ids)}
    strict = [c for c in heldout if c.answer in (Answer.LEFT, Answer.RIGHT)]
    pairs = np.array([[position[c.left], position[c.right]] for c in strict],
                     dtype=np.int64).reshape(-1, 2)
    better_left = np.array([c.answer is Answer.LEFT for c in strict], dtype=bool)
    returns = np.asarray(bundle.returns)
    held = [position[i] for i in bundle.heldout]
    seen = [position[i] for i in bundle.training_ids]
    return {"heldout_accuracy": pair_accuracy(predicted, pairs, better_left),
            "heldout_strict_comparisons": len(strict),
            "heldout_rank_accuracy": rank_accuracy(predicted[held], returns[held]),
            "training_rank_accuracy": rank_accuracy(predicted[seen], returns[seen])}
