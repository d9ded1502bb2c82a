"""Emergency page: incident timeline, queue length, unit utilisation, hospital and shelter occupancy."""
from __future__ import annotations

from dash import Input, Output, dcc, html

from .. import figures
from .common import message, no_runs_message, run_picker, safe


def layout(ctx, selected=None):
    picker = run_picker(ctx, "em-run", selected)
    return html.Div([
        html.Div([html.H1("Emergency services"), picker, html.Div(id="em-msg")], className="toolbar"),
        no_runs_message(ctx) if picker.children[1].value is None else None,
        html.Div(id="em-summary", className="summary"),
        html.Div([
            html.Div([html.H3("Incident timeline"), dcc.Graph(id="em-timeline", config={"displaylogo": False})],
                     className="main-col"),
            html.Div([html.H3("Queue and units"), dcc.Graph(id="em-queue", config={"displaylogo": False})],
                     className="side-col wide"),
        ], className="two-col"),
        html.H3("Hospitals and shelters"),
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


def emergency(ctx, path):
    e = figures.empty_figure("no run selected")
    if not path:
        return e, e, e, None, []
    run, err = safe(ctx.run, path)
    if err:
        return e, e, e, message(err), []
    places = None
    lay, _ = safe(ctx.layers.for_run, run)
    if lay is not None and len(lay.places):
        places = lay.places
    out = []
    msgs = []
    for fn, args in ((figures.incident_timeline_figure, (run,)), (figures.queue_utilisation_figure, (run,)),
                     (figures.occupancy_figure, (run, places))):
        fig, err = safe(fn, *args)
        if err:
            msgs.append(err)
            fig = figures.empty_figure("cannot be drawn")
        out.append(fig)
    summ, err = safe(summary, run)
    if err:
        msgs.append(err)
        summ = []
    return out[0], out[1], out[2], message(" · ".join(msgs)) if msgs else None, summ


def register(app, ctx):
    @app.callback(Output("selected-run", "data", allow_duplicate=True), Input("em-run", "value"),
                  prevent_initial_call=True)
    def remember(path):
        return path

    @app.callback(Output("em-timeline", "figure"), Output("em-queue", "figure"), Output("em-occupancy", "figure"),
                  Output("em-msg", "children"), Output("em-summary", "children"), Input("em-run", "value"))
    def on_run(path):
        return emergency(ctx, path)
