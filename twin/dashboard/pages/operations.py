"""Operations page: a forecast folder (``twin forecast``) for the duty officer.

Gauge fan charts (members, median, 5-95 %), the probability map per threshold and output time,
the impact table sorted by probability, and the CAP alerts with their text. Forecast folders are
the folders holding a ``forecast.json`` in ``forecasts/`` beside the runs folder (``ctx.forecasts_dir``
when set); the client picks one by its folder name from the server's list (never a path).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from .common import cap, message, safe

THRESHOLDS = (0.1, 0.3, 0.5, 1.0)
MAX_IMPACT_ROWS = 200


def forecasts_dir(ctx) -> Path:
    """Where the page looks for forecast folders (server side): ``forecasts/`` beside the runs folder."""
    return Path(getattr(ctx, "forecasts_dir", None) or Path(ctx.runs_dir).resolve().parent / "forecasts")


def forecast_folders(ctx) -> list[dict]:
    """[{id, label}] of the forecast folders, newest first (symlinks and hidden folders left out)."""
    root = forecasts_dir(ctx)
    out = []
    for p in sorted(root.iterdir() if root.is_dir() else [], key=lambda q: q.stat().st_mtime, reverse=True):
        f = p / "forecast.json"
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and f.is_file():
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
                label = (f"{p.name} · {doc.get('scenario', '?')} · issued {doc.get('issue_time_local', '?')[:16]} · "
                         f"{doc.get('n_members', '?')} members")
            except (ValueError, OSError):
                label = f"{p.name} (unreadable forecast.json)"
            out.append({"id": p.name, "label": label})
    return out


def _folder(ctx, fid: str) -> Path:
    ids = {f["id"] for f in forecast_folders(ctx)}
    if fid not in ids:
        raise ValueError(f"no forecast folder {cap(str(fid), 100)!r}")
    return forecasts_dir(ctx) / fid


def fan_chart(fdir: Path) -> go.Figure:
    from twin.output.forecast_schema import read_forecast_table

    g = read_forecast_table(fdir, "gauges.parquet")
    fig = go.Figure()
    if g.empty:
        fig.update_layout(title="no gauges in this city")
        return fig
    for gid, d in g.groupby("gauge_id", sort=True):
        name = str(d["name"].iloc[0])
        wide = d.pivot_table(index="t_s", columns="member", values="stage_m")
        t_h = wide.index.to_numpy() / 3600.0
        for m in wide.columns:
            fig.add_trace(go.Scatter(x=t_h, y=wide[m], mode="lines", line={"width": 0.6, "color": "rgba(90,90,90,0.35)"},
                                     name=f"{name} m{m}", legendgroup=str(gid), showlegend=False))
        q = wide.quantile([0.05, 0.5, 0.95], axis=1)
        fig.add_trace(go.Scatter(x=np.r_[t_h, t_h[::-1]], y=np.r_[q.loc[0.95], q.loc[0.05][::-1]], fill="toself",
                                 line={"width": 0}, fillcolor="rgba(31,119,180,0.2)", name=f"{name} 5–95 %",
                                 legendgroup=str(gid)))
        fig.add_trace(go.Scatter(x=t_h, y=q.loc[0.5], mode="lines", line={"width": 2}, name=f"{name} median",
                                 legendgroup=str(gid)))
    fig.update_layout(xaxis_title="time since the scenario start [h]", yaxis_title="stage [m]",
                      margin={"l": 50, "r": 10, "t": 30, "b": 40}, height=380)
    return fig


def probability_map(fdir: Path, threshold: float, k: int) -> go.Figure:
    import xarray as xr

    from twin.output.forecast_schema import exceedance_var

    with xr.open_dataset(fdir / "exceedance.nc", decode_times=False) as ds:
        k = int(np.clip(k, 0, ds.sizes["time"] - 1))
        p = ds[exceedance_var(threshold)].isel(time=k).values
        x, y = ds["x"].values, ds["y"].values
        lead = float(ds["lead_time_s"].values[k]) / 3600.0
    fig = go.Figure(go.Heatmap(z=p, x=x, y=y, zmin=0, zmax=1, colorscale="Viridis",
                               colorbar={"title": "P"}, hovertemplate="P = %{z:.2f}<extra></extra>"))
    fig.update_layout(title=f"P(depth > {threshold:g} m), lead {lead:.1f} h", yaxis={"scaleanchor": "x"},
                      margin={"l": 40, "r": 10, "t": 40, "b": 30}, height=480)
    return fig


def n_times(fdir: Path) -> int:
    import xarray as xr

    with xr.open_dataset(fdir / "exceedance.nc", decode_times=False) as ds:
        return int(ds.sizes["time"])


def impact_rows(fdir: Path) -> list[dict]:
    """Per target and impact its highest probability over the horizon, most likely first."""
    from twin.output.forecast_schema import read_forecast_table

    imp = read_forecast_table(fdir, "impacts.parquet")
    p = imp[imp["probability"].notna()]
    if p.empty:
        return []
    idx = p.groupby(["target_kind", "target_id", "impact"])["probability"].idxmax()
    top = p.loc[idx].sort_values("probability", ascending=False).head(MAX_IMPACT_ROWS)
    return [{"target": f"{r.target_kind} {r.name or r.target_id}", "impact": r.impact,
             "probability": f"{r.probability:.0%}", "at_h": f"{r.t_s / 3600:.1f}"} for r in top.itertuples()]


def alert_items(fdir: Path) -> list:
    doc = json.loads((fdir / "forecast.json").read_text(encoding="utf-8"))
    items = []
    for a in doc.get("alerts") or []:
        xml = (fdir / a["file"]).read_text(encoding="utf-8")
        items.append(html.Details([
            html.Summary(f"{a['msgType']} · {a['severity']} · {a['area']} · P = {a['probability']:.0%} · "
                         f"onset {a['onset']}"),
            html.Pre(xml, className="cap-xml")], className="alert-item"))
    return items or [html.P("No alerts in this forecast (run twin forecast with --alerts rules.yaml).")]


def _table(rows: list[dict]) -> html.Table:
    head = html.Tr([html.Th(h) for h in ("target", "impact", "highest probability", "at [h]")])
    body = [html.Tr([html.Td(r["target"]), html.Td(r["impact"]), html.Td(r["probability"]), html.Td(r["at_h"])])
            for r in rows]
    return html.Table([html.Thead(head), html.Tbody(body)], className="impact-table")


def layout(ctx, selected=None):
    opts = [{"label": f["label"], "value": f["id"]} for f in forecast_folders(ctx)]
    value = opts[0]["value"] if opts else None
    return html.Div([
        html.Div([html.H1("Operations"),
                  html.Div([html.Label("Forecast", htmlFor="op-fc", className="field-label"),
                            dcc.Dropdown(id="op-fc", options=opts, value=value, clearable=False,
                                         placeholder="choose a forecast")], className="field"),
                  html.Div(id="op-msg")], className="toolbar"),
        None if opts else message(f"No forecast folders in {forecasts_dir(ctx)}: run 'twin forecast RUN --members 16 "
                                  f"--horizon 12h --out {forecasts_dir(ctx)}/NAME'.", "info"),
        html.H3("Gauges: members, median and 5–95 %"),
        dcc.Graph(id="op-fan", config={"displaylogo": False}),
        html.H3("Probability of flooding"),
        html.Div([dcc.Dropdown(id="op-thr", options=[{"label": f"depth > {t:g} m", "value": t} for t in THRESHOLDS],
                               value=0.3, clearable=False),
                  dcc.Slider(id="op-time", min=0, max=24, step=1, value=0)], className="field"),
        dcc.Graph(id="op-map", config={"displaylogo": False}),
        html.H3("Impacts, most likely first"),
        html.Div(id="op-impacts"),
        html.H3("Alerts (CAP 1.2)"),
        html.Div(id="op-alerts"),
    ])


def register(app, ctx):
    @app.callback(Output("op-fan", "figure"), Output("op-impacts", "children"), Output("op-alerts", "children"),
                  Output("op-msg", "children"), Output("op-time", "max"), Input("op-fc", "value"))
    def on_forecast(fid):
        empty = go.Figure()
        if not fid:
            return empty, None, None, None, 0
        fdir, err = safe(_folder, ctx, fid)
        if err:
            return empty, None, None, message(err), 0
        msgs = []
        fan, err = safe(fan_chart, fdir)
        msgs += [err] if err else []
        rows, err = safe(impact_rows, fdir)
        msgs += [err] if err else []
        alerts, err = safe(alert_items, fdir)
        msgs += [err] if err else []
        n, err = safe(n_times, fdir)
        return (fan or empty, _table(rows or []), alerts, message(" · ".join(msgs)) if msgs else None,
                max(int(n or 1) - 1, 0))

    @app.callback(Output("op-map", "figure"), Input("op-fc", "value"), Input("op-thr", "value"),
                  Input("op-time", "value"))
    def on_map(fid, thr, k):
        if not fid:
            return go.Figure()
        fdir, err = safe(_folder, ctx, fid)
        if err:
            return go.Figure()
        fig, err = safe(probability_map, fdir, float(thr or 0.3), int(k or 0))
        return fig if fig is not None else go.Figure()
