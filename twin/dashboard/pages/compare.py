"""Compare page: two runs for a decision.

Headline KPIs first (twin.output.kpi_catalog: unit, "lower is better", a verdict in words and
colour), every other KPI behind "All KPIs" by group (decision, context, diagnostics), a warning when
the runs' grids, durations or start times differ, the max-depth difference on the offline basemap
(fixed scale: |Δ| < 5 cm hidden, capped at ±0.5 m) with its summary in words, and time series.
"""
from __future__ import annotations

from typing import Any

from dash import Input, Output, dcc, html

from .. import comparison, figures
from ..runs import RunError, list_runs
from .common import message, no_runs_message, safe

GROUP_TITLES = {"decision": "Decision KPIs", "context": "Context (size of the event and of the system)",
                "diagnostic": "Diagnostics (numerics and bookkeeping)"}


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
            html.Div([html.Label("Run B (option)", htmlFor="cmp-b", className="field-label"),
                      dcc.Dropdown(id="cmp-b", options=opts, value=b, clearable=False, className="run-dropdown")],
                     className="field"),
        ], className="toolbar"),
        no_runs_message(ctx) if not vals else None,
        html.Div(id="cmp-warn"),
        html.Div(id="cmp-msg"),
        html.H2("Headline KPIs", id="cmp-headline-title"),
        html.P(id="cmp-summary", className="summary-text", **{"aria-live": "polite"}),
        html.Div(id="cmp-headline", className="kpi-wrap"),
        html.Details([html.Summary("All KPIs (decision, context, diagnostics)", id="cmp-all-summary"),
                      html.Div(id="cmp-kpis", className="kpi-wrap")], id="cmp-all"),
        html.H2("Max depth difference (B − A)"),
        html.Div(id="cmp-diff", className="diff-map"),
        html.Div(id="cmp-diff-side"),
        html.P(id="cmp-diff-summary", className="summary-text"),
        html.H2("Through time"),
        dcc.Graph(id="cmp-series", config={"displaylogo": False}, style={"height": "640px"}),
        replicates_section(ctx),
    ])


def replicates_section(ctx) -> html.Div | None:
    """Replicate comparisons (twin compare --replicates N --out RUNS/NAME) found in the runs folder."""
    sets = comparison.replicate_sets(ctx.runs_dir)
    if not sets:
        return None
    return html.Div([
        html.H2("Replicates: differences with their interval"),
        html.P("Two scenarios over N common seeds (twin compare --replicates): each KPI's mean difference "
               "B − A with its paired interval; 'seed noise' where the interval contains 0.", className="summary-text"),
        html.Div([html.Label("Replicate comparison", htmlFor="cmp-rep", className="field-label"),
                  dcc.Dropdown(id="cmp-rep", options=[{"label": n, "value": n} for n in sets], value=sets[0],
                               clearable=False, className="run-dropdown")], className="field"),
        html.Div(id="cmp-rep-table", className="kpi-wrap"),
    ], id="cmp-reps")


def replicate_table(ctx, name) -> html.Div | html.Table | None:
    head, err = safe(comparison.replicate_rows, ctx.runs_dir, name)
    if err:
        return message(err)
    info, rows = head
    pct = f"{100 * float(info.get('level') or 0.9):g} %"
    cols = ["KPI", "unit", "better when", "A mean", "B mean", "B − A", f"{pct} interval", "B against A"]
    body = []
    for r in rows:
        dv = r.get("direction_verdict")
        text, cls = {"better": ("better", "verdict-better"), "worse": ("worse", "verdict-worse"),
                     "noise": ("seed noise", "verdict-same"), "real": ("real difference", "verdict-same")}.get(
            dv, ("n/a", "verdict-na"))
        iv = "–" if r.get("lo") is None else f"[{figures.fmt_num(r['lo'])}, {figures.fmt_num(r['hi'])}]"
        d = r.get("b_minus_a")
        data: dict[str, Any] = {"data-verdict": str(dv)}
        body.append(html.Tr([html.Th(r.get("label"), scope="row", className="kpi-name"), html.Td(r.get("unit") or "–"),
                             html.Td({"lower is better": "lower", "higher is better": "higher"}.get(r.get("direction"), "–")),
                             html.Td(figures.fmt_num(r.get("a_mean")), className="num"),
                             html.Td(figures.fmt_num(r.get("b_mean")), className="num"),
                             html.Td(("+" if d is not None and d > 0 else "") + figures.fmt_num(d), className="num"),
                             html.Td(iv, className="num"),
                             html.Td(text, className=f"verdict {cls}", **data)]))
    cap = (f"A = {info.get('scenario_a')}, B = {info.get('scenario_b')}, {info.get('replicates')} replicates "
           "with common seeds")
    return html.Table([html.Caption(cap), html.Thead(html.Tr([html.Th(c, scope="col") for c in cols])),
                       html.Tbody(body)], className="kpi-table", id="cmp-rep-table-t")


def _fmt_diff(r: dict) -> str:
    if r["diff"] is None:
        return "–"
    return ("+" if r["diff"] > 0 else "") + figures.fmt_num(r["diff"])


def verdict_cell(r: dict) -> html.Td:
    text, cls = comparison.VERDICT_STYLE[r["verdict"]]
    arrow = comparison.arrow(r)
    rel = "" if r["rel_pct"] is None or r["verdict"] in ("same", "n/a") else f" ({r['rel_pct']:+.0f} %)"
    return html.Td(f"{arrow} {text}{rel}".strip(), className=f"verdict {cls}", **{"data-verdict": r["verdict"]})


def kpi_table(rows: list[dict], name_a: str, name_b: str, table_id: str, headline: bool = False) -> html.Table:
    cols = ["KPI", "unit", "better when", f"A: {name_a}", f"B: {name_b}", "B − A", "B against A"]
    head = html.Thead(html.Tr([html.Th(c, scope="col") for c in cols]))
    body = []
    for r in rows:
        better = {"lower": "lower", "higher": "higher"}.get(r["better"], "–")
        body.append(html.Tr([
            html.Th(r["label"], scope="row", className="kpi-name"), html.Td(r["unit"] or "–", className="unit"),
            html.Td(better, className="direction", title=r["direction"]),
            html.Td(figures.fmt_num(r["a"]), className="num"), html.Td(figures.fmt_num(r["b"]), className="num"),
            html.Td(_fmt_diff(r), className="num"), verdict_cell(r)], **{"data-kpi": r["id"]}))
    cls = "kpi-table headline-table" if headline else "kpi-table"
    return html.Table([html.Caption(f"A = {name_a}; B = {name_b}; the last column judges B by each KPI's "
                                    "direction"), head, html.Tbody(body)], className=cls, id=table_id)


def all_kpi_tables(rows: list[dict], name_a: str, name_b: str) -> list:
    out: list = []
    for group, title in GROUP_TITLES.items():
        sel = [r for r in rows if r["group"] == group and not r["headline"]]
        if sel:
            out += [html.H3(f"{title} ({len(sel)})"), kpi_table(sel, name_a, name_b, f"cmp-kpi-table-{group}")]
    return out


def compare(ctx, a, b):
    """(headline, all KPIs, summary, warnings, diff map, diff side, diff summary, series fig, message)."""
    e = figures.empty_figure("choose two runs")
    if not a or not b:
        return None, None, None, None, None, None, None, e, message("Choose two runs to compare.", "info")
    ra, err_a = safe(ctx.run, a)
    rb, err_b = safe(ctx.run, b)
    if err_a or err_b:
        e = figures.empty_figure("run cannot be read")
        return None, None, None, None, None, None, None, e, message(err_a or err_b)
    msgs = []
    na, nb = ra.display_name(), rb.display_name()
    rows, err = safe(comparison.kpi_rows, ra, rb)
    headline = all_tables = summary = None
    if err:
        msgs.append(err)
    else:
        headline = kpi_table([r for r in rows if r["headline"]], na, nb, "cmp-headline-table", headline=True)
        all_tables = all_kpi_tables(rows, na, nb) or html.P("Neither run has other KPIs.")
        summary = comparison.headline_summary(rows, na, nb)
    warns, err = safe(comparison.warnings, ra, rb)
    if err:
        msgs.append(err)
        warns = []
    if a == b:
        warns = ["run A and run B are the same run"] + warns
    warn = None
    if warns:
        warn = html.Div([html.Strong("These runs are not like for like: "),
                         html.Ul([html.Li(w) for w in warns])], className="msg msg-warn", role="alert", id="cmp-warning")
    lay, _ = safe(ctx.layers.for_run, ra)
    diff_map = diff_side = diff_text = None
    try:
        diff_map, legend, diff_text = comparison.difference_map(ra, rb, lay)
        diff_side = legend
    except RunError as exc:
        diff_text = str(exc)
    except Exception as exc:  # never a traceback in the page
        msgs.append(f"difference map: {type(exc).__name__}: {exc}")
    series, err = safe(figures.compare_series_figure, ra, rb)
    if err:
        msgs.append(err)
        series = figures.empty_figure("no time series")
    return (headline, all_tables, summary, warn, diff_map, diff_side, diff_text, series,
            message(" · ".join(msgs)) if msgs else None)


def register(app, ctx):
    @app.callback(Output("cmp-headline", "children"), Output("cmp-kpis", "children"),
                  Output("cmp-summary", "children"), Output("cmp-warn", "children"),
                  Output("cmp-diff", "children"), Output("cmp-diff-side", "children"),
                  Output("cmp-diff-summary", "children"), Output("cmp-series", "figure"),
                  Output("cmp-msg", "children"), Input("cmp-a", "value"), Input("cmp-b", "value"))
    def on_change(a, b):
        return compare(ctx, a, b)

    @app.callback(Output("cmp-rep-table", "children"), Input("cmp-rep", "value"))
    def on_replicates(name):
        return replicate_table(ctx, name)
