"""The sort tree (rl-teacher-atari): clips sorted by successive comparisons into a red-black tree.

A new clip starts at the root and is compared with the clip at each node it meets: "left"
(the node's clip is better, so the new clip is worse) sends it to the left subtree, "right" to
the right, "equal" binds it to the node (a node holds a class of equally good clips), and "can't
tell" binds it to the node as if equal (`cant_tell="equal"`, rl-teacher-atari's app, which
treats every answer but left and right as a tie: the default) or sets it aside unsorted
(`cant_tell="set_aside"`, ours before issue 29). A labeller who cannot tell close clips apart
meets ever closer clips on the way down, so setting aside leaves most clips unsorted once the
tree is dense (benchmarks/preferences.py; docs/method.md, Preferences). Falling off the tree makes a new red node, then the usual recolouring and rotations keep
the tree balanced, so an insertion takes at most about 2 log2(n) comparisons. The nodes'
in-order position is each clip's ordinal (0 = worst).

Pre-sorting (rl-teacher-atari lists it as not done): a clip may start its descent at a node other
than the root, where a reward model's prediction places it (`predicted_start`). Its answer there
sends it to one side; before the descent below that node is trusted, the clip is compared with
the node bounding the subtree on that side (the nearest ancestor on the other side of the path).
If the clip lies beyond that bound too, it climbs to the bound and checks the next one, so a
wrong prediction costs one comparison per level climbed and the clip still lands where an
insertion from the root would put it. A right prediction costs two comparisons: the node and
its bound, the clip's two neighbours in the order.

Each answer moves the clip one level down, so an insertion always ends, whatever the labeller
says: a noisy labeller's cycles (a > b > c > a) cannot make it loop, only misplace a clip. The
tree's own answers always agree with its order (each sent a clip to one side of a node, and
rotations keep the in-order); `contradictions` counts the recorded answers that do not, which
happens once answers given outside the insertions (repeats, the app's other pages) are recorded.

Nodes live in a list and refer to each other by index, so a tree is plain data: it is saved as
JSON (`to_dict`/`from_dict`) and the web app can hold a half-done insertion between requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fdt.preferences.comparisons import Answer, Comparison


@dataclass
class Node:
    clips: list[int]  # the first is the one shown in comparisons; the others are bound as equal
    red: bool = True
    parent: int | None = None
    left: int | None = None
    right: int | None = None


@dataclass
class Placement:
    """What one insertion did: where the clip went and the comparisons it took."""

    clip: int
    outcome: str  # "root", "new node", "bound" (to an equal class) or "set aside" (can't tell)
    node: int | None
    comparisons: list[Comparison] = field(default_factory=list)

    def describe(self) -> str:
        steps = f"after {len(self.comparisons)} comparison(s)"
        if self.outcome == "set aside":
            return f"clip {self.clip} set aside (can't tell) {steps}"
        if self.outcome == "bound":
            return f"clip {self.clip} bound to node {self.node} as equal {steps}"
        return f"clip {self.clip} became node {self.node} ({self.outcome}) {steps}"


class SortTreeError(ValueError):
    """A clip inserted twice, an answer at the wrong time, or a saved tree that is not one."""


CANT_TELL_POLICIES = ("set_aside", "equal")


class SortTree:
    """A red-black tree of equivalence classes of clips, ordered by a labeller's answers."""

    def __init__(self, cant_tell: str = "equal") -> None:
        if cant_tell not in CANT_TELL_POLICIES:
            raise SortTreeError(f"cant_tell {cant_tell!r}: expected one of {', '.join(CANT_TELL_POLICIES)}")
        self.cant_tell = cant_tell
        self.nodes: list[Node] = []
        self.root: int | None = None
        self.set_aside: list[int] = []
        self.comparisons: list[Comparison] = []

    # --- inspection ---
    @property
    def size(self) -> int:
        """Nodes (classes of equal clips)."""
        return len(self.nodes)

    @property
    def clip_count(self) -> int:
        return sum(len(node.clips) for node in self.nodes)

    def depth(self) -> int:
        """Nodes on the longest root-to-leaf path (0 for an empty tree)."""
        def below(index: int | None) -> int:
            if index is None:
                return 0
            node = self.nodes[index]
            return 1 + max(below(node.left), below(node.right))
        return below(self.root)

    def in_order(self) -> list[int]:
        """Node indices from worst to best."""
        order: list[int] = []
        stack: list[int] = []
        current = self.root
        while stack or current is not None:
            while current is not None:
                stack.append(current)
                current = self.nodes[current].left
            current = stack.pop()
            order.append(current)
            current = self.nodes[current].right
        return order

    def ordinals(self) -> dict[int, int]:
        """Each sorted clip's ordinal: its node's in-order position (0 = worst; equal clips share)."""
        return {clip: position for position, index in enumerate(self.in_order())
                for clip in self.nodes[index].clips}

    def contains(self, clip: int) -> bool:
        return clip in self.set_aside or any(clip in node.clips for node in self.nodes)

    def contradictions(self) -> list[Comparison]:
        """Recorded answers the tree's order disagrees with (a noisy labeller's cycles)."""
        ordinals = self.ordinals()
        wrong = []
        for c in self.comparisons:
            if c.answer not in (Answer.LEFT, Answer.RIGHT, Answer.EQUAL):
                continue
            if c.left not in ordinals or c.right not in ordinals:
                continue
            difference = ordinals[c.left] - ordinals[c.right]
            expected = {Answer.LEFT: difference > 0, Answer.RIGHT: difference < 0,
                        Answer.EQUAL: difference == 0}[c.answer]
            if not expected:
                wrong.append(c)
        return wrong

    def bound(self, index: int, worse: bool) -> int | None:
        """The node bounding `index`'s subtree on one side: for the worse side (left) the nearest
        ancestor whose right subtree holds it, else the nearest whose left subtree does."""
        child, parent = index, self.nodes[index].parent
        while parent is not None:
            if (self.nodes[parent].right if worse else self.nodes[parent].left) == child:
                return parent
            child, parent = parent, self.nodes[parent].parent
        return None

    # --- insertion, one answer at a time (the web app) or with a labeller (synthetic runs) ---
    def start(self, clip: int, at: int | None = None) -> Insertion:
        """Start inserting `clip` at the root, or at node `at` (pre-sorting)."""
        if self.contains(clip):
            raise SortTreeError(f"clip {clip} is already in the sort tree")
        if at is not None and not 0 <= at < self.size:
            raise SortTreeError(f"node {at} is not in the sort tree (it has {self.size} nodes)")
        return Insertion(self, clip, at)

    def resume(self, clip: int, node: int) -> Insertion:
        """An insertion saved half-way (the web app keeps `clip` and `node` between requests)."""
        if not 0 <= node < self.size:
            raise SortTreeError(f"node {node} is not in the sort tree (it has {self.size} nodes)")
        insertion = Insertion(self, clip)
        insertion.node = node
        return insertion

    def insert(self, clip: int, labeller: Callable[[int, int], Answer], name: str = "",
               at: int | None = None) -> Placement:
        """Insert a clip, asking `labeller(left=node's clip, right=new clip)` at each node; from
        the root, or from node `at` (pre-sorting)."""
        insertion = self.start(clip, at)
        while insertion.placement is None:
            insertion.answer(labeller(insertion.left_clip, clip), name)
        return insertion.placement

    # --- red-black balancing ---
    def _attach(self, clip: int, parent: int | None, on_left: bool) -> int:
        index = len(self.nodes)
        self.nodes.append(Node([clip], red=parent is not None, parent=parent))
        if parent is None:
            self.root = index
        elif on_left:
            self.nodes[parent].left = index
        else:
            self.nodes[parent].right = index
        self._rebalance(index)
        return index

    def _rotate(self, x: int, leftwards: bool) -> None:
        """Rotate around x: its right child (leftwards) or left child rises to x's place."""
        nodes = self.nodes
        y = nodes[x].right if leftwards else nodes[x].left
        assert y is not None
        inner = nodes[y].left if leftwards else nodes[y].right
        if leftwards:
            nodes[x].right = inner
        else:
            nodes[x].left = inner
        if inner is not None:
            nodes[inner].parent = x
        parent = nodes[x].parent
        nodes[y].parent = parent
        if parent is None:
            self.root = y
        elif nodes[parent].left == x:
            nodes[parent].left = y
        else:
            nodes[parent].right = y
        if leftwards:
            nodes[y].left = x
        else:
            nodes[y].right = x
        nodes[x].parent = y

    def _rebalance(self, z: int) -> None:
        nodes = self.nodes
        while (parent := nodes[z].parent) is not None and nodes[parent].red:
            grand = nodes[parent].parent
            assert grand is not None  # a red node is never the root
            parent_on_left = nodes[grand].left == parent
            uncle = nodes[grand].right if parent_on_left else nodes[grand].left
            if uncle is not None and nodes[uncle].red:
                nodes[parent].red = nodes[uncle].red = False
                nodes[grand].red = True
                z = grand
                continue
            if (nodes[parent].right == z) == parent_on_left:  # a bend: straighten it first
                z = parent
                self._rotate(z, leftwards=parent_on_left)
                parent = nodes[z].parent
                assert parent is not None
            nodes[parent].red = False
            nodes[grand].red = True
            self._rotate(grand, leftwards=not parent_on_left)
        assert self.root is not None
        nodes[self.root].red = False

    # --- storage ---
    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "set_aside": list(self.set_aside), "cant_tell": self.cant_tell,
                "nodes": [{"clips": n.clips, "red": n.red, "parent": n.parent, "left": n.left,
                           "right": n.right} for n in self.nodes],
                "comparisons": [c.to_dict() for c in self.comparisons]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SortTree:
        tree = cls(str(data.get("cant_tell", "set_aside")))  # saved before the option: set aside
        try:
            tree.nodes = [Node(list(n["clips"]), bool(n["red"]), n["parent"], n["left"], n["right"])
                          for n in data["nodes"]]
            tree.root = data["root"]
            tree.set_aside = list(data["set_aside"])
            tree.comparisons = [Comparison.from_dict(c) for c in data["comparisons"]]
        except (KeyError, TypeError) as err:
            raise SortTreeError(f"not a saved sort tree (missing or wrong field: {err})") from None
        return tree


class Insertion:
    """One clip on its way down the tree: `left_clip` is the node's clip to compare it with.

    From the root every answer is trusted at once. Started lower (pre-sorting), the first answer
    that sends the clip to a side of node `base` is held until the bound of base's subtree on that
    side is checked (`checking`); see the module's docstring."""

    def __init__(self, tree: SortTree, clip: int, at: int | None = None) -> None:
        self.tree = tree
        self.clip = clip
        self.node = tree.root if at is None else at
        self.comparisons: list[Comparison] = []
        self.placement: Placement | None = None
        self.trusted = at is None or at == tree.root  # the root's subtree is the whole order
        self.base: int | None = None  # the node whose side (`worse`) waits for its bound's check
        self.worse = False
        if self.node is None:
            self.placement = Placement(clip, "root", tree._attach(clip, None, False))

    @property
    def checking(self) -> bool:
        return self.base is not None

    @property
    def left_clip(self) -> int:
        """The clip shown on the left: the current node's representative."""
        if self.node is None or self.placement is not None:
            raise SortTreeError(f"clip {self.clip} is placed already; there is nothing to compare")
        return self.tree.nodes[self.node].clips[0]

    def answer(self, answer: Answer, labeller: str = "", time: str = "") -> Placement | None:
        """Record the answer to "left (the node's clip) or right (the new clip)?" and move on.

        Returns the placement once the clip has found its place, else None.
        """
        comparison = Comparison(self.left_clip, self.clip, Answer(answer), labeller, time)
        self.comparisons.append(comparison)
        self.tree.comparisons.append(comparison)
        assert self.node is not None
        if comparison.answer is Answer.EQUAL or (comparison.answer is Answer.CANT_TELL
                                                 and self.tree.cant_tell == "equal"):
            self.tree.nodes[self.node].clips.append(self.clip)
            return self._done("bound", self.node)
        if comparison.answer is Answer.CANT_TELL:
            self.tree.set_aside.append(self.clip)
            return self._done("set aside", None)
        worse = comparison.answer is Answer.LEFT  # the node's clip is better
        if self.checking:
            if worse == self.worse:  # beyond the bound as well: climb to it
                return self._hold(self.node, worse)
            assert self.base is not None
            self.trusted, base, self.base = True, self.base, None  # within the bound: descend
            return self._step(base, self.worse)
        if not self.trusted:
            return self._hold(self.node, worse)
        return self._step(self.node, worse)

    def _hold(self, base: int, worse: bool) -> Placement | None:
        """The clip is on side `worse` of `base`: check the bound on that side, if there is one."""
        bound = self.tree.bound(base, worse)
        if bound is None:
            self.trusted, self.base = True, None
            return self._step(base, worse)
        self.base, self.worse, self.node = base, worse, bound
        return None

    def _step(self, index: int, worse: bool) -> Placement | None:
        """Move to `index`'s child on side `worse`, or make the clip that child."""
        node = self.tree.nodes[index]
        child = node.left if worse else node.right
        if child is None:
            return self._done("new node", self.tree._attach(self.clip, index, worse))
        self.node = child
        return None

    def _done(self, outcome: str, node: int | None) -> Placement:
        self.placement = Placement(self.clip, outcome, node, self.comparisons)
        return self.placement


def predicted_start(tree: SortTree, predicted: Mapping[int, float], clip: int) -> int | None:
    """Where a reward model's predicted returns place `clip`: the last node its descent meets
    when every answer comes from the predictions (a node whose representative is predicted
    equal stops it there). None for an empty tree."""
    index = tree.root
    while index is not None:
        node = tree.nodes[index]
        difference = predicted[clip] - predicted[node.clips[0]]
        child = node.left if difference < 0 else node.right if difference > 0 else None
        if child is None:
            return index
        index = child
    return None


def sort_clips(clips: Iterable[int], labeller: Callable[[int, int], Answer],
               budget: int | None = None, name: str = "", cant_tell: str = "equal",
               predicted: Mapping[int, float] | None = None) -> tuple[SortTree, list[Placement]]:
    """Insert clips in turn until the comparisons reach `budget` (an insertion under way finishes,
    so the count may pass it by the last insertion's few). With `predicted` (each clip's
    predicted return), each clip starts where the predictions place it (pre-sorting)."""
    tree = SortTree(cant_tell)
    placements = []
    for clip in clips:
        if budget is not None and len(tree.comparisons) >= budget:
            break
        at = predicted_start(tree, predicted, clip) if predicted is not None else None
        placements.append(tree.insert(clip, labeller, name, at))
    return tree, placements
