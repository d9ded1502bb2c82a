"""The Dash application: a router over five pages and the shared context they read.

The app only *reads* run folders (and the sensor store) and starts new runs through the public
entry point (``python -m twin run``) in a background process: the view never sits in the step path.

What a client sends is confined (docs/design/dashsec-confined-server.md): runs and base scenarios
are chosen by id from server-side lists (:meth:`Context.run`, ``scenario_form.resolve_base``),
requests are size-limited, the Host header is checked against the names the server answers to,
and starting or cancelling a run needs the access token when the server has one.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dash
from dash import Input, Output, State, dcc, html

from .jobs import JobManager
from .layers import LayerCache
from .runs import Run, RunCache, resolve_run

PAGES = [
    ("/", "Map"),
    ("/builder", "Scenario builder"),
    ("/compare", "Compare"),
    ("/sensors", "Sensors"),
    ("/emergency", "Emergency"),
    ("/operations", "Operations"),
    ("/exercise", "Exercise"),
]
REPO = Path(__file__).resolve().parents[2]

#: names a loopback-bound server answers to (the Host header, port ignored)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: default limit of a request body (the upload travels base64 in a JSON request)
MAX_REQUEST_BYTES = 2_000_000
#: default limit of an uploaded scenario file: shipped scenarios are 1-4 kB; libyaml took 25 s for 1.25 MB
#: on a loaded 2-core machine, so 256 kB costs a few seconds at most
MAX_UPLOAD_BYTES = 256_000
#: header that carries the access token for scripts (the builder has a field for it)
TOKEN_HEADER = "X-Twin-Token"


@dataclass
class Context:
    runs_dir: Path
    store: Path | None = None
    scenarios_dir: Path = REPO / "scenarios"
    runs: RunCache = field(default_factory=RunCache)
    layers: LayerCache = field(default_factory=LayerCache)
    jobs: JobManager | None = None
    live_refresh_ms: int = 10_000
    token: str | None = None             # needed to start or cancel runs when set
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    live_broker: str | None = None       # the live twins' broker (default: the one their live.json names)
    live_timeout_s: float = 20.0         # how long the Operations page waits for a live twin's answer

    def run(self, run_id) -> Run:
        """The run with id ``run_id`` (a folder name from the run list), confined to the runs folder;
        anything else raises RunError with one generic message (``runs.UNKNOWN_RUN``)."""
        return self.runs.get(resolve_run(self.runs_dir, run_id))

    def authorized(self, supplied: str | None) -> bool:
        """True when no token is needed, or ``supplied`` (the builder's field) or the
        ``X-Twin-Token`` header of the current request equals it."""
        if self.token is None:
            return True
        candidates = [supplied]
        try:
            import flask

            if flask.has_request_context():
                candidates.append(flask.request.headers.get(TOKEN_HEADER))
        except ImportError:  # pragma: no cover - flask comes with dash
            pass
        want = self.token.encode()
        return any(isinstance(c, str) and c and hmac.compare_digest(c.encode(), want) for c in candidates)


def is_loopback(host: str) -> bool:
    """``host`` (a bind address or name) reaches this machine only: localhost or a loopback IP."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::[0-9]{1,5})?")


def _norm_host(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def host_allowed(header: str | None, allowed: Iterable[str]) -> bool:
    """The Host header (``name[:port]``) names one of ``allowed`` (case-insensitive, port ignored)."""
    if not header:
        return False
    m = _HOST_RE.fullmatch(header.strip())
    return bool(m) and _norm_host(m.group(1)) in {_norm_host(a) for a in allowed}


class HostCheck:
    """WSGI middleware answering 400 to a request whose Host header is not an allowed name: a page
    on another site that rebinds its DNS name to 127.0.0.1 sends its own name and is refused."""

    def __init__(self, app, allowed: Iterable[str]):
        self.app = app
        self.allowed = frozenset(_norm_host(a) for a in allowed)

    def __call__(self, environ, start_response):
        if not host_allowed(environ.get("HTTP_HOST"), self.allowed):
            body = (b"400 Bad Request: unknown Host. The Tam Ky Twin dashboard answers to: "
                    + ", ".join(sorted(self.allowed)).encode("ascii", "replace")
                    + b" (twin serve --allow-host NAME adds a name).\n")
            start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8"),
                                               ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)


def run_from_search(runs_dir: Path, search: str | None) -> str | None:
    """The run id of a ``?run=ID`` query when ID is in the run list (ids only, never a path)."""
    from urllib.parse import parse_qs

    from .runs import list_runs

    got = parse_qs((search or "").lstrip("?")).get("run")
    if not got:
        return None
    return got[0] if got[0] in {r["id"] for r in list_runs(runs_dir)} else None


def create_app(runs_dir: str | os.PathLike = "runs", *, store: str | os.PathLike | None = None,
               city_loader=None, runner: list[str] | None = None, scenarios_dir: str | os.PathLike | None = None,
               live_refresh_ms: int = 10_000, allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
               token: str | None = None, max_request_bytes: int = MAX_REQUEST_BYTES,
               max_upload_bytes: int | None = None, live_broker: str | None = None,
               live_timeout_s: float = 20.0) -> dash.Dash:
    """Build the app over the run folders in ``runs_dir``.

    ``store``: a DuckDB sensor store (read-only) for the Sensors page. ``city_loader(name, res)``
    replaces ``twin.load_city`` (tests). ``runner``: argv prefix that runs a scenario file and takes
    ``--out DIR`` (default ``python -m twin run``). ``allowed_hosts``: the names the Host header may
    carry (others get 400). ``token``: when given, starting or cancelling a run needs it.
    ``max_request_bytes``: larger request bodies get 413; ``max_upload_bytes``: larger scenario
    files are refused before parsing (it must fit the request: the upload travels base64-encoded).
    ``live_broker``/``live_timeout_s``: where the Operations page sends warnings to live twins and how
    long it waits for their answer.
    """
    from .pages import builder, compare, emergency, exercise, operations, sensors
    from .pages import map as map_page
    from .pages.common import cap

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(runs_dir=runs_dir, store=Path(store) if store else None,
                  layers=LayerCache(city_loader), live_refresh_ms=live_refresh_ms, token=token or None,
                  max_upload_bytes=int(max_upload_bytes if max_upload_bytes is not None
                                       else min(MAX_UPLOAD_BYTES, max_request_bytes // 2)),
                  live_broker=live_broker or None, live_timeout_s=float(live_timeout_s))
    if scenarios_dir:
        ctx.scenarios_dir = Path(scenarios_dir)
    ctx.jobs = JobManager(runs_dir, runner=runner)

    app = dash.Dash(
        __name__,
        title="Tam Kỳ Twin",
        assets_folder=str(Path(__file__).parent / "assets"),
        suppress_callback_exceptions=True,
        serve_locally=True,
        update_title=None,
    )
    app._twin_ctx = ctx  # for tests and the CLI
    app.index_string = app.index_string.replace("<html>", '<html lang="en">', 1)  # UI language (WCAG 3.1.1)
    app.server.config["MAX_CONTENT_LENGTH"] = int(max_request_bytes)  # larger bodies: 413
    app.server.wsgi_app = HostCheck(app.server.wsgi_app, allowed_hosts)
    nav = html.Nav([
        html.Span("Tam Kỳ Twin", className="brand"),
        *[dcc.Link(label, href=path, className="nav-link", id=f"nav-{label.split()[0].lower()}") for path, label in PAGES],
    ], className="nav")
    app.layout = html.Div([
        dcc.Location(id="url"),
        dcc.Store(id="selected-run", storage_type="session"),
        nav,
        html.Main(id="page", className="page"),
    ])
    modules = {"/": map_page, "/builder": builder, "/compare": compare, "/sensors": sensors, "/emergency": emergency,
               "/exercise": exercise, "/operations": operations}

    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("url", "search"),
                  State("selected-run", "data"))
    def route(pathname, search, selected):
        selected = run_from_search(runs_dir, search) or selected   # /?run=ID (the builder's run links)
        mod = modules.get(pathname or "/")
        if mod is None:
            return html.Div([html.H2("Page not found"), html.P(f"No page at {cap(str(pathname), 200)}."),
                             dcc.Link("Back to the map", href="/")])
        return mod.layout(ctx, selected)

    for mod in modules.values():
        mod.register(app, ctx)
    return app
