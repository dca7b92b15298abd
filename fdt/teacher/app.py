"""The labelling web app: Starlette, server-rendered HTML, one query bundle and its answers'
database, on 127.0.0.1 by default.

The app is built from page families (`PageFamily`). Each family brings its routes, its own SQLite
tables and a link on the home page; everything else is shared:

- the labeller's session, signed by the server (Starlette's SessionMiddleware; the secret is
  `FDT_FEEDBACK_SECRET` or a file beside the database, never the config): on this machine a
  name given on the home page (`auth="name"`), beyond it only an invite link the operator made
  (`auth="invite"`, `fdt-feedback invite`); `labeller_of` reads it, `require_labeller` sends a
  visitor without one to the home page;
- every form is checked in one place (`form_fields`): the body capped at `MAX_FORM_BYTES`
  before it is read, the Origin (or Referer) must be the app's own, and the session's CSRF
  token must come back (`csrf_input()` writes it into a form); Host headers outside the
  allow-list are refused (DNS rebinding), and cookies are SameSite=strict;
- the database: `context.store` (fdt.teacher.store.Store: `transaction()` for writes under
  SQLite's write lock, `ensure_tables()` for the family's tables, labellers, query locks);
- the bundle's clips and stacks under `/media/clips/` and `/media/stacks/` (fdt.teacher.clips
  renders more where a family needs them);
- the page layout (`page`, `render`: Jinja2 templates in fdt/teacher/templates with
  autoescape, so data from a bundle is never markup), error pages (`error_page`) and keyboard
  shortcuts: a button with `data-key="x"` is pressed by the key x on every page.

Extension point: a new family (e.g. clip comparisons, a sort tree) is a module with a class
implementing `PageFamily`, added to `default_families()` below (or passed to
`create_app(families=...)`); its paths must not clash with the shared ones (/, /login, /logout,
/media/clips, /media/stacks) or another family's. A family that shows data of its own (another
bundle of clips) takes it in its constructor and mounts its media among its routes, e.g.
`Mount("/media/pairs", app=StaticFiles(directory=...))`. The labelling family
(fdt.teacher.labelling) is the worked example.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from fdt.teacher.bundle import load_bundle
from fdt.teacher.store import Store, StoreError, check_name

SESSION_COOKIE = "fdt_session"
SESSION_SECONDS = 12 * 3600
SECRET_ENV = "FDT_FEEDBACK_SECRET"
HOST = "127.0.0.1"  # local only unless the user asks for more
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
AUTH_MODES = ("name", "invite")
MAX_FORM_BYTES = 4096  # the app's forms are a few fields: anything larger is refused unread


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

class FormRefused(Exception):
    """A request the app refuses before acting on it (too large, another origin, no CSRF
    token); shown as an error page with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_CSRF: ContextVar[str] = ContextVar("fdt_csrf", default="")


class CsrfToken:
    """ASGI middleware inside the session: every session gets a CSRF token, which the current
    request's forms carry (`csrf_input`) and `form_fields` checks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            session = scope["session"]
            if "csrf" not in session:
                session["csrf"] = secrets.token_urlsafe(32)
            _CSRF.set(session["csrf"])
        await self.app(scope, receive, send)


def csrf_input() -> Markup:
    """The hidden field every POST form of the app carries."""
    return Markup('<input type="hidden" name="csrf" value="{}">').format(_CSRF.get())


def labeller_of(request: Request) -> str | None:
    """The signed-in labeller: a name the server itself put in the signed session."""
    name = request.session.get("labeller")
    if not isinstance(name, str):
        return None
    try:
        return check_name(name)
    except StoreError:
        return None


def sign_in(request: Request, name: str) -> None:
    """Put the labeller in the session, with a new CSRF token (a token seen before sign-in is
    not carried into the signed-in session)."""
    request.session["labeller"] = name
    request.session["csrf"] = secrets.token_urlsafe(32)


def require_labeller(request: Request) -> str | Response:
    """The labeller's name, or a redirect to the home page to give one."""
    name = labeller_of(request)
    return name if name is not None else RedirectResponse("/", status_code=303)


def _check_origin(request: Request) -> None:
    """A browser names the page a form came from (Origin, else Referer): it must be this app."""
    origin = request.headers.get("origin")
    if origin is None and request.headers.get("referer"):
        parts = urlsplit(request.headers["referer"])
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is None:
        return  # not a browser's cross-site form: the CSRF token decides
    # By host and port only: behind an HTTPS proxy the app may see its own scheme as http.
    own = request.headers.get("host", "")
    if urlsplit(origin).netloc != own:
        raise FormRefused(403, f"a form sent from {origin} is not accepted here; answer on "
                               f"{own} itself")


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (first value of each), once the request is known to be one
    of the app's own forms: the body at most MAX_FORM_BYTES (refused unread when it says it is
    larger, and cut off when it grows past it), from this app's pages, with the session's
    CSRF token."""
    _check_origin(request)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise FormRefused(413, f"a form of {declared} bytes; the app takes at most "
                               f"{MAX_FORM_BYTES}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormRefused(413, f"a form over {MAX_FORM_BYTES} bytes; the app takes no more")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    token, expected = fields.get("csrf", [""])[0], request.session.get("csrf", "")
    if not expected or not hmac.compare_digest(token.encode(), str(expected).encode()):
        raise FormRefused(403, "this form is out of date or came from another page (its CSRF "
                               "token does not match your session); reload the page and answer "
                               "again")
    return {key: values[0] for key, values in fields.items() if key != "csrf"}


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

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("fdt.teacher", "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined)
TEMPLATES.globals.update(csrf_input=csrf_input, style=Markup(STYLE), shortcuts=Markup(SHORTCUTS))


def render(template: str, title: str, labeller: str | None = None, status: int = 200,
           **values: Any) -> HTMLResponse:
    """A page from one of the app's templates (every value escaped unless it is Markup)."""
    text = TEMPLATES.get_template(template).render(title=title, labeller=labeller, **values)
    return HTMLResponse(text, status_code=status)


def page(title: str, body: str, labeller: str | None = None, status: int = 200) -> HTMLResponse:
    """A page in the shared layout around `body`, HTML a page family built (escaping its data
    with html.escape; the layout's own values are escaped here)."""
    return render("layout.html", title, labeller, status, body=Markup(body))


def error_page(message: str, labeller: str | None, status: int, back: str = "/") -> HTMLResponse:
    return render("error.html", "Not recorded", labeller, status, message=message, back=back)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormRefused)
    return error_page(str(exc), labeller_of(request), exc.status)


def session_secret(db: Path) -> str:
    """The key that signs sessions: FDT_FEEDBACK_SECRET, else a random one kept beside the
    database (`{db}.secret`, owner-only), made once; safe when two apps start at once (the
    file appears whole, by a hard link, or not at all)."""
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV]
    path = db.with_name(db.name + ".secret")
    if not path.exists():
        staged = db.with_name(f".{db.name}.secret.{os.getpid()}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(staged, path)
        except FileExistsError:
            pass  # another app made it first: use theirs
        finally:
            staged.unlink()
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise StoreError(f"{path}: the session key is {len(secret)} characters; delete the file "
                         "to make a new one (signed-in labellers sign in again)")
    return secret


def is_local(host: str) -> bool:
    """Whether `host` (an address or name to bind) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the shared routes -----------------------------------------------------------------------------

def _shared_routes(context: TeacherContext, families: Sequence[PageFamily],
                   auth: str) -> list[BaseRoute]:
    by_invite = auth == "invite"

    async def home(request: Request) -> Response:
        name = labeller_of(request)
        game = context.bundle["game"]
        if name is None:
            return render("sign_in.html", "Sign in", game=game, by_invite=by_invite)
        entries = [{"entry": f.entry, "title": f.title,
                    "summary": Markup(f.summary(context, name))} for f in families]
        return render("home.html", "FDT feedback", name, game=game, families=entries)

    async def login(request: Request) -> Response:
        fields = await form_fields(request)
        if by_invite:
            raise FormRefused(403, "this app signs labellers in by invite link only")
        try:
            name = context.store.add_labeller(fields.get("name", ""))
        except StoreError as err:
            return error_page(str(err), None, 400)
        sign_in(request, name)
        return RedirectResponse(families[0].entry if families else "/", status_code=303)

    async def invitation(request: Request) -> Response:
        token = request.path_params["token"]
        name = context.store.invited(token)
        if name is None:
            return error_page("unknown invite link; ask for a new one", None, 404)
        if request.method == "POST":
            await form_fields(request)
            sign_in(request, name)
            return RedirectResponse(families[0].entry if families else "/", status_code=303)
        # A GET only shows the button: signing in takes a POST from this page, so another site
        # cannot sign a browser in by linking here.
        return render("invite.html", "Sign in", game=context.bundle["game"], token=token,
                      name=name)

    async def logout(request: Request) -> Response:
        await form_fields(request)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    media = [Mount(f"/media/{sub}", app=StaticFiles(directory=context.bundle_dir / sub),
                   name=f"media-{sub}") for sub in ("clips", "stacks")]
    return [Route("/", home), Route("/login", login, methods=["POST"]),
            Route("/invite/{token}", invitation, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]), *media]


def default_families() -> list[PageFamily]:
    """The app's page families, in home-page order (add a new family here)."""
    from fdt.teacher.labelling import LabellingPages

    return [LabellingPages()]


def create_app(bundle_dir: str | Path, db: str | Path, *,
               families: Sequence[PageFamily] | None = None, answers_per_query: int = 1,
               lock_seconds: float | None = None, auth: str = "name",
               allowed_hosts: Sequence[str] = LOCAL_HOSTS) -> Starlette:
    """The app serving one bundle, its answers in `db` (made on first use; a database of another
    bundle or training set, or of another program, is refused before anything is served).
    `auth`: "name" (labellers sign in by name: for this machine) or "invite" (only by the links
    `Store.invite` makes). `allowed_hosts`: the Host headers served."""
    if auth not in AUTH_MODES:
        raise ValueError(f"auth {auth!r}: expected one of {', '.join(AUTH_MODES)}")
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    options = {} if lock_seconds is None else {"lock_seconds": lock_seconds}
    store = Store(db, bundle, answers_per_query=answers_per_query, **options)
    context = TeacherContext(bundle, bundle_dir, store)
    families = list(families) if families is not None else default_families()
    routes = _shared_routes(context, families, auth)
    for family in families:
        if family.tables:
            store.ensure_tables(family.tables)
        routes += family.routes(context)
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        Middleware(SessionMiddleware, secret_key=session_secret(Path(db)),
                   session_cookie=SESSION_COOKIE, max_age=SESSION_SECONDS, same_site="strict"),
        Middleware(CsrfToken)]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={FormRefused: _refused})
    app.state.context = context
    app.state.families = families
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


class ServeError(ValueError):
    """A way of serving the app that would let strangers in; the message says what to do."""


def served_hosts(host: str, auth: str, allowed_hosts: Sequence[str]) -> list[str]:
    """The Host headers to serve when bound to `host`; refuses sign-in by name beyond this
    machine (anyone who reaches the app could answer as anyone) and a public bind without the
    names people will use to reach it."""
    if is_local(host):
        return [*LOCAL_HOSTS, *allowed_hosts]
    if auth != "invite":
        raise ServeError(f"refusing to serve on {host} with sign-in by name: anyone who reaches "
                         "it could answer as anyone. Serve with --auth invite and send each "
                         "labeller the link `fdt-feedback invite` prints")
    names = [*allowed_hosts] + ([] if host in ("0.0.0.0", "::") else [host])
    if not names:
        raise ServeError(f"serving on {host}: name the host names labellers will use with "
                         "--allowed-host (requests for any other Host are refused, against DNS "
                         "rebinding)")
    return [*LOCAL_HOSTS, *names]


def serve(bundle_dir: str | Path, db: str | Path, *, host: str = HOST, port: int = 8000,
          answers_per_query: int = 1, auth: str = "name", allowed_hosts: Sequence[str] = (),
          families: Sequence[PageFamily] | None = None) -> None:
    """Run the app until interrupted (Ctrl-C); the answers are in `db` at every moment."""
    import uvicorn

    hosts = served_hosts(host, auth, allowed_hosts)
    app = create_app(bundle_dir, db, answers_per_query=answers_per_query, auth=auth,
                     allowed_hosts=hosts, families=families)
    entries = ", ".join(f.entry for f in app.state.families)
    print(f"feedback on {app.state.context.bundle['game']} at http://{host}:{port}/ ({entries}; "
          f"answers in {db}; sign-in by {auth}); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
