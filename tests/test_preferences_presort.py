"""Pre-sorting in the sort tree (issue 29, item 13): a clip starts where a reward model's
prediction places it, checks the bound of that subtree, and lands where an insertion from the
root would put it; and the two ways to treat "can't tell" (item 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdt.preferences.comparisons import Answer, Comparison, ComparisonsError, synthetic_labeller
from fdt.preferences.stage import ComparisonParams, make_comparisons, replay_tree, sort_presorted
from fdt.preferences.tree import SortTree, SortTreeError, predicted_start, sort_clips
from tests.test_preferences import bundle_of, check_red_black, order_labeller

# 3 is the root, 1 and 5 its children, 0, 2, 4 and 6 the leaves (10 comparisons from the root).
BALANCED = [3, 1, 5, 0, 2, 4, 6]
VALUES = {**{i: float(i) for i in range(7)}, 7: 3.5}


def balanced_tree() -> SortTree:
    tree, _ = sort_clips(BALANCED, order_labeller(VALUES))
    assert len(tree.comparisons) == 10
    return tree


def node_of(tree: SortTree, clip: int) -> int:
    return next(i for i, node in enumerate(tree.nodes) if clip in node.clips)


def test_a_right_prediction_costs_the_two_neighbours() -> None:
    # 3.5 from the root: 3 (right: the new clip is better), 5 (left), 4 (left), then it becomes
    # 4's left child: three comparisons. Predicted there, it asks 4 (left) and the bound of 4's
    # left side, 3 (right): two, its two neighbours in the order.
    tree = balanced_tree()
    start = predicted_start(tree, VALUES, 7)
    assert start == node_of(tree, 4)
    placement = tree.insert(7, order_labeller(VALUES), at=start)
    assert placement.comparisons == [Comparison(4, 7, Answer.LEFT), Comparison(3, 7, Answer.RIGHT)]
    assert placement.outcome == "new node" and tree.nodes[placement.node].parent == node_of(tree, 4)
    from_root = balanced_tree()
    assert len(from_root.insert(7, order_labeller(VALUES)).comparisons) == 3
    assert tree.ordinals() == from_root.ordinals()
    check_red_black(tree)


def test_a_wrong_prediction_climbs_to_the_right_place() -> None:
    # Predicted worst of all (at 0), 3.5 climbs 0 -> 1 -> 3, one bound each, then descends
    # 5 (left) and 4 (left): five comparisons, the same place as from the root.
    tree = balanced_tree()
    start = predicted_start(tree, {**VALUES, 7: -1.0}, 7)
    assert start == node_of(tree, 0)
    placement = tree.insert(7, order_labeller(VALUES), at=start)
    assert [(c.left, c.answer) for c in placement.comparisons] == [
        (0, Answer.RIGHT), (1, Answer.RIGHT), (3, Answer.RIGHT), (5, Answer.LEFT), (4, Answer.LEFT)]
    assert tree.ordinals() == {0: 0, 1: 1, 2: 2, 3: 3, 7: 4, 4: 5, 5: 6, 6: 7}
    check_red_black(tree)


def test_equal_on_a_bound_binds_there() -> None:
    tree = balanced_tree()
    values = {**VALUES, 7: 5.0}  # equal to 5, predicted just above 4
    placement = tree.insert(7, order_labeller(values), at=node_of(tree, 4))
    assert placement.comparisons == [Comparison(4, 7, Answer.RIGHT), Comparison(5, 7, Answer.EQUAL)]
    assert placement.outcome == "bound" and tree.nodes[node_of(tree, 5)].clips == [5, 7]


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_presorted_trees_keep_the_invariants(noise: float) -> None:
    """Any start node, any answers: a red-black tree, every clip once, and every recorded answer
    agreeing with the final order; without noise, exactly the true order."""
    rng = np.random.default_rng(7)
    values = {clip: float(v) for clip, v in enumerate(rng.permutation(60))}
    labeller = synthetic_labeller(values, noise, np.random.default_rng(8))
    tree = SortTree()
    for clip in values:
        at = int(rng.integers(tree.size)) if tree.size else None
        tree.insert(clip, labeller, at=at)
        check_red_black(tree)
    assert tree.clip_count == 60 and sorted(c for n in tree.nodes for c in n.clips) == list(range(60))
    assert tree.contradictions() == []
    if noise == 0.0:
        assert tree.ordinals() == {clip: int(v) for clip, v in values.items()}


def test_presorting_with_good_predictions_asks_fewer_questions() -> None:
    values = {clip: float(clip) for clip in range(200)}
    order = [int(c) for c in np.random.default_rng(1).permutation(200)]
    root, _ = sort_clips(order, order_labeller(values))
    presorted, _ = sort_clips(order, order_labeller(values), predicted=values)
    assert presorted.ordinals() == root.ordinals()
    # a right prediction: the start node and at most one bound, for every clip after the first
    assert len(presorted.comparisons) <= 2 * 199 < len(root.comparisons)


def test_cant_tell_as_equal_binds_the_clip_to_the_node() -> None:
    tree = SortTree()  # rl-teacher-atari's app, the default: anything but left/right ties
    tree.insert(1, lambda left, right: Answer.LEFT)
    placement = tree.insert(2, lambda left, right: Answer.CANT_TELL)
    assert placement.outcome == "bound" and tree.nodes[0].clips == [1, 2] and tree.set_aside == []
    again = SortTree.from_dict(json.loads(json.dumps(tree.to_dict())))
    assert again.cant_tell == "equal" and again.nodes[0].clips == [1, 2]
    assert SortTree.from_dict({k: v for k, v in tree.to_dict().items() if k != "cant_tell"}
                              ).cant_tell == "set_aside"  # a tree saved before the option
    assert replay_tree(tree.comparisons).ordinals() == {1: 0, 2: 0}
    assert replay_tree(tree.comparisons, cant_tell="set_aside").set_aside == [2]
    with pytest.raises(SortTreeError, match="cant_tell 'tie'"):
        SortTree(cant_tell="tie")


def test_the_stage_refits_its_predictor_and_presorts_the_later_clips() -> None:
    """Fits after 10, 20 and 30 insertions; a perfect predictor then costs each later clip two
    comparisons (its two neighbours), one for a new worst or best clip (no bound on that side)."""
    values = {clip: float(v) for clip, v in enumerate(np.random.default_rng(2).permutation(40))}
    order = list(values)
    fitted_at: list[int] = []

    def perfect(tree: SortTree) -> dict[int, float]:
        fitted_at.append(tree.clip_count)
        return values

    tree, placements = sort_presorted(order, order_labeller(values), 10_000, "s", "equal", 10, perfect)
    root, root_placements = sort_clips(order, order_labeller(values))
    assert fitted_at == [10, 20, 30] and tree.ordinals() == root.ordinals()
    assert [len(p.comparisons) for p in placements[:10]] == [
        len(p.comparisons) for p in root_placements[:10]]
    expected = []
    for i in range(10, 40):
        before = [values[c] for c in order[:i]]
        extreme = values[order[i]] < min(before) or values[order[i]] > max(before)
        expected.append(1 if extreme else 2)
    assert [len(p.comparisons) for p in placements[10:]] == expected
    check_red_black(tree)


def test_a_fit_without_informative_answers_keeps_inserting_from_the_root() -> None:
    values = {clip: float(clip) for clip in range(12)}

    def unfit(tree: SortTree) -> dict[int, float]:
        raise ComparisonsError("no informative comparison yet")

    tree, placements = sort_presorted(list(values), order_labeller(values), 10_000, "s", "equal", 4, unfit)
    root, root_placements = sort_clips(list(values), order_labeller(values), name="s")
    assert [p.comparisons for p in placements] == [p.comparisons for p in root_placements]
    with pytest.raises(ValueError, match="presort_every needs the reward model"):
        make_comparisons(bundle_of(6), ComparisonParams(seed=0, presort_every=2), "unused")
