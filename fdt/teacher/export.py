"""From the labellers' answers to FDT's labels: `labels.parquet` in exactly the oracle labels'
schema (fdt.oracle.labels), so FDT trains on it with no other change.

Per labelling query, the labellers' "good" and "bad" votes decide (a "can't tell" is no vote):
more "good" gives feedback 1, more "bad" feedback 0 with the best action most of the "bad" voters
chose in the place of the cell's a* (-1 on a tie: FDT then ignores the negative); a tie between
"good" and "bad" drops the state. `oracle_action` is what the labellers would do: the dataset
action after a "good", their best action after a "bad". Gold queries never become labels: they
measure each labeller's agreement with the oracle.

The answers come from the app's database or from its export (`fdt-feedback export`, JSON); their
digest (`answers_digest`) is part of the labels' key, so new answers make new labels.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fdt.io import atomic_path, write_json
from fdt.keys import canonical_json
from fdt.teacher.bundle import BundleError
from fdt.teacher.store import StoreError, read_answers

EXPORT_FORMAT = 1
STATE_COLUMNS = ("order", "position", "replay_index", "buffer", "slot", "action", "best_action",
                 "worst_action", "gap")  # those the oracle's labels copy from states.parquet


def load_answers(path: str | Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The meta and answers of the app's database (`.sqlite`, `.db`) or of its JSON export."""
    path = Path(path)
    if path.suffix == ".json":
        if not path.is_file():
            raise StoreError(f"{path}: no answers export there")
        export = json.loads(path.read_text())
        if export.get("format") != EXPORT_FORMAT or "answers" not in export:
            raise StoreError(f"{path}: not an export of the labelling app (format "
                             f"{EXPORT_FORMAT} with meta and answers)")
        return dict(export["meta"]), list(export["answers"])
    return read_answers(path)


def export_answers(db: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the database's meta and answers as JSON (atomically); return it."""
    meta, answers = read_answers(db)
    export = {"format": EXPORT_FORMAT, "meta": meta, "answers": answers}
    write_json(out, export)
    return export


def answers_digest(paths: Sequence[str | Path]) -> str:
    """A digest of what decides the labels in these answer files: each answer's query,
    labeller, verdict and best action (not its time); "missing" for a file not there yet."""
    parts = []
    for path in paths:
        if not Path(path).is_file():
            parts.append("missing")
            continue
        meta, answers = load_answers(path)
        parts.append({"bundle_id": meta.get("bundle_id"), "answers": sorted(
            (a["query_id"], a["labeller"], a["verdict"], a["best_action"]) for a in answers)})
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def check_answers_bundle(meta: Mapping[str, str], bundle: Mapping[str, Any], where: str) -> None:
    """Refuse answers given to another bundle."""
    if meta.get("bundle_id") != bundle["bundle_id"]:
        raise StoreError(f"{where}: the answers are to query bundle {meta.get('bundle_id')}, not "
                         f"to {bundle['bundle_id']} (a database of another bundle)")


def majority(bundle: Mapping[str, Any], answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per labelling query, the labellers' decision: {query_id: (feedback, best_action)}, with
    counts of votes, ties and agreement with the majority."""
    votes: dict[str, list[Mapping[str, Any]]] = {}
    for a in answers:
        votes.setdefault(a["query_id"], []).append(a)
    queries = {q["id"]: q for q in bundle["queries"]}
    decided: dict[str, tuple[int, int]] = {}
    ties = unanswered = agreeing = voting = 0
    for query_id, query in queries.items():
        if query["gold"] is not None:
            continue
        cast = [a for a in votes.get(query_id, []) if a["verdict"] != "unsure"]
        good = sum(a["verdict"] == "good" for a in cast)
        bad = len(cast) - good
        if not cast:
            unanswered += 1
        elif good == bad:
            ties += 1
        else:
            agreeing += max(good, bad)
            voting += len(cast)
            if good > bad:
                decided[query_id] = (1, query["action"])
            else:
                decided[query_id] = (0, _most_common([a["best_action"] for a in cast
                                                      if a["verdict"] == "bad"]))
    return {"decided": decided, "ties": ties, "unanswered": unanswered,
            "majority_agreement": agreeing / voting if voting else None}


def _most_common(actions: list[int]) -> int:
    ranked = Counter(actions).most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return -1
    return int(ranked[0][0])


def labeller_table(bundle: Mapping[str, Any],
                   answers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per labeller: answers, verdict counts, seconds per answer, and agreement with the gold
    (oracle) verdicts: the share of their gold yes/no answers that match, and of their best
    actions after a "no" that are the oracle's action (where the oracle names one)."""
    queries = {q["id"]: q for q in bundle["queries"]}
    rows = []
    for name in sorted({a["labeller"] for a in answers}):
        mine = [a for a in answers if a["labeller"] == name]
        gold = [(a, queries[a["query_id"]]["gold"]) for a in mine
                if queries[a["query_id"]]["gold"] is not None and a["verdict"] != "unsure"]
        agree = [(a["verdict"] == "good") == (g["feedback"] == 1) for a, g in gold]
        best = [a["best_action"] == g["oracle_action"] for a, g in gold
                if a["verdict"] == "bad" and g["feedback"] == 0 and g["oracle_action"] >= 0]
        seconds = [a["seconds"] for a in mine if a.get("seconds") is not None]
        rows.append({
            "labeller": name, "answers": len(mine),
            **{v: sum(a["verdict"] == v for a in mine) for v in ("good", "bad", "unsure")},
            "gold_answers": len(gold),
            "gold_agreement": float(np.mean(agree)) if agree else None,
            "gold_best_action_agreement": float(np.mean(best)) if best else None,
            "seconds_per_answer": float(np.median(seconds)) if seconds else None,
        })
    return rows


def human_labels(bundle: Mapping[str, Any], answers_path: str | Path, states_path: str | Path,
                 out_dir: str | Path) -> dict[str, Any]:
    """Write labels.parquet (the oracle labels' schema) and agreement.json from the answers."""
    meta, answers = load_answers(answers_path)
    check_answers_bundle(meta, bundle, str(answers_path))
    decision = majority(bundle, answers)
    decided = {queries["order"]: decision["decided"][queries["id"]]
               for queries in bundle["queries"] if queries["id"] in decision["decided"]}
    states = pq.read_table(states_path).sort_by("order")
    orders = states["order"].to_numpy()
    rows = np.flatnonzero(np.isin(orders, list(decided)))
    chosen = states.take(pa.array(rows, pa.int64()))
    by_query = {q["order"]: q for q in bundle["queries"]}
    for order, position in zip(chosen["order"].to_pylist(), chosen["position"].to_pylist(),
                               strict=True):
        if by_query[order]["position"] != position:
            raise BundleError(f"{states_path}: state {order} is at position {position}, the query "
                             f"bundle has it at {by_query[order]['position']} (states of another "
                             "training set?)")
    feedback = np.array([decided[o][0] for o in chosen["order"].to_pylist()], np.int8)
    person_best = np.array([decided[o][1] for o in chosen["order"].to_pylist()], np.int32)
    table = {name: chosen[name] for name in STATE_COLUMNS}
    # The person's best action takes a*'s place after a "no"; a "yes" keeps the cell's a*.
    table["best_action"] = pa.array(np.where(feedback == 0, person_best,
                                             chosen["best_action"].to_numpy()),
                                    chosen.schema.field("best_action").type)
    table["oracle_action"] = pa.array(person_best)
    table["feedback"] = pa.array(feedback)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "labels.parquet") as tmp:
        pq.write_table(pa.table(table), tmp)
    n = len(feedback)
    summary = {
        "oracle": {"kind": "human", "bundle_id": bundle["bundle_id"],
                   "answers": str(answers_path)},
        "states": {"count": n, "positives": int(feedback.sum()),
                   "negatives": int(n - feedback.sum()),
                   "agreement": float(feedback.mean()) if n else None},
        "answers": len(answers),
        "ties_dropped": decision["ties"],
        "unanswered": decision["unanswered"],
        "majority_agreement": decision["majority_agreement"],
        "labellers": labeller_table(bundle, answers),
    }
    write_json(out_dir / "agreement.json", summary)
    return summary
