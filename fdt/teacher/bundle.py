"""The query bundle of one (game, seed): what the labelling app shows and what its answers mean.

For each of the first `queries` important states in rank order (states.parquet), the bundle holds
a clip around the state (`clips/{id}.gif`: `before` steps before it, `after` after, inside its
trajectory, the state marked) and its 4-frame stack (`stacks/{id}.png`), the dataset action with
the game's action names (ALE's minimal action set), and the state's order, position, replay
index, buffer and slot. Gold queries, mined states further down the ranking whose oracle label is
known, are mixed in at `gold_rate` to measure each labeller's agreement; their answers never
become labels.

`bundle.json`, written last, lists the queries in serving order with opaque ids (q0000, ...), the
training set's identity (digest of its arrays' sha256s) and the bundle's id (digest of all of
it): the app's database and the labels stage refuse a bundle of another training set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from fdt.dataset.training_set import MANIFEST, TrainingSet
from fdt.io import atomic_path, write_json
from fdt.keys import canonical_json
from fdt.teacher.clips import ClipSettings, clip_gif, clip_window, stack_png

BUNDLE = "bundle.json"
FORMAT_VERSION = 1
STATE_COLUMNS = ("order", "position", "replay_index", "buffer", "slot", "action", "best_action",
                 "worst_action", "gap")


class BundleError(ValueError):
    pass


@dataclass(frozen=True)
class BundleParams:
    queries: int = 20  # important states to label, the first in rank order
    gold_rate: float = 0.2  # gold queries per labelling query
    clip: ClipSettings = field(default_factory=ClipSettings)


def action_names(game: str) -> list[str]:
    """The names of the game's minimal action set, which the dataset's actions index (ALE's
    Action enum: NOOP, FIRE, RIGHT, ...)."""
    import ale_py

    from fdt.atari import resolve_rom

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(str(resolve_rom(game)))
    return [action.name for action in ale.getMinimalActionSet()]


def training_set_id(folder: str | Path) -> str:
    """The identity of a training set: a digest of its arrays' sha256s (from its manifest)."""
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    hashes = {name: entry["sha256"] for name, entry in manifest["arrays"].items()}
    return hashlib.sha256(canonical_json(hashes).encode()).hexdigest()[:16]


def gold_choice(candidates: np.ndarray, count: int) -> np.ndarray:
    """`count` candidates spread evenly over the ranking (all of them when there are fewer)."""
    if count >= len(candidates):
        return candidates
    if count <= 0:
        return candidates[:0]
    return candidates[np.linspace(0, len(candidates) - 1, count).round().astype(np.int64)]


def serving_order(real: int, gold: int) -> list[bool]:
    """Which slots of the serving sequence are gold: spread evenly between the real queries."""
    slots = [False] * real
    for j in range(gold, 0, -1):  # from the back, so earlier insert points stay put
        slots.insert((j * real) // (gold + 1), True)
    return slots


def build_bundle(training_set: str | Path, states_path: str | Path, out_dir: str | Path,
                 game: str, params: BundleParams, *, gold_labels: str | Path | None = None,
                 names: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Write the query bundle of one training set's mined states to `out_dir`; return it."""
    data = TrainingSet(training_set)
    states = pq.read_table(states_path).sort_by("order").to_pydict()
    n = len(states["order"])
    positions = np.asarray(states["position"], np.int64)
    if n and (positions.max() >= len(data) or not np.array_equal(
            np.asarray(data.actions)[positions], np.asarray(states["action"]))):
        raise BundleError(f"{states_path}: the states' positions or actions are not those of the "
                          f"training set in {training_set} (states mined for another one?)")
    names = names if names is not None else action_names(game)
    if len(names) != data.num_actions:
        raise BundleError(f"{game} has {len(names)} actions, the training set {data.num_actions}")
    gold = _gold_verdicts(gold_labels, states) if gold_labels is not None else {}
    real = list(range(min(params.queries, n)))
    candidates = np.array([k for k in range(len(real), n) if states["order"][k] in gold], np.int64)
    chosen = gold_choice(candidates, round(len(real) * params.gold_rate)).tolist()
    picks, reals, golds = [], iter(real), iter(chosen)
    for is_gold in serving_order(len(real), len(chosen)):
        picks.append((next(golds), True) if is_gold else (next(reals), False))

    out_dir = Path(out_dir)
    for sub in ("clips", "stacks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    queries = []
    for number, (k, is_gold) in enumerate(tqdm(picks, desc=f"queries {game}", unit="query",
                                               disable=not progress)):
        query_id = f"q{number:04d}"
        record = {name: _plain(states[name][k]) for name in STATE_COLUMNS}
        record.update(id=query_id, action_name=names[record["action"]], gold=None,
                      clip=f"clips/{query_id}.gif", stack=f"stacks/{query_id}.png")
        if is_gold:
            record["gold"] = gold[record["order"]]
        _write_images(out_dir, record, data, params.clip)
        queries.append(record)
    bundle = {
        "format_version": FORMAT_VERSION,
        "game": game,
        "training_set": training_set_id(training_set),
        "action_names": names,
        "clip": asdict(params.clip),
        "gold_rate": params.gold_rate,
        "queries": queries,
    }
    bundle["bundle_id"] = hashlib.sha256(canonical_json(bundle).encode()).hexdigest()[:16]
    write_json(out_dir / BUNDLE, bundle)
    return bundle


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _gold_verdicts(labels_path: str | Path, states: Mapping[str, list]) -> dict[int, dict]:
    """The oracle's verdict per mining order, from its labels.parquet of the same states."""
    labels = pq.read_table(labels_path, columns=["order", "position", "feedback",
                                                 "oracle_action"]).to_pydict()
    by_order = dict(zip(states["order"], states["position"], strict=True))
    verdicts = {}
    for order, position, feedback, oracle_action in zip(
            labels["order"], labels["position"], labels["feedback"], labels["oracle_action"],
            strict=True):
        if by_order.get(order) != position:
            raise BundleError(f"{labels_path}: state {order} is at position {position}, the mined "
                              "states put it elsewhere (labels of other states?)")
        verdicts[order] = {"feedback": int(feedback), "oracle_action": int(oracle_action)}
    return verdicts


def _write_images(out_dir: Path, record: dict[str, Any], data: TrainingSet,
                  clip: ClipSettings) -> None:
    """The query's clip and stack; files already there are complete (written atomically), so an
    interrupted build resumes where it stopped."""
    position = record["position"]
    ends = np.asarray(data.trajectory_ends)
    t = int(np.searchsorted(ends, position, side="right"))
    start = int(ends[t - 1]) if t else 0
    first, stop = clip_window(position, start, int(ends[t]), clip)
    shown = np.arange(first, stop)
    shown = shown[~np.asarray(data.padding)[shown] | (shown == position)]
    stacks = np.asarray(data.stacks)
    clip_path, stack_path = out_dir / record["clip"], out_dir / record["stack"]
    if not clip_path.is_file():
        frames = np.asarray(data.frames[stacks[shown, -1]])
        with atomic_path(clip_path) as tmp:
            tmp.write_bytes(clip_gif(frames, int(np.flatnonzero(shown == position)[0]), clip))
    if not stack_path.is_file():
        with atomic_path(stack_path) as tmp:
            tmp.write_bytes(stack_png(np.asarray(data.frames[stacks[position]]), clip.scale))


_INTEGER = {"type": "integer"}
_DIGEST = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
_QUERY_ID = "q[0-9]{4,}"
# What build_bundle writes, exactly: a bundle made elsewhere (or edited) is checked against it
# before any of it reaches a page, so no field can carry markup or a path out of the bundle.
BUNDLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format_version", "game", "training_set", "action_names", "clip", "gold_rate",
                 "queries", "bundle_id"],
    "properties": {
        "format_version": {"const": FORMAT_VERSION},
        "game": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
        "training_set": _DIGEST,
        "bundle_id": _DIGEST,
        "action_names": {"type": "array", "minItems": 2, "maxItems": 18,
                         "items": {"type": "string", "pattern": "^[A-Z][A-Z_]*$"}},
        "clip": {"type": "object"},
        "gold_rate": {"type": "number", "minimum": 0},
        "queries": {"type": "array", "items": {
            "type": "object",
            "required": [*STATE_COLUMNS, "id", "action_name", "gold", "clip", "stack"],
            "additionalProperties": False,
            "properties": {
                **{name: _INTEGER for name in STATE_COLUMNS if name != "gap"},
                "gap": {"type": "number"},
                "id": {"type": "string", "pattern": f"^{_QUERY_ID}$"},
                "action_name": {"type": "string", "pattern": "^[A-Z][A-Z_]*$"},
                "gold": {"oneOf": [{"type": "null"}, {
                    "type": "object", "required": ["feedback", "oracle_action"],
                    "additionalProperties": False,
                    "properties": {"feedback": _INTEGER, "oracle_action": _INTEGER}}]},
                "clip": {"type": "string", "pattern": f"^clips/{_QUERY_ID}\\.gif$"},
                "stack": {"type": "string", "pattern": f"^stacks/{_QUERY_ID}\\.png$"},
            }}},
    },
}


def load_bundle(folder: str | Path) -> dict[str, Any]:
    """A bundle's `bundle.json`, checked against BUNDLE_SCHEMA and for actions the game has."""
    import jsonschema

    path = Path(folder) / BUNDLE
    if not path.is_file():
        raise BundleError(f"{path}: missing; {folder} is not a query bundle (build it with the "
                          "workflow's build_queries rule)")
    try:
        bundle = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: not JSON ({err})") from None
    if isinstance(bundle, dict) and bundle.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: format {bundle.get('format_version')}, expected "
                          f"{FORMAT_VERSION} (rebuild the bundle)")
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(BUNDLE_SCHEMA).iter_errors(bundle))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "the top level"
        raise BundleError(f"{path}: not a query bundle as build_bundle writes it: at {where}, "
                          f"{error.message}")
    actions = len(bundle["action_names"])
    for query in bundle["queries"]:
        if not 0 <= query["action"] < actions or query["action_name"] != \
                bundle["action_names"][query["action"]]:
            raise BundleError(f"{path}: query {query['id']} has action {query['action']} "
                              f"({query['action_name']}), not one of the game's {actions}")
    return bundle


def check_training_set(bundle: Mapping[str, Any], training_set: str | Path) -> None:
    """Refuse a bundle built from another training set than `training_set`."""
    wanted = training_set_id(training_set)
    if bundle["training_set"] != wanted:
        raise BundleError(f"the query bundle {bundle['bundle_id']} was built from training set "
                          f"{bundle['training_set']}, not from the one in {training_set} "
                          f"({wanted}); build the bundle of this training set")
