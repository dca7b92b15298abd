"""The answers' SQLite database of one query bundle: labellers, answers and query locks.

Every change runs in one `BEGIN IMMEDIATE` transaction (SQLite's write lock), so two browsers
answering the same query at once cannot both be counted: the second is refused with a message
and nothing is lost. A labeller holds at most one query at a time (a lock that expires after
`lock_seconds`, so a closed tab frees its query) and may answer only the query handed to them;
after a reload or a restart of the app the labeller gets the same query back. A query asked of
N labellers is handed to up to N at once, one lock each. The database remembers its bundle (and
that bundle's training set) and refuses any other, and the app only ever opens a database it
made itself (or an empty file): never another program's SQLite file.

Page families of the app add their own tables with `ensure_tables` and write through
`transaction`, so they share the same file, labellers and locking discipline.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

VERDICTS = ("good", "bad", "unsure")  # "Was this action good here?": yes / no / can't tell
LOCK_SECONDS = 600.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$")

APP = "fdt-feedback"  # meta's "app" entry: the database is this app's
SQLITE_MAGIC = b"SQLite format 3\x00"
# The tables the app and its page families make; any other table means another program's file.
APP_TABLES = {"meta", "labellers", "answers", "locks", "invites", "pref_comparisons",
              "pref_tree", "pref_served", "sqlite_sequence"}
LEGACY_META = {"bundle_id", "training_set", "game"}  # what meta held before the "app" entry

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
    query_id TEXT NOT NULL,
    labeller TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (query_id, labeller)
);
CREATE TABLE IF NOT EXISTS invites (
    token_sha256 TEXT PRIMARY KEY,
    labeller TEXT NOT NULL,
    created REAL NOT NULL
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
        check_own_database(self.path)  # before anything is written to it
        conn = self.connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            _drop_single_holder_locks(conn)
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
                    ("app", APP), ("bundle_id", self.bundle["bundle_id"]),
                    ("training_set", self.bundle["training_set"]),
                    ("game", self.bundle["game"])])
                return
            if "app" not in meta:  # made before the entry existed: mark it the app's
                conn.execute("INSERT INTO meta VALUES ('app', ?)", (APP,))
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
        have not answered and that still needs answers beyond those held by others (now locked
        to them). None when there is nothing left for them."""
        with self.transaction() as conn:
            held = self._held(conn, labeller)
            if held is not None:
                return held
            for query_id in self.order:
                if self._open_to(conn, labeller, query_id) is None:
                    conn.execute("INSERT INTO locks VALUES (?, ?, ?)",
                                 (query_id, labeller, self.clock()))
                    return query_id
        return None

    def hand(self, labeller: str, query_id: str) -> None:
        """Hand one given query to the labeller (as `next_query` hands the next one), or raise
        ConflictError saying why it cannot be theirs now."""
        self.query(query_id)
        with self.transaction() as conn:
            held = self._held(conn, labeller)
            if held == query_id:
                return
            if held is not None:
                raise ConflictError(f"{labeller} holds query {held}; answer it first")
            refusal = self._open_to(conn, labeller, query_id)
            if refusal is not None:
                raise ConflictError(refusal)
            conn.execute("INSERT INTO locks VALUES (?, ?, ?)", (query_id, labeller, self.clock()))

    def _held(self, conn: sqlite3.Connection, labeller: str) -> str | None:
        """The query the labeller holds now (expired locks dropped first)."""
        conn.execute("DELETE FROM locks WHERE since < ?", (self.clock() - self.lock_seconds,))
        row = conn.execute("SELECT query_id FROM locks WHERE labeller = ?", (labeller,)).fetchone()
        return None if row is None else str(row["query_id"])

    def _open_to(self, conn: sqlite3.Connection, labeller: str, query_id: str) -> str | None:
        """None if the query may be handed to the labeller now, else why not."""
        if conn.execute("SELECT 1 FROM answers WHERE query_id = ? AND labeller = ?",
                        (query_id, labeller)).fetchone():
            return f"{labeller} has already answered query {query_id}; the first answer stands"
        answers = conn.execute("SELECT COUNT(*) FROM answers WHERE query_id = ?",
                               (query_id,)).fetchone()[0]
        holders = [r["labeller"] for r in conn.execute(
            "SELECT labeller FROM locks WHERE query_id = ? ORDER BY since", (query_id,))]
        if answers >= self.answers_per_query:
            return f"query {query_id} already has its {answers} answer(s)"
        if answers + len(holders) >= self.answers_per_query:
            return f"query {query_id} is being labelled by {', '.join(holders)}"
        return None

    def holders(self, query_id: str) -> list[str]:
        """Who holds a query now, longest first (empty: nobody)."""
        conn = self.connect()
        try:
            rows = conn.execute("SELECT labeller FROM locks WHERE query_id = ? AND since >= ? "
                                "ORDER BY since", (query_id, self.clock() - self.lock_seconds))
            return [str(row["labeller"]) for row in rows]
        finally:
            conn.close()

    def holder(self, query_id: str) -> str | None:
        """Who holds a query now (the first of its holders; None: nobody)."""
        holders = self.holders(query_id)
        return holders[0] if holders else None

    # --- invitations: who may sign in when the app is served beyond this machine ---
    def invite(self, labeller: str) -> str:
        """A new sign-in token for the labeller (printed once; only its sha256 is kept)."""
        labeller = self.add_labeller(labeller)
        token = secrets.token_urlsafe(24)
        with self.transaction() as conn:
            conn.execute("INSERT INTO invites VALUES (?, ?, ?)",
                         (_token_digest(token), labeller, self.clock()))
        return token

    def invited(self, token: str) -> str | None:
        """The labeller a token signs in, or None for an unknown one."""
        conn = self.connect()
        try:
            row = conn.execute("SELECT labeller FROM invites WHERE token_sha256 = ?",
                               (_token_digest(token),)).fetchone()
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
            if self._held(conn, labeller) != query_id:
                # Only the query handed to this labeller: say why it is not theirs.
                why = (self._open_to(conn, labeller, query_id)
                       or f"query {query_id} was not handed to {labeller} (or the hold expired)")
                raise ConflictError(f"{why}; your answer was not recorded")
            since = conn.execute("SELECT since FROM locks WHERE query_id = ? AND labeller = ?",
                                 (query_id, labeller)).fetchone()["since"]
            conn.execute("INSERT OR IGNORE INTO labellers VALUES (?, ?)", (labeller, now))
            conn.execute("INSERT INTO answers (query_id, labeller, verdict, best_action, gold, "
                         "answered_at, seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (query_id, labeller, verdict, best_action,
                          int(self.queries[query_id]["gold"] is not None), now, now - since))
            conn.execute("DELETE FROM locks WHERE query_id = ? AND labeller = ?",
                         (query_id, labeller))

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


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_own_database(path: Path) -> None:
    """Refuse, before writing anything, a file that is not this app's answers database: not
    SQLite at all, or another program's SQLite file (its tables or its meta are not ours). A
    missing or empty file, or an SQLite file without tables, becomes the app's."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise StoreError(f"{path}: not an SQLite database; give --db a new file or an answers "
                             "database this app made")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                                 "'table'")}
        if not tables:
            return
        foreign = sorted(tables - APP_TABLES)
        meta: dict[str, str] = {}
        if "meta" in tables:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(meta)")]
            if columns == ["name", "value"]:
                meta = {str(n): str(v) for n, v in conn.execute("SELECT name, value FROM meta")}
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a readable SQLite database ({err})") from None
    finally:
        conn.close()
    ours = meta.get("app") == APP or (meta.keys() == LEGACY_META and "answers" in tables)
    if foreign or not ours:
        listed = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
        raise StoreError(f"{path}: an SQLite database of another program (tables: {listed}), not "
                         "an answers database of the labelling app; the app keeps its answers in a "
                         "file of its own: give --db a new file")


def _drop_single_holder_locks(conn: sqlite3.Connection) -> None:
    """Locks from before a query could be held by several labellers (one row per query): they
    are transient, so the old table is dropped and made anew."""
    keys = [row[1] for row in conn.execute("PRAGMA table_info(locks)") if row[5]]
    if keys == ["query_id"]:
        conn.execute("DROP TABLE locks")


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
