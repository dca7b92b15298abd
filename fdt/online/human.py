"""Human mode: the loop's clips in the feedback app while the agent trains (teach.py -p human).

The loop writes the comparisons it wants (`queries.json`: plain pairs, or the clips offered to the
sort tree) and the clip store next to it; `OnlinePages`, the preferences' comparison pages over
that folder instead of a training set, serves them at /compare and /tree, re-reading both as they
grow. Answers enter the app's SQLite (`pref_comparisons`, `pref_tree`, under the run's digest) as
any comparison page's do; `read_answers` is how the loop picks them up at each retraining.

MuJoCo clips are drawn from the simulator state stored with each step (a side-view stick figure,
84 x 84 grey, as the Atari clips are; no OpenGL needed); an Atari clip shows the newest frame of
each step's stack.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fdt.io import write_json
from fdt.online.loop import QUERIES, OnlineLoop, OnlineParams
from fdt.online.store import STORE, ClipStore
from fdt.online.tasks import OnlineInputError
from fdt.preferences.clips import ClipBundle
from fdt.preferences.comparisons import Answer, Comparison, without_repeats
from fdt.preferences.tree import SortTree
from fdt.preferences.web import ComparisonPages
from fdt.teacher.clips import ClipSettings


def read_answers(db: str | Path | None, digest: str,
                 comparisons: str) -> tuple[list[Comparison], SortTree | None]:
    """The app's answers for run `digest`: its pairs (each labeller's first answer per pair), or
    its sort tree and the answers that built it. None of either before the app made its tables."""
    if db is None or not Path(db).is_file():
        return [], None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        if comparisons == "pairs":
            rows = conn.execute("SELECT left_clip, right_clip, answer, labeller, time FROM "
                                "pref_comparisons WHERE bundle = ? AND mode = 'pairs' ORDER BY id",
                                (digest,)).fetchall()
            return without_repeats([Comparison(int(a), int(b), Answer(c), d, e)
                                    for a, b, c, d, e in rows]), None
        row = conn.execute("SELECT tree FROM pref_tree WHERE bundle = ?", (digest,)).fetchone()
    except sqlite3.OperationalError:  # no such table yet: the app has not started
        return [], None
    finally:
        conn.close()
    if row is None:
        return [], None
    tree = SortTree.from_dict(json.loads(row[0]))
    return list(tree.comparisons), tree


class OnlinePages(ComparisonPages):
    """The comparison pages over a running loop's folder (its clip store and queries)."""

    def __init__(self, run_dir: str | Path, cant_tell: str = "equal",
                 settings: ClipSettings | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.cant_tell = cant_tell
        self.settings = settings or ClipSettings()
        self.gifs: dict[int, bytes] = {}
        self._loaded: tuple[float, float] | None = None
        self._store: ClipStore | None = None
        self._queries: dict[str, Any] = {"bundle": "", "pairs": [], "tree_clips": []}
        self._renderer: Any = None
        self._refresh()

    def _refresh(self) -> None:
        queries, store = self.run_dir / QUERIES, self.run_dir / STORE
        if not queries.is_file() or not store.is_file():
            return
        stamp = (queries.stat().st_mtime, store.stat().st_mtime)
        if stamp != self._loaded:
            self._queries = json.loads(queries.read_text())
            self._store = ClipStore.load(store, self._queries["env_id"])
            self._loaded = stamp

    @property
    def store(self) -> ClipStore:
        self._refresh()
        if self._store is None:
            raise OnlineInputError(f"{self.run_dir}: no clips yet (the loop writes {STORE})")
        return self._store

    @property
    def bundle(self) -> ClipBundle:  # type: ignore[override]
        """The store as a bundle; its training clips are those offered to the tree."""
        self._refresh()
        if self._store is None:
            return ClipBundle(self._queries["bundle"], "", (), ())
        whole = self._store.bundle(self._queries["bundle"])
        offered = set(self._queries["tree_clips"])
        return ClipBundle(whole.digest, whole.dataset_key,
                          tuple(c for c in whole.clips if c.id in offered), ())

    @property
    def clips(self) -> dict[int, Any]:  # type: ignore[override]
        self._refresh()
        if self._store is None:
            return {}
        return {c.id: c for c in self._store.bundle(self._queries["bundle"]).clips}

    @property
    def pairs(self) -> list[tuple[int, int]]:  # type: ignore[override]
        self._refresh()
        return [(int(a), int(b)) for a, b in self._queries["pairs"]]

    def frames(self, clip_id: int) -> np.ndarray:
        store = self.store
        observations = store.observations[clip_id]
        if observations.ndim == 4:  # Atari frame stacks: the newest frame of each
            return observations[:, -1]
        return self._render(store.env_id, store.physics[clip_id])

    def _render(self, env_id: str, physics: np.ndarray) -> np.ndarray:
        """The body seen from the side as a stick figure (each body joined to its parent, the
        ground a line, the view following the root body), 84 x 84 grey. MuJoCo's own renderer
        needs OpenGL, which headless CPU machines only have in software: half a second a frame
        here, against about a millisecond for this."""
        import gymnasium
        import mujoco
        from PIL import Image, ImageDraw

        if self._renderer is None:
            self._renderer = gymnasium.make(env_id).unwrapped
        env = self._renderer
        model, data, nq = env.model, env.data, env.model.nq
        size, scale = 84, 24.0  # pixels per metre: a standing hopper (1.25 m) fills a third
        frames = []
        for row in physics:
            data.qpos[:], data.qvel[:] = row[:nq], row[nq:]
            mujoco.mj_forward(model, data)
            centre = data.xpos[1, 0]
            image = Image.new("L", (size, size), 255)
            draw = ImageDraw.Draw(image)

            def point(x: float, z: float) -> tuple[float, float]:
                return (size / 2 + (x - centre) * scale, size - 8 - z * scale)
            draw.line([(0, size - 8), (size, size - 8)], fill=120, width=1)
            for mark in np.arange(np.floor(centre - 3), centre + 3, 1.0):  # ground ticks show motion
                x, _ = point(mark, 0)
                draw.line([(x, size - 8), (x - 3, size - 3)], fill=120, width=1)
            for body in range(2, model.nbody):
                parent = model.body_parentid[body]
                if parent == 0:
                    continue
                draw.line([point(data.xpos[parent, 0], data.xpos[parent, 2]),
                           point(data.xpos[body, 0], data.xpos[body, 2])], fill=0, width=3)
            for geom in range(model.ngeom):  # the geoms' centres mark the limbs' ends
                if model.geom_bodyid[geom] > 0:
                    x, z = point(data.geom_xpos[geom, 0], data.geom_xpos[geom, 2])
                    draw.ellipse([x - 2, z - 2, x + 2, z + 2], fill=40)
            frames.append(np.asarray(image, np.uint8))
        return np.stack(frames)


def app_bundle(folder: Path, env_id: str) -> Path:
    """An empty query bundle for the app's shared pages (sign-in, home): human mode asks no
    labelling queries, only comparisons."""
    from fdt.teacher.bundle import BUNDLE, FORMAT_VERSION

    game = "".join(ch for ch in env_id.split("-v")[0] if ch.isalnum()) or "Env"
    write_json(folder / BUNDLE, {"format_version": FORMAT_VERSION, "game": game,
                                 "training_set": "0" * 16, "bundle_id": "0" * 16,
                                 "action_names": ["NOOP", "ACT"], "clip": {}, "gold_rate": 0,
                                 "queries": []})
    for sub in ("clips", "stacks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def human_app(run_dir: str | Path, db: str | Path, env_id: str, cant_tell: str = "equal") -> Any:
    from fdt.teacher.app import create_app

    run_dir = Path(run_dir)
    bundle_dir = app_bundle(run_dir / "app", env_id)
    return create_app(bundle_dir, db, families=[OnlinePages(run_dir, cant_tell)])


def run_human(params: OnlineParams, out_dir: str | Path, db: str | Path, *,
              host: str = "127.0.0.1", port: int = 8000) -> dict[str, Any]:
    """Serve the app on host:port in a thread and train in this one until the steps are done."""
    import uvicorn

    loop = OnlineLoop(params, out_dir, db)
    app = human_app(out_dir, db, params.env, params.cant_tell)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    print(f"comparisons of {params.env} at http://{host}:{port}/{'compare' if params.comparisons == 'pairs' else 'tree'} "
          f"(answers in {db}); the agent trains meanwhile", flush=True)
    try:
        return loop.run()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
