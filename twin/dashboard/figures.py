"""Plotly figures: pure functions from runs and layers to figures (unit-tested without a browser).

Colour scales read in greyscale: depth uses cividis reversed (light = shallow, dark = deep); lines of
the two compared runs differ by dash as well as colour. Every axis names its unit. The compare
page's KPI rows and difference map are in ``comparison.py``, the emergency debrief's in ``debrief.py``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import tables
from .layers import Layers
from .runs import Frames, Run, RunError

FONT = "DejaVu Sans, Noto Sans, Arial, sans-serif"  # full Vietnamese diacritics coverage
DEPTH_SCALE = "cividis_r"
RUN_A_STYLE = {"color": "#1f3b73", "dash": "solid"}
RUN_B_STYLE = {"color": "#c77c02", "dash": "dash"}
PLACE_SYMBOLS = {
    "hospital": "cross", "shelter": "square", "school": "square-open", "hotel": "diamond-open",
    "fire_station": "triangle-up", "police": "triangle-down", "dispatch": "star",
    "pumping_station": "hexagon", "gauge_stage": "circle", "gauge_rain": "circle-open",
    "gauge_tide": "circle-dot", "public_building": "square-open",
}
# trace order in the map figure; the time slider patches these by index
TR_DEPTH, TR_ROADS, TR_CLOSED, TR_VEH, TR_PEOPLE, TR_INC, TR_UNITS, TR_PLACES = range(8)


def base_layout(**kw) -> dict:
    lay = dict(font={"family": FONT, "size": 13}, margin={"l": 60, "r": 20, "t": 40, "b": 50},
               paper_bgcolor="white", plot_bgcolor="white", uirevision="keep")
    lay.update(kw)
    return lay


def empty_figure(message: str, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**base_layout(height=height), xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "showarrow": False, "font": {"size": 15},
                                    "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}])
    return fig


def hours(t_s) -> np.ndarray:
    return np.asarray(t_s, dtype=float) / 3600.0


# ---------------------------------------------------------------------------------------------
# map (the map itself is a dash-leaflet map: basemap.py, mapframes.py, pages/map.py)
# ---------------------------------------------------------------------------------------------
def place_series_figure(run: Run, frames: Frames, layers: Layers, place_id: str,
                        observed: tuple | None = None, start=None) -> go.Figure:
    """Depth (or water level at a stage gauge) at a place through time; ``start`` (a tz-aware
    local start, ``mapframes.run_start``) puts the x axis in local clock time, else hours since
    start. Each trace's ``meta`` holds its times in seconds since start."""
    p = layers.places
    row = p[p["place_id"].astype(str) == str(place_id)]
    if row.empty:
        return empty_figure(f"place {place_id} is not in this city bundle", 260)
    r = row.iloc[0]
    name, kind = str(r["name"]), str(r["kind"])
    series = frames.place_series.get(str(place_id))
    if series is None:
        s = run.point_series(float(r["x"]), float(r["y"]))
        series = s[1] if s is not None else None
    fig = go.Figure()
    if series is None:
        return empty_figure(f"{name} lies outside the flood grid of this run", 260)
    ylabel, label = "water depth (m)", "simulated depth"
    if kind in ("gauge_stage", "gauge_tide") and layers.elevation is not None \
            and layers.elevation.shape == (len(frames.full_y), len(frames.full_x)):
        cell = frames.cell_of(float(r["x"]), float(r["y"]))
        if cell is not None and np.isfinite(layers.elevation[cell]):
            # a stage gauge reads the water surface: ground elevation + depth (m above the model datum)
            series = np.asarray(series, float) + float(layers.elevation[cell])
            ylabel, label = "water level (m above datum)", "simulated water level"
    def xs(t_s):
        if start is None:
            return hours(t_s)
        return [(start + pd.Timedelta(seconds=float(v))).tz_localize(None) for v in t_s]

    fig.add_trace(go.Scatter(x=xs(frames.t_s), y=np.round(series, 3), mode="lines", name=label,
                             line={"color": RUN_A_STYLE["color"], "width": 2},
                             meta=[float(v) for v in frames.t_s]))
    if observed is not None:
        fig.add_trace(go.Scatter(x=xs(observed[0]), y=observed[1], mode="markers", name=observed[2],
                                 marker={"color": "black", "size": 5, "symbol": "circle-open"},
                                 meta=[float(v) for v in observed[0]]))
    fig.update_layout(**base_layout(height=300, title={"text": f"{name} ({kind})", "font": {"size": 14}},
                                    margin={"l": 60, "r": 20, "t": 40, "b": 80},
                                    legend={"orientation": "h", "y": -0.45, "font": {"size": 11}}),
                      xaxis={"title": {"text": "time since start (h)" if start is None
                                       else "local time (Asia/Ho_Chi_Minh)"}},
                      yaxis={"title": {"text": ylabel}})
    return fig


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def max_depth_grid(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, max depth) on the model grid: from max_depth.tif, else the max over fields.nc frames."""
    md = run.max_depth()
    if md is not None:
        a, tr = md
        ny, nx = a.shape
        x = tr.c + (np.arange(nx) + 0.5) * tr.a
        y = tr.f + (np.arange(ny) + 0.5) * tr.e
        return x, y, a
    fr = run.frames()
    d = fr.depth_cm.astype(np.float32)
    d[fr.depth_cm == fr.NODATA] = 0.0
    return fr.x, fr.y, d.max(axis=0) / 100.0


SERIES = (
    ("flooded area (depth > 0.1 m)", "km²", tables.flooded_area_series, 1.0),
    ("people at high hazard (significant or extreme class)", "persons", tables.high_hazard_series, 1.0),
    ("ambulance response time", "min", tables.response_series, 1 / 60.0),
    ("closed road links", "% of links", tables.closed_share_series, 1.0),
)


def compare_series_figure(run_a: Run, run_b: Run, height: int = 640) -> go.Figure:
    # one clock when both runs started at the same moment, else hours since each run's start
    from .mapframes import run_start

    same_start = run_start(run_a, fields_start(run_a)) == run_start(run_b, fields_start(run_b))
    conv, x_title = clock_axis(run_a) if same_start else ((lambda t: hours(t)), "time since start (h)")
    fig = make_subplots(rows=len(SERIES), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[s[0] for s in SERIES])
    for k, (_title, unit, fn, scale) in enumerate(SERIES, start=1):
        for run, style, label in ((run_a, RUN_A_STYLE, "A"), (run_b, RUN_B_STYLE, "B")):
            try:
                s = fn(run)
            except RunError:
                s = None
            if s is None:
                continue
            mode = "markers" if fn is tables.response_series else "lines"
            fig.add_trace(go.Scatter(x=conv(s[0]), y=np.asarray(s[1]) * scale, mode=mode,
                                     name=f"{label}: {run.display_name()}", legendgroup=label,
                                     showlegend=(k == 1) or not any(tr.legendgroup == label for tr in fig.data),
                                     line={**style, "width": 2}, marker={"color": style["color"], "size": 6,
                                     "symbol": "circle" if label == "A" else "diamond-open"}), row=k, col=1)
        fig.update_yaxes(title_text=unit, row=k, col=1, rangemode="tozero")
        if not any(tr.yaxis == ("y" if k == 1 else f"y{k}") for tr in fig.data):
            dom = fig.layout["yaxis" if k == 1 else f"yaxis{k}"].domain
            fig.add_annotation(text="not recorded in either run", showarrow=False, font={"color": "#555"},
                               xref="paper", yref="paper", x=0.5, y=(dom[0] + dom[1]) / 2)
    fig.update_xaxes(title_text=x_title, row=len(SERIES), col=1)
    fig.update_layout(**base_layout(height=height, legend={"orientation": "h", "y": 1.08}))
    return fig


def fmt_num(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    av = abs(v)
    if av >= 1e5:
        return f"{v:,.0f}"
    if av >= 100:
        return f"{v:,.1f}"
    if av >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


# ---------------------------------------------------------------------------------------------
# emergency
# ---------------------------------------------------------------------------------------------
def run_end_s(run: Run) -> float:
    """Model time the run reached: kpis.json ``end_time_s``, else the last time of fields.nc (read
    alone, not the frames: the emergency page need not load the flood grids), else 0."""
    v = run.kpis().get("end_time_s")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
        return float(v)
    if not run.has_fields():
        return 0.0
    try:
        import xarray as xr

        with xr.open_dataset(run.path / "fields.nc", decode_times=False) as ds:
            return float(ds["time"].values[-1]) if ds.sizes.get("time", 0) else 0.0
    except (OSError, ValueError, KeyError, IndexError):
        return 0.0


def time_grid(run: Run, n: int = 200) -> np.ndarray:
    inc = tables.incidents(run)
    t_end = run_end_s(run)
    if inc is not None and len(inc):
        cols = inc[["call_s", "dispatch_s", "arrive_scene_s", "clear_s"]].to_numpy(dtype=float)
        if np.isfinite(cols).any():
            t_end = max(t_end, float(np.nanmax(cols)))
    return np.linspace(0.0, max(t_end, 1.0), n)


def fields_start(run: Run) -> str | None:
    """The start in fields.nc's CF time units (``seconds since <local start>``), None when absent."""
    if not run.has_fields():
        return None
    try:
        import xarray as xr

        with xr.open_dataset(run.path / "fields.nc", decode_times=False) as ds:
            units = str(ds["time"].attrs.get("units", ""))
    except (OSError, ValueError, KeyError):
        return None
    return units.split("since", 1)[1].strip() if "since" in units else None


def clock_axis(run: Run):
    """(t_s → x, axis title): local clock time (Asia/Ho_Chi_Minh) when the run says when it started,
    else hours since the start."""
    from .mapframes import run_start

    start = run_start(run, fields_start(run))
    if start is None:
        return (lambda t: np.asarray(t, dtype=float) / 3600.0), "time since start (h)"
    base = np.datetime64(start.tz_localize(None).to_datetime64(), "ms")

    def conv(t):
        a = np.asarray(t, dtype=float)
        out = np.full(a.shape, np.datetime64("NaT", "ms"), dtype="datetime64[ms]")
        ok = np.isfinite(a)
        out[ok] = base + (a[ok] * 1000).astype("timedelta64[ms]")
        return out

    return conv, "local time (Asia/Ho_Chi_Minh)"   # naive local datetimes: plotly draws them as they are


def incident_timeline_figure(run: Run) -> go.Figure:
    inc = tables.incidents(run)
    if inc is None or inc.empty:
        return empty_figure("this run recorded no incidents (incidents.parquet absent or empty)")
    fig = go.Figure()
    conv, x_title = clock_axis(run)
    y = np.arange(len(inc))
    phases = (("waiting", "call_s", "dispatch_s", "#bdbdbd"), ("travelling", "dispatch_s", "arrive_scene_s", "#636363"),
              ("on scene / transport", "arrive_scene_s", "clear_s", "#000000"))
    t_end = float(time_grid(run, 2)[-1])
    for name, a, b, colour in phases:
        xs, ys = [], []
        for k in range(len(inc)):
            ta, tb = inc.at[k, a], inc.at[k, b]
            if name == "waiting" and np.isfinite(ta) and not np.isfinite(tb) and not np.isfinite(inc.at[k, "clear_s"]):
                tb = max(t_end, ta)  # still waiting when the run ended
            if np.isfinite(ta) and np.isfinite(tb):
                xs += [*conv([ta, tb]).tolist(), None]
                ys += [y[k], y[k], None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line={"color": colour, "width": 4}))
    txt = [f"{inc.at[k, 'kind']} · priority {inc.at[k, 'priority']}" for k in range(len(inc))]
    unreached = inc["arrive_scene_s"].isna()
    fig.add_trace(go.Scatter(x=conv(inc["call_s"]), y=y, mode="markers", name="call", text=txt, hoverinfo="text+x",
                             marker={"symbol": np.where(unreached, "x", "circle").tolist(), "size": 7, "color": "#1f3b73"}))
    fig.update_layout(**base_layout(height=330, margin={"l": 60, "r": 20, "t": 30, "b": 45},
                                    legend={"orientation": "h", "y": 1.12}),
                      xaxis={"title": {"text": x_title}},
                      yaxis={"title": {"text": "incident # (by call time)"}})
    return fig


def queue_utilisation_figure(run: Run) -> go.Figure:
    tg = time_grid(run)
    q = tables.queue_series(run, tg)
    u = tables.utilisation_series(run, tg)
    if q is None and u is None:
        return empty_figure("no incident or unit records in this run")
    conv, x_title = clock_axis(run)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=["incidents waiting for a unit", "units busy"])
    if q is not None:
        fig.add_trace(go.Scatter(x=conv(tg), y=q, mode="lines", line={"shape": "hv", "color": "#1f3b73"},
                                 name="queue"), row=1, col=1)
    if u is not None:
        fig.add_trace(go.Scatter(x=conv(tg), y=np.round(u[0], 1), mode="lines", line={"shape": "hv", "color": "#000000"},
                                 name=f"utilisation of {u[1]} units"), row=2, col=1)
    fig.update_yaxes(title_text="incidents", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="% of units", row=2, col=1, range=[0, 105])
    fig.update_xaxes(title_text=x_title, row=2, col=1)
    fig.update_layout(**base_layout(height=380, showlegend=False))
    return fig


# ---------------------------------------------------------------------------------------------
# sensors
# ---------------------------------------------------------------------------------------------
def observed_vs_simulated_figure(obs, sim, title: str, unit: str) -> go.Figure:
    """obs: DataFrame (time, result, quality_flag); sim: (time datetimes, values) or None."""
    fig = go.Figure()
    if obs is not None and len(obs):
        good = obs["quality_flag"].astype(str).str.lower().isin(["good", "ok", "0", "pass", "none", "nan", ""])
        fig.add_trace(go.Scatter(x=obs.loc[good, "time"], y=obs.loc[good, "result"], mode="lines+markers", name="observed",
                                 line={"color": "#000000"}, marker={"size": 4}))
        if (~good).any():
            fig.add_trace(go.Scatter(x=obs.loc[~good, "time"], y=obs.loc[~good, "result"], mode="markers",
                                     name="observed, flagged by QC", text=obs.loc[~good, "quality_flag"].astype(str),
                                     marker={"symbol": "x", "size": 8, "color": "#b2182b"}))
    if sim is not None:
        fig.add_trace(go.Scatter(x=sim[0], y=sim[1], mode="lines", name=sim[2] if len(sim) > 2 else "simulated",
                                 line={"color": RUN_B_STYLE["color"], "dash": "dash", "width": 2}))
    if not fig.data:
        return empty_figure("no observations for this datastream yet")
    fig.update_layout(**base_layout(height=340, title={"text": title, "font": {"size": 14}},
                                    margin={"l": 60, "r": 20, "t": 40, "b": 90},
                                    legend={"orientation": "h", "y": -0.4}),
                      xaxis={"title": {"text": "time (local, Asia/Ho_Chi_Minh)"}},
                      yaxis={"title": {"text": unit or "value"}})
    return fig
