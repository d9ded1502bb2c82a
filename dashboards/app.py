"""The Dash application: a router over five pages and the shared context they read.

The app only *reads* run folders (and the sensor store) and starts new runs through the public
entry point (``python -m twin run``) in a background process: the view never sits in the step path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dash
from dash import Input, Output, State, dcc, html

from .jobs import JobManager
from .layers import LayerCache
from .runs import RunCache

PAGES = [
    ("/", "Map"),
    ("/builder", "Scenario builder"),
    ("/compare", "Compare"),
    ("/sensors", "Sensors"),
    ("/emergency", "Emergency"),
]
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Context:
    runs_dir: Path
    store: Path | None = None
    scenarios_dir: Path = REPO / "scenarios"
    runs: RunCache = field(default_factory=RunCache)
    layers: LayerCache = field(default_factory=LayerCache)
    jobs: JobManager | None = None
    live_refresh_ms: int = 10_000


def create_app(runs_dir: str | os.PathLike = "runs", *, store: str | os.PathLike | None = None,
               city_loader=None, runner: list[str] | None = None, scenarios_dir: str | os.PathLike | None = None,
               live_refresh_ms: int = 10_000) -> dash.Dash:
    """Build the app over the run folders in ``runs_dir``.

    ``store``: a DuckDB sensor store (read-only) for the Sensors page. ``city_loader(name, res)``
    replaces ``twin.load_city`` (tests). ``runner``: argv prefix that runs a scenario file and takes
    ``--out DIR`` (default ``python -m twin run``).
    """
    from .pages import builder, compare, emergency, sensors
    from .pages import map as map_page

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(runs_dir=runs_dir, store=Path(store) if store else None,
                  layers=LayerCache(city_loader), live_refresh_ms=live_refresh_ms)
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
    modules = {"/": map_page, "/builder": builder, "/compare": compare, "/sensors": sensors, "/emergency": emergency}

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("selected-run", "data"))
    def route(pathname, selected):
        mod = modules.get(pathname or "/")
        if mod is None:
            return html.Div([html.H2("Page not found"), html.P(f"No page at {pathname}."),
                             dcc.Link("Back to the map", href="/")])
        return mod.layout(ctx, selected)

    for mod in modules.values():
        mod.register(app, ctx)
    return app
