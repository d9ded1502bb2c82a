"""Emergency debrief: summary cards, an incident log like a dispatch system's (local clock times) linked
to a map, a unit Gantt chart, the incident timeline and queue, shelter occupancy by the right places
(people who arrived, against capacity) and hospital arrivals; every graph has its summary in words."""
from __future__ import annotations

from typing import Any

import dash_leaflet as dl
from dash import ALL, Input, Output, State, callback_context, dcc, html, no_update

from .. import basemap as bm
from .. import debrief, figures
from .common import message, no_runs_message, run_picker, safe

LOG_COLUMNS = [("id", "#"), ("type", "type"), ("priority", "priority"), ("place", "place"), ("call", "call"),
               ("dispatch", "dispatch"), ("arrival", "arrival"), ("handover", "hand-over"),
               ("response_min", "response (min)"), ("unit", "unit"), ("destination", "taken to"),
               ("outcome", "outcome")]
ZOOM_TO_INCIDENT = -1.0     # Simple CRS: 2**zoom px per metre; -1 shows about 1.8 km across 900 px


def layout(ctx, selected=None):
    picker = run_picker(ctx, "em-run", selected)
    return html.Div([
        html.Div([html.H1("Emergency debrief"), picker, html.Div(id="em-msg")], className="toolbar"),
        no_runs_message(ctx) if picker.children[1].value is None else None,
        html.Div(id="em-summary", className="summary"),
        html.H2("Incident log"),
        html.P(id="em-log-summary", className="summary-text", **{"aria-live": "polite"}),
        html.Div([
            html.Div([html.Div(id="em-log"), dcc.Store(id="em-log-store", data=[])],
                     className="main-col incident-log-wrap"),
            html.Div([html.Div(id="em-map-wrap"), html.P(id="em-map-caption", className="summary-text")],
                     className="side-col wide"),
        ], className="two-col"),
        html.H2("Units"),
        html.P(id="em-gantt-summary", className="summary-text"),
        dcc.Graph(id="em-gantt", config={"displaylogo": False}),
        html.Div([
            html.Div([html.H3("Incident timeline"), dcc.Graph(id="em-timeline", config={"displaylogo": False})],
                     className="main-col"),
            html.Div([html.H3("Queue and units"), dcc.Graph(id="em-queue", config={"displaylogo": False})],
                     className="side-col wide"),
        ], className="two-col"),
        html.H2("Shelters"),
        html.P(id="em-shelter-summary", className="summary-text"),
        html.Div(id="em-shelter-note"),
        dcc.Graph(id="em-shelters", config={"displaylogo": False}),
        html.Div(id="em-shelter-table"),
        html.H2("Hospitals"),
        dcc.Graph(id="em-occupancy", config={"displaylogo": False}),
    ])


def summary(run) -> list:
    inc = run.table("incidents")  # no incidents (none called, or no services): the same cards, all zero
    n = len(inc)
    reached = inc["arrive_scene_s"].notna()
    resp = (inc["arrive_scene_s"] - inc["call_s"])[reached] / 60.0
    items = [("incidents", f"{n}"), ("reached", f"{int(reached.sum())}"), ("not reached by the end", f"{int((~reached).sum())}"),
             ("median response", f"{resp.median():.1f} min" if len(resp) else "–"),
             ("p90 response", f"{resp.quantile(0.9):.1f} min" if len(resp) else "–")]
    return [html.Div([html.Div(v, className="kpi-value"), html.Div(k, className="kpi-label")], className="kpi-card")
            for k, v in items]


def shelter_table(occ) -> html.Table | None:
    """The shelter chart in words (for screen readers and for reading exact numbers)."""
    if occ is None or not len(occ):
        return None
    head = html.Thead(html.Tr([html.Th(c, scope="col") for c in
                               ("shelter", "kind", "capacity", "peak arrived", "at the end", "over capacity")]))
    body = [html.Tr([html.Th(r.name, scope="row", className="kpi-name"), html.Td(r.kind.replace("_", " ")),
                     html.Td(f"{r.capacity:,.0f}" if r.capacity == r.capacity else "–", className="num"),
                     html.Td(f"{r.peak:,.0f}", className="num"), html.Td(f"{r.end:,.0f}", className="num"),
                     html.Td("yes: over capacity" if r.over else "no", className="over-capacity" if r.over else "")])
            for r in occ.itertuples()]
    return html.Table([html.Caption("Persons who arrived at each shelter (people on their way not counted)"),
                       head, html.Tbody(body)], className="kpi-table", id="em-shelter-table-t")


#: rows of the incident log drawn in the page (the rest are counted in the summary)
MAX_LOG_ROWS = 500


def log_table(records: list[dict]) -> html.Table | html.P:
    """The incident log as a table; each row's first cell is a button that shows it on the map
    (reachable with Tab, pressed with Enter). Unreached incidents are flagged in words and colour."""
    if not records:
        return html.P("No incidents were recorded in this run.")
    head = html.Thead(html.Tr([html.Th("map", scope="col")] + [html.Th(n, scope="col") for _, n in LOG_COLUMNS]))
    body = []
    for k, r in enumerate(records[:MAX_LOG_ROWS]):
        unreached = r["arrival"] == "–"
        aria: dict[str, Any] = {"aria-label": f"show incident {r['id']} on the map"}
        cells = [html.Td(html.Button("show", id={"type": "em-log-row", "index": k}, className="row-btn", **aria))]
        for c, _ in LOG_COLUMNS:
            v = r[c]
            if c == "response_min":
                v = "not reached" if v is None or v != v else f"{v:.1f}"
            data: dict[str, Any] = {"data-col": c}
            cells.append(html.Td(str(v), className="num" if c in ("id", "priority", "response_min") else None, **data))
        body.append(html.Tr(cells, className="unreached" if unreached else None))
    caption = "Times are local clock times (Asia/Ho_Chi_Minh)"
    if len(records) > MAX_LOG_ROWS:
        caption += f"; the first {MAX_LOG_ROWS} of {len(records)} incidents by call time"
    return html.Table([html.Caption(caption), head, html.Tbody(body)], className="kpi-table incident-log",
                      id="em-log-table")


def incident_map(layers, log):
    """A dash-leaflet map over the basemap with every incident (reached: filled, not reached: open)."""
    markers = []
    if log is not None:
        for r in log.itertuples():
            reached = r.arrival != "–"
            markers.append(dl.CircleMarker(
                center=bm.to_latlng(r.x, r.y), radius=5, weight=1.5, color="#000",
                fillColor="#08519c" if reached else "#ffffff", fillOpacity=0.9,
                children=[dl.Tooltip(f"#{r.id} {r.type}, call {r.call}: {r.outcome}")]))
    extent = layers.extent if layers is not None and layers.extent is not None else None
    if extent is None and log is not None and len(log):
        extent = (float(log["x"].min()) - 500, float(log["x"].max()) + 500, float(log["y"].min()) - 500,
                  float(log["y"].max()) + 500)
    children = [dl.LayersControl(bm.basemap_layers(layers, prefix="em") + [
        dl.Overlay(dl.LayerGroup(markers, id="em-incidents"), name="incidents", checked=True)], position="topright")] \
        if layers is not None else [dl.LayerGroup(markers, id="em-incidents")]
    children.append(dl.LayerGroup([], id="em-highlight"))
    return dl.Map(children=children, id="em-map", style={"height": "440px", "width": "100%"}, trackViewport=False,
                  **bm.map_options(extent))


def emergency(ctx, path):
    """Everything the page shows for run ``path`` (a run id), as a dict of output name → value."""
    e = figures.empty_figure("no run selected")
    out = {"timeline": e, "queue": e, "occupancy": e, "gantt": e, "shelters": e, "msg": None, "summary": [],
           "log": [], "log_table": None, "log_summary": None, "map": None, "gantt_summary": None, "shelter_summary": None,
           "shelter_note": None, "shelter_table": None}
    if not path:
        return out
    run, err = safe(ctx.run, path)
    if err:
        out["msg"] = message(err)
        return out
    lay, _ = safe(ctx.layers.for_run, run)
    places = lay.places if lay is not None and len(lay.places) else None
    msgs = []

    def take(key, fn, *args, fallback=None):
        v, err = safe(fn, *args)
        if err:
            msgs.append(err)
            v = fallback
        out[key] = v

    cannot = figures.empty_figure("cannot be drawn")
    take("timeline", figures.incident_timeline_figure, run, fallback=cannot)
    take("queue", figures.queue_utilisation_figure, run, fallback=cannot)
    take("occupancy", debrief.hospital_figure, run, places, fallback=cannot)
    take("gantt", debrief.gantt_figure, run, fallback=cannot)
    take("gantt_summary", debrief.gantt_summary, run)
    take("summary", summary, run, fallback=[])
    log, err = safe(debrief.incident_log, run, places)
    if err:
        msgs.append(err)
        log = None
    # positions travel with the rows (not shown as columns) for the map link
    out["log"] = [] if log is None else log.drop(columns=["call_s"]).rename(columns={"x": "_x", "y": "_y"}).round(
        {"_x": 1, "_y": 1}).astype(object).where(lambda d: d.notna(), None).to_dict("records")
    out["log_summary"] = debrief.log_summary(log)
    out["log_table"] = log_table(out["log"])
    take("map", incident_map, lay, log)
    occ, err = safe(debrief.shelter_occupancy, run, places)
    if err:
        msgs.append(err)
        occ = (None, None)
    occ, note = occ
    out["shelters"] = debrief.shelter_figure(occ)
    out["shelter_summary"] = debrief.shelter_summary(occ)
    out["shelter_note"] = message(note, "info") if note else None
    out["shelter_table"] = shelter_table(occ)
    out["msg"] = message(" · ".join(msgs)) if msgs else None
    return out


KEYS = ("timeline", "queue", "occupancy", "msg", "summary", "log_table", "log", "log_summary", "map", "gantt", "gantt_summary",
        "shelters", "shelter_summary", "shelter_note", "shelter_table")
OUTPUTS = (("em-timeline", "figure"), ("em-queue", "figure"), ("em-occupancy", "figure"), ("em-msg", "children"),
           ("em-summary", "children"), ("em-log", "children"), ("em-log-store", "data"),
           ("em-log-summary", "children"),
           ("em-map-wrap", "children"), ("em-gantt", "figure"), ("em-gantt-summary", "children"),
           ("em-shelters", "figure"), ("em-shelter-summary", "children"), ("em-shelter-note", "children"),
           ("em-shelter-table", "children"))


def highlight(ctx, path, row):
    """(highlight layer children, map viewport, caption) for a selected incident-log row."""
    if row is None:
        return [], None, "Select a row of the log to show the incident on the map."
    x, y = row.get("_x"), row.get("_y")
    if x is None or y is None:
        return [], None, None
    ring = dl.CircleMarker(center=bm.to_latlng(x, y), radius=14, weight=4, color="#e6550d", fill=False,
                           children=[dl.Tooltip(f"incident #{row['id']}", permanent=True)])
    return [ring], {"center": bm.to_latlng(x, y), "zoom": ZOOM_TO_INCIDENT, "transition": "flyTo"}, \
        (f"Incident #{row['id']} ({row['type']}, called {row['call']}) at {row['place']}: {row['outcome']}.")


def register(app, ctx):
    @app.callback(Output("selected-run", "data", allow_duplicate=True), Input("em-run", "value"),
                  prevent_initial_call=True)
    def remember(path):
        return path

    @app.callback(*[Output(i, p) for i, p in OUTPUTS], Input("em-run", "value"))
    def on_run(path):
        res = emergency(ctx, path)
        return tuple(res[k] for k in KEYS)

    @app.callback(Output("em-highlight", "children"), Output("em-map", "viewport"), Output("em-map-caption", "children"),
                  Input({"type": "em-log-row", "index": ALL}, "n_clicks"), State("em-log-store", "data"),
                  prevent_initial_call=True)
    def on_select(clicks, data):
        trig = callback_context.triggered_id
        if not isinstance(trig, dict) or not any(clicks or []) or not data:
            return no_update, no_update, no_update
        k = int(trig.get("index", -1))
        row = data[k] if 0 <= k < len(data) else None
        hl, vp, cap = highlight(ctx, None, row)
        return hl, vp if vp is not None else no_update, cap
