"""Map page: hillshade, water, roads (closed highlighted), places and gauges; flood depth through time
with a slider and play button; vehicles, people, incidents and units; a time series on click."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, Patch, State, dcc, html, no_update

from .. import figures
from ..runs import RunError
from .common import cap, message, no_runs_message, run_options, run_picker, safe, time_marks

PLAY_MS = 800


def layout(ctx, selected=None):
    picker = run_picker(ctx, "map-run", selected)
    return html.Div([
        html.Div([
            html.H1("Flood map"),
            picker,
            html.Div(id="map-msg"),
        ], className="toolbar"),
        no_runs_message(ctx) if picker.children[1].value is None else None,
        html.Div([
            html.Div([
                dcc.Graph(id="map-graph", figure=figures.empty_figure("choose a run", 560),
                          config={"displaylogo": False, "scrollZoom": True}, style={"height": "560px"}),
                html.Div([
                    html.Button("▶ Play", id="map-play", n_clicks=0, className="btn"),
                    html.Div(dcc.Slider(id="map-time", min=0, max=0, step=1, value=0, marks={},
                                        updatemode="drag"), className="slider"),
                    html.Span("t = –", id="map-time-label", className="time-label"),
                ], className="player"),
                dcc.Interval(id="map-player", interval=PLAY_MS, disabled=True),
                dcc.Interval(id="map-runs-poll", interval=ctx.live_refresh_ms),
            ], className="main-col"),
            html.Div([
                html.H3("Time series"),
                html.P("Click a place or a gauge on the map.", className="hint"),
                dcc.Graph(id="map-series", figure=figures.empty_figure("no place selected", 300),
                          config={"displaylogo": False}, style={"height": "300px"}),
                html.Div(id="map-info", className="info"),
            ], className="side-col"),
        ], className="two-col"),
    ])


def load(ctx, path):
    """(run, layers, frames) for a run id; RunError if unknown or unusable."""
    run = ctx.run(path)
    layers = ctx.layers.for_run(run)
    places = layers.places if len(layers.places) else None
    frames = run.frames(places)
    return run, layers, frames


def build_map(ctx, path, i: int = 0):
    """Everything the run-change callback returns; pure except for the caches (tested directly)."""
    res, err = safe(load, ctx, path)
    if err:
        return figures.empty_figure("this run cannot be shown", 560), 0, {}, 0, message(err), []
    run, layers, frames = res
    fig = figures.map_figure(run, layers, frames, i)
    notes = [html.Li(n) for n in layers.notes]
    info = [html.P(f"Run {run.id}: {run.display_name()}.", className="run-id"), html.P(f"Layers: {layers.source}."), html.P(f"{len(frames.t_s)} frames, {frames.factor}× block maximum of a "
            f"{len(frames.full_y)}×{len(frames.full_x)} grid at {frames.dx:.0f} m; peak depth {frames.max_depth_m:.2f} m."),
            html.Ul(notes) if notes else None]
    return fig, len(frames.t_s) - 1, time_marks(frames.t_s), i, None, info


def patch_time(ctx, path, i: int):
    """Patch for the time slider: depth z and the dynamic overlays at frame i, plus the time label."""
    run = ctx.run(path)
    layers = ctx.layers.for_run(run)
    frames = run.frames(layers.places if len(layers.places) else None)
    i = int(np.clip(i, 0, len(frames.t_s) - 1))
    p = Patch()
    p["data"][figures.TR_DEPTH]["z"] = frames.frame_z(i)
    for k, upd in figures.dynamic_overlays(run, layers, frames, i).items():
        for attr, val in upd.items():
            p["data"][k][attr] = val
    return p, f"t = {figures.fmt_time(frames.t_s[i])}"


def refresh_runs(ctx, path, cur_max):
    """Run list options, and the slider range when the selected run has grown (a live twin)."""
    opts = run_options(ctx)
    if not path:
        return opts, no_update, no_update
    try:
        run = ctx.run(path)
        if not run.has_fields():
            return opts, no_update, no_update
        layers = ctx.layers.for_run(run)
        frames = run.frames(layers.places if len(layers.places) else None)
    except RunError:
        return opts, no_update, no_update
    imax = len(frames.t_s) - 1
    if imax == cur_max:
        return opts, no_update, no_update
    return opts, imax, time_marks(frames.t_s)


def register(app, ctx):
    @app.callback(Output("map-run", "options"), Output("map-time", "max", allow_duplicate=True),
                  Output("map-time", "marks", allow_duplicate=True), Input("map-runs-poll", "n_intervals"),
                  State("map-run", "value"), State("map-time", "max"), prevent_initial_call=True)
    def poll_runs(_, path, cur_max):
        return refresh_runs(ctx, path, cur_max)

    @app.callback(Output("selected-run", "data", allow_duplicate=True), Input("map-run", "value"),
                  prevent_initial_call=True)
    def remember(path):
        return path

    @app.callback(Output("map-graph", "figure"), Output("map-time", "max"), Output("map-time", "marks"),
                  Output("map-time", "value"), Output("map-msg", "children"), Output("map-info", "children"),
                  Input("map-run", "value"))
    def on_run(path):
        if not path:
            return figures.empty_figure("no run selected", 560), 0, {}, 0, None, []
        return build_map(ctx, path, 0)

    @app.callback(Output("map-graph", "figure", allow_duplicate=True), Output("map-time-label", "children"),
                  Input("map-time", "value"), State("map-run", "value"), prevent_initial_call=True)
    def on_time(i, path):
        if not path or i is None:
            return no_update, "t = –"
        try:
            return patch_time(ctx, path, int(i))
        except RunError as exc:
            return no_update, cap(str(exc))

    @app.callback(Output("map-player", "disabled"), Output("map-play", "children"),
                  Input("map-play", "n_clicks"), State("map-player", "disabled"), prevent_initial_call=True)
    def toggle(n, disabled):
        playing = bool(disabled)  # it was stopped: start it
        return (not playing), ("⏸ Pause" if playing else "▶ Play")

    @app.callback(Output("map-time", "value", allow_duplicate=True), Input("map-player", "n_intervals"),
                  State("map-time", "value"), State("map-time", "max"), prevent_initial_call=True)
    def tick(_, i, imax):
        if not imax:
            return no_update
        return 0 if (i or 0) >= imax else (i or 0) + 1

    @app.callback(Output("map-series", "figure"), Input("map-graph", "clickData"), State("map-run", "value"),
                  prevent_initial_call=True)
    def on_click(click, path):
        return place_series(ctx, path, click)


def place_series(ctx, path, click):
    if not path or not click or not click.get("points"):
        return no_update
    pt = click["points"][0]
    cd = pt.get("customdata")
    if not cd or not isinstance(cd, (list, tuple)):
        return no_update
    place_id = str(cd[0])
    res, err = safe(load, ctx, path)
    if err:
        return figures.empty_figure(err, 260)
    run, layers, frames = res
    observed = None
    kind = str(cd[2]) if len(cd) > 2 else ""
    if kind.startswith("gauge") and ctx.store is not None:
        from ..sensors_store import observed_for_place

        observed, _ = safe(observed_for_place, ctx.store, place_id, frames.start, str(cd[1]) if len(cd) > 1 else None)
    fig, err = safe(figures.place_series_figure, run, frames, layers, place_id, observed)
    return fig if fig is not None else figures.empty_figure(err, 260)
