"""Scenario builder: pick the event and interventions, draw what-ifs on the map (levees, pumps,
closures, shelters: every decision kind), see the YAML that Run would start and an estimated run
time, validate through the scenario schema (errors next to the field), run as a background job
with a progress bar and cancel; the run then appears in the run list, each entry linking to it.

What Run starts is explicit (``b-source``): the form (with the drawn decisions), or an uploaded
file as uploaded. A valid upload selects the file; editing the form afterwards selects the form
again, and the page says so."""
from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dash_leaflet as dl
import yaml
from dash import ALL, Input, Output, State, dcc, html, no_update

from .. import basemap
from .. import drawing as dr
from .. import scenario_form as sf
from ..runs import list_runs
from .common import cap, message

POLL_MS = 1000
#: messages that change after an action are read out by screen readers
ARIA_LIVE: dict[str, Any] = {"aria-live": "polite"}


def field(fid: str, label: str, control, hint: str | None = None) -> html.Div:
    return html.Div([
        html.Label(label, htmlFor=fid, className="field-label"),
        control,
        html.Div(hint, className="hint") if hint else None,
        html.Div(id={"type": "field-error", "field": fid}, className="field-error", role="alert"),
    ], className="field", id=f"{fid}-wrap")


def layout(ctx, selected=None):
    bases = sf.base_scenarios(ctx.scenarios_dir)
    tracks = sf.typhoon_options()
    default_base = next((b["value"] for b in bases if "molave" in b["label"]), bases[0]["value"] if bases else None)
    return html.Div([
        html.H1("Scenario builder"),
        html.Div([
            html.Div([
                html.H3("Scenario"),
                field("b-base", "Base scenario", dcc.Dropdown(id="b-base", options=bases, value=default_base,
                                                              placeholder="no scenario files found"),
                      "the file the choices below are applied to"),
                field("b-name", "Name", dcc.Input(id="b-name", type="text", value="what-if", debounce=False),
                      "any text; the run id keeps letters, digits and _"),
                html.Div([
                    field("b-duration", "Duration (h)", dcc.Input(id="b-duration", type="number", value=base_duration_h(ctx, default_base), step="any")),
                    field("b-resolution", "Grid resolution (m)", dcc.Dropdown(id="b-resolution", options=[
                        {"label": "default of the base", "value": ""}, {"label": "30 m", "value": 30},
                        {"label": "60 m", "value": 60}, {"label": "90 m", "value": 90}], value="", clearable=False)),
                    field("b-seed", "Seed", dcc.Input(id="b-seed", type="number", value=1, step=1)),
                ], className="row"),
                html.H3("Event"),
                field("b-event", "Event", dcc.RadioItems(id="b-event", options=sf.EVENTS, value="base",
                                                         className="radio"), None),
                html.Div(base_event_text(ctx, default_base), id="b-base-event", className="hint"),
                field("b-start", "Start (local time, UTC+7)", dcc.Input(id="b-start", type="text", value="",
                                                                        placeholder="as the base or the storm sets it",
                                                                        debounce=True),
                      "e.g. 2020-10-28T02:00; empty: the base's start (a different storm: half the run before "
                      "its closest approach)"),
                html.Div([
                    field("b-track", "Typhoon track", dcc.Dropdown(id="b-track", options=tracks,
                                                                  value=next((t["value"] for t in tracks if "Molave" in t["label"]), None),
                                                                  placeholder="no track list shipped" if not tracks else "choose a storm")),
                ], id="b-typhoon-box"),
                html.Div([
                    field("b-return-period", "Return period (years)", dcc.Dropdown(
                        id="b-return-period", options=[{"label": f"{t} years", "value": t} for t in sf.RETURN_PERIODS], value=10)),
                    field("b-storm-duration", "Storm duration (h)", dcc.Input(id="b-storm-duration", type="number", value=6, step="any")),
                ], id="b-storm-box", className="row"),
                html.Div([field("b-release", "Peak release (m³/s)", dcc.Input(id="b-release", type="number", value=800, step="any"))],
                         id="b-reservoir-box"),
                html.Div([field("b-surge", "Surge above tide (m)", dcc.Input(id="b-surge", type="number", value=1.0, step=0.1))],
                         id="b-surge-box"),
            ], className="main-col form"),
            html.Div([
                html.H3("Interventions"),
                field("b-base-interventions", "From the base scenario", dcc.Checklist(
                    id="b-base-interventions", options=[], value=[], className="checklist"),
                      "untick to leave one out"),
                field("b-interventions", "Add", dcc.Checklist(id="b-interventions", options=sf.INTERVENTIONS, value=[],
                                                               className="checklist")),
                html.Div([
                    field("b-warning-lead", "Warning lead time (h)", dcc.Input(id="b-warning-lead", type="number", value=6, step="any")),
                    field("b-warning-channel", "Channel", dcc.Dropdown(id="b-warning-channel", options=sf.warning_channels(),
                                                                       value="cell_broadcast", clearable=False)),
                ], className="row"),
                html.Div([
                    field("b-ambulances", "Extra ambulances", dcc.Input(id="b-ambulances", type="number", value=2, step=1)),
                    field("b-boats", "Extra boats", dcc.Input(id="b-boats", type="number", value=2, step=1)),
                ], className="row"),
                html.H3("Or load a scenario file"),
                dcc.Upload(id="b-upload", children=html.Div(["Drop a scenario YAML here or ", html.A("choose a file")]),
                           className="upload", multiple=False, max_size=ctx.max_upload_bytes),
                html.Div(f"YAML, at most {ctx.max_upload_bytes // 1000:,} kB; files it names must be in the scenarios folder.",
                         className="hint"),
                html.Div(id="b-upload-msg"),
                field("b-source", "Run starts", dcc.RadioItems(id="b-source", options=source_options(None), value="form",
                                                              className="radio"),
                      "the form and the map, or the uploaded file as uploaded; editing the form selects the form"),
                html.Div(id="b-source-note", className="hint", **ARIA_LIVE),
                html.Div([field("b-token", "Access token", dcc.Input(id="b-token", type="password", value="",
                                                                     autoComplete="off"),
                                "printed by twin serve when it started; starting or cancelling a run needs it")],
                         id="b-token-box", style=None if ctx.token else {"display": "none"}),
                html.Div([
                    html.Button("Validate", id="b-validate", n_clicks=0, className="btn"),
                    html.Button("Run", id="b-run", n_clicks=0, className="btn btn-primary"),
                    html.Button("Cancel", id="b-cancel", n_clicks=0, className="btn", disabled=True),
                ], className="buttons"),
                html.Div(id="b-msg"),
                html.Div(id="b-notes", className="notes"),
                html.Div(id="b-estimate", className="estimate"),
                html.Div([html.Div(id="b-progress-bar", className="progress-bar", style={"width": "0%"})],
                         className="progress", id="b-progress", title="progress"),
                html.Div(id="b-status", className="status"),
                html.Pre(id="b-log", className="log"),
                html.H3("Runs"),
                html.Ul(id="b-runs", className="run-list"),
            ], className="side-col wide"),
        ], className="two-col"),
        draw_section(ctx, default_base),
        html.Details([html.Summary("Scenario YAML that Run would start"),
                      html.Pre(id="b-yaml", className="yaml-preview")], open=True, id="b-yaml-box"),
        dcc.Store(id="b-job"),
        dcc.Store(id="b-uploaded"),
        dcc.Store(id="b-drawn", data=[]),
        dcc.Interval(id="b-poll", interval=POLL_MS, disabled=True),
        dcc.Interval(id="b-runs-poll", interval=5000),
    ])


FORM_STATES = [State("b-base", "value"), State("b-name", "value"), State("b-duration", "value"),
               State("b-resolution", "value"), State("b-seed", "value"), State("b-event", "value"),
               State("b-track", "value"), State("b-return-period", "value"), State("b-storm-duration", "value"),
               State("b-release", "value"), State("b-surge", "value"), State("b-interventions", "value"),
               State("b-warning-lead", "value"), State("b-warning-channel", "value"), State("b-ambulances", "value"),
               State("b-boats", "value"), State("b-base-interventions", "value"), State("b-start", "value"),
               State("b-drawn", "data")]
FORM_KEYS = ["base", "name", "duration_h", "resolution_m", "seed", "event", "track", "return_period",
             "storm_duration_h", "release_m3_per_s", "surge_m", "interventions", "warning_lead_h", "warning_channel",
             "ambulances", "boats", "base_interventions", "start", "drawn_items"]
FIELD_IDS = ["b-base", "b-name", "b-duration", "b-resolution", "b-seed", "b-event", "b-track", "b-return-period",
             "b-storm-duration", "b-release", "b-surge", "b-interventions", "b-warning-lead", "b-warning-channel",
             "b-ambulances", "b-boats", "b-start", "b-drawn"]
#: the same fields as Inputs: any edit refreshes the preview and selects the form as what Run starts
FORM_INPUTS = [Input(st.component_id, st.component_property) for st in FORM_STATES]


_MAP_CACHE: dict = {}
_MAP_LOCK = threading.Lock()


def map_city(ctx, base: dict):
    """(DrawingCity, Layers, households) of the base scenario's city, cached per (city, resolution);
    None when the scenario names no loadable city bundle."""
    from ..layers import layers_from_city

    name = base.get("city") if isinstance(base, dict) else None
    if not isinstance(name, str):
        return None
    res = base.get("resolution_m")
    key = (id(ctx.layers), name, res)
    with _MAP_LOCK:
        if key in _MAP_CACHE:
            return _MAP_CACHE[key]
    try:
        city = ctx.layers.load_city(name, res)
        traffic = sf.sub(base, "traffic")
        dcity = dr.DrawingCity.from_city(city, bool(traffic.get("largest_component_only", True)))
        lay = layers_from_city(city)
        pop = getattr(city, "population", None)
        households = float(pop["households"].sum()) if pop is not None and "households" in getattr(pop, "columns", []) else None
    except Exception:
        return None
    out = (dcity, lay, households)
    with _MAP_LOCK:
        _MAP_CACHE[key] = out
    return out


def city_places(ctx, base: dict):
    """The base scenario's city places (for pumps and shelters), or None if the bundle cannot load."""
    got = map_city(ctx, base)
    return got[0].places if got is not None else None


def load_base(ctx, base_id) -> dict:
    """The base scenario with id ``base_id`` (confined to the scenarios folder). ValueError with
    ``scenario_form.UNKNOWN_BASE`` for an id not in the list, with a capped reason if unreadable."""
    path = sf.resolve_base(ctx.scenarios_dir, base_id)
    try:
        if path.stat().st_size > max(ctx.max_upload_bytes, 1_000_000):
            raise ValueError(f"{path.name}: too large for a scenario file")
        base, _ = sf.load_base(path)
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(cap(f"{path.name}: cannot be read ({exc})")) from None
    return base


def checked(ctx, data: dict, keys: dict | None = None):
    """(scenario dict or None, field errors, general errors): confined to the scenarios folder,
    then validated by the project's schema (in a temporary folder: validating changes nothing)."""
    data, refused = sf.confine(data, ctx.scenarios_dir)
    if refused:
        return None, {}, refused
    _, fe, ge = sf.validate(data, None, keys)
    return (data if not fe and not ge else None), fe, ge


def source_options(upload_name: str | None) -> list[dict]:
    return [{"label": "the form and the map", "value": "form"},
            {"label": f"the uploaded file {upload_name}" if upload_name else "an uploaded file (none yet)",
             "value": "upload", "disabled": not upload_name}]


def uses_upload(source: str | None, uploaded: dict | None) -> bool:
    """Run starts the uploaded file only when the user's choice (``b-source``) says so."""
    return source == "upload" and isinstance(uploaded, dict)


def form_scenario(ctx, form: dict) -> tuple[sf.FormResult | None, dict[str, str]]:
    """(FormResult, field errors) of the form merged into its base scenario (nothing validated yet)."""
    fe = sf.form_errors(form)
    if not form.get("base"):
        fe["b-base"] = "Choose a base scenario (a file in scenarios/)."
        return None, fe
    try:
        base = load_base(ctx, form.get("base"))
    except ValueError as exc:
        return None, {"b-base": str(exc)}
    places = city_places(ctx, base) if set(form.get("interventions") or []) & {"pumps", "shelters"} else None
    f = dict(form)
    f["drawn"] = [it.get("decision") for it in form.get("drawn_items") or [] if isinstance(it, dict)]
    r = sf.build_from_form(f, base, places)
    for k, v in r.errors.items():
        fe.setdefault(k, v)
    return r, fe


def check(ctx, form: dict, uploaded: dict | None = None, source: str | None = "upload"):
    """(scenario dict or None, field errors, general errors). Uses the project's schema. The upload
    is used only when ``source`` is "upload" (the page's explicit choice)."""
    if uploaded and uses_upload(source, uploaded):
        data = uploaded.get("data")
        if not isinstance(data, dict):
            return None, {}, ["the uploaded scenario is not a mapping: upload the file again"]
        return checked(ctx, data)
    r, fe = form_scenario(ctx, form)
    if r is None or fe:
        return None, fe, []
    return checked(ctx, r.data, r.keys)


def base_intervention_options(ctx, base_id):
    try:
        base = load_base(ctx, base_id)
    except ValueError:
        return [], []
    items = base.get("interventions") or []
    opts = []
    for k, iv in enumerate(items):
        if isinstance(iv, dict):
            lbl = iv.get("label") or iv.get("type", "?")
            opts.append({"label": f"{lbl} ({iv.get('type', '?')})", "value": k})
    return opts, [o["value"] for o in opts]


def parse_upload(contents: str | None, filename: str | None, max_bytes: int = 256_000):
    """(data dict, None) or (None, message) for an uploaded scenario file (a data URL). A file over
    ``max_bytes`` is refused from its encoded length, before it is decoded or parsed."""
    if not contents:
        return None, None
    name = cap(str(filename or "the file"), 100)
    if not isinstance(contents, str) or "," not in contents:
        return None, f"{name}: not a file upload"
    b64 = contents.split(",", 1)[1]
    if len(b64) // 4 * 3 > max_bytes + 3:
        return None, f"{name}: the file is about {len(b64) // 4 * 3:,} bytes; the limit is {max_bytes:,} bytes"
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        return None, f"{name}: not a base64 file upload"
    try:
        return sf.parse_scenario_text(raw, max_bytes), None
    except sf.UploadError as exc:
        return None, cap(f"{name}: {exc}")


def run_href(run_id: str) -> str:
    """The map page showing run ``run_id`` (an id from the run list; the router checks it again)."""
    return "/?run=" + quote(str(run_id), safe="")


def run_list_items(ctx):
    runs = list_runs(ctx.runs_dir)
    if not runs:
        return [html.Li("no runs yet", className="hint")]
    return [html.Li([dcc.Link(r["label"], href=run_href(r["id"])), html.Span(f" · {r['status']}", className="hint")],
                    className=f"run-item run-{r['status']}", **{"data-run": r["id"]}) for r in runs[:25]]


def register(app, ctx):
    @app.callback(Output("b-typhoon-box", "style"), Output("b-storm-box", "style"), Output("b-reservoir-box", "style"),
                  Output("b-surge-box", "style"), Input("b-event", "value"))
    def show_event(ev):
        hide, show = {"display": "none"}, {}
        return tuple(show if ev == k else hide for k in ("typhoon", "design_storm", "reservoir", "tide_surge"))

    @app.callback(Output("b-base-interventions", "options"), Output("b-base-interventions", "value"),
                  Input("b-base", "value"))
    def base_items(base_id):
        return base_intervention_options(ctx, base_id)

    @app.callback(Output("b-uploaded", "data"), Output("b-upload-msg", "children"),
                  Input("b-upload", "contents"), State("b-upload", "filename"), prevent_initial_call=True)
    def on_upload(contents, filename):
        data, err = parse_upload(contents, filename, ctx.max_upload_bytes)
        if err:
            return None, message(err)
        name = cap(str(filename or "upload.yaml"), 100)
        ok, fe, ge = checked(ctx, data)
        if ok is None:
            return None, message(f"{name}: " + " · ".join(list(fe.values()) + ge))
        return ({"name": name, "data": data}, message(f"{name} is valid: Run starts it as uploaded (see 'Run starts').", "ok"))

    @app.callback(Output("b-source", "options"), Output("b-source", "value"),
                  Output("b-source-note", "children"),
                  Input("b-uploaded", "data"), *FORM_INPUTS, State("b-source", "value"), prevent_initial_call=True)
    def on_source(uploaded, *rest):
        from dash import ctx as dctx

        current = rest[-1]
        name = uploaded.get("name") if isinstance(uploaded, dict) else None
        return source_after(dctx.triggered_id, current, name)

    @app.callback(Output("b-yaml", "children"), Output("b-notes", "children"), Output("b-estimate", "children"),
                  Input("b-source", "value"), Input("b-uploaded", "data"), *FORM_INPUTS)
    def on_preview(source, uploaded, *values):
        return preview(ctx, dict(zip(FORM_KEYS, values)), uploaded, source)

    @app.callback(Output("b-duration", "value"), Output("b-base-event", "children"), Output("b-track", "value"),
                  Input("b-base", "value"), prevent_initial_call=True)
    def on_base(base_id):
        return base_changed(ctx, base_id)

    # the map fills in after the page shows (a city's basemap takes seconds the first time)
    @app.callback(Output("b-map-base", "children"), Output("b-map", "viewport"), Output("b-map-msg", "children"),
                  Output("b-drawn", "data", allow_duplicate=True),
                  Input("b-base", "value"), State("b-drawn", "data"), prevent_initial_call="initial_duplicate")
    def on_base_map(base_id, items):
        return base_map(ctx, base_id, items)

    @app.callback(Output("b-params", "children"), Output("b-tool-hint", "children"), Output("b-road-how-box", "style"),
                  Output("b-add", "disabled"), Input("b-tool", "value"))
    def on_tool(kind):
        return tool_panel(kind)

    @app.callback(Output("b-drawn", "data"), Output("b-draw-msg", "children"), Output("b-edit", "editToolbar"),
                  Input("b-edit", "geojson"), Input("b-map", "clickData"),
                  Input({"type": "b-place", "id": ALL}, "n_clicks"), Input("b-add", "n_clicks"),
                  Input({"type": "b-drawn-remove", "index": ALL}, "n_clicks"),
                  State("b-tool", "value"), State("b-road-how", "value"),
                  State({"type": "b-param", "name": ALL}, "value"), State({"type": "b-param", "name": ALL}, "id"),
                  State("b-at", "value"), State("b-label", "value"), State("b-drawn", "data"),
                  State("b-edit", "editToolbar"), State("b-base", "value"), prevent_initial_call=True)
    def on_draw(geojson, click, place_clicks, n_add, n_remove, kind, how, pvals, pids, at_h, label, items,
                toolbar, base_id):
        from dash import ctx as dctx

        trig = dctx.triggered_id
        event = draw_event(trig, geojson, click, dctx.triggered[0].get("value") if dctx.triggered else None)
        if event is None:
            return no_update, no_update, no_update
        params = {i["name"]: v for i, v in zip(pids or [], pvals or []) if isinstance(i, dict)}
        params["at_h"] = at_h
        params["label"] = (label or "").strip() or None
        try:
            base = load_base(ctx, base_id)
        except ValueError as exc:
            return no_update, message(str(exc)), no_update
        got = map_city(ctx, base)
        items = [it for it in items if isinstance(it, dict)] if isinstance(items, list) else []   # client data
        new_items, msg = apply_draw_event(event, items, kind, how, params, got[0] if got else None)
        for it in new_items:
            it.setdefault("city", base.get("city"))
        clear = None
        if event[0] == "draw":
            n = (toolbar or {}).get("n_clicks", 0) + 1
            clear = {"mode": "remove", "action": "clear all", "n_clicks": n}
        return new_items, msg, clear if clear else no_update

    @app.callback(Output("b-drawn-layer", "children"), Output("b-drawn-list", "children"), Input("b-drawn", "data"),
                  State("b-base", "value"))
    def on_drawn(items, base_id):
        return drawn_layer(items or []), drawn_list(items or [])

    @app.callback(Output({"type": "field-error", "field": ALL}, "children"), Output("b-msg", "children"),
                  Output("b-job", "data"), Output("b-poll", "disabled"),
                  Input("b-validate", "n_clicks"), Input("b-run", "n_clicks"),
                  State({"type": "field-error", "field": ALL}, "id"), State("b-uploaded", "data"),
                  State("b-token", "value"), State("b-source", "value"), *FORM_STATES, prevent_initial_call=True)
    def on_submit(n_val, n_run, err_ids, uploaded, token, source, *values):
        from dash import ctx as dctx

        if dctx.triggered_id == "b-run" and not ctx.authorized(token):
            return [""] * len(err_ids or []), message(TOKEN_NEEDED), no_update, no_update
        form = dict(zip(FORM_KEYS, values))
        data, fe, ge = check(ctx, form, uploaded, source)
        errs = [cap(fe.get(i["field"], "")) if isinstance(i, dict) else "" for i in err_ids or []]
        if data is None:
            msg = message("Please fix: " + " · ".join(ge) if ge else "Please fix the fields marked in red.")
            if not any(errs) and fe:  # an error for a field this page does not show
                msg = message("Please fix: " + " · ".join(fe.values()))
            return errs, msg, no_update, no_update
        if dctx.triggered_id == "b-validate":
            return errs, message("The scenario is valid.", "ok"), no_update, no_update
        name = cap(str((uploaded or {}).get("name") if uses_upload(source, uploaded) else form.get("name") or "run"), 100)
        job_id = ctx.jobs.new_id(Path(str(name)).stem)
        path = sf.write_scenario(data, ctx.runs_dir / ".jobs", job_id)
        job = ctx.jobs.submit(path, str(name), job_id=job_id)
        return errs, message(f"Started run {job.id}.", "ok"), job.id, False

    @app.callback(Output("b-progress-bar", "style"), Output("b-status", "children"), Output("b-log", "children"),
                  Output("b-cancel", "disabled"), Output("b-poll", "disabled", allow_duplicate=True),
                  Output("b-runs", "children", allow_duplicate=True),
                  Input("b-poll", "n_intervals"), State("b-job", "data"), prevent_initial_call=True)
    def poll(_, job_id):
        return job_status(ctx, job_id)

    @app.callback(Output("b-runs", "children"), Input("b-runs-poll", "n_intervals"))
    def runs(_):
        return run_list_items(ctx)

    @app.callback(Output("b-status", "children", allow_duplicate=True), Input("b-cancel", "n_clicks"),
                  State("b-job", "data"), State("b-token", "value"), prevent_initial_call=True)
    def cancel(n, job_id, token):
        if not n or not isinstance(job_id, str) or not job_id:
            return no_update
        if not ctx.authorized(token):
            return TOKEN_NEEDED
        return "cancelling …" if ctx.jobs.cancel(job_id) else "nothing to cancel"


TOKEN_NEEDED = ("Starting or cancelling a run needs the access token that twin serve printed when it started: "
                "enter it in the Access token field.")


def job_status(ctx, job_id):
    job = ctx.jobs.get(job_id) if isinstance(job_id, str) else None
    if job is None:
        return {"width": "0%"}, "", "", True, True, no_update
    d = job.as_dict()
    pct = d["progress"] if d["progress"] is not None else (100.0 if job.status == "done" else 0.0)
    finished = job.status in ("done", "failed", "cancelled")
    status = {"running": f"running {job.id}: {pct:.0f} % after {d['elapsed_s']:.0f} s",
              "done": f"finished {job.id} in {d['elapsed_s']:.0f} s: it is now in the run list",
              "failed": f"run {job.id} failed (exit code {d['returncode']}): see the output below",
              "cancelled": f"run {job.id} cancelled"}.get(job.status, job.status)
    log = d["tail"][-2000:]
    return ({"width": f"{pct:.0f}%"}, status, log, finished, finished,
            run_list_items(ctx) if finished else no_update)


# ---------------------------------------------------------------------------------------------
# drawing what-ifs on the map (twin.dashboard.drawing does the conversion)
# ---------------------------------------------------------------------------------------------
#: colours of drawn decisions on the map, by kind
KIND_COLOURS = {"levee": "#8c2d04", "breach": "#e31a1c", "pump": "#2171b5", "road_closure": "#d7301f",
                "contraflow": "#ff7f00", "road_reopen": "#238b45", "shelter_open": "#6a51a3",
                "shelter_close": "#636363", "evacuation_order": "#ce1256", "warning": "#fe9929",
                "extra_units": "#01665e", "dispatch": "#01665e", "reservoir_release": "#08519c", "reservoir_gate": "#08519c", "hospital_closure": "#b2182b"}
TOOL_OPTIONS = [{"label": spec["label"], "value": kind} for kind, spec in dr.KINDS.items()]
_DRAW_HINT = {"line": "draw a line (polyline tool)", "point": "place a marker", "area": "draw an area (polygon or rectangle)",
              "place": "click a place", "link": "click a road", "none": "press Add (no geometry)"}


def draw_section(ctx, base_id) -> html.Div:
    """The map with the drawing tools, the tool and its parameters, and the drawn decisions. The
    city's basemap is filled in by a callback (it takes seconds for a city the first time)."""
    opts = basemap.map_options(None, 900)   # center and zoom set: dash-leaflet 1.1.3 compares them on every move
    opts["minZoom"] = -9
    the_map = dl.Map(id="b-map", style={"height": "480px"}, children=[
        dl.LayerGroup(id="b-map-base", children=[]),
        dl.LayerGroup(id="b-drawn-layer"),
        dl.FeatureGroup([dl.EditControl(
            id="b-edit", position="topleft",
            draw={"polyline": {"shapeOptions": {"color": "#8c2d04", "weight": 4}}, "polygon": True,
                  "rectangle": True, "marker": True, "circle": False, "circlemarker": False},
            edit={"edit": False})]),   # "remove" stays: the page clears each drawing with it once converted
    ], **opts)
    return html.Div([
        html.H3("Draw what-ifs on the map"),
        html.Div([
            html.Div([html.Div("loading the city's map …", id="b-map-msg", **ARIA_LIVE), the_map,
                      html.Div("Drawing tools at the top left of the map: line, area, rectangle, marker. "
                               "Places take clicks; coordinates are the city's UTM metres (EPSG:32649).",
                               className="hint")], className="main-col"),
            html.Div([
                field("b-tool", "What to add", dcc.RadioItems(id="b-tool", options=TOOL_OPTIONS, value="levee",
                                                              className="radio tool-list")),
                html.Div(id="b-tool-hint", className="hint", **ARIA_LIVE),
                html.Div([dcc.RadioItems(id="b-road-how", value="click", className="radio", options=[
                    {"label": "click a road", "value": "click"},
                    {"label": "draw an area or a marker", "value": "draw"}])], id="b-road-how-box"),
                html.Div(id="b-params"),
                html.Div([
                    field("b-at", "Acts at (h after the start)", dcc.Input(id="b-at", type="number", value=0, step="any")),
                    field("b-label", "Label", dcc.Input(id="b-label", type="text", value="", debounce=True)),
                ], className="row"),
                html.Button("Add (no geometry)", id="b-add", n_clicks=0, className="btn"),
                html.Div(id="b-draw-msg", **ARIA_LIVE),
                field("b-drawn", "Drawn decisions", html.Ul(id="b-drawn-list", className="drawn-list")),
            ], className="side-col"),
        ], className="two-col"),
    ], className="draw-section")


def tool_panel(kind):
    """(parameter inputs, hint, road-how style, Add disabled) for a decision kind."""
    spec = dr.KINDS.get(kind) or dr.KINDS["levee"]
    inputs = []
    for name, label, unit, default in spec["params"]:
        pid = {"type": "b-param", "name": name}
        text = f"{label} ({unit})" if unit else label
        if name == "channel":
            ctl = dcc.Dropdown(id=pid, options=sf.warning_channels(), value=default, clearable=False)
        elif name == "unit":
            ctl = dcc.Dropdown(id=pid, options=[{"label": "ambulance", "value": "ambulance"},
                                                {"label": "rescue boat", "value": "boat"}], value=default, clearable=False)
        elif isinstance(default, str):
            ctl = dcc.Input(id=pid, type="text", value=default)
        else:
            ctl = dcc.Input(id=pid, type="number", value=default, step="any")
        inputs.append(html.Div([html.Label(text, className="field-label"), ctl], className="field"))
    hint = "Then " + " or ".join(_DRAW_HINT[d] for d in spec["draw"]) + "."
    road = kind in ("road_closure", "contraflow", "road_reopen")
    return inputs, hint, ({} if road else {"display": "none"}), "none" not in spec["draw"]


def draw_event(trig, geojson, click, value) -> tuple[str, dict | None] | None:
    """What happened on the map as (source, GeoJSON feature in map metres) or None (nothing to do)."""
    if trig == "b-edit":
        feats = (geojson or {}).get("features") or []
        return ("draw", feats[-1]) if feats else None
    if trig == "b-map":
        ll = (click or {}).get("latlng")
        if ll is None:
            return None
        x, y = basemap.from_latlng(ll)
        return "click", {"type": "Feature", "properties": {"pick": "link"},
                         "geometry": {"type": "Point", "coordinates": [x, y]}}
    if isinstance(trig, dict) and trig.get("type") == "b-place":
        if not value:
            return None
        return "place", {"type": "Feature", "properties": {"place_id": str(trig.get("id"))}, "geometry": None}
    if trig == "b-add":
        return "add", None
    if isinstance(trig, dict) and trig.get("type") == "b-drawn-remove":
        return ("remove", {"index": trig.get("index")}) if value else None
    return None


def apply_draw_event(event, items: list, kind, how, params: dict, city) -> tuple[list, html.Div | None]:
    """The drawn-decision list after ``event`` (from :func:`draw_event`), and a message. Pure except
    for the decision schema; the map's coordinates are the city's metres."""
    source, feature = event
    if source == "remove":
        k = feature.get("index") if feature else None
        keep = [it for it in items if it.get("key") != k]
        return keep, message("Removed.", "ok") if len(keep) < len(items) else None
    lid = ((feature or {}).get("properties") or {}).get("_leaflet_id") if source == "draw" else None
    if lid is not None and any(it.get("leaflet_id") == lid for it in items):
        return items, None            # the same drawing reported again (the control's clear-all round trip)
    if kind not in dr.KINDS:
        return items, message("Choose what to add.")
    spec = dr.KINDS[kind]
    road = kind in ("road_closure", "contraflow", "road_reopen")
    if source == "click" and not (road and how == "click"):
        return items, None            # a plain map click means nothing for this tool
    if source == "place" and "place" not in spec["draw"]:
        return items, message(f"{spec['label']}: {' or '.join(_DRAW_HINT[d] for d in spec['draw'])}; "
                              "a place is not what this tool takes.")
    if source == "add" and "none" not in spec["draw"]:
        return items, message(f"{spec['label']} needs a geometry: {' or '.join(_DRAW_HINT[d] for d in spec['draw'])}.")
    if city is None:
        return items, message("The base scenario's city bundle could not be loaded: nothing can be drawn on it.")
    if source == "place" and feature and city is not None:
        pid = feature["properties"]["place_id"]
        row = city.places[city.places["place_id"].astype(str) == pid]
        if len(row):
            feature = {"type": "Feature", "properties": {"place_id": pid},
                       "geometry": {"type": "Point", "coordinates": [float(row["x"].iloc[0]), float(row["y"].iloc[0])]}}
    try:
        d = dr.decision_from_drawing(feature, kind, params, city, feature_crs=city.crs)
    except dr.DrawingError as exc:
        return items, message(cap(str(exc)))
    except (ValueError, TypeError, KeyError, IndexError) as exc:   # a malformed feature from the client
        return items, message(cap(f"{kind}: this drawing cannot be read ({type(exc).__name__}: {exc})"))
    key = max([it.get("key", 0) for it in items] + [0]) + 1
    item = {"key": key, "kind": kind, "decision": d, "text": describe(d, city), "leaflet_id": lid}
    return items + [item], message(f"Added: {item['text']}", "ok")


def describe(d: dict, city=None) -> str:
    """One line for a drawn decision: kind, where, the numbers that matter, when."""
    kind = d.get("type", "?")
    label = dr.KINDS.get(kind, {}).get("label", kind)
    bits = []
    names = {}
    if city is not None and len(city.places):
        names = dict(zip(city.places["place_id"].astype(str), city.places["name"].astype(str)))
    for k in ("place", "base"):
        if k in d:
            bits.append(names.get(str(d[k]), str(d[k])))
    if "polyline" in d:
        import numpy as np

        xy = np.asarray(d["polyline"], float)
        bits.append(f"{np.hypot(*np.diff(xy, axis=0).T).sum() / 1000:.2f} km line")
    if "links" in d:
        bits.append(f"{len(d['links'])} road link(s)")
    if "near" in d:
        bits.append(f"roads within {d.get('radius_m', 100):g} m of a point")
    if "xy" in d:
        bits.append(f"at ({d['xy'][0]:.0f}, {d['xy'][1]:.0f})")
    for k, unit in (("crest_m", "m crest"), ("capacity_m3_per_s", "m³/s"), ("capacity", "persons"),
                    ("count", d.get("unit", "units")), ("channel", "")):
        if k in d:
            bits.append(f"{d[k]} {unit}".strip())
    for k in ("area", "wards"):
        if d.get(k):
            bits.append(", ".join(d[k]))
    at = d.get("at")
    if isinstance(at, (int, float)) and at:
        bits.append(f"at +{at / 3600:g} h")
    return f"{label}: " + " · ".join(str(b) for b in bits if b)


def drawn_layer(items: list) -> list:
    """The drawn decisions on the map, coloured by kind (lines, markers, link ids shown as text)."""
    out = []
    for it in items:
        d = it.get("decision") or {}
        colour = KIND_COLOURS.get(str(d.get("type")), "#000")
        tip = dl.Tooltip(it.get("text", d.get("type", "")))
        if "polyline" in d:
            out.append(dl.Polyline(positions=[basemap.to_latlng(x, y) for x, y in d["polyline"]],
                                   color=colour, weight=5, children=[tip]))
        for k in ("xy", "near"):
            if k in d:
                out.append(dl.CircleMarker(center=basemap.to_latlng(*d[k]), radius=9, color=colour, fill=True,
                                           fillOpacity=0.7, children=[tip]))
    return out


def drawn_list(items: list) -> list:
    if not items:
        return [html.Li("nothing drawn yet", className="hint")]
    return [html.Li([html.Span(it.get("text", ""), style={"borderLeft": f"6px solid {KIND_COLOURS.get(it.get('kind'), '#000')}",
                                                          "paddingLeft": "6px"}),
                     html.Button("remove", id={"type": "b-drawn-remove", "index": it.get("key")}, n_clicks=0,
                                 className="btn btn-small", title=f"remove {it.get('text', '')}")],
                    className=f"drawn-item drawn-{it.get('kind')}") for it in items]


def base_duration_h(ctx, base_id) -> float:
    """The base scenario's duration in hours (the form starts from it), 6 when unreadable."""
    try:
        return round(sf._dur(load_base(ctx, base_id).get("duration"), 6 * 3600.0) / 3600.0, 3)
    except (ValueError, TypeError):
        return 6.0


def base_event_text(ctx, base_id) -> str:
    try:
        return "Base event: " + sf.describe_event(load_base(ctx, base_id))
    except (ValueError, TypeError):
        return ""


def map_view(extent) -> dict | None:
    """{"center", "zoom"} showing ``extent`` (west, east, south, north in metres) on a ~900 px map."""
    import math

    if extent is None:
        return None
    w, e, s_, n = (float(v) for v in extent)
    return {"center": [(s_ + n) / 2, (w + e) / 2], "zoom": math.floor(math.log2(900 / max(e - w, n - s_, 1.0)) * 4) / 4}


def base_changed(ctx, base_id):
    """(duration h, base event text, track) when the user picks another base scenario."""
    try:
        base = load_base(ctx, base_id)
    except ValueError as exc:
        return no_update, str(exc), no_update
    dur = sf._dur(base.get("duration"), 6 * 3600.0) / 3600.0
    rain = sf.sub(sf.sub(base, "flood"), "rain")
    sid = sf.storm_sid(rain.get("storm"), rain.get("season")) if rain.get("kind") == "typhoon" else None
    return round(dur, 3), "Base event: " + sf.describe_event(base), sid or no_update


def base_map(ctx, base_id, items=None):
    """(basemap layers, viewport, message, drawn decisions) for the base scenario's city: decisions
    drawn on another city's map are dropped."""
    try:
        base = load_base(ctx, base_id)
    except ValueError as exc:
        return [], no_update, message(str(exc)), no_update
    kept = [it for it in items or [] if isinstance(it, dict) and it.get("city") == base.get("city")]
    got = map_city(ctx, base)
    if got is None:
        return [], no_update, message(f"The city bundle {cap(str(base.get('city')), 80)!r} of this base scenario "
                                      "could not be loaded: nothing can be drawn."), no_update
    layers = basemap.basemap_layers(got[1], prefix="bb", control=False, place_id_type="b-place")
    return (layers, map_view(got[1].extent) or no_update, None,
            kept if len(kept) != len(items or []) else no_update)


def source_after(trigger, current, upload_name):
    """(options, value, note) of 'Run starts' after ``trigger``: a new valid upload selects it; an
    edit of the form selects the form (saying so when it was the upload)."""
    opts = source_options(upload_name)
    if trigger == "b-uploaded":
        if upload_name:
            return opts, "upload", f"Run starts {upload_name} as uploaded; editing the form selects the form."
        return opts, "form", None
    if current == "upload":
        return opts, "form", (f"You edited the form: Run now starts the form and the map. Choose "
                              f"'the uploaded file' to run {upload_name} as uploaded.")
    return opts, no_update, no_update


def preview(ctx, form: dict, uploaded, source):
    """(YAML text, notes, estimate) of the scenario Run would start (not validated: Validate does)."""
    if uses_upload(source, uploaded):
        data = uploaded.get("data") or {}
        notes: list = [f"Run starts the uploaded file {uploaded.get('name')} as uploaded."]
        base = data
    else:
        r, fe = form_scenario(ctx, form)
        if r is None:
            return "(choose a base scenario)", None, None
        data, notes = r.data, list(r.notes)
        if fe:
            notes = [f"To fix first: {v}" for v in fe.values()] + notes
        try:
            base = load_base(ctx, form.get("base"))
        except ValueError:
            base = data
    text = sf.to_yaml(data)
    got = map_city(ctx, base)
    est = sf.estimate_run_time(data, got[0].bounds if got else None, got[2] if got else None)
    note_div = html.Ul([html.Li(cap(n)) for n in notes], className="notes-list") if notes else None
    est_div = html.Div([html.Strong(f"Estimated run time: {est['text']}"),
                        html.Div(est["assumption"], className="hint")]) if est else None
    return cap(text, 20_000), note_div, est_div
