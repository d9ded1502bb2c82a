"""Exercise page: a seat's view of a running exercise (``twin exercise``).

The page asks for the seat token and then talks only to the exercise's JSON API (``/api/v1/``, the
same routes scripts use) from the browser, with ``Authorization: Bearer <token>``: the clock and the
injects, the decisions log, the units where they are; pause, resume, speed and next inject for
seats that steer the clock; a decision as JSON (the keys of a scenario's ``interventions`` entry).
The token stays in the browser tab (session storage); the server never puts it in a page. Served by
``twin serve`` without an exercise, the page says so.

The builder's drawing tools are on the page too (``twin.dashboard.drawing``): a line, area or marker drawn
on the exercise city's map becomes the decision JSON (:func:`drawn_decision_json`, the same
``decision_from_drawing`` the builder uses), which the seat checks and issues through the same API.
"""
from __future__ import annotations

import json
from typing import Any

import dash_leaflet as dl
import flask
from dash import Input, Output, State, dcc, html, no_update

from .. import basemap
from .. import drawing as dr

#: the Flask config key ``twin exercise`` sets: {"city": ..., "resolution_m": ...} of the exercise scenario
EXERCISE_CITY_KEY = "TWIN_EXERCISE_CITY"

_API = """
const twinExApi = async (path, tok, opts) => {
  const init = Object.assign({headers: {}}, opts || {});
  init.headers["Authorization"] = "Bearer " + tok;
  if (init.body !== undefined) { init.headers["Content-Type"] = "application/json"; }
  let r;
  try { r = await fetch("/api/v1/" + path, init); } catch (e) { return {status: 0, body: {error: "the server does not answer"}}; }
  let b = {};
  // no JSON: no exercise API on this server (twin serve answers every path with the app's page)
  try { b = await r.json(); } catch (e) { return {status: 404, body: {error: "no exercise runs on this server"}}; }
  return {status: r.status, body: b};
};
const twinExT = (t) => { const s = Math.round(t); const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return "t = " + s + " s (" + h + " h " + String(m).padStart(2, "0") + " min)"; };
"""

_JOIN = _API + """
return async function(n, ns, tok) {
  const nu = window.dash_clientside.no_update;
  if (!tok || !tok.trim()) { return [nu, "Enter the seat token printed when the exercise started."]; }
  tok = tok.trim();
  const r = await twinExApi("session", tok);
  if (r.status === 401) { return [null, "Not a seat token of this exercise."]; }
  if (r.status === 404) { return [null, "No exercise runs on this server (start one with twin exercise)."]; }
  if (r.status !== 200) { return [null, r.body.error || ("error " + r.status)]; }
  const b = r.body;
  return [tok, "Seat " + b.seat + ": may issue " + ((b.kinds || []).join(", ") || "no decision")
               + (b.control ? "; steers the clock." : ".")];
};
"""

_POLL = _API + """
return async function(n, tok) {
  const nu = window.dash_clientside.no_update;
  if (!tok) { return ["not joined", "", "", "", "", "", "", ""]; }
  const [s, d, u] = await Promise.all([twinExApi("session", tok), twinExApi("decisions", tok), twinExApi("units", tok)]);
  if (s.status !== 200) { return [s.body.error || "the session does not answer", nu, nu, nu, nu, nu, nu, nu]; }
  const b = s.body;
  const inj = (b.injects || []).slice().reverse().map(i => "[" + twinExT(i.t_s) + "] " + i.message
      + (i.decision_id >= 0 ? "  (decision " + i.decision_id + ")" : "")).join("\\n") || "no inject yet";
  let dec = nu, units = nu;
  if (d.status === 200) {
    const pend = (d.body.pending || []).map(p => "#" + p.decision_id + " " + p.type + " by " + (p.issuer || p.source)
        + ": pending, acts at " + twinExT(p.acts_at_s));
    const done = (d.body.decisions || []).slice().reverse().map(r => "#" + r.decision_id + " " + r.type + " by "
        + (r.issuer || r.source) + " (" + r.source + "): " + r.outcome + " at " + twinExT(r.t_s) + " - " + r.message);
    dec = pend.concat(done).join("\\n") || "no decision yet";
  }
  if (u.status === 200) {
    units = (u.body.units || []).map(x => "unit " + x.unit_id + " " + x.kind + " " + x.phase
        + (x.incident_id >= 0 ? " incident " + x.incident_id : "") + " at (" + Math.round(x.x) + ", " + Math.round(x.y) + ")").join("\\n");
  }
  const obj = (b.objectives || []).map(o => JSON.stringify(o)).join("\\n");
  return [b.state, twinExT(b.t_s), (b.clock_local || "").replace("T", " "), "speed " + b.speed + "x", inj, dec, units,
          obj];
};
"""

_CONTROL = _API + """
return async function(a, b, c, d, speed, tok) {
  if (!tok) { return "Join with a seat token first."; }
  const trig = (window.dash_clientside.callback_context.triggered || [])[0];
  if (!trig) { return window.dash_clientside.no_update; }
  const id = trig.prop_id.split(".")[0];
  const action = {"ex-pause": "pause", "ex-resume": "resume", "ex-next": "next_inject", "ex-speed-set": "speed"}[id];
  const body = {action: action};
  if (action === "speed") { body.value = speed; }
  const r = await twinExApi("control", tok, {method: "POST", body: JSON.stringify(body)});
  if (r.status === 200) { return action + ": " + r.body.state + " at " + twinExT(r.body.t_s); }
  return "Refused (" + r.status + "): " + r.body.error;
};
"""

_ISSUE = _API + """
return async function(n, text, tok) {
  if (!tok) { return "Join with a seat token first."; }
  const r = await twinExApi("decisions", tok, {method: "POST", body: text || ""});
  if (r.status === 202) {
    const b = r.body;
    return "Decision " + b.decision_id + " (" + b.type + ") queued: acts at " + twinExT(b.acts_at_s) + ", "
           + (b.acts_at_local || "").replace("T", " ") + ".";
  }
  return "Refused (" + r.status + "): " + (r.body.error || "");
};
"""


def _fn(body: str) -> str:
    """A clientside callback from a body that ends by returning the function."""
    return "(function() {" + body + "})()"


def layout(ctx, selected=None):
    return html.Div([
        html.Div([
            html.H1("Exercise"),
            html.Div([html.Label("Seat token", htmlFor="ex-token", className="field-label"),
                      dcc.Input(id="ex-token", type="password", debounce=False, autoComplete="off",
                                placeholder="printed by twin exercise", style={"width": "260px"})],
                     className="field"),
            html.Button("Join", id="ex-join", className="btn btn-primary"),
            html.Span(id="ex-seat", className="hint"),
        ], className="toolbar"),
        dcc.Store(id="ex-auth", storage_type="session"),
        dcc.Interval(id="ex-tick", interval=1000),
        html.Div([
            html.Span("State: ", className="field-label"), html.Span(id="ex-state", className="time-label"),
            html.Span(id="ex-time", className="time-label"), html.Span(id="ex-clock", className="time-label"),
            html.Span(id="ex-speed-shown", className="hint"),
        ], className="player", style={"margin": "8px 0"}),
        html.Div([
            html.Button("Pause", id="ex-pause", className="btn"),
            html.Button("Resume", id="ex-resume", className="btn"),
            html.Button("Next inject", id="ex-next", className="btn"),
            dcc.Input(id="ex-speed", type="number", min=1, value=60, style={"width": "90px"}),
            html.Button("Set speed", id="ex-speed-set", className="btn"),
            html.Span(id="ex-control-msg", className="hint"),
        ], className="buttons"),
        html.Div([
            html.Div([
                html.H3("Injects"), html.Pre(id="ex-injects", className="kpi-wrap"),
                html.H3("Issue a decision (JSON, the keys of a scenario's interventions entry)"),
                dcc.Textarea(id="ex-decision", style={"width": "100%", "height": "90px"},
                             placeholder='{"type": "road_closure", "near": [229000, 1723900], "radius_m": 300}'),
                html.Button("Issue", id="ex-issue", className="btn btn-primary"),
                html.Div(id="ex-result", className="msg msg-info"),
                html.H3("Decisions"), html.Pre(id="ex-decisions", className="kpi-wrap"),
            ], className="main-col"),
            html.Div([html.H3("Draw a decision"),
                      html.Div("Choose the kind, draw on the map (line, area or marker at the top left; a marker "
                               "on a place picks it), check the JSON it gives, then Issue.", className="hint"),
                      dcc.Dropdown(id="ex-kind", options=[{"label": v["label"], "value": k} for k, v in dr.KINDS.items()],
                                   value="road_closure", clearable=False),
                      dcc.Input(id="ex-params", type="text", debounce=True, style={"width": "100%"},
                                placeholder='parameters as JSON, e.g. {"radius_m": 300} or {"crest_m": 7}'),
                      _draw_map(),
                      html.Div(id="ex-draw-msg", className="hint", role="status", **{"aria-live": "polite"}),
                      dcc.Interval(id="ex-map-load", interval=300, max_intervals=1),
                      html.H3("Units"), html.Pre(id="ex-units", className="kpi-wrap"),
                      html.H3("Objectives (scored at the end)"), html.Pre(id="ex-objectives")],
                     className="side-col"),
        ], className="two-col"),
    ])


def _draw_map():
    opts = basemap.map_options(None, 900)   # center and zoom set (dash-leaflet 1.1.3 compares them on moves)
    opts["minZoom"] = -9
    return dl.Map(id="ex-map", style={"height": "320px"}, children=[
        dl.LayerGroup(id="ex-map-base", children=[]),
        dl.FeatureGroup([dl.EditControl(
            id="ex-edit", position="topleft",
            draw={"polyline": True, "polygon": True, "rectangle": True, "marker": True, "circle": False,
                  "circlemarker": False},
            edit={"edit": False})]),
    ], **opts)


def exercise_city(ctx, config: dict) -> Any:
    """(DrawingCity, Layers, households) of the running exercise's city, or None (no exercise here)."""
    from .builder import map_city
    base = config.get(EXERCISE_CITY_KEY)
    return map_city(ctx, base) if isinstance(base, dict) else None


def drawn_decision_json(dcity, geojson: dict | None, kind: str, params_text: str | None) -> tuple[str | None, str]:
    """(decision JSON for the API, message) from the last feature drawn on the exercise map: the
    builder's :func:`twin.dashboard.drawing.decision_from_drawing` in the city's metres."""
    feats = (geojson or {}).get("features") or []
    if not feats:
        return None, "Draw on the map first."
    try:
        params = json.loads(params_text) if params_text and params_text.strip() else {}
    except json.JSONDecodeError as exc:
        return None, f"parameters: not JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(params, dict):
        return None, "parameters: give a JSON object, e.g. {\"radius_m\": 300}"
    try:
        d = dr.decision_from_drawing(feats[-1], kind, params, dcity, feature_crs=dcity.crs)
    except (dr.DrawingError, ValueError) as exc:
        return None, str(exc)
    return json.dumps(d, ensure_ascii=False), f"{dr.KINDS[kind]['label']} from the drawing: check it, then Issue."


def register(app, ctx) -> None:
    @app.callback(Output("ex-map-base", "children"), Output("ex-map", "viewport"), Output("ex-draw-msg", "children"),
                  Input("ex-map-load", "n_intervals"))
    def fill_map(_):
        got = exercise_city(ctx, flask.current_app.config)
        if got is None:
            return [], no_update, "No exercise city on this server: the drawing tools need a running exercise."
        from .builder import map_view
        return (basemap.basemap_layers(got[1], prefix="exb", control=False), map_view(got[1].extent) or no_update,
                None)

    @app.callback(Output("ex-decision", "value"), Output("ex-draw-msg", "children", allow_duplicate=True),
                  Input("ex-edit", "geojson"), State("ex-kind", "value"), State("ex-params", "value"),
                  prevent_initial_call=True)
    def on_draw(geojson, kind, params_text):
        got = exercise_city(ctx, flask.current_app.config)
        if got is None:
            return no_update, "No exercise city on this server."
        text, msg = drawn_decision_json(got[0], geojson, kind, params_text)
        return (text if text is not None else no_update), msg

    app.clientside_callback(_fn(_JOIN), Output("ex-auth", "data"), Output("ex-seat", "children"),
                            Input("ex-join", "n_clicks"), Input("ex-token", "n_submit"), State("ex-token", "value"),
                            prevent_initial_call=True)
    app.clientside_callback(_fn(_POLL), Output("ex-state", "children"), Output("ex-time", "children"),
                            Output("ex-clock", "children"), Output("ex-speed-shown", "children"),
                            Output("ex-injects", "children"), Output("ex-decisions", "children"),
                            Output("ex-units", "children"), Output("ex-objectives", "children"),
                            Input("ex-tick", "n_intervals"), Input("ex-auth", "data"))
    app.clientside_callback(_fn(_CONTROL), Output("ex-control-msg", "children"),
                            Input("ex-pause", "n_clicks"), Input("ex-resume", "n_clicks"), Input("ex-next", "n_clicks"),
                            Input("ex-speed-set", "n_clicks"), State("ex-speed", "value"), State("ex-auth", "data"),
                            prevent_initial_call=True)
    app.clientside_callback(_fn(_ISSUE), Output("ex-result", "children"), Input("ex-issue", "n_clicks"),
                            State("ex-decision", "value"), State("ex-auth", "data"), prevent_initial_call=True)
