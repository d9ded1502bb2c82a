"""Scenario builder: pick the event and interventions, validate through the scenario schema (errors
next to the field), run as a background job with a progress bar and cancel; the run then appears in
the run list."""
from __future__ import annotations

import base64
from pathlib import Path

import yaml
from dash import ALL, Input, Output, State, dcc, html, no_update

from .. import scenario_form as sf
from ..runs import list_runs
from .common import cap, message

POLL_MS = 1000


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
                    field("b-duration", "Duration (h)", dcc.Input(id="b-duration", type="number", value=6, min=0, step="any")),
                    field("b-resolution", "Grid resolution (m)", dcc.Dropdown(id="b-resolution", options=[
                        {"label": "default of the base", "value": ""}, {"label": "30 m", "value": 30},
                        {"label": "60 m", "value": 60}, {"label": "90 m", "value": 90}], value="", clearable=False)),
                    field("b-seed", "Seed", dcc.Input(id="b-seed", type="number", value=1, step=1)),
                ], className="row"),
                html.H3("Event"),
                field("b-event", "Event", dcc.RadioItems(id="b-event", options=sf.EVENTS, value="design_storm",
                                                         className="radio")),
                html.Div([
                    field("b-track", "Typhoon track", dcc.Dropdown(id="b-track", options=tracks,
                                                                  value=next((t["value"] for t in tracks if "Molave" in t["label"]), None),
                                                                  placeholder="no track list shipped" if not tracks else "choose a storm")),
                ], id="b-typhoon-box"),
                html.Div([
                    field("b-return-period", "Return period (years)", dcc.Dropdown(
                        id="b-return-period", options=[{"label": f"{t} years", "value": t} for t in sf.RETURN_PERIODS], value=10)),
                    field("b-storm-duration", "Storm duration (h)", dcc.Input(id="b-storm-duration", type="number", value=6, min=0)),
                ], id="b-storm-box", className="row"),
                html.Div([field("b-release", "Peak release (m³/s)", dcc.Input(id="b-release", type="number", value=800, min=0))],
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
                    field("b-warning-lead", "Warning lead time (h)", dcc.Input(id="b-warning-lead", type="number", value=6, min=0)),
                    field("b-warning-channel", "Channel", dcc.Dropdown(id="b-warning-channel", options=sf.warning_channels(),
                                                                       value="cell_broadcast", clearable=False)),
                ], className="row"),
                html.Div([
                    field("b-ambulances", "Extra ambulances", dcc.Input(id="b-ambulances", type="number", value=2, min=0, step=1)),
                    field("b-boats", "Extra boats", dcc.Input(id="b-boats", type="number", value=2, min=0, step=1)),
                ], className="row"),
                html.H3("Or load a scenario file"),
                dcc.Upload(id="b-upload", children=html.Div(["Drop a scenario YAML here or ", html.A("choose a file")]),
                           className="upload", multiple=False, max_size=ctx.max_upload_bytes),
                html.Div(f"YAML, at most {ctx.max_upload_bytes // 1000:,} kB; files it names must be in the scenarios folder.",
                         className="hint"),
                html.Div(id="b-upload-msg"),
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
                html.Div([html.Div(id="b-progress-bar", className="progress-bar", style={"width": "0%"})],
                         className="progress", id="b-progress", title="progress"),
                html.Div(id="b-status", className="status"),
                html.Pre(id="b-log", className="log"),
                html.H3("Runs"),
                html.Ul(id="b-runs", className="run-list"),
            ], className="side-col wide"),
        ], className="two-col"),
        dcc.Store(id="b-job"),
        dcc.Store(id="b-uploaded"),
        dcc.Interval(id="b-poll", interval=POLL_MS, disabled=True),
        dcc.Interval(id="b-runs-poll", interval=5000),
    ])


FORM_STATES = [State("b-base", "value"), State("b-name", "value"), State("b-duration", "value"),
               State("b-resolution", "value"), State("b-seed", "value"), State("b-event", "value"),
               State("b-track", "value"), State("b-return-period", "value"), State("b-storm-duration", "value"),
               State("b-release", "value"), State("b-surge", "value"), State("b-interventions", "value"),
               State("b-warning-lead", "value"), State("b-warning-channel", "value"), State("b-ambulances", "value"),
               State("b-boats", "value"), State("b-base-interventions", "value")]
FORM_KEYS = ["base", "name", "duration_h", "resolution_m", "seed", "event", "track", "return_period",
             "storm_duration_h", "release_m3_per_s", "surge_m", "interventions", "warning_lead_h", "warning_channel",
             "ambulances", "boats", "base_interventions"]
FIELD_IDS = ["b-base", "b-name", "b-duration", "b-resolution", "b-seed", "b-event", "b-track", "b-return-period",
             "b-storm-duration", "b-release", "b-surge", "b-interventions", "b-warning-lead", "b-warning-channel",
             "b-ambulances", "b-boats"]


def city_places(ctx, base: dict):
    """The base scenario's city places (for pumps and shelters), or None if the bundle cannot load."""
    name = base.get("city") if isinstance(base, dict) else None
    if not isinstance(name, str):
        return None
    try:
        return ctx.layers.load_city(name, base.get("resolution_m")).places
    except Exception:
        return None


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


def check(ctx, form: dict, uploaded: dict | None = None):
    """(scenario dict or None, field errors, general errors). Uses the project's schema."""
    if uploaded:
        data = uploaded.get("data") if isinstance(uploaded, dict) else None
        if not isinstance(data, dict):
            return None, {}, ["the uploaded scenario is not a mapping: upload the file again"]
        return checked(ctx, data)
    fe = sf.form_errors(form)
    if not form.get("base"):
        fe["b-base"] = "Choose a base scenario (a file in scenarios/)."
        return None, fe, []
    try:
        base = load_base(ctx, form.get("base"))
    except ValueError as exc:
        return None, {"b-base": str(exc)}, []
    places = city_places(ctx, base) if set(form.get("interventions") or []) & {"pumps", "shelters"} else None
    data, keys = sf.scenario_from_form(form, base, places)
    if fe:
        return None, fe, []
    return checked(ctx, data, keys)


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


def run_list_items(ctx):
    runs = list_runs(ctx.runs_dir)
    if not runs:
        return [html.Li("no runs yet", className="hint")]
    return [html.Li([dcc.Link(r["label"], href="/"), html.Span(f" · {r['status']}", className="hint")],
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
        return {"name": name, "data": data}, message(f"{name} is valid: Run starts it as uploaded.", "ok")

    @app.callback(Output({"type": "field-error", "field": ALL}, "children"), Output("b-msg", "children"),
                  Output("b-job", "data"), Output("b-poll", "disabled"),
                  Input("b-validate", "n_clicks"), Input("b-run", "n_clicks"),
                  State({"type": "field-error", "field": ALL}, "id"), State("b-uploaded", "data"),
                  State("b-token", "value"), *FORM_STATES, prevent_initial_call=True)
    def on_submit(n_val, n_run, err_ids, uploaded, token, *values):
        from dash import ctx as dctx

        if dctx.triggered_id == "b-run" and not ctx.authorized(token):
            return [""] * len(err_ids or []), message(TOKEN_NEEDED), no_update, no_update
        form = dict(zip(FORM_KEYS, values))
        data, fe, ge = check(ctx, form, uploaded)
        errs = [cap(fe.get(i["field"], "")) if isinstance(i, dict) else "" for i in err_ids or []]
        if data is None:
            msg = message("Please fix: " + " · ".join(ge) if ge else "Please fix the fields marked in red.")
            if not any(errs) and fe:  # an error for a field this page does not show
                msg = message("Please fix: " + " · ".join(fe.values()))
            return errs, msg, no_update, no_update
        if dctx.triggered_id == "b-validate":
            return errs, message("The scenario is valid.", "ok"), no_update, no_update
        name = cap(str((uploaded or {}).get("name") or form.get("name") or "run"), 100)
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
