"""Compare page: two runs side by side — KPI table with differences and arrows, a difference map
of max depth, and time series (people at high hazard, response times, closed roads) on shared axes."""
from __future__ import annotations

from dash import Input, Output, dcc, html

from .. import figures
from ..runs import list_runs
from .common import message, no_runs_message, safe


def layout(ctx, selected=None):
    runs = list_runs(ctx.runs_dir)
    opts = [{"label": r["label"], "value": r["id"]} for r in runs]
    vals = [r["id"] for r in runs if r["status"] != "corrupt"] or [o["value"] for o in opts]
    a = selected if selected in vals else (vals[1] if len(vals) > 1 else (vals[0] if vals else None))
    b = next((v for v in vals if v != a), None)
    return html.Div([
        html.Div([
            html.H1("Compare two runs"),
            html.Div([html.Label("Run A (reference)", htmlFor="cmp-a", className="field-label"),
                      dcc.Dropdown(id="cmp-a", options=opts, value=a, clearable=False, className="run-dropdown")],
                     className="field"),
            html.Div([html.Label("Run B (what-if)", htmlFor="cmp-b", className="field-label"),
                      dcc.Dropdown(id="cmp-b", options=opts, value=b, clearable=False, className="run-dropdown")],
                     className="field"),
        ], className="toolbar"),
        no_runs_message(ctx) if not vals else None,
        html.Div(id="cmp-msg"),
        html.Div([
            html.Div([html.H3("Key performance indicators"), html.Div(id="cmp-kpis", className="kpi-wrap")],
                     className="main-col"),
            html.Div([html.H3("Max depth difference (B − A)"),
                      dcc.Graph(id="cmp-diff", config={"displaylogo": False}, style={"height": "460px"})],
                     className="side-col wide"),
        ], className="two-col"),
        html.H3("Through time"),
        dcc.Graph(id="cmp-series", config={"displaylogo": False}, style={"height": "640px"}),
    ])


def kpi_table(rows, name_a: str, name_b: str) -> html.Table:
    head = html.Thead(html.Tr([html.Th("KPI"), html.Th("unit"), html.Th(f"A: {name_a}"), html.Th(f"B: {name_b}"),
                               html.Th("B − A"), html.Th("change")]))
    body = []
    for r in rows:
        rel = "" if r["rel"] is None else f" ({r['rel']:+.0f} %)"
        body.append(html.Tr([html.Td(r["kpi"].replace("_", " "), className="kpi-name"), html.Td(r["unit"]), html.Td(figures.fmt_num(r["a"]), className="num"),
                             html.Td(figures.fmt_num(r["b"]), className="num"),
                             html.Td(("+" if (r["diff"] or 0) > 0 else "") + figures.fmt_num(r["diff"]) if r["diff"] is not None else "–", className="num"),
                             html.Td(f"{r['arrow']}{rel}", className=f"arrow arrow-{'up' if r['arrow'] == '▲' else 'down' if r['arrow'] == '▼' else 'eq'}")]))
    return html.Table([head, html.Tbody(body)], className="kpi-table", id="cmp-kpi-table")


def compare(ctx, a, b):
    """(kpi table, diff fig, series fig, message) for two run ids."""
    if not a or not b:
        e = figures.empty_figure("choose two runs")
        return None, e, e, message("Choose two runs to compare.", "info")
    ra, err_a = safe(ctx.run, a)
    rb, err_b = safe(ctx.run, b)
    if err_a or err_b:
        e = figures.empty_figure("run cannot be read")
        return None, e, e, message(err_a or err_b)
    rows, err = safe(figures.kpi_rows, ra, rb)
    msgs = []
    table = None
    if err:
        msgs.append(err)
    elif rows:
        table = kpi_table(rows, ra.display_name(), rb.display_name())
    else:
        table = html.P("Neither run has kpis.json.")
    diff, err = safe(figures.difference_figure, ra, rb)
    if err:
        msgs.append(err)
        diff = figures.empty_figure("no max depth to compare")
    series, err = safe(figures.compare_series_figure, ra, rb)
    if err:
        msgs.append(err)
        series = figures.empty_figure("no time series")
    if a == b:
        msgs.append("Run A and run B are the same run.")
    return table, diff, series, message(" · ".join(msgs)) if msgs else None


def register(app, ctx):
    @app.callback(Output("cmp-kpis", "children"), Output("cmp-diff", "figure"), Output("cmp-series", "figure"),
                  Output("cmp-msg", "children"), Input("cmp-a", "value"), Input("cmp-b", "value"))
    def on_change(a, b):
        return compare(ctx, a, b)
