"""The answers' SQLite database of one query bundle: labellers, answers and query locks.

Every change runs in one `BEGIN IMMEDIATE` transaction (SQLite's write lock), so two browsers
answering the same query at once cannot both be counted: the second is refused with a message
and nothing is lost. A labeller holds at most one query at a time (a lock that expires after
`lock_seconds`, so a closed tab frees its query); after a reload or a restart of the app the
labeller gets the same query back. The database remembers its bundle (and that bundle's training
set) and refuses any other.

Page families of the app add their own tables with `ensure_tables` and write through
`transaction`, so they share the same file, labellers and locking discipline.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

VERDICTS = ("good", "bad", "unsure")  # "Was this action good here?": yes / no / can't tell
LOCK_SECONDS = 600.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labellers (name TEXT PRIMARY KEY, joined REAL NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    query_id TEXT NOT NULL,
    labeller TEXT NOT NULL REFERENCES labellers(name),
    verdict TEXT NOT NULL CHECK (verdict IN ('good', 'bad', 'unsure')),
    best_action INTEGER,
    gold INTEGER NOT NULL,
    answered_at REAL NOT NULL,
    seconds REAL,
    UNIQUE (query_id, labeller)
);
CREATE TABLE IF NOT EXISTS locks (
    query_id TEXT PRIMARY KEY,
    labeller TEXT NOT NULL,
    since REAL NOT NULL
);
"""


class StoreError(ValueError):
    """Input the database refuses (unknown query, action or name; another bundle)."""


class ConflictError(StoreError):
    """An answer that would be lost or counted twice (someone else holds the query, or it is
    already answered)."""


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_PATTERN.match(name):
        raise StoreError(f"labeller name {name!r}: use 1-40 letters, digits, spaces, '.', '_' or "
                         "'-', starting with a letter or digit")
    return name


class Store:
    """The answers of one bundle in `path` (created on first use)."""

    def __init__(self, path: str | Path, bundle: Mapping[str, Any], *, answers_per_query: int = 1,
                 lock_seconds: float = LOCK_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if answers_per_query < 1:
            raise StoreError(f"answers per query must be at least 1, not {answers_per_query}")
        self.path, self.bundle = Path(path), bundle
        self.answers_per_query, self.lock_seconds, self.clock = (answers_per_query, lock_seconds,
                                                                 clock)
        self.queries = {q["id"]: q for q in bundle["queries"]}
        self.order = [q["id"] for q in bundle["queries"]]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        finally:
            conn.close()
        self.ensure_tables(SCHEMA)
        self._claim_bundle()

    # --- shared helpers for every page family ---
    def connect(self) -> sqlite3.Connection:
        """A new connection (one per request: the app serves from several threads)."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its start: reads inside it see
        what no other writer can change before the commit."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def ensure_tables(self, sql: str) -> None:
        conn = self.connect()
        try:
            conn.executescript(sql)
        finally:
            conn.close()

    def _claim_bundle(self) -> None:
        with self.transaction() as conn:
            meta = {row["name"]: row["value"] for row in conn.execute("SELECT * FROM meta")}
            if not meta:
                conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("bundle_id", self.bundle["bundle_id"]),
                    ("training_set", self.bundle["training_set"]),
                    ("game", self.bundle["game"])])
                return
        if meta["training_set"] != self.bundle["training_set"]:
            raise StoreError(f"{self.path} holds answers about training set "
                             f"{meta['training_set']} ({meta['game']}), but this query bundle is "
                             f"of training set {self.bundle['training_set']}; use the bundle the "
                             "database was made for, or a new database")
        if meta["bundle_id"] != self.bundle["bundle_id"]:
            raise StoreError(f"{self.path} holds answers to query bundle {meta['bundle_id']}, not "
                             f"to bundle {self.bundle['bundle_id']}; use that bundle, or a new "
                             "database")

    # --- labellers and queries ---
    def add_labeller(self, name: str) -> str:
        name = check_name(name)
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO labellers VALUES (?, ?)", (name, self.clock()))
        return name

    def next_query(self, labeller: str) -> str | None:
        """The labeller's query: the one they hold, else the first in serving order that they
        have not answered, that still needs answers and that nobody else holds (now locked to
        them). None when there is nothing left for them."""
        now = self.clock()
        with self.transaction() as conn:
            conn.execute("DELETE FROM locks WHERE since < ?", (now - self.lock_seconds,))
            held = conn.execute("SELECT query_id FROM locks WHERE labeller = ?",
                                (labeller,)).fetchone()
            if held is not None:
                return str(held["query_id"])
            answered = {r["query_id"] for r in conn.execute(
                "SELECT query_id FROM answers WHERE labeller = ?", (labeller,))}
            counts = dict(conn.execute(
                "SELECT query_id, COUNT(*) FROM answers GROUP BY query_id").fetchall())
            locked = {r["query_id"] for r in conn.execute("SELECT query_id FROM locks")}
            for query_id in self.order:
                if (query_id in answered or query_id in locked
                        or counts.get(query_id, 0) >= self.answers_per_query):
                    continue
                conn.execute("INSERT INTO locks VALUES (?, ?, ?)", (query_id, labeller, now))
                return query_id
        return None

    def holder(self, query_id: str) -> str | None:
        """Who holds a query now (None: nobody)."""
        conn = self.connect()
        try:
            row = conn.execute("SELECT labeller FROM locks WHERE query_id = ? AND since >= ?",
                               (query_id, self.clock() - self.lock_seconds)).fetchone()
        finally:
            conn.close()
        return None if row is None else str(row["labeller"])

    def query(self, query_id: str) -> Mapping[str, Any]:
        if query_id not in self.queries:
            raise StoreError(f"unknown query {query_id!r}: the bundle has {self.order[0]}.."
                             f"{self.order[-1]}" if self.order else "the bundle has no queries")
        return self.queries[query_id]

    def check_answer(self, query_id: str, verdict: str, best_action: int | None) -> None:
        """Refuse an answer the bundle cannot mean: an unknown query, verdict or action."""
        query = self.query(query_id)
        if verdict not in VERDICTS:
            raise StoreError(f"unknown answer {verdict!r}; expected one of {', '.join(VERDICTS)}")
        names = self.bundle["action_names"]
        if verdict != "bad":
            if best_action is not None:
                raise StoreError(f"a best action goes with the answer 'bad' only, not {verdict!r}")
            return
        if best_action is None:
            raise StoreError("after 'no', say which action would be best")
        if not 0 <= best_action < len(names):
            raise StoreError(f"unknown action {best_action}: {self.bundle['game']} has actions "
                             f"0..{len(names) - 1} ({', '.join(names)})")
        if best_action == query["action"]:
            raise StoreError(f"action {names[best_action]} is the one taken; after 'no', choose "
                             "another")

    def answer(self, labeller: str, query_id: str, verdict: str,
               best_action: int | None = None) -> None:
        """Record one answer, or raise: nothing is written unless all of it is valid and the
        labeller may answer this query now."""
        self.check_answer(query_id, verdict, best_action)
        now = self.clock()
        with self.transaction() as conn:
            lock = conn.execute("SELECT labeller, since FROM locks WHERE query_id = ?",
                                (query_id,)).fetchone()
            live = lock is not None and lock["since"] >= now - self.lock_seconds
            if live and lock["labeller"] != labeller:
                raise ConflictError(f"query {query_id} is being labelled by {lock['labeller']}; "
                                    "your answer was not recorded")
            if conn.execute("SELECT 1 FROM answers WHERE query_id = ? AND labeller = ?",
                            (query_id, labeller)).fetchone():
                raise ConflictError(f"{labeller} has already answered query {query_id}; the first "
                                    "answer stands")
            count = conn.execute("SELECT COUNT(*) FROM answers WHERE query_id = ?",
                                 (query_id,)).fetchone()[0]
            if count >= self.answers_per_query:
                raise ConflictError(f"query {query_id} already has its {count} answer(s); yours "
                                    "was not recorded")
            conn.execute("INSERT OR IGNORE INTO labellers VALUES (?, ?)", (labeller, now))
            seconds = now - lock["since"] if live else None
            conn.execute("INSERT INTO answers (query_id, labeller, verdict, best_action, gold, "
                         "answered_at, seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (query_id, labeller, verdict, best_action,
                          int(self.queries[query_id]["gold"] is not None), now, seconds))
            conn.execute("DELETE FROM locks WHERE query_id = ?", (query_id,))

    def progress(self, labeller: str | None = None) -> dict[str, int]:
        """Labelling queries answered (by anyone, and by `labeller`) against the budget: every
        non-gold query answered `answers_per_query` times."""
        real = [q for q in self.order if self.queries[q]["gold"] is None]
        conn = self.connect()
        try:
            counts = dict(conn.execute("SELECT query_id, COUNT(*) FROM answers "
                                       "WHERE gold = 0 GROUP BY query_id").fetchall())
            mine = conn.execute("SELECT COUNT(*) FROM answers WHERE labeller = ?",
                                (labeller,)).fetchone()[0]
        finally:
            conn.close()
        done = sum(min(counts.get(q, 0), self.answers_per_query) for q in real)
        return {"answers": done, "budget": len(real) * self.answers_per_query,
                "labelled": sum(1 for q in real if counts.get(q, 0)), "queries": len(real),
                "mine": int(mine)}


def read_answers(path: str | Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A database's meta (bundle, training set, game) and its answers, oldest first, without the
    bundle (the export and the labels stage read it so)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no answers database there (start the app with "
                         "`fdt-feedback serve` to make one)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        meta = {row["name"]: row["value"] for row in conn.execute("SELECT * FROM meta")}
        rows = [dict(row) for row in conn.execute(
            "SELECT query_id, labeller, verdict, best_action, gold, answered_at, seconds "
            "FROM answers ORDER BY id")]
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not an answers database of the labelling app ({err})") from None
    finally:
        conn.close()
    return meta, rows
