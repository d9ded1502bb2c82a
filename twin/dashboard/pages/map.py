"""Map page: an operations-centre web map (dash-leaflet, offline, UTM metres; twin/dashboard/basemap.py).

Basemap from the city bundle (terrain and water, wards, roads by class, labelled places); flood depth
above the normal water surface in fixed classes, hazard classes, closed roads, vehicles, people,
incidents and units through time. All frames are sent to the browser once per run (a dcc.Store)
and switched by a clientside callback (assets/map.js): a slider step is a few image swaps. Times are
local clock time (Asia/Ho_Chi_Minh). Places are the only things on the map that take clicks: a
click, Enter on a focused marker, or a choice in "Go to place" opens the place's time series.
"""
from __future__ import annotations

import dash_leaflet as dl
import numpy as np
from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from .. import basemap, figures
from ..mapframes import DYNAMIC, FrameCache, MapFrames, clock_marks
from ..runs import RunError
from .common import cap, message, no_runs_message, run_options, run_picker, safe

PLAY_MS = 700
PLACE_ID_TYPE = "map-place"
FRAMES = FrameCache(size=6)

#: the time-varying layers: (store key, layer name in the layer panel, checked at start)
DYNAMIC_LAYERS = (
    ("depth", "flood depth above normal water", True),
    ("hazard", "hazard to people (FD2321 classes)", False),
    ("closed", "closed roads", True),
    ("vehicles", "vehicles on links", True),
    ("people", "people", True),
    ("incidents", "open incidents (✕) and emergency units (▲)", True),
)
_PANE_Z = {"depth": 350, "hazard": 352, "closed": 410, "vehicles": 415, "people": 420, "incidents": 430}


def layout(ctx, selected=None):
    picker = run_picker(ctx, "map-run", selected)
    return html.Div([
        html.Div([
            html.H1("Flood map"),
            picker,
            html.Div([
                html.Label("Go to place", htmlFor="map-goto", className="field-label"),
                dcc.Dropdown(id="map-goto", options=[], placeholder="a hospital, shelter, gauge…", className="goto-dropdown"),
            ], className="field"),
            html.Div(id="map-msg"),
        ], className="toolbar"),
        no_runs_message(ctx) if picker.children[1].value is None else None,
        html.Div([
            html.Div([
                html.Div(dl.Map(id="map-map", children=[dl.LayersControl(id="map-layers", children=dynamic_layers(None),
                                                                          collapsed=True),
                                                        dl.ScaleControl(position="bottomleft", imperial=False)],
                                center=[0, 0], zoom=-5, style={"height": "100%", "width": "100%"},
                                **{k: v for k, v in basemap.map_options(None).items() if k not in ("center", "zoom")}),
                         id="map-box", className="map-box", role="region", **{"aria-label": "flood map"}),
                html.Div([
                    html.Button("▶ Play", id="map-play", n_clicks=0, className="btn", **{"aria-label": "play"}),
                    html.Div(dcc.Slider(id="map-time", min=0, max=0, step=1, value=0, marks={}, updatemode="drag",
                                        allow_direct_input=False),
                             className="slider"),
                    html.Span("–", id="map-time-label", className="time-label", role="status",
                              **{"aria-live": "polite", "aria-atomic": "true"}),
                ], className="player"),
                html.P("", id="map-summary", className="map-summary", **{"aria-live": "polite"}),
                dcc.Interval(id="map-player", interval=PLAY_MS, disabled=True),
                dcc.Interval(id="map-runs-poll", interval=ctx.live_refresh_ms),
                dcc.Store(id="map-frames"),
                dcc.Store(id="map-reload"),
                dcc.Store(id="map-nframes"),
            ], className="main-col"),
            html.Div([
                html.Div(id="map-legend", className="legends"),
                html.H3("Time series"),
                html.P("Click a place on the map (or Tab to it and press Enter), or choose it in "
                       "“Go to place”.", className="hint"),
                dcc.Graph(id="map-series", figure=figures.empty_figure("no place selected", 300),
                          config={"displaylogo": False}, style={"height": "300px"}),
                html.P("", id="map-series-summary", className="graph-summary", **{"aria-live": "polite"}),
                html.Div(id="map-info", className="info"),
            ], className="side-col"),
        ], className="two-col"),
    ], className="map-page")


def load(ctx, path):
    """(run, layers, frames) for a run id; RunError if unknown or unusable."""
    run = ctx.run(path)
    layers = ctx.layers.for_run(run)
    places = layers.places if len(layers.places) else None
    frames = run.frames(places)
    return run, layers, frames


def dynamic_layers(mf: MapFrames | None) -> list:
    """The time-varying image layers (frame 0), each in its own pane without pointer events; with
    no frames (no run, a run that cannot be shown) the same layers, transparent, so that the
    clientside callback always has its outputs."""
    dyn = []
    bounds = mf.bounds if mf is not None else [[0.0, 0.0], [1.0, 1.0]]
    for key, name, checked in DYNAMIC_LAYERS:
        url = mf.images[key][0] if mf is not None else basemap.TRANSPARENT_PNG
        img = dl.ImageOverlay(id=f"map-ov-{key}", url=url, bounds=bounds, interactive=False,
                              opacity=0.85 if key in ("depth", "hazard") else 1.0, className=f"twin-{key}" + (" twin-raster" if key in ("depth", "hazard") else ""))
        pane = dl.Pane(img, name=f"map-{key}", style={"zIndex": _PANE_Z[key], "pointerEvents": "none"})
        dyn.append(dl.Overlay(dl.LayerGroup([pane]), name=name, checked=checked))
    return dyn


def layer_tree(layers, mf: MapFrames) -> list:
    """The LayersControl children: basemap (terrain, wards, roads), the time-varying layers, then
    the places (markers, the only layer that takes clicks)."""
    tree = basemap.basemap_layers(layers, prefix="map", place_id_type=PLACE_ID_TYPE)
    dyn = dynamic_layers(mf)
    places = [t for t in tree if isinstance(t, dl.Overlay) and t.name == "places"]
    rest = [t for t in tree if t not in places]
    return rest + dyn + places


def legends(mf: MapFrames) -> list:
    from twin.hazard import HAZARD_CLASSES

    t1, t2, t3 = mf.thresholds
    hz_labels = [f"low (HR < {t1:g})", f"moderate ({t1:g}–{t2:g})", f"significant ({t2:g}–{t3:g})", f"extreme (> {t3:g})"]
    return [
        basemap.legend("Flood depth above normal water (m)", basemap.DEPTH_EDGES_M, basemap.DEPTH_COLOURS,
                       note=f"Fixed classes, the same in every run. Normal water: {mf.normal_water}.", id="map-legend-depth"),
        basemap.legend("Hazard to people", (), basemap.HAZARD_COLOURS, labels=hz_labels[:len(HAZARD_CLASSES)],
                       note=f"Where the water is ≥ 5 cm above normal; {mf.hazard_note}; thresholds of the scenario.",
                       id="map-legend-hazard"),
        html.Div([html.Div("Symbols", className="legend-title"), html.Ul([
            html.Li("✚ hospital · ★ 115 dispatch · ■ shelter · □ school or public building · ◇ hotel"),
            html.Li("▲ fire station · ▼ police · ⬡ pumping station · ● ○ ◉ gauges (stage, rain, tide)"),
            html.Li([html.Span(className="swatch", style={"background": "#b2182b"}), "closed road · ",
                     "○ vehicles on a link (bigger: more) · ",
                     html.Span(className="swatch", style={"background": "#6a3d9a"}), "people · ✕ open incident · ▲ unit"]),
        ], className="legend-list")], className="legend"),
    ]


def build_map(ctx, path, i: int = 0):
    """Everything the run-change callback returns (tested directly): layer tree, viewport, frames
    store, slider max, marks and value, message, info, legends, place options."""
    res, err = safe(load, ctx, path)
    if err:
        return dynamic_layers(None), no_update, None, 0, {}, 0, message(err), [], [], []
    run, layers, frames = res
    mf, err = safe(FRAMES.get, run, layers)
    if err:
        return dynamic_layers(None), no_update, None, 0, {}, 0, message(err), [], [], []
    extent = layers.extent or basemap.grid_extent(frames.full_x, frames.full_y)
    viewport = {"bounds": basemap.leaflet_bounds(extent), "transition": "fitBounds"}
    notes = [html.Li(n) for n in [*layers.notes, *mf.notes]]
    start = mf.labels(True)[0]
    info = [html.P(f"Run {run.id}: {run.display_name()}.", className="run-id"),
            html.P(f"Starts {start}; {len(mf.t_s)} frames. Layers: {layers.source}."),
            html.P(f"{len(frames.full_y)}×{len(frames.full_x)} grid at {frames.dx:.0f} m (UTM 49N)."),
            html.Ul(notes) if notes else None]
    opts = place_options(layers)
    i = min(max(int(i), 0), len(mf.t_s) - 1)
    return (layer_tree(layers, mf), viewport, mf.store(), len(mf.t_s) - 1, clock_marks(mf.start, mf.t_s), i,
            None, info, legends(mf), opts)


def place_options(layers) -> list[dict]:
    p = layers.places
    if not len(p):
        return []
    return [{"label": f"{n} ({k.replace('_', ' ')})", "value": str(pid)}
            for pid, n, k in sorted(zip(p["place_id"].astype(str), p["name"].astype(str), p["kind"].astype(str)),
                                    key=lambda r: (r[2], r[1]))]


def refresh_runs(ctx, path, shown_n):
    """Run list options, and the latest frame index when the selected run has more frames than the
    ``shown_n`` frames in the browser (a live twin); nothing while the page has no frames yet."""
    opts = run_options(ctx)
    if not path or not isinstance(shown_n, int) or shown_n <= 0:
        return opts, no_update
    try:
        run = ctx.run(path)
        if not run.has_fields():
            return opts, no_update
        layers = ctx.layers.for_run(run)
        frames = run.frames(layers.places if len(layers.places) else None)
    except RunError:
        return opts, no_update
    imax = len(frames.t_s) - 1
    if imax == shown_n - 1:
        return opts, no_update
    return opts, imax


def register(app, ctx):
    @app.callback(Output("map-run", "options"), Output("map-reload", "data"),
                  Input("map-runs-poll", "n_intervals"), State("map-run", "value"), State("map-nframes", "data"),
                  prevent_initial_call=True)
    def poll_runs(_, path, shown_n):
        return refresh_runs(ctx, path, shown_n)

    @app.callback(Output("selected-run", "data", allow_duplicate=True), Input("map-run", "value"),
                  prevent_initial_call=True)
    def remember(path):
        return path

    @app.callback(Output("map-layers", "children"), Output("map-map", "viewport"), Output("map-frames", "data"),
                  Output("map-time", "max"), Output("map-time", "marks"), Output("map-time", "value"),
                  Output("map-msg", "children"), Output("map-info", "children"), Output("map-legend", "children"),
                  Output("map-goto", "options"), Output("map-nframes", "data"),
                  Input("map-run", "value"), Input("map-reload", "data"))
    def on_run(path, reload):
        if not path:
            return dynamic_layers(None), no_update, None, 0, {}, 0, None, [], [], [], None
        if dash_ctx.triggered_id == "map-reload" and isinstance(reload, int) and reload > 0:
            out = list(build_map(ctx, path, reload))              # a live run grew: show its latest frame
            out[1] = no_update                                   # and keep the user's view
        else:
            out = list(build_map(ctx, path, 0))
        return (*out, out[2]["n"] if out[2] else None)

    app.clientside_callback(
        ClientsideFunction(namespace="twinMap", function_name="showFrame"),
        [Output(f"map-ov-{k}", "url") for k in DYNAMIC] + [Output("map-time-label", "children"),
                                                          Output("map-summary", "children")],
        Input("map-time", "value"), Input("map-frames", "data"))

    app.clientside_callback(
        ClientsideFunction(namespace="twinMap", function_name="labelClass"),
        Output("map-box", "className"), Input("map-map", "zoom"))

    app.clientside_callback(
        ClientsideFunction(namespace="twinMap", function_name="togglePlay"),
        Output("map-player", "disabled"), Output("map-play", "children"),
        Output("map-time", "value", allow_duplicate=True),
        Input("map-play", "n_clicks"), State("map-player", "disabled"), State("map-time", "value"),
        State("map-time", "max"), prevent_initial_call=True)

    app.clientside_callback(
        ClientsideFunction(namespace="twinMap", function_name="tick"),
        Output("map-time", "value", allow_duplicate=True), Output("map-player", "disabled", allow_duplicate=True),
        Output("map-play", "children", allow_duplicate=True),
        Input("map-player", "n_intervals"), State("map-time", "value"), State("map-time", "max"),
        prevent_initial_call=True)

    @app.callback(Output("map-series", "figure"), Output("map-series-summary", "children"),
                  Output("map-map", "viewport", allow_duplicate=True),
                  Input({"type": PLACE_ID_TYPE, "id": ALL}, "n_clicks"), Input("map-goto", "value"),
                  State("map-run", "value"), prevent_initial_call=True)
    def on_place(_clicks, goto, path):
        trig = dash_ctx.triggered_id
        if isinstance(trig, dict) and trig.get("type") == PLACE_ID_TYPE:
            if not any(t.get("value") for t in dash_ctx.triggered):   # markers (re)created, not clicked
                return no_update, no_update, no_update
            fig, text = place_series(ctx, path, str(trig.get("id")))
            return fig, text, no_update
        if trig == "map-goto" and goto:
            fig, text = place_series(ctx, path, str(goto))
            return fig, text, place_viewport(ctx, path, str(goto))
        return no_update, no_update, no_update


def place_viewport(ctx, path, place_id: str):
    res, err = safe(load, ctx, path)
    if err:
        return no_update
    p = res[1].places
    row = p[p["place_id"].astype(str) == place_id]
    if row.empty:
        return no_update
    return {"center": basemap.to_latlng(float(row.iloc[0]["x"]), float(row.iloc[0]["y"])), "zoom": -1,
            "transition": "flyTo"}


def place_series(ctx, path, place_id: str | None):
    """(figure, text summary) of a place's series in local clock time."""
    if not path or not place_id:
        return no_update, no_update
    res, err = safe(load, ctx, path)
    if err:
        return figures.empty_figure(err, 260), err
    run, layers, frames = res
    mf, err = safe(FRAMES.get, run, layers)
    start = mf.start if mf is not None else None
    p = layers.places
    row = p[p["place_id"].astype(str) == str(place_id)]
    kind = str(row.iloc[0]["kind"]) if len(row) else ""
    observed = None
    if kind.startswith("gauge") and ctx.store is not None:
        from ..sensors_store import observed_for_place

        observed, _ = safe(observed_for_place, ctx.store, place_id, frames.start, str(row.iloc[0]["name"]))
    fig, err = safe(figures.place_series_figure, run, frames, layers, place_id, observed, start)
    if fig is None:
        return figures.empty_figure(err, 260), err
    return fig, series_summary(fig, start)


def series_summary(fig, start) -> str:
    """One sentence per line of the figure: its peak and when (the graph's text equivalent)."""
    from ..mapframes import clock

    if not fig.data:
        title = fig.layout.annotations[0].text if fig.layout.annotations else "no data"
        return str(title)
    parts = [str(fig.layout.title.text or "")]
    ylab = str(fig.layout.yaxis.title.text or "")
    for tr in fig.data:
        y = np.asarray(tr.y, dtype=float)
        if not len(y) or not np.isfinite(y).any():
            continue
        k = int(np.nanargmax(y))
        ts = getattr(tr, "meta", None)
        when = clock(start, float(ts[k]), True) if isinstance(ts, (list, tuple)) and len(ts) > k else str(tr.x[k])
        parts.append(f"{tr.name}: peak {y[k]:.2f} ({ylab}) at {when}; at the start {y[0]:.2f}, at the end {y[-1]:.2f}.")
    return cap(" ".join(parts), 600)
