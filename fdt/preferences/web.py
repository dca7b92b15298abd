"""The comparison pages of the feedback app (fdt.teacher.app): two clips side by side, and the
sort tree built by a person's answers.

A page family (fdt.teacher.app.PageFamily) over one clip bundle and the training set it was drawn
from; the app's session, store, layout and keyboard shortcuts are shared. Mount it with

    create_app(bundle_dir, db, families=[*default_families(), ComparisonPages(clips, training_set)])

- GET /compare shows the next pair of training clips (a seeded sequence, skipping pairs already
  answered) as two looping GIFs; POST /compare records left / right / equal / can't tell with the
  labeller and the time. Keys: L left, R right, E equal, C can't tell.
- GET /tree shows the clip being inserted into the sort tree (right) beside the clip at the node
  it has reached (left), with the tree's size and depth, and the tree drawn below (SVG: each
  node's colour, depth and clips, with its representative clip's thumbnail; the node under
  question outlined); POST /tree records the answer and moves the clip down (or places it). The
  tree and the insertion under way are saved after every answer, so a reload or a restart
  continues where it was. GET /tree.svg is the drawing alone. "Can't tell" binds the clip to the
  node as equal (rl-teacher-atari), or sets it aside with `cant_tell="set_aside"`.
- GET /comparisons.json?mode=pairs|tree exports the answers as a comparisons file of the bundle
  (fdt.preferences.comparisons), the workflow's `preferences.source: file`.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from fdt.dataset.training_set import TrainingSet
from fdt.preferences.clips import ClipBundle, clip_frames, read_bundle
from fdt.preferences.comparisons import (
    FORMAT_VERSION,
    Answer,
    Comparison,
    without_repeats,
)
from fdt.preferences.drawing import tree_svg
from fdt.preferences.tree import SortTree, SortTreeError
from fdt.teacher.app import (
    TeacherContext,
    csrf_input,
    error_page,
    form_fields,
    page,
    require_labeller,
)
from fdt.teacher.clips import ClipSettings, clip_gif

TABLES = """
CREATE TABLE IF NOT EXISTS pref_comparisons (
    id INTEGER PRIMARY KEY AUTOINCREMENT, bundle TEXT NOT NULL, mode TEXT NOT NULL,
    left_clip INTEGER NOT NULL, right_clip INTEGER NOT NULL, answer TEXT NOT NULL,
    labeller TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pref_tree (
    bundle TEXT PRIMARY KEY, tree TEXT NOT NULL, pending_clip INTEGER, pending_node INTEGER);
CREATE TABLE IF NOT EXISTS pref_served (
    bundle TEXT NOT NULL, labeller TEXT NOT NULL, left_clip INTEGER NOT NULL,
    right_clip INTEGER NOT NULL, since REAL NOT NULL, PRIMARY KEY (bundle, labeller));
"""
BUTTONS = ((Answer.LEFT, "l", "Left is better"), (Answer.RIGHT, "r", "Right is better"),
           (Answer.EQUAL, "e", "Equal"), (Answer.CANT_TELL, "c", "Can't tell"))
NO_MARK = -1  # clip_gif marks no frame: a comparison clip has no single state in question


class ComparisonPages:
    title = "Compare clips"
    entry = "/compare"
    tables = TABLES

    def __init__(self, clips: str | Path, training_set: str | Path, seed: int = 0,
                 settings: ClipSettings | None = None, cant_tell: str = "equal") -> None:
        self.cant_tell = cant_tell  # a new tree's; a saved tree keeps its own
        self.bundle: ClipBundle = read_bundle(clips)
        self.data = TrainingSet(training_set, verify=False)
        if self.data.manifest.get("key") not in (None, self.bundle.dataset_key):
            raise ValueError(f"{clips}: clips of training set {self.bundle.dataset_key}, but "
                             f"{training_set} is training set {self.data.manifest.get('key')}")
        self.settings = settings or ClipSettings()
        self.clips = {c.id: c for c in self.bundle.clips}
        rng = np.random.default_rng(seed)
        training = self.bundle.training_ids
        self.pairs = [(int(a), int(b)) for a, b in
                      (rng.choice(training, 2, replace=False) for _ in range(20 * len(training)))]
        self.gifs: dict[int, bytes] = {}

    # --- storage ---
    def _answered(self, context: TeacherContext, mode: str) -> list[Comparison]:
        with context.store.transaction() as db:
            rows = db.execute("SELECT left_clip, right_clip, answer, labeller, time FROM "
                              "pref_comparisons WHERE bundle = ? AND mode = ? ORDER BY id",
                              (self.bundle.digest, mode)).fetchall()
        return [Comparison(int(a), int(b), Answer(c), d, e) for a, b, c, d, e in rows]

    def _record(self, db, mode: str, comparison: Comparison) -> None:
        db.execute("INSERT INTO pref_comparisons (bundle, mode, left_clip, right_clip, answer, "
                   "labeller, time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (self.bundle.digest, mode, comparison.left, comparison.right,
                    str(comparison.answer), comparison.labeller, comparison.time))

    def _tree(self, db) -> tuple[SortTree, int | None, int | None]:
        row = db.execute("SELECT tree, pending_clip, pending_node FROM pref_tree WHERE bundle = ?",
                         (self.bundle.digest,)).fetchone()
        if row is None:
            return SortTree(self.cant_tell), None, None
        return SortTree.from_dict(json.loads(row[0])), row[1], row[2]

    def _save_tree(self, db, tree: SortTree, clip: int | None, node: int | None) -> None:
        db.execute("INSERT OR REPLACE INTO pref_tree (bundle, tree, pending_clip, pending_node) "
                   "VALUES (?, ?, ?, ?)", (self.bundle.digest, json.dumps(tree.to_dict()),
                                           clip, node))

    def _hand_pair(self, context: TeacherContext, labeller: str) -> tuple[int, int] | None:
        """The pair handed to the labeller: the one they hold, else the next in the seeded
        sequence that they have not answered and that still needs answers (each pair is asked
        of as many labellers as each query, `answers_per_query`) beyond those held by others;
        held from now on. None when none is left for them."""
        store, digest = context.store, self.bundle.digest
        with store.transaction() as db:
            db.execute("DELETE FROM pref_served WHERE since < ?",
                       (store.clock() - store.lock_seconds,))
            held = db.execute("SELECT left_clip, right_clip FROM pref_served WHERE bundle = ? AND "
                              "labeller = ?", (digest, labeller)).fetchone()
            if held is not None:
                return int(held[0]), int(held[1])
            taken: dict[frozenset[int], int] = {}
            mine: set[frozenset[int]] = set()
            for left, right, who in db.execute(
                    "SELECT left_clip, right_clip, labeller FROM pref_comparisons WHERE bundle = ? "
                    "AND mode = 'pairs' UNION ALL SELECT left_clip, right_clip, labeller FROM "
                    "pref_served WHERE bundle = ?", (digest, digest)):
                key = frozenset((left, right))
                taken[key] = taken.get(key, 0) + 1
                if who == labeller:
                    mine.add(key)
            for pair in self.pairs:
                key = frozenset(pair)
                if key in mine or taken.get(key, 0) >= store.answers_per_query:
                    continue
                db.execute("INSERT INTO pref_served VALUES (?, ?, ?, ?, ?)",
                           (digest, labeller, *pair, store.clock()))
                return pair
        return None

    def _record_pair(self, context: TeacherContext, comparison: Comparison) -> None:
        """Record an answer to the pair handed to its labeller (and only to that pair: a pair
        never shown, or shown to someone else, is refused)."""
        if comparison.left == comparison.right:
            raise ValueError(f"clip {comparison.left} compared with itself: a comparison is of "
                             "two clips")
        store, digest = context.store, self.bundle.digest
        with store.transaction() as db:
            held = db.execute("SELECT left_clip, right_clip FROM pref_served WHERE bundle = ? AND "
                              "labeller = ? AND since >= ?",
                              (digest, comparison.labeller,
                               store.clock() - store.lock_seconds)).fetchone()
            if held is None or (int(held[0]), int(held[1])) != (comparison.left, comparison.right):
                raise SortTreeError(f"clips {comparison.left} and {comparison.right} are not the "
                                    f"pair handed to {comparison.labeller}; the answer was not "
                                    "recorded")
            self._record(db, "pairs", comparison)
            db.execute("DELETE FROM pref_served WHERE bundle = ? AND labeller = ?",
                       (digest, comparison.labeller))

    def _next_insertion(self, db) -> tuple[SortTree, int | None, int | None]:
        """The tree and the clip under way (started if none is), placing clips that need no
        comparison (the first becomes the root)."""
        tree, clip, node = self._tree(db)
        while clip is None:
            waiting = [c for c in self.bundle.training_ids if not tree.contains(c)]
            if not waiting:
                return tree, None, None
            insertion = tree.start(waiting[0])
            if insertion.placement is None:
                clip, node = waiting[0], insertion.node
        self._save_tree(db, tree, clip, node)
        return tree, clip, node

    def summary(self, context: TeacherContext, labeller: str) -> str:
        with context.store.transaction() as db:
            tree, _, _ = self._tree(db)
        pairs = len(self._answered(context, "pairs"))
        return (f"<span class='progress'>{pairs} pairs compared; sort tree "
                f"(<a href='/tree'>/tree</a>): {tree.clip_count} clips in {tree.size} nodes, "
                f"depth {tree.depth()}</span>")

    # --- pages ---
    def routes(self, context: TeacherContext) -> list[BaseRoute]:
        async def compare(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            pair = self._hand_pair(context, labeller)
            if pair is None:
                return page("Done", "<h1 id='done'>No pairs left to compare</h1>", labeller)
            count = len(self._answered(context, "pairs"))
            return page("Compare clips", self._question("/compare", *pair,
                                                        f"{count} pairs compared"), labeller)

        async def record_pair(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            try:
                comparison = self._comparison(await form_fields(request), labeller)
                self._record_pair(context, comparison)
            except SortTreeError as err:
                return error_page(str(err), labeller, 409, "/compare")
            except ValueError as err:
                return error_page(str(err), labeller, 400, "/compare")
            return RedirectResponse("/compare", status_code=303)

        async def tree_page(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            with context.store.transaction() as db:
                tree, clip, node = self._next_insertion(db)
            shape = (f"<p class='progress' id='tree-shape'>sort tree: <span id='tree-clips'>"
                     f"{tree.clip_count}</span> clips in <span id='tree-size'>{tree.size}</span> "
                     f"nodes, depth <span id='tree-depth'>{tree.depth()}</span>; "
                     f"{len(tree.set_aside)} set aside</p>")
            if clip is None:
                return page("Sorted", f"<h1 id='done'>Every clip is sorted</h1>{shape}"
                            f"{self._drawing(tree, None)}", labeller)
            left = tree.nodes[node].clips[0]
            return page("Sort tree", shape + self._question("/tree", left, clip,
                                                            "inserting the right clip")
                        + self._drawing(tree, node), labeller)

        async def tree_drawing(request: Request) -> Response:
            with context.store.transaction() as db:
                tree, _, _ = self._tree(db)
            return Response(tree_svg(tree, self._thumbnail), media_type="image/svg+xml")

        async def record_tree(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            try:
                comparison = self._comparison(await form_fields(request), labeller)
                with context.store.transaction() as db:
                    tree, clip, node = self._next_insertion(db)
                    if clip is None or (comparison.left, comparison.right) != (
                            tree.nodes[node].clips[0], clip):
                        raise SortTreeError("this comparison is no longer the tree's question "
                                            "(someone answered it); here is the current one")
                    insertion = tree.resume(clip, node)
                    placement = insertion.answer(comparison.answer, labeller, comparison.time)
                    self._record(db, "tree", comparison)
                    if placement is None:
                        self._save_tree(db, tree, clip, insertion.node)
                    else:
                        self._save_tree(db, tree, None, None)
            except (ValueError, SortTreeError) as err:
                return error_page(str(err), labeller, 409, "/tree")
            return RedirectResponse("/tree", status_code=303)

        async def gif(request: Request) -> Response:
            clip_id = request.path_params["clip"]
            if clip_id not in self.clips:
                return Response(f"no clip {clip_id} in bundle {self.bundle.digest}", 404)
            if clip_id not in self.gifs:
                frames = self.frames(clip_id)
                self.gifs[clip_id] = clip_gif(frames, NO_MARK, self.settings)
            return Response(self.gifs[clip_id], media_type="image/gif")

        async def export(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            mode = request.query_params.get("mode", "pairs")
            if mode not in ("pairs", "tree"):
                return JSONResponse({"error": f"mode {mode!r}: expected pairs or tree"}, 400)
            return JSONResponse({"format_version": FORMAT_VERSION, "bundle": self.bundle.digest,
                                 "mode": mode, "heldout": [],
                                 "comparisons": [c.to_dict() for c in
                                                 without_repeats(self._answered(context, mode))]})

        return [Route("/compare", compare), Route("/compare", record_pair, methods=["POST"]),
                Route("/tree", tree_page), Route("/tree", record_tree, methods=["POST"]),
                Route("/tree.svg", tree_drawing),
                Route("/pref-media/{clip:int}.gif", gif),
                Route("/comparisons.json", export)]

    def frames(self, clip_id: int) -> np.ndarray:
        """What a person watches of a clip, (length, 84, 84) uint8 (the online loop's pages,
        fdt.online.human, render their clips instead)."""
        return clip_frames(self.data, self.clips[clip_id])

    @staticmethod
    def _thumbnail(clip: int) -> str:
        return f"/pref-media/{clip}.gif"

    def _drawing(self, tree: SortTree, asking: int | None) -> str:
        """The tree drawn inline, the node under question outlined (a style rule, no script)."""
        if tree.size == 0:
            return ""
        outline = (f"<style>#node-{asking} rect {{stroke: #f0a000; stroke-width: 5}}</style>"
                   if asking is not None else "")
        return (f"<h2 id='tree-drawing-title'>The sort tree</h2>{outline}"
                f"<div id='tree-drawing' style='overflow-x: auto'>"
                f"{tree_svg(tree, self._thumbnail)}</div>")

    def _comparison(self, fields: dict[str, str], labeller: str) -> Comparison:
        try:
            left, right = int(fields["left"]), int(fields["right"])
            answer = Answer(fields["answer"])
        except (KeyError, ValueError):
            raise ValueError("a comparison needs left and right clip ids and an answer: left, "
                             "right, equal or cant_tell") from None
        unknown = [c for c in (left, right) if c not in self.clips]
        if unknown:
            raise ValueError(f"clips {unknown} are not in bundle {self.bundle.digest}")
        return Comparison(left, right, answer, labeller,
                          datetime.now(UTC).isoformat(timespec="seconds"))

    def _question(self, action: str, left: int, right: int, progress: str) -> str:
        buttons = "".join(f"<button type='submit' name='answer' value='{a}' data-key='{k}' "
                          f"id='answer-{a}'>{label} <kbd>{k.upper()}</kbd></button>"
                          for a, k, label in BUTTONS)
        return (f"<p class='progress' id='progress'>{html.escape(progress)}</p>"
                "<h2 id='question'>Which clip shows the better play?</h2>"
                "<div class='media'>"
                f"<figure><img id='left-clip' src='/pref-media/{left}.gif' alt='left clip'>"
                f"<figcaption>left: clip {left}</figcaption></figure>"
                f"<figure><img id='right-clip' src='/pref-media/{right}.gif' alt='right clip'>"
                f"<figcaption>right: clip {right}</figcaption></figure></div>"
                f"<form method='post' action='{action}'>{csrf_input()}"
                f"<input type='hidden' name='left' value='{left}'>"
                f"<input type='hidden' name='right' value='{right}'>{buttons}</form>")
