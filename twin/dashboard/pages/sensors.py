"""Sensors page: stations with their latest value and QC flag from the DuckDB store, observed versus
simulated series, and interval refresh while a live twin is feeding the store."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from .. import figures
from ..sensors_store import LOCAL_TZ, datastreams, observations
from .common import message, run_picker, safe


def layout(ctx, selected=None):
    store = str(ctx.store) if ctx.store else None
    opts, first = [], None
    if ctx.store is not None:
        df, _ = safe(datastreams, ctx.store)
        if df is not None and len(df):
            opts = ds_options(df)
            first = opts[0]["value"]
    return html.Div([
        html.Div([
            html.H1("Sensors"),
            html.Div([html.Span("Store: ", className="field-label"), html.Code(store or "none (start with twin serve --store FILE.duckdb)")],
                     className="field"),
            run_picker(ctx, "sen-run", selected, label="Simulated from run"),
            dcc.Checklist(id="sen-live", options=[{"label": " live updates", "value": "live"}], value=["live"],
                          className="field"),
            html.Span(id="sen-updated", className="hint"),
        ], className="toolbar"),
        html.Div(id="sen-msg"),
        dcc.Interval(id="sen-interval", interval=ctx.live_refresh_ms, disabled=False),
        html.Div([
            html.Div([html.H3("Stations"), dcc.Graph(id="sen-map", config={"displaylogo": False}, style={"height": "420px"})],
                     className="main-col"),
            html.Div([html.H3("Latest values"), html.Div(id="sen-table", className="kpi-wrap")], className="side-col wide"),
        ], className="two-col"),
        html.Div([html.Label("Datastream", htmlFor="sen-ds", className="field-label"),
                  dcc.Dropdown(id="sen-ds", options=opts, value=first, placeholder="choose a datastream",
                               className="run-dropdown")],
                 className="field"),
        dcc.Graph(id="sen-series", figure=figures.empty_figure("choose a datastream"), config={"displaylogo": False}),
    ])


def ds_options(df: pd.DataFrame) -> list[dict]:
    st = df["station_name"] if "station_name" in df.columns else df["station"]
    return [{"label": f"{n} — {s} ({d})" if pd.notna(s) and str(s) != str(n) else f"{n} ({d})", "value": str(d)}
            for d, n, s in zip(df["datastream_id"], df["name"], st)]


def station_table(df: pd.DataFrame) -> html.Table:
    head = html.Thead(html.Tr([html.Th(h) for h in ("datastream", "station", "latest", "unit", "time (local)", "QC flag", "n")]))
    rows = []
    st = df["station_name"] if "station_name" in df.columns else df["station"]
    for r, sname in zip(df.itertuples(index=False), st):
        flag = str(r.latest_flag) if r.latest_flag is not None else "–"
        cls = "flag-good" if flag.lower() in ("good", "ok", "pass") else "flag-bad"
        t = r.latest_time.strftime("%Y-%m-%d %H:%M") if pd.notna(r.latest_time) else "–"
        rows.append(html.Tr([html.Td(f"{r.name} ({r.datastream_id})"), html.Td(str(sname) if pd.notna(sname) else "–"), html.Td(figures.fmt_num(r.latest_value), className="num"),
                             html.Td(str(r.unit or "")), html.Td(t), html.Td(flag, className=cls), html.Td(int(r.n_obs), className="num")]))
    return html.Table([head, html.Tbody(rows)], className="kpi-table", id="sen-station-table")


def stations_figure(ctx, df: pd.DataFrame, run_path) -> go.Figure:
    fig = go.Figure()
    lay = None
    if run_path:
        run, _ = safe(ctx.run, run_path)
        if run is not None:
            lay, _ = safe(ctx.layers.for_run, run)
    d = df[np.isfinite(df["x"].astype(float))] if len(df) else df
    if lay is not None and len(lay.road_x):
        fig.add_trace(go.Scatter(x=lay.road_x, y=lay.road_y, mode="lines", line={"color": "#777", "width": 1},
                                 name="roads", hoverinfo="skip"))
    if len(d):
        txt = [f"{n}: {figures.fmt_num(v)} {u or ''} ({f})" for n, v, u, f in zip(d["name"], d["latest_value"], d["unit"], d["latest_flag"])]
        fig.add_trace(go.Scatter(x=d["x"], y=d["y"], mode="markers+text", text=[str(v) for v in d["name"]],
                                 textposition="top center", hovertext=txt, hoverinfo="text", name="stations",
                                 customdata=d["datastream_id"], marker={"size": 12, "color": "black", "symbol": "circle-dot"}))
    layout = figures.base_layout(height=420, margin={"l": 70, "r": 10, "t": 10, "b": 50}, showlegend=False,
                                 xaxis={"title": {"text": "easting (m, UTM 49N)"}, "tickformat": "d", "showgrid": False},
                                 yaxis={"title": {"text": "northing (m)"}, "scaleanchor": "x", "tickformat": "d",
                                        "showgrid": False})
    if lay is not None and lay.extent is not None:
        w, e, s, n = lay.extent
        layout["xaxis"]["range"] = [w, e]
        layout["yaxis"]["range"] = [s, n]
        if lay.image_uri:
            layout["images"] = [{"source": lay.image_uri, "xref": "x", "yref": "y", "x": w, "y": n, "sizex": e - w,
                                 "sizey": n - s, "sizing": "stretch", "layer": "below"}]
    if not len(d) and lay is None:
        return figures.empty_figure("no station has a location in the store", 420)
    fig.update_layout(**layout)
    return fig


def simulated_at(ctx, run_path, x, y, prop: str):
    """(local datetimes, values, label) of the run at a station, or None."""
    if not run_path or not np.isfinite(x) or not np.isfinite(y):
        return None
    run = ctx.run(run_path)
    fr = run.frames()
    s = run.point_series(float(x), float(y))
    if s is None:
        return None
    t_s, depth = s
    start = pd.Timestamp(fr.start) if fr.start else pd.Timestamp("2000-01-01")
    start = start.tz_localize(LOCAL_TZ) if start.tzinfo is None else start.tz_convert(LOCAL_TZ)
    times = start + pd.to_timedelta(t_s, unit="s")
    label = "simulated depth"
    vals = depth
    if any(k in (prop or "").lower() for k in ("stage", "level", "tide")):
        cell = fr.cell_of(float(x), float(y))
        z = run.elevation()
        if z is None:
            lay, _ = safe(ctx.layers.for_run, run)
            if lay is not None and lay.elevation is not None and lay.elevation.shape == (len(fr.full_y), len(fr.full_x)):
                z = lay.elevation
        if z is not None and cell is not None:
            vals = depth + z[cell]
            label = "simulated water level"
    return times, vals, f"{label} ({run.display_name()})"


def refresh(ctx, run_path, ds_id):
    """(map, table, datastream options, series figure, message, updated text)."""
    e = figures.empty_figure("no sensor data")
    if ctx.store is None:
        return e, None, [], e, message("No sensor store given: start the dashboard with 'twin serve --store FILE.duckdb'.", "info"), ""
    df, err = safe(datastreams, ctx.store)
    if err:
        return e, None, [], e, message(err), ""
    opts = ds_options(df)
    series = figures.empty_figure("choose a datastream")
    msg = None
    if ds_id:
        row = df[df["datastream_id"].astype(str) == str(ds_id)]
        obs, err = safe(observations, ctx.store, ds_id)
        if err:
            msg = message(err)
        else:
            sim = None
            if len(row):
                r = row.iloc[0]
                sim, err2 = safe(simulated_at, ctx, run_path, float(r["x"]) if pd.notna(r["x"]) else np.nan,
                                 float(r["y"]) if pd.notna(r["y"]) else np.nan, str(r["property"] or ""))
                unit = str(r["unit"] or "")
                title = f"{r['name']} — {r['property'] or ''}"
            else:
                unit, title = "", str(ds_id)
            series = figures.observed_vs_simulated_figure(obs, sim, title, unit)
    now = pd.Timestamp.now(tz=LOCAL_TZ).strftime("%H:%M:%S")
    return stations_figure(ctx, df, run_path), station_table(df), opts, series, msg, f"updated {now} (local)"


def register(app, ctx):
    @app.callback(Output("sen-interval", "disabled"), Input("sen-live", "value"))
    def live(v):
        return "live" not in (v or [])

    @app.callback(Output("sen-map", "figure"), Output("sen-table", "children"), Output("sen-ds", "options"),
                  Output("sen-series", "figure"), Output("sen-msg", "children"), Output("sen-updated", "children"),
                  Input("sen-interval", "n_intervals"), Input("sen-run", "value"), Input("sen-ds", "value"))
    def on_refresh(_, run_path, ds_id):
        return refresh(ctx, run_path, ds_id)

    @app.callback(Output("sen-ds", "value"), Input("sen-map", "clickData"), State("sen-ds", "value"),
                  prevent_initial_call=True)
    def pick(click, cur):
        try:
            return str(click["points"][0]["customdata"])
        except (TypeError, KeyError, IndexError):
            return cur
