"""Operations page: a forecast folder (``twin forecast``) for the duty officer.

Gauge fan charts (members, median, 5-95 %), the probability map per threshold and output time,
the impact table sorted by probability, and the CAP alerts with their text. Forecast folders are
the folders holding a ``forecast.json`` in ``forecasts/`` beside the runs folder (``ctx.forecasts_dir``
when set); the client picks one by its folder name from the server's list (never a path).

"Issue warning" hands a ``warning`` decision to a running live twin (``twin live`` writing into the
runs folder) over its MQTT decisions topic (:mod:`twin.sensors.decision_channel`) and shows the
twin's answer: the decision id and the model time it acts at, or the refusal naming the field. The
client names the live run and the alert by id from the server's lists; the decision is built and
validated (pydantic) here; it needs the access token when the server has one
(docs/design/opswarn-issue-warning.md).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update

from .common import cap, message, safe

THRESHOLDS = (0.1, 0.3, 0.5, 1.0)
MAX_IMPACT_ROWS = 200
#: CAP 1.2 severities a manager can choose for a warning
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor")
CHANNELS = ("cell_broadcast", "loudspeaker", "tv", "door_to_door")
TOKEN_NEEDED = ("Issuing a warning needs the access token that twin serve printed when it started: "
                "enter it in the Access token field.")
NO_LIVE_RUN = "Choose a live run: the warning goes to a running twin live."
ARIA_LIVE: dict[str, Any] = {"aria-live": "polite"}


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


# ----------------------------------------------------------------------------------------------
# issuing a warning to the live twin
# ----------------------------------------------------------------------------------------------
def _live_doc(path: Path) -> dict:
    try:
        doc = json.loads((path / "live.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def live_runs(ctx) -> list[dict]:
    """[{id, label, state}] of the runs in the runs folder that a live twin writes (a ``live.json``)."""
    from ..runs import list_runs

    out = []
    for r in list_runs(ctx.runs_dir):
        p = Path(r["path"])
        if r["status"] == "corrupt" or not (p / "live.json").is_file():
            continue
        doc = _live_doc(p)
        state = str(doc.get("state") or "running")
        t = doc.get("t_s")
        when = f"model time {float(t) / 3600:.2f} h" if isinstance(t, (int, float)) else "model time ?"
        out.append({"id": r["id"], "state": state,
                    "label": f"{r['id']} · {doc.get('scenario', '?')} · {when} · {state}"})
    return out


def _alerts_of(ctx, fid: str) -> list[dict]:
    """The forecast's alerts (forecast.json), each file confined to its forecast folder."""
    fdir = _folder(ctx, fid)
    doc = json.loads((fdir / "forecast.json").read_text(encoding="utf-8"))
    out = []
    for a in doc.get("alerts") or []:
        f = (fdir / str(a.get("file", ""))).resolve()
        if f.is_relative_to(fdir.resolve()) and f.is_file():
            out.append({**a, "path": f})
    return out


def alert_options(ctx, fid: str | None) -> list[dict]:
    """Dropdown options of the alerts a warning can be issued from (cancellations are not warnings)."""
    if not fid:
        return []
    return [{"label": f"{a['severity']} · {a['area']} · P = {float(a['probability']):.0%} · {a['identifier']}",
             "value": a["identifier"]} for a in _alerts_of(ctx, fid) if a.get("msgType") != "Cancel"]


def alert_fields(ctx, fid: str, alert_id: str) -> dict:
    """What the form takes from an alert: wards (comma-separated; empty: the whole city), severity,
    message (the English headline). ValueError when ``alert_id`` is not an alert of the forecast."""
    from twin.forecast.cap import parse_alert

    a = next((a for a in _alerts_of(ctx, fid) if a["identifier"] == alert_id and a.get("msgType") != "Cancel"), None)
    if a is None:
        raise ValueError(f"no alert {cap(str(alert_id), 100)!r} in forecast {cap(str(fid), 100)!r}")
    doc = parse_alert(Path(a["path"]))
    info = doc["info"].get("en-US") or next(iter(doc["info"].values()))
    return {"area": ", ".join(info.get("wards") or []), "severity": info.get("severity") or a.get("severity"),
            "text": info.get("headline") or ""}


def warning_decision(area: str | None, channel: str | None, severity: str | None, text: str | None) -> dict:
    """The ``warning`` decision of the form, validated by its pydantic model (:class:`DecisionError`
    naming the field otherwise). ``area``: ward names or codes separated by commas; empty: the city."""
    from twin.decisions import DecisionError, parse_decision

    wards = [w.strip() for w in str(area or "").replace(";", ",").split(",") if w.strip()]
    sev = str(severity or "").strip()
    if sev and sev not in SEVERITIES:
        raise DecisionError(f"warning.severity: expected one of {', '.join(SEVERITIES)} (value {cap(sev, 60)!r})",
                            field="severity", value=sev)
    body = str(text or "").strip() or f"flood warning for {', '.join(wards) or 'the whole city'}"
    label = body if not sev or body.lower().startswith(sev.lower()) else f"{sev}: {body}"
    d = {"type": "warning", "channel": channel or "cell_broadcast", "area": wards or None, "label": label}
    parse_decision(d)
    return d


def issue_warning(ctx, run_id, fid, alert_id, area, channel, severity, text, token=None) -> tuple[str, str]:
    """Hand the form's warning to the live twin of ``run_id``; (kind, message) for the page:
    ``ok`` with the decision id and the model time it acts at, else ``error`` saying why."""
    from twin.decisions import DecisionError
    from twin.sensors.decision_channel import DEFAULT_TIMEOUT_S, ChannelError, send_decision

    from ..runs import RunError, resolve_run

    if not ctx.authorized(token):
        return "error", TOKEN_NEEDED
    if not run_id:
        return "error", NO_LIVE_RUN
    if run_id not in {r["id"] for r in live_runs(ctx)}:
        return "error", "Unknown live run: choose one from the list."
    try:
        path = resolve_run(ctx.runs_dir, run_id)
    except RunError as exc:
        return "error", str(exc)
    doc = _live_doc(path)
    if doc.get("state") == "stopped":
        return "error", (f"Live run {run_id} has stopped ({cap(str(doc.get('stop_reason') or 'stopped'), 120)}): "
                         "it takes no more decisions.")
    issuer = "dashboard operations page"
    if alert_id:
        try:
            alert_fields(ctx, fid, alert_id)
        except (ValueError, OSError) as exc:
            return "error", cap(str(exc))
        issuer += f", cap:{alert_id}"
    try:
        decision = warning_decision(area, channel, severity, text)
    except DecisionError as exc:
        return "error", cap(f"Invalid warning: {exc}")
    broker = getattr(ctx, "live_broker", None) or doc.get("broker")
    if not broker:
        return "error", f"Live run {run_id}: live.json names no broker (twin serve --live-broker URL)."
    try:
        ack = send_decision(str(broker), run_id, decision, issuer=issuer[:200], source="dashboard",
                            timeout_s=float(getattr(ctx, "live_timeout_s", None) or DEFAULT_TIMEOUT_S))
    except (ChannelError, ValueError) as exc:
        return "error", cap(f"Not issued: {exc}")
    if ack.status == "accepted":
        local = f" ({ack.acts_at_local} local)" if ack.acts_at_local else ""
        return "ok", (f"Warning issued to live run {run_id}: decision {ack.decision_id}, acts at model time "
                      f"{ack.acts_at_s:g} s{local}.")
    if ack.status == "received":
        return "info", (f"Live run {run_id} received the warning but has not finished its coupling step yet: it is "
                        "submitted at the next step (see live.json and decisions.parquet).")
    return "error", cap(f"Refused by live run {run_id}: {ack.message}")


def _issue_form(ctx) -> html.Div:
    lives = live_runs(ctx)
    running = [r["id"] for r in lives if r["state"] != "stopped"]
    field = "field"
    return html.Div([
        html.Div([html.Label("Live run", htmlFor="op-live", className="field-label"),
                  dcc.Dropdown(id="op-live", options=[{"label": r["label"], "value": r["id"]} for r in lives],
                               value=running[0] if running else None, placeholder="choose a live run")],
                 className=field),
        html.Div([html.Label("From alert", htmlFor="op-alert", className="field-label"),
                  dcc.Dropdown(id="op-alert", options=[], value=None, placeholder="none: fill in the fields")],
                 className=field),
        html.Div([html.Label("Wards", htmlFor="op-area", className="field-label"),
                  dcc.Input(id="op-area", type="text", value="", placeholder="ward names, commas; empty: the whole city")],
                 className=field),
        html.Div([html.Label("Severity", htmlFor="op-severity", className="field-label"),
                  dcc.Dropdown(id="op-severity", options=list(SEVERITIES), value="Severe", clearable=False)],
                 className=field),
        html.Div([html.Label("Channel", htmlFor="op-channel", className="field-label"),
                  dcc.Dropdown(id="op-channel", options=list(CHANNELS), value="cell_broadcast", clearable=False)],
                 className=field),
        html.Div([html.Label("Message", htmlFor="op-text", className="field-label"),
                  dcc.Input(id="op-text", type="text", value="", maxLength=400)], className=field),
        html.Div([html.Label("Access token", htmlFor="op-token", className="field-label"),
                  dcc.Input(id="op-token", type="password", value="", autoComplete="off")],
                 className=field, style=None if getattr(ctx, "token", None) else {"display": "none"}),
        html.Button("Issue warning", id="op-issue", n_clicks=0, className="btn btn-primary"),
        dcc.Loading(html.Div(id="op-issue-msg", **ARIA_LIVE)),
        None if lives else html.P("No live runs in the runs folder: start one with 'twin live SCENARIO --broker "
                                  f"mqtt://HOST:PORT --run-dir {ctx.runs_dir}/NAME'.", className="hint"),
    ], className="issue-warning")


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
        html.H3("Issue a warning to the live twin"),
        _issue_form(ctx),
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

    @app.callback(Output("op-alert", "options"), Output("op-alert", "value"), Input("op-fc", "value"))
    def on_alert_options(fid):
        opts, _ = safe(alert_options, ctx, fid)
        return opts or [], None

    @app.callback(Output("op-area", "value"), Output("op-severity", "value"), Output("op-text", "value"),
                  Input("op-alert", "value"), State("op-fc", "value"), prevent_initial_call=True)
    def on_alert(alert_id, fid):
        if not alert_id:
            return no_update, no_update, no_update
        got, _ = safe(alert_fields, ctx, fid, alert_id)
        if not got:
            return no_update, no_update, no_update
        return got["area"], got["severity"] if got["severity"] in SEVERITIES else "Severe", got["text"]

    @app.callback(Output("op-issue-msg", "children"), Input("op-issue", "n_clicks"),
                  State("op-live", "value"), State("op-fc", "value"), State("op-alert", "value"),
                  State("op-area", "value"), State("op-channel", "value"), State("op-severity", "value"),
                  State("op-text", "value"), State("op-token", "value"), prevent_initial_call=True)
    def on_issue(n, run_id, fid, alert_id, area, channel, severity, text, token):
        if not n:
            return no_update
        got, err = safe(issue_warning, ctx, run_id, fid, alert_id, area, channel, severity, text, token)
        if err:
            return message(err)
        kind, msg = got
        return message(msg, kind)

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
