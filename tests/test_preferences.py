"""Preferences: the sort tree, the labeller, the comparisons file, the losses' hand values, the
relabelling's scaling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.preferences.clips import ClipBundle, clip_starts
from fdt.preferences.comparisons import (
    Answer,
    Comparison,
    ComparisonsError,
    preference_targets,
    read_comparisons,
    synthetic_labeller,
    write_comparisons,
)
from fdt.preferences.relabel import RelabelError, scale_rewards
from fdt.preferences.reward_model import (
    bradley_terry_loss,
    ordinal_loss,
    ordinal_targets,
    pair_accuracy,
    rank_accuracy,
)
from fdt.preferences.stage import (
    ComparisonParams,
    make_comparisons,
    replay_tree,
    reward_training_data,
    split_imported,
)
from fdt.preferences.tree import SortTree, SortTreeError, sort_clips


def order_labeller(values: dict[int, float]):
    """Answers from known values: left better when its value is larger."""
    return synthetic_labeller(values, 0.0, np.random.default_rng(0))


def check_red_black(tree: SortTree) -> int:
    """Assert the red-black invariants and the parent links; return the black height."""
    nodes = tree.nodes
    assert tree.root is not None and not nodes[tree.root].red and nodes[tree.root].parent is None

    def black_height(index: int | None) -> int:
        if index is None:
            return 1
        node = nodes[index]
        for child in (node.left, node.right):
            if child is not None:
                assert nodes[child].parent == index
                assert not (node.red and nodes[child].red), f"red node {index} has a red child"
        left, right = black_height(node.left), black_height(node.right)
        assert left == right, f"node {index}: black heights {left} and {right} differ"
        return left + (0 if node.red else 1)

    return black_height(tree.root)


def test_three_ascending_clips_rotate_into_a_balanced_tree() -> None:
    tree, placements = sort_clips([10, 20, 30], order_labeller({10: 1, 20: 2, 30: 3}))
    # 10 is the root; 20 goes right (1 comparison); 30 goes right twice, then a left rotation
    # makes 20 the black root with red children 10 and 30.
    assert [p.outcome for p in placements] == ["root", "new node", "new node"]
    assert [len(p.comparisons) for p in placements] == [0, 1, 2]
    root = tree.nodes[tree.root]
    assert root.clips == [20] and not root.red
    assert tree.nodes[root.left].clips == [10] and tree.nodes[root.left].red
    assert tree.nodes[root.right].clips == [30] and tree.nodes[root.right].red
    assert tree.size == 3 and tree.depth() == 2
    assert tree.ordinals() == {10: 0, 20: 1, 30: 2}


def test_insertions_keep_invariants_and_the_order_of_hand_made_answers() -> None:
    values = {clip: value for clip, value in enumerate([5, 3, 8, 1, 4, 7, 9, 2, 6, 0, 11, 10])}
    labeller = order_labeller(values)
    tree = SortTree()
    for clip in values:
        tree.insert(clip, labeller)
        check_red_black(tree)
    ranks = {clip: rank for rank, clip in enumerate(sorted(values, key=values.get))}
    assert tree.ordinals() == ranks
    assert tree.size == 12 and tree.depth() <= 2 * math.log2(13)
    assert tree.contradictions() == []


def test_ascending_insertions_stay_logarithmic() -> None:
    values = {i: float(i) for i in range(64)}
    tree, _ = sort_clips(range(64), order_labeller(values))
    assert check_red_black(tree) >= 4
    assert tree.depth() <= 2 * math.log2(65)  # an unbalanced tree would be 64 deep
    assert list(tree.ordinals().values()) == sorted(tree.ordinals().values())


def test_equal_binds_and_cant_tell_sets_aside() -> None:
    tree = SortTree(cant_tell="set_aside")
    tree.insert(1, lambda left, right: Answer.LEFT)
    insertion = tree.start(2)
    assert insertion.left_clip == 1
    placement = insertion.answer(Answer.EQUAL, "ann", "2026-12-02T12:00:00Z")
    assert placement is not None and placement.outcome == "bound" and placement.node == 0
    assert tree.nodes[0].clips == [1, 2] and tree.size == 1 and tree.clip_count == 2
    assert tree.comparisons[-1] == Comparison(1, 2, Answer.EQUAL, "ann", "2026-12-02T12:00:00Z")
    placement = tree.insert(3, lambda left, right: Answer.CANT_TELL)
    assert placement.outcome == "set aside" and tree.set_aside == [3]
    assert "set aside" in placement.describe()
    assert tree.ordinals() == {1: 0, 2: 0}
    with pytest.raises(SortTreeError, match="clip 3 is already in the sort tree"):
        tree.start(3)
    with pytest.raises(SortTreeError, match="placed already"):
        insertion.answer(Answer.LEFT)


def test_a_cyclic_labeller_cannot_make_insertion_loop() -> None:
    # a > b, b > c, c > a: no order satisfies it; each insertion still ends and says so.
    beats = {(0, 1), (1, 2), (2, 0)}

    def cyclic(left: int, right: int) -> Answer:
        return Answer.LEFT if (left, right) in beats else Answer.RIGHT

    tree, placements = sort_clips([0, 1, 2], cyclic)
    # 1 goes left of 0; 2 is compared with 0 only (2 better: right), so the order is 1, 0, 2,
    # though the labeller would say 1 beats 2.
    assert [len(p.comparisons) for p in placements] == [0, 1, 1]
    assert all(p.describe().startswith(f"clip {p.clip} ") for p in placements)
    assert tree.ordinals() == {1: 0, 0: 1, 2: 2}
    assert tree.contradictions() == []
    tree.comparisons.append(Comparison(1, 2, Answer.LEFT))  # the cycle's third answer
    assert tree.contradictions() == [Comparison(1, 2, Answer.LEFT)]


def test_a_noisy_labeller_always_finishes_within_the_depth() -> None:
    rng = np.random.default_rng(3)
    labeller = synthetic_labeller(list(range(40)), 0.5, rng)
    tree, placements = sort_clips(range(40), labeller)
    check_red_black(tree)
    assert tree.clip_count + len(tree.set_aside) == 40
    assert max(len(p.comparisons) for p in placements) <= 2 * math.log2(41)
    # The tree's own answers always agree with its order (each sent the clip to one side of a
    # node, and rotations keep the in-order); the noise shows as a wrong order instead.
    assert tree.contradictions() == []
    ordinals = tree.ordinals()
    assert rank_accuracy([ordinals[c] for c in ordinals], list(ordinals)) < 0.9


def test_budget_stops_between_insertions() -> None:
    tree, placements = sort_clips(range(30), order_labeller({i: i for i in range(30)}), budget=20)
    assert len(tree.comparisons) >= 20 and len(tree.comparisons) - 20 < tree.depth()
    assert len(placements) < 30


def test_tree_round_trips_through_json() -> None:
    tree, _ = sort_clips(range(9), order_labeller({i: -i for i in range(9)}))
    again = SortTree.from_dict(json.loads(json.dumps(tree.to_dict())))
    assert again.ordinals() == tree.ordinals() and again.comparisons == tree.comparisons
    with pytest.raises(SortTreeError, match="not a saved sort tree"):
        SortTree.from_dict({"nodes": []})


def test_replaying_recorded_answers_rebuilds_the_tree() -> None:
    tree, _ = sort_clips([4, 2, 7, 1, 3], order_labeller({4: 4, 2: 2, 7: 7, 1: 1, 3: 3}))
    again = replay_tree(tree.comparisons)
    assert again.ordinals() == tree.ordinals() and again.to_dict()["nodes"] == tree.to_dict()["nodes"]
    cut = replay_tree(tree.comparisons[:-1])  # the last insertion lacks its last answer
    assert 3 not in cut.ordinals() and len(cut.ordinals()) == 4


def test_synthetic_labeller_answers_from_true_returns() -> None:
    labeller = order_labeller({0: 2.0, 1: 0.0, 2: 2.0})
    assert [labeller(0, 1), labeller(1, 0), labeller(0, 2)] == [Answer.LEFT, Answer.RIGHT,
                                                              Answer.EQUAL]
    always_random = synthetic_labeller({0: 2.0, 1: 0.0}, 1.0, np.random.default_rng(0))
    answers = [always_random(0, 1) for _ in range(400)]
    assert Answer.EQUAL not in answers and 150 < answers.count(Answer.RIGHT) < 250


def test_ordinal_targets_equal_hand_values() -> None:
    # N = 4 classes, std 2: 2 * Phi^-1(0.125), 2 * Phi^-1(0.375), and the mirror images.
    targets = ordinal_targets([0, 1, 2, 3], classes=4, std=2.0)
    expected = [-2.3006987607520, -0.6372787279288, 0.6372787279288, 2.3006987607520]
    assert targets.tolist() == pytest.approx(expected, abs=1e-6)
    assert ordinal_targets([0], classes=1, std=5.0).tolist() == [0.0]
    loss = ordinal_loss(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]))
    assert float(loss) == pytest.approx((1 + 4) / 2)


def test_bradley_terry_loss_equals_hand_computation() -> None:
    # left better with returns 1 vs 0: log(1 + e^-1); equal with returns 0 vs 0: log 2.
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 0.0, 2.5]),
                              torch.tensor([1.0, 0.5, 0.0]))
    # right better with 0.5 vs 2.5: -log(1 - sigmoid(-2)) = log(1 + e^-2)
    expected = (math.log(1 + math.exp(-1)) + math.log(2) + math.log(1 + math.exp(-2))) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert preference_targets([Comparison(0, 1, Answer.LEFT), Comparison(0, 1, Answer.EQUAL),
                               Comparison(0, 1, Answer.RIGHT)]).tolist() == [1.0, 0.5, 0.0]


def test_accuracies() -> None:
    predicted = np.array([0.0, 1.0, 2.0, 3.0])
    assert rank_accuracy(predicted, [0, 1, 3, 2]) == pytest.approx(5 / 6)
    assert rank_accuracy(predicted, [1, 1, 1, 1]) != rank_accuracy(predicted, [1, 1, 1, 1])  # nan
    pairs = np.array([[0, 1], [3, 2]])
    assert pair_accuracy(predicted, pairs, np.array([False, True])) == 1.0
    assert pair_accuracy(predicted, pairs, np.array([True, True])) == 0.5


def test_clip_starts_stay_in_one_trajectory_and_skip_padding() -> None:
    ends = np.array([5, 12])
    padding = np.zeros(12, dtype=bool)
    padding[[0, 5]] = True  # each trajectory's first row is padding
    assert clip_starts(ends, padding, 3).tolist() == [1, 2, 6, 7, 8, 9]


def bundle_of(n: int, heldout: tuple[int, ...] = ()) -> ClipBundle:
    from fdt.preferences.clips import Clip
    return ClipBundle("b" * 16, "k" * 16, tuple(Clip(i, i * 3, 3, 0, float(i)) for i in range(n)),
                      heldout)


def test_comparisons_of_another_bundle_or_unknown_clips_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "comparisons.json"
    write_comparisons(path, "other", [Comparison(0, 1, Answer.LEFT)], [])
    with pytest.raises(ComparisonsError, match="comparisons of clip bundle 'other', but the clips "
                                               "are bundle 'bbbbbbbbbbbbbbbb'"):
        read_comparisons(path, "b" * 16, [0, 1])
    write_comparisons(path, "b" * 16, [Comparison(0, 9, Answer.LEFT)], [])
    with pytest.raises(ComparisonsError, match=r"clips \[9\] are not in bundle"):
        read_comparisons(path, "b" * 16, [0, 1])
    path.write_text(json.dumps({"bundle": "b" * 16, "comparisons": [{"left": 0, "right": 1,
                                                                     "answer": "up"}]}))
    with pytest.raises(ComparisonsError, match="a comparison is malformed"):
        read_comparisons(path, "b" * 16, [0, 1])


def test_imported_comparisons_split_by_the_held_out_clips(tmp_path: Path) -> None:
    bundle = bundle_of(6, heldout=(4, 5))
    path = tmp_path / "export.json"
    write_comparisons(path, bundle.digest, [Comparison(0, 1, Answer.LEFT),
                                            Comparison(4, 5, Answer.RIGHT),
                                            Comparison(1, 4, Answer.LEFT)], [])
    train, heldout, dropped = split_imported(path, bundle)
    assert train == [Comparison(0, 1, Answer.LEFT)] and heldout == [Comparison(4, 5, Answer.RIGHT)]
    assert dropped == 1


def test_an_imported_export_rebuilds_its_sort_tree(tmp_path: Path) -> None:
    bundle = bundle_of(7, heldout=(6,))
    people = order_labeller({0: 2, 1: 0, 2: 1, 3: 2, 4: 3, 5: 1})
    tree, _ = sort_clips([0, 1, 2, 3, 4, 5], people, name="ann")
    export = tmp_path / "export.json"
    write_comparisons(export, bundle.digest, tree.comparisons, [])
    params = ComparisonParams(seed=0, source="file", mode="tree", budget=100, file=str(export))
    summary = make_comparisons(bundle, params, tmp_path / "out")
    again = SortTree.from_dict(json.loads((tmp_path / "out" / "tree.json").read_text()))
    assert again.ordinals() == tree.ordinals() == {1: 0, 2: 1, 5: 1, 0: 2, 3: 2, 4: 3}
    assert summary["tree_size"] == 4 and summary["comparisons"] == len(tree.comparisons)
    assert summary["answers"]["equal"] == 2 and summary["true_order_accuracy"] < 1  # returns = ids
    train, _, _ = read_comparisons(tmp_path / "out" / "comparisons.json", bundle.digest, bundle.ids)
    assert all(c.labeller == "ann" for c in train)


def test_too_few_comparisons_is_a_clear_error() -> None:
    bundle = bundle_of(4)
    states, actions = np.zeros((4, 3, 4, 84, 84), np.uint8), np.zeros((4, 3), np.int64)
    few = [Comparison(0, 1, Answer.LEFT), Comparison(1, 2, Answer.CANT_TELL)]
    with pytest.raises(ComparisonsError, match=r"1 informative comparisons \(of 2; \"can't tell\""
                                               r" answers teach nothing\), fewer than "
                                               r"preferences.min_comparisons = 2"):
        reward_training_data(bundle, states, actions, few, None, "bradley_terry", 2, "x.json")
    with pytest.raises(ComparisonsError, match="made in pairs mode"):
        reward_training_data(bundle, states, actions, few, None, "ordinal", 1, "x.json")
    data = reward_training_data(bundle, states, actions, few, None, "bradley_terry", 1, "x.json")
    assert data.indices.tolist() == [[0, 1]] and data.targets.tolist() == [1.0]


def test_scaling_maps_the_best_learnt_return_to_the_best_true_return() -> None:
    # two trajectories of 3 rows; row 0 is padding. Shift: the lowest real reward (-1) -> 0.
    predicted = np.array([9.0, -1.0, 1.0, 0.0, 2.0, -1.0], dtype=np.float32)
    padding = np.array([True, False, False, False, False, False])
    ends = np.array([3, 6])
    rewards, shift, scale = scale_rewards(predicted, padding, ends, true_max_return=8.0)
    # shifted: [0, 0, 2 | 1, 3, 0]; returns 2 and 4; scale 8 / 4 = 2
    assert shift == -1.0 and scale == 2.0
    assert rewards.tolist() == [0.0, 0.0, 4.0, 2.0, 6.0, 0.0]
    with pytest.raises(RelabelError, match="predicts the same reward for every transition"):
        scale_rewards(np.ones(6, np.float32), padding, ends, 8.0)
    with pytest.raises(RelabelError, match="largest true return-to-go is 0"):
        scale_rewards(predicted, padding, ends, 0.0)
