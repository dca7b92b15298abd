"""The labelling web app: Starlette, server-rendered HTML, one query bundle and its answers'
database, on 127.0.0.1 by default.

The app is built from page families (`PageFamily`). Each family brings its routes, its own SQLite
tables and a link on the home page; everything else is shared:

- the labeller's session: a name given on the home page, kept in a cookie (`labeller_of`;
  `require_labeller` sends a visitor without one to the home page);
- the database: `context.store` (fdt.teacher.store.Store: `transaction()` for writes under
  SQLite's write lock, `ensure_tables()` for the family's tables, labellers, query locks);
- the bundle's clips and stacks under `/media/clips/` and `/media/stacks/` (fdt.teacher.clips
  renders more where a family needs them);
- the page layout (`page`), error pages (`error_page`) and keyboard shortcuts: a button with
  `data-key="x"` is pressed by the key x on every page.

Extension point: a new family (e.g. clip comparisons, a sort tree) is a module with a class
implementing `PageFamily`, added to `default_families()` below (or passed to
`create_app(families=...)`); its paths must not clash with the shared ones (/, /login, /logout,
/media/clips, /media/stacks) or another family's. A family that shows data of its own (another
bundle of clips) takes it in its constructor and mounts its media among its routes, e.g.
`Mount("/media/pairs", app=StaticFiles(directory=...))`. The labelling family
(fdt.teacher.labelling) is the worked example.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from fdt.teacher.bundle import load_bundle
from fdt.teacher.store import Store, StoreError, check_name

COOKIE = "fdt_labeller"
HOST = "127.0.0.1"  # local only unless the user asks for more


@dataclass
class TeacherContext:
    """What every page family shares: the bundle, its folder and the answers' store."""

    bundle: dict[str, Any]
    bundle_dir: Path
    store: Store


class PageFamily(Protocol):
    """A family of pages: its entry path and title for the home page, its tables, its routes."""

    title: str
    entry: str
    tables: str  # SQL (CREATE TABLE IF NOT EXISTS ...), "" for none

    def routes(self, context: TeacherContext) -> list[BaseRoute]: ...

    def summary(self, context: TeacherContext, labeller: str) -> str:
        """One line of HTML for the home page (e.g. progress)."""
        ...


# --- the shared session, layout and forms ------------------------------------------------------

def labeller_of(request: Request) -> str | None:
    name = request.cookies.get(COOKIE)
    if not name:
        return None
    try:
        return check_name(name)
    except StoreError:
        return None


def require_labeller(request: Request) -> str | Response:
    """The labeller's name, or a redirect to the home page to give one."""
    name = labeller_of(request)
    return name if name is not None else RedirectResponse("/", status_code=303)


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (first value of each)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 64em; color: #222; }
nav { display: flex; gap: 1.5em; align-items: center; border-bottom: 1px solid #ccc;
      padding-bottom: .5em; margin-bottom: 1em; }
nav .who { margin-left: auto; }
button { font-size: 1.1em; padding: .45em 1em; margin: .2em; cursor: pointer; }
kbd { border: 1px solid #999; border-radius: 3px; padding: 0 .3em; font-size: .8em; }
.media { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
.media figure { margin: 0; }
.progress { color: #555; }
.error { color: #a00; font-weight: bold; }
"""

SHORTCUTS = """
document.addEventListener('keydown', function (event) {
  if (event.target.tagName === 'INPUT' || event.ctrlKey || event.metaKey || event.altKey) return;
  var button = document.querySelector('button[data-key="' + event.key.toLowerCase() + '"]');
  if (button) { event.preventDefault(); button.click(); }
});
"""


def page(title: str, body: str, labeller: str | None = None, status: int = 200) -> HTMLResponse:
    """A page in the shared layout (`body` is HTML, already escaped where it holds data)."""
    who = (f'<span class="who">{html.escape(labeller)} '
           '<form method="post" action="/logout" style="display:inline">'
           '<button type="submit">Sign out</button></form></span>') if labeller else ""
    text = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<nav><a href='/'>FDT feedback</a>{who}</nav><main>{body}</main>"
            f"<script>{SHORTCUTS}</script></body></html>")
    return HTMLResponse(text, status_code=status)


def error_page(message: str, labeller: str | None, status: int, back: str = "/") -> HTMLResponse:
    return page("Not recorded", f"<p class='error' id='error'>{html.escape(message)}</p>"
                f"<p><a href='{back}'>Continue</a></p>", labeller, status)


# --- the shared routes -----------------------------------------------------------------------------

def _shared_routes(context: TeacherContext, families: Sequence[PageFamily]) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        name = labeller_of(request)
        bundle = context.bundle
        if name is None:
            return page("Sign in", f"<h1>Feedback on {html.escape(bundle['game'])}</h1>"
                        "<form method='post' action='/login'><label>Your name "
                        "<input name='name' id='name' autofocus required maxlength='40'></label> "
                        "<button type='submit' id='start'>Start</button></form>")
        items = "".join(f"<li><a href='{f.entry}'>{html.escape(f.title)}</a> "
                        f"{f.summary(context, name)}</li>" for f in families)
        return page("FDT feedback", f"<h1>Feedback on {html.escape(bundle['game'])}</h1>"
                    f"<ul>{items}</ul>", name)

    async def login(request: Request) -> Response:
        fields = await form_fields(request)
        try:
            name = context.store.add_labeller(fields.get("name", ""))
        except StoreError as err:
            return error_page(str(err), None, 400)
        response = RedirectResponse(families[0].entry if families else "/", status_code=303)
        response.set_cookie(COOKIE, name, httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    media = [Mount(f"/media/{sub}", app=StaticFiles(directory=context.bundle_dir / sub),
                   name=f"media-{sub}") for sub in ("clips", "stacks")]
    return [Route("/", home), Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]), *media]


def default_families() -> list[PageFamily]:
    """The app's page families, in home-page order (add a new family here)."""
    from fdt.teacher.labelling import LabellingPages

    return [LabellingPages()]


def create_app(bundle_dir: str | Path, db: str | Path, *,
               families: Sequence[PageFamily] | None = None, answers_per_query: int = 1,
               lock_seconds: float | None = None) -> Starlette:
    """The app serving one bundle, its answers in `db` (made on first use; a database of another
    bundle or training set is refused before anything is served)."""
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    options = {} if lock_seconds is None else {"lock_seconds": lock_seconds}
    store = Store(db, bundle, answers_per_query=answers_per_query, **options)
    context = TeacherContext(bundle, bundle_dir, store)
    families = list(families) if families is not None else default_families()
    routes = _shared_routes(context, families)
    for family in families:
        if family.tables:
            store.ensure_tables(family.tables)
        routes += family.routes(context)
    app = Starlette(routes=routes)
    app.state.context = context
    return app


class BackgroundServer:
    """uvicorn serving `app` on 127.0.0.1 and a free port in a thread of this process (the tests
    and the benchmark); `with BackgroundServer(app) as url:` waits until it accepts requests."""

    def __init__(self, app: Starlette, start_timeout: float = 20.0) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.start_timeout = start_timeout

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the labelling app did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{HOST}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(bundle_dir: str | Path, db: str | Path, *, host: str = HOST, port: int = 8000,
          answers_per_query: int = 1) -> None:
    """Run the app until interrupted (Ctrl-C); the answers are in `db` at every moment."""
    import uvicorn

    app = create_app(bundle_dir, db, answers_per_query=answers_per_query)
    print(f"labelling {app.state.context.bundle['game']} at http://{host}:{port}/ "
          f"(answers in {db}); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
