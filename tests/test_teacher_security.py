"""The labelling app against a careless user and an attacker (issue 28): signed sessions, CSRF
tokens and origin checks on every form, a Host allow-list, capped bodies, invite links, bundles
checked before they reach a page, and a database the app did not make left alone.

Requests go over a real socket to the app on 127.0.0.1 (http.client, so headers such as Host and
Origin can be set as an attacker would)."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from fdt.teacher.app import (
    MAX_FORM_BYTES,
    BackgroundServer,
    ServeError,
    create_app,
    served_hosts,
)
from fdt.teacher.bundle import BundleError, load_bundle
from fdt.teacher.cli import main
from fdt.teacher.store import Store, StoreError
from tests.teacher_data import world


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return world(tmp_path_factory.mktemp("security"))


class Client:
    """One browser: its cookies, raw requests with any headers."""

    def __init__(self, url: str) -> None:
        self.address = urlsplit(url).netloc
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection(self.address, timeout=30)
        sent = {"Host": self.address, **(headers or {})}
        if self.cookies:
            sent.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        try:
            connection.request(method, path, body=body, headers=sent,
                               encode_chunked="Transfer-Encoding" in sent)
            response = connection.getresponse()
            for header, value in response.getheaders():
                if header.lower() == "set-cookie":
                    name, _, rest = value.partition("=")
                    self.cookies[name] = rest.split(";", 1)[0]
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            connection.close()

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, fields: dict[str, str],
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, urlencode(fields).encode(), {
            "Content-Type": "application/x-www-form-urlencoded", **(headers or {})})

    def csrf(self, path: str = "/") -> str:
        """The CSRF token of this browser's session, as a page of the app carries it."""
        status, _, text = self.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', text)
        assert found, f"no CSRF field on {path} ({status})"
        return found.group(1)

    def sign_in(self, name: str) -> None:
        status, headers, _ = self.post("/login", {"name": name, "csrf": self.csrf()})
        assert status == 303 and headers["location"] == "/label"


@pytest.fixture
def served(tiny, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "answers.sqlite"
    with BackgroundServer(create_app(tiny.bundle_dir, db)) as url:
        yield url, db


def answers(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT query_id, labeller, verdict FROM answers").fetchall()


def test_a_forged_cookie_answers_as_nobody(served) -> None:
    """The old cookie held the name in clear: `fdt_labeller=alice` answered as alice."""
    url, db = served
    forger = Client(url)
    forger.cookies = {"fdt_labeller": "alice"}
    assert "Your name" in forger.get("/")[2]  # not signed in
    forger.cookies = {"fdt_session": "eyJsYWJlbGxlciI6ICJhbGljZSJ9.forged.signature"}
    status, headers, _ = forger.get("/label")
    assert (status, headers["location"]) == (303, "/")
    token = forger.csrf()
    status, headers, _ = forger.post("/label/q0000", {"verdict": "good", "csrf": token})
    assert (status, headers["location"]) == (303, "/") and answers(db) == []


def test_every_form_needs_the_sessions_csrf_token(served) -> None:
    url, db = served
    ann = Client(url)
    status, _, text = ann.post("/login", {"name": "ann"})
    assert status == 403 and "CSRF token does not match your session" in text
    ann.sign_in("ann")
    status, headers, _ = ann.get("/label")
    assert (status, headers["location"]) == (303, "/label/q0000")
    stale = ann.csrf("/label/q0000")
    status, _, text = ann.post("/label/q0000", {"verdict": "good", "csrf": "0" * 43})
    assert status == 403 and answers(db) == []
    status, headers, _ = ann.post("/label/q0000", {"verdict": "good", "csrf": stale})
    assert (status, headers["location"]) == (303, "/label")
    assert answers(db) == [("q0000", "ann", "good")]
    # The token of the signed-out visitor is not carried into the signed-in session.
    bob = Client(url)
    before = bob.csrf()
    bob.sign_in("bob")
    assert bob.csrf("/") != before
    status, _, _ = bob.post("/logout", {"csrf": before})
    assert status == 403


def test_a_form_from_another_origin_is_refused(served) -> None:
    """Login CSRF: a page elsewhere auto-submitting /login signed the browser in as alice."""
    url, db = served
    victim = Client(url)
    token = victim.csrf()
    status, _, text = victim.post("/login", {"name": "alice", "csrf": token},
                                  {"Origin": "http://evil.example"})
    assert status == 403 and "a form sent from http://evil.example is not accepted" in text
    status, _, _ = victim.post("/login", {"name": "alice", "csrf": token},
                               {"Referer": "http://evil.example/attack.html"})
    assert status == 403
    assert "Your name" in victim.get("/")[2]
    status, _, _ = victim.post("/login", {"name": "alice", "csrf": token}, {"Origin": url})
    assert status == 303  # the app's own page


def test_a_foreign_host_header_is_refused(served) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 was served."""
    url, _ = served
    status, _, text = Client(url).get("/", Host="evil.example")
    assert status == 400 and "Invalid host header" in text
    port = urlsplit(url).port
    assert Client(url).get("/", Host=f"localhost:{port}")[0] == 200


def test_a_large_form_is_refused_before_it_is_read(served) -> None:
    """A 400 MB form took the server from 79 MB to 2.5-2.9 GB before it answered."""
    url, _ = served
    client = Client(url)
    token = client.csrf()
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        connection.putrequest("POST", "/login")
        connection.putheader("Content-Type", "application/x-www-form-urlencoded")
        connection.putheader("Content-Length", str(400 * 2**20))
        connection.putheader("Cookie", f"fdt_session={client.cookies['fdt_session']}")
        connection.endheaders(b"csrf=" + token.encode())  # 400 MB promised, 48 bytes sent
        response = connection.getresponse()
        assert response.status == 413
        assert f"the app takes at most {MAX_FORM_BYTES}" in response.read().decode()
    finally:
        connection.close()
    # Without a length (chunked), reading stops at the cap.
    chunks = iter([b"name=" + b"a" * 3000, b"a" * 3000, b"&csrf=" + token.encode()])
    status, _, text = client.request("POST", "/login", chunks, {  # type: ignore[arg-type]
        "Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"})
    assert status == 413 and "over 4096 bytes" in text


def test_invite_links_are_the_only_way_in(tiny, tmp_path: Path) -> None:
    db = tmp_path / "answers.sqlite"
    token = Store(db, load_bundle(tiny.bundle_dir)).invite("alice")
    with BackgroundServer(create_app(tiny.bundle_dir, db, auth="invite")) as url:
        stranger = Client(url)
        assert "signs labellers in by their invite links" in stranger.get("/")[2]
        assert stranger.get("/invite/not-a-token")[0] == 404
        status, _, page = stranger.get(f"/invite/{token}")  # a GET signs nobody in
        assert status == 200 and "Sign in as alice" in page
        assert stranger.get("/label")[0] == 303 and "Sign in" in stranger.get("/")[2]
        csrf = stranger.csrf(f"/invite/{token}")
        status, _, text = stranger.post("/login", {"name": "alice", "csrf": csrf})
        assert status == 403 and "by invite link only" in text
        status, headers, _ = stranger.post(f"/invite/{token}", {"csrf": csrf})
        assert (status, headers["location"]) == (303, "/label")
        assert "alice" in stranger.get("/")[2] and stranger.get("/label")[0] == 303
    with sqlite3.connect(db) as conn:  # only the token's digest is kept
        assert token not in json.dumps(conn.execute("SELECT * FROM invites").fetchall())


def test_serving_beyond_this_machine_needs_invites_and_host_names(tiny, tmp_path: Path,
                                                                  capsys) -> None:
    assert served_hosts("127.0.0.1", "name", ()) == ["127.0.0.1", "localhost", "::1"]
    with pytest.raises(ServeError, match="refusing to serve on 0.0.0.0 with sign-in by name"):
        served_hosts("0.0.0.0", "name", ["labels.example.org"])
    with pytest.raises(ServeError, match="name the host names labellers will use with "
                       "--allowed-host"):
        served_hosts("0.0.0.0", "invite", ())
    assert served_hosts("0.0.0.0", "invite", ["labels.example.org"])[-1] == "labels.example.org"
    assert main(["serve", str(tiny.bundle_dir), "--db", str(tmp_path / "a.sqlite"),
                 "--host", "0.0.0.0"]) == 2
    assert "refusing to serve on 0.0.0.0" in capsys.readouterr().err
    assert not (tmp_path / "a.sqlite").exists()
    assert main(["invite", str(tiny.bundle_dir), "--db", str(tmp_path / "a.sqlite"), "--url",
                 "http://labels.example.org:8000", "ann", "bob"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["ann", "bob"]
    assert all(re.fullmatch(r"\w+\thttp://labels\.example\.org:8000/invite/[\w-]{32}", line)
               for line in lines)


_SECRET = ("import sys; from pathlib import Path; from fdt.teacher.app import session_secret; "
           "print(session_secret(Path(sys.argv[1])))")


def test_the_session_key_is_made_once_whatever_the_order_of_processes(tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.delenv("FDT_FEEDBACK_SECRET", raising=False)
    db = tmp_path / "answers.sqlite"
    runs = [subprocess.Popen([sys.executable, "-c", _SECRET, str(db)], stdout=subprocess.PIPE,
                             text=True) for _ in range(4)]
    keys = {run.communicate(timeout=120)[0].strip() for run in runs}
    assert len(keys) == 1 and len(keys.pop()) == 64
    secret = tmp_path / "answers.sqlite.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [secret]  # no staged copy left behind
    monkeypatch.setenv("FDT_FEEDBACK_SECRET", "k" * 40)
    again = subprocess.run([sys.executable, "-c", _SECRET, str(db)], capture_output=True,
                           text=True, check=True)
    assert again.stdout.strip() == "k" * 40


@pytest.mark.parametrize("field, value", [("replay_index", "<img src=x onerror=alert(1)>"),
                                          ("id", "q0000<script>"), ("buffer", "1'><b>"),
                                          ("slot", None), ("clip", "../../etc/passwd"),
                                          ("stack", "stacks/<svg onload=alert(1)>.png")])
def test_a_bundle_built_elsewhere_is_checked_before_it_reaches_a_page(tiny, tmp_path: Path,
                                                                       field: str,
                                                                       value: object) -> None:
    """Those fields went into the page unescaped, so `<img src=x onerror=...>` ran."""
    bundle_dir = tmp_path / "queries"
    shutil.copytree(tiny.bundle_dir, bundle_dir)
    bundle = json.loads((bundle_dir / "bundle.json").read_text())
    bundle["queries"][0][field] = value
    (bundle_dir / "bundle.json").write_text(json.dumps(bundle))
    with pytest.raises(BundleError, match=rf"bundle\.json: not a query bundle as build_bundle "
                       rf"writes it: at queries/0/{field}, "):
        create_app(bundle_dir, tmp_path / "answers.sqlite")
    assert not (tmp_path / "answers.sqlite").exists()


def test_pages_escape_what_they_show(tiny, tmp_path: Path) -> None:
    """Autoescaped templates: even a value that got past the bundle's checks stays text."""
    from fdt.teacher.app import render

    query = {**tiny.bundle["queries"][0], "replay_index": "<img src=x onerror=alert(1)>"}
    text = render("query.html", "Query", "ann", query=query, game="Breakout", taken="<b>",
                  progress={"answers": 0, "budget": 1, "mine": 0}, asking_best=False,
                  best_actions=[], verdicts=[]).body.decode()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<b>" not in text and "&lt;b&gt;" in text


def test_another_programs_database_is_left_alone(tiny, tmp_path: Path) -> None:
    """`--db results/mlflow.db` added 4 tables and changed its journal mode."""
    foreign = tmp_path / "mlflow.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO experiments VALUES (1, 'fdt')")
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match=r"mlflow\.db: an SQLite database of another program "
                       r"\(tables: experiments\), not an answers database"):
        Store(foreign, tiny.bundle)
    assert foreign.read_bytes() == before and not Path(f"{foreign}-wal").exists()

    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    with pytest.raises(StoreError, match=r"notes\.txt: not an SQLite database"):
        Store(text, tiny.bundle)
    assert text.read_text() == "not a database"

    meta = tmp_path / "meta.db"
    with sqlite3.connect(meta) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, created REAL)")
    conn.close()
    with pytest.raises(StoreError, match=r"meta\.db: an SQLite database of another program"):
        Store(meta, tiny.bundle)

    # A database the app made before it wrote its "app" entry is still its own.
    legacy = tmp_path / "legacy.sqlite"
    with sqlite3.connect(legacy) as conn:
        conn.executescript(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE labellers (name TEXT PRIMARY KEY, joined REAL NOT NULL);"
            "CREATE TABLE answers (id INTEGER PRIMARY KEY, query_id TEXT, labeller TEXT);"
            "CREATE TABLE locks (query_id TEXT PRIMARY KEY, labeller TEXT NOT NULL, since REAL);")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("bundle_id", tiny.bundle["bundle_id"]), ("training_set", tiny.bundle["training_set"]),
            ("game", "Breakout")])
        conn.execute("INSERT INTO locks VALUES ('q0000', 'ann', 1.0)")
    conn.close()
    store = Store(legacy, tiny.bundle, answers_per_query=2)
    assert store.next_query("bob") == "q0000"  # the single-holder lock table was replaced
    assert store.next_query("cat") == "q0000"


# --- the comparison pages: one answer per labeller and pair, only to the pair handed out -------


@pytest.fixture
def comparing(tiny, tmp_path: Path) -> Iterator[tuple[str, Path, object]]:
    from fdt.dataset.training_set import TrainingSet
    from fdt.preferences.clips import draw_clips, write_bundle
    from fdt.preferences.web import ComparisonPages
    from fdt.teacher.app import default_families

    clips = draw_clips(TrainingSet(tiny.data), "k" * 16, count=8, length=4,
                       heldout_fraction=0.25, seed=0)
    write_bundle(tmp_path / "clips.json", clips)
    pages = ComparisonPages(tmp_path / "clips.json", tiny.data)
    db = tmp_path / "answers.sqlite"
    with BackgroundServer(create_app(tiny.bundle_dir, db,
                                     families=[*default_families(), pages])) as url:
        yield url, db, clips


def pair_on(client: Client) -> tuple[int, int]:
    text = client.get("/compare")[2]
    left, right = (int(re.search(rf'name="{side}" value="(\d+)"', text.replace("'", '"'))
                       .group(1)) for side in ("left", "right"))
    return left, right


def pair_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT left_clip, right_clip, answer, labeller FROM pref_comparisons "
                            "WHERE mode = 'pairs' ORDER BY id").fetchall()


def test_a_comparison_counts_once_and_only_as_served(comparing) -> None:
    """The same comparison posted 5 times was 5 rows; a clip against itself and a pair never
    shown were accepted; /comparisons.json was open without sign-in."""
    url, db, clips = comparing
    ann, bob = Client(url), Client(url)
    assert ann.get("/comparisons.json")[0] == 303  # signed out: to the sign-in page
    ann.sign_in("ann")
    bob.sign_in("bob")
    left, right = pair_on(ann)
    assert pair_on(ann) == (left, right)  # a reload hands the same pair
    assert pair_on(bob) != (left, right)  # each pair to one labeller (answers_per_query 1)
    token = ann.csrf("/compare")
    answer = {"left": str(left), "right": str(right), "answer": "left", "csrf": token}
    statuses = [ann.post("/compare", answer)[0] for _ in range(5)]
    assert statuses == [303, 409, 409, 409, 409]
    assert pair_rows(db) == [(left, right, "left", "ann")]
    status, _, text = ann.post("/compare", {**answer, "right": str(left)})
    assert status == 400 and f"clip {left} compared with itself" in text
    other = next(c for c in clips.training_ids if c not in (left, right))
    status, _, text = ann.post("/compare", {**answer, "right": str(other)})
    assert status == 409 and "not the pair handed to ann" in text
    status, _, text = bob.post("/compare", {**answer, "csrf": bob.csrf("/compare")})
    assert status == 409  # ann's pair, answered again by bob
    assert pair_rows(db) == [(left, right, "left", "ann")]
    export = json.loads(ann.get("/comparisons.json?mode=pairs")[2])
    assert [(c["left"], c["right"], c["labeller"]) for c in export["comparisons"]] == [
        (left, right, "ann")]


def test_repeated_answers_are_dropped_on_export_and_refused_on_import(comparing,
                                                                      tmp_path: Path) -> None:
    """An older database's repeats: the export keeps each labeller's first answer per pair
    (and no clip against itself); a file that still holds them is refused on import."""
    from fdt.preferences.clips import read_bundle
    from fdt.preferences.comparisons import ComparisonsError
    from fdt.preferences.stage import split_imported

    url, db, clips = comparing
    ann = Client(url)
    ann.sign_in("ann")
    a, b = clips.training_ids[:2]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO pref_comparisons (bundle, mode, left_clip, right_clip, answer, labeller, "
            "time) VALUES (?, 'pairs', ?, ?, ?, ?, 't')",
            [(clips.digest, a, b, "left", "ann"), (clips.digest, b, a, "right", "ann"),
             (clips.digest, a, b, "right", "ann"), (clips.digest, a, a, "equal", "ann"),
             (clips.digest, a, b, "right", "bob")])
    conn.close()
    export = json.loads(ann.get("/comparisons.json?mode=pairs")[2])
    assert [(c["left"], c["right"], c["answer"], c["labeller"])
            for c in export["comparisons"]] == [(a, b, "left", "ann"), (a, b, "right", "bob")]
    bundle = read_bundle(tmp_path / "clips.json")
    cleaned = tmp_path / "cleaned.json"
    cleaned.write_text(json.dumps(export))
    assert len(split_imported(cleaned, bundle)[0]) == 2
    raw = {**export, "comparisons": [*export["comparisons"], export["comparisons"][0]]}
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    with pytest.raises(ComparisonsError, match=r"raw\.json: 1 repeated answer\(s\)"):
        split_imported(tmp_path / "raw.json", bundle)
    itself = {**export, "comparisons": [{**export["comparisons"][0], "right": a}]}
    (tmp_path / "self.json").write_text(json.dumps(itself))
    with pytest.raises(ComparisonsError, match=rf"self\.json: clip {a} is compared with itself"):
        split_imported(tmp_path / "self.json", bundle)
