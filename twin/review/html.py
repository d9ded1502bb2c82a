"""``review.html``: one self-contained page (plotly.js inlined, no link to anything online)."""
from __future__ import annotations

import html as _h
from pathlib import Path

from twin.review.model import KpiDelta, ReviewReport

__all__ = ["write_html"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.met{color:#17652b;font-weight:bold} .missed{color:#a51d1d;font-weight:bold} .unmeasured{color:#777}
.good{background:#e3f5e6} .bad{background:#fbe3e3} .warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6em}
.small{color:#666;font-size:.85em}
"""
# the KPIs shown in the per-decision table (all are in review.json)
_EFFECT_COLS = ("people_hours_significant", "people_hours_in_water", "evacuated_before_water",
                "ambulance_response_p90_s", "rescue_response_p90_s", "closed_road_vehicle_hours", "direct_damage_usd")


def _e(s) -> str:
    return _h.escape(str(s))


def _t(t_s: float | None) -> str:
    if t_s is None:
        return "–"
    m = int(round(float(t_s) / 60.0))
    return f"{m // 60:d}:{m % 60:02d}"


def _num(v: float | None, units: str = "", share: bool = False) -> str:
    if v is None:
        return "–"
    if units == "s":
        return f"{v / 60:,.1f} min"
    if share:
        return f"{100 * v:.1f} %"
    if units == "m2":
        return f"{v / 1e6:,.3f} km²"
    if units == "USD":
        return f"{v:,.0f} USD"
    if units == "h":
        return f"{v:,.1f} h"
    return f"{v:,.0f}" if abs(v) >= 1000 or v == int(v) else f"{v:,.4g}"


def _is_share(k: KpiDelta) -> bool:
    return k.units == "1" and "share" in k.label


def _delta_cell(k: KpiDelta) -> str:
    cls = "num" if k.helped is None else ("num good" if k.helped else "num bad")
    if k.delta is None:
        return '<td class="num">–</td>'
    sign = "+" if k.delta > 0 else ""
    return f'<td class="{cls}">{sign}{_e(_num(k.delta, k.units, _is_share(k)))}</td>'


def _timeline(rep: ReviewReport) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(rep.curves.get("run", {}))
    rows = 1 + len(names)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[1.4] + [1.0] * len(names),
                        subplot_titles=["injects and decisions"] + [rep.curves["run"][n].label for n in names])
    lanes = {"trainee": 3, "inject": 2, "scenario": 1, "follow_up": 0}
    colours = {"trainee": "#1f77b4", "inject": "#d62728", "scenario": "#7f7f7f", "follow_up": "#bcbd22"}
    for role, y in lanes.items():
        ds = [d for d in rep.decisions if d.role == role]
        if not ds:
            continue
        fig.add_trace(go.Scatter(
            x=[d.t_s / 3600 for d in ds], y=[y] * len(ds), mode="markers", name=f"{role} decisions",
            marker={"size": 11, "color": colours[role], "symbol": ["diamond" if d.outcome == "applied" else "x" for d in ds]},
            text=[f"#{d.decision_id} {d.type} by {d.issuer or d.source} ({d.outcome})<br>{_e(d.message)[:160]}"
                  for d in ds], hoverinfo="text"), row=1, col=1)
    if rep.injects:
        fig.add_trace(go.Scatter(x=[i.t_s / 3600 for i in rep.injects], y=[2.4] * len(rep.injects), mode="markers",
                                 name="injects", marker={"size": 11, "color": "#ff7f0e", "symbol": "star"},
                                 text=[_e(i.message) for i in rep.injects], hoverinfo="text"), row=1, col=1)
    fig.update_yaxes(row=1, col=1, range=[-0.5, 3.5], tickvals=list(lanes.values()), ticktext=list(lanes))
    for k, n in enumerate(names, start=2):
        c = rep.curves["run"][n]
        shape = "hv" if n == "calls_waiting" else "linear"     # a count that changes at events
        fig.add_trace(go.Scatter(x=[t / 3600 for t in c.t_s], y=c.values, name=f"run: {c.label}",
                                 line={"color": "#1f77b4", "shape": shape}, showlegend=k == 2, legendgroup="run"),
                      row=k, col=1)
        b = rep.curves.get("baseline", {}).get(n)
        if b is not None:
            fig.add_trace(go.Scatter(x=[t / 3600 for t in b.t_s], y=b.values, name=f"baseline: {b.label}",
                                     line={"color": "#555", "dash": "dash", "shape": shape}, showlegend=k == 2,
                                     legendgroup="baseline"), row=k, col=1)
    for d in rep.decisions:
        if d.role == "trainee" and d.outcome == "applied":
            fig.add_vline(x=d.t_s / 3600, line={"color": "#1f77b4", "width": 1, "dash": "dot"})
    fig.update_xaxes(title_text="model time [h]", row=rows, col=1)
    fig.update_layout(height=260 + 170 * len(names), margin={"l": 60, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.08})
    # plotly.js inlined once here: the page needs nothing from the network
    return fig.to_html(full_html=False, include_plotlyjs=True, include_mathjax=False,
                       config={"displaylogo": False})


def write_html(rep: ReviewReport, path: Path) -> None:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Review of {_e(rep.scenario)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>After-action review: {_e(rep.scenario)}</h1>",
             f"<p class='small'>run {_e(rep.run_dir)} · city {_e(rep.city)} · ends at {_t(rep.end_time_s)} model time · "
             f"reviewed {_e(rep.generated_utc)} · baseline: {_e(rep.baseline.origin)} ({_e(rep.baseline.note)})</p>"]
    for w in rep.warnings:
        parts.append(f"<p class='warn'>{_e(w)}</p>")
    nc = rep.noop_check
    parts.append("<p class='small'>No-op check: "
                 + ("not needed" if nc.identical is None else ("the fork with nothing left out reproduces the run "
                    f"({', '.join(nc.compared)} identical)" if nc.identical else "<b>differs from the run</b>: "
                    + _e("; ".join(nc.differences[:5])))) + "</p>")

    parts.append("<h2>Objectives</h2>")
    if rep.objectives:
        parts.append("<table><tr><th>objective</th><th>outcome</th><th>measured</th><th>target</th>"
                     "<th>decided at</th><th>baseline</th><th>detail</th></tr>")
        for o in rep.objectives:
            b = o.baseline or {}
            sh = o.units == "1" and o.kind != "no_hospital_closed"
            parts.append(f"<tr><td>{_e(o.label)}</td><td class='{o.status}'>{o.status}</td>"
                         f"<td class='num'>{_e(_num(o.measured, o.units, sh))}</td><td class='num'>{_e(_num(o.target, o.units, sh))}</td>"
                         f"<td class='num'>{_t(o.decided_at_s)}</td>"
                         f"<td class='{_e(b.get('status', ''))}'>{_e(b.get('status', '–'))}</td><td>{_e(o.detail)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No objectives (the run folder has no exercise.yaml with objectives).</p>")

    parts.append("<h2>The run against the baseline</h2><table><tr><th>KPI</th><th>run</th><th>baseline</th>"
                 "<th>run − baseline</th></tr>")
    for k in rep.kpis.values():
        parts.append(f"<tr><td>{_e(k.label)} <span class='small'>({k.better} is better)</span></td>"
                     f"<td class='num'>{_e(_num(k.run, k.units, _is_share(k)))}</td>"
                     f"<td class='num'>{_e(_num(k.without, k.units, _is_share(k)))}</td>"
                     f"{_delta_cell(k)}</tr>")
    parts.append("</table>")

    parts.append("<h2>Timeline</h2>" + _timeline(rep))

    parts.append("<h2>Effect of each decision</h2><p class='small'>Each trainee decision against a counterfactual "
                 "fork from the checkpoint before it, without that decision and with all the others: run − without "
                 "(green: the decision helped, red: it made this KPI worse).</p>")
    tr = [d for d in rep.decisions if d.role == "trainee"]
    if tr:
        first = next((d.effect for d in tr if d.effect is not None), None)
        cols = [c for c in _EFFECT_COLS if first is not None and c in first.kpis]
        heads = "".join(f"<th>{_e(first.kpis[c].label)}</th>" for c in cols) if first else ""
        parts.append(f"<table><tr><th>acted</th><th>#</th><th>decision</th><th>issuer</th><th>outcome</th>{heads}</tr>")
        for d in tr:
            cells = "".join(_delta_cell(d.effect.kpis[c]) for c in cols) if d.effect else \
                "".join("<td>–</td>" for _ in cols)
            parts.append(f"<tr><td class='num'>{_t(d.t_s)}</td><td>{d.decision_id}</td><td>{_e(d.type)}: "
                         f"{_e(d.message)[:140]}</td><td>{_e(d.issuer)}</td><td>{_e(d.outcome)}</td>{cells}</tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No trainee decision.</p>")

    parts.append("<h2>All decisions and injects</h2><table><tr><th>acted</th><th>#</th><th>role</th><th>source</th>"
                 "<th>issuer</th><th>type</th><th>outcome</th><th>message</th></tr>")
    for d in rep.decisions:
        parts.append(f"<tr><td class='num'>{_t(d.t_s)}</td><td>{d.decision_id}</td><td>{d.role}</td><td>{_e(d.source)}</td>"
                     f"<td>{_e(d.issuer)}</td><td>{_e(d.type)}</td><td>{_e(d.outcome)}</td><td>{_e(d.message)}</td></tr>")
    for i in rep.injects:
        parts.append(f"<tr><td class='num'>{_t(i.t_s)}</td><td>{_e(i.inject_id)}</td><td>inject</td><td>exercise</td>"
                     f"<td></td><td>message</td><td></td><td>{_e(i.message)}</td></tr>")
    parts.append("</table>")
    parts.append(f"<p class='small'>Counterfactual forks: {rep.forks.get('n_forks', 0)} on {_e(rep.forks.get('scheduler'))}, "
                 f"{rep.forks.get('wall_time_s', 0.0):.1f} s. Numbers are defined in docs/user-guide/review.md; "
                 "review.json holds every value.</p></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
