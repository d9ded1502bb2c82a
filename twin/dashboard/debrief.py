"""Emergency debrief: an incident log like a dispatch system's, a unit Gantt chart and shelter occupancy
by the right places. Pure functions from a run (and the city's places) to tables and figures.

- Times are local clock times (Asia/Ho_Chi_Minh): the run's start (``kpis.json`` ``start_local``, or
  the scenario's ``start``, local time by convention) plus the model time.
- ``people.parquet``'s and ``incidents.parquet``'s ``shelter`` are indices into the people model's
  shelter list, not place ids: the list is ``shelters.parquet`` (written since this was found); for an
  older run it is rebuilt as the model builds it (the city's places of the scenario's shelter kinds,
  in the places table's order), and the page says so. Hospitals (``incidents.hospital``) are the
  places of kind ``hospital`` in the places table's order (``twin.agents.services``).
- A shelter's occupancy counts people who have ARRIVED (state ``sheltered``); people on their way
  have the shelter as destination but are not in it.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import tables
from .figures import base_layout, empty_figure
from .runs import Run, RunError

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
#: the people model's default shelter kinds (twin.agents.params.PeopleParams.shelter_kinds)
DEFAULT_SHELTER_KINDS = ("shelter", "school", "public_building")
#: capacity the people model gives a shelter place without one (twin.agents.population)
DEFAULT_SHELTER_CAPACITY = 500.0
#: an incident is "near" a named place within this distance [m]
NEAR_PLACE_M = 400.0
#: Gantt phases: (name, start column, end column, colour); greys and a blue read in greyscale
PHASES = (("to scene", "dispatch_s", "arrive_scene_s", "#6baed6"),
          ("on scene", "arrive_scene_s", "depart_scene_s", "#08519c"),
          ("to hospital or shelter", "depart_scene_s", "handover_s", "#969696"))


# ---------------------------------------------------------------------------------------------
# clock
# ---------------------------------------------------------------------------------------------
def run_start(run: Run) -> dt.datetime | None:
    """The run's start as an aware local datetime (Asia/Ho_Chi_Minh): ``mapframes.run_start`` (the
    manifest's or kpis.json's ``start_local``, fields.nc's time units, the scenario's ``start``)."""
    from .figures import fields_start
    from .mapframes import run_start as start_of

    ts = start_of(run, fields_start(run))
    return None if ts is None else ts.to_pydatetime().astimezone(TZ)


def clock(start: dt.datetime | None, t_s: float) -> str:
    """Local clock time of model time ``t_s``: "02:15:30" on the start's day, "29/10 02:15:30" on a later
    one; "–" for NaN; "+1 h 05 min" (since the start) for a run without a start time."""
    if t_s is None or not np.isfinite(t_s):
        return "–"
    if start is None:
        t = int(round(float(t_s)))
        return f"+{t // 3600} h {t % 3600 // 60:02d} min"
    when = start + dt.timedelta(seconds=float(t_s))
    return when.strftime("%H:%M:%S") if when.date() == start.date() else when.strftime("%d/%m %H:%M:%S")


# ---------------------------------------------------------------------------------------------
# the places behind indices
# ---------------------------------------------------------------------------------------------
def shelter_list(run: Run, places: pd.DataFrame | None) -> tuple[pd.DataFrame | None, str | None]:
    """(shelter, place_id, name, kind, x, y, capacity) in the people model's order, and a note when it
    was rebuilt from the places table (a run without ``shelters.parquet``); (None, note) when unknown."""
    sh = run.table("shelters") if (run.path / "shelters.parquet").exists() else None
    if sh is not None and len(sh):
        return sh.sort_values("shelter").reset_index(drop=True), None
    if places is None or not len(places) or "kind" not in places:
        return None, "the run has no shelters.parquet and its city's places are not available: shelters are shown by index"
    kinds: tuple[str, ...] = DEFAULT_SHELTER_KINDS
    params = (run.scenario().get("people") or {}).get("params") if isinstance(run.scenario().get("people"), dict) else None
    if isinstance(params, dict) and isinstance(params.get("shelter_kinds"), (list, tuple)):
        kinds = tuple(str(k) for k in params["shelter_kinds"])
    p = places[places["kind"].astype(str).isin(kinds)].reset_index(drop=True)
    cap = pd.to_numeric(p["capacity"], errors="coerce") if "capacity" in p else pd.Series(np.nan, index=p.index)
    out = pd.DataFrame({"shelter": np.arange(len(p), dtype=np.int64), "place_id": p["place_id"].astype(str),
                        "name": p["name"].astype(str), "kind": p["kind"].astype(str),
                        "x": p["x"].astype(float), "y": p["y"].astype(float),
                        "capacity": np.where(np.isfinite(cap) & (cap > 0), cap, DEFAULT_SHELTER_CAPACITY)})
    return out, ("shelter order rebuilt from the city's places (this run has no shelters.parquet); shelters "
                 "opened by decisions during the run are shown by index")


def hospital_list(places: pd.DataFrame | None) -> pd.DataFrame | None:
    """The emergency services' hospitals in their order (places of kind ``hospital``)."""
    if places is None or not len(places) or "kind" not in places:
        return None
    return places[places["kind"].astype(str) == "hospital"].reset_index(drop=True)


def shelter_occupancy(run: Run, places: pd.DataFrame | None) -> tuple[pd.DataFrame | None, str | None]:
    """Per shelter with anyone in it at some record: shelter, name, kind, capacity, peak (persons
    arrived), peak_t_s, end (persons at the last record), over (peak > capacity); and a note."""
    occ = tables.shelter_occupancy(run)        # state "sheltered" only: arrived, not on the way
    lst, note = shelter_list(run, places)
    if occ is None:
        return None, note
    t_end = float(run.table("people")["t_s"].max())
    rows = []
    for sid, g in occ.groupby("shelter"):
        g = g.sort_values("t")
        k = int(g["persons"].to_numpy().argmax())
        info = lst[lst["shelter"] == sid] if lst is not None else None
        if info is not None and len(info):
            name, kind, cap = str(info["name"].iloc[0]), str(info["kind"].iloc[0]), float(info["capacity"].iloc[0])
        else:
            name, kind, cap = f"shelter #{sid} (not in the shelter list)", "", np.nan
        at_end = g.loc[g["t"] == t_end, "persons"]
        peak = float(g["persons"].iloc[k])
        rows.append({"shelter": int(sid), "name": name, "kind": kind, "capacity": cap, "peak": peak,
                     "peak_t_s": float(g["t"].iloc[k]), "end": float(at_end.iloc[0]) if len(at_end) else 0.0,
                     "over": bool(np.isfinite(cap) and peak > cap)})
    return pd.DataFrame(rows).sort_values("peak", ascending=False).reset_index(drop=True), note


def shelter_figure(occ: pd.DataFrame | None, height: int | None = None) -> go.Figure:
    """Peak persons arrived per shelter (bars) against its capacity (a black tick); a bar over capacity
    is hatched, orange and labelled "over capacity"."""
    if occ is None or not len(occ):
        return empty_figure("nobody reached a shelter in this run")
    o = occ.iloc[::-1]      # largest at the top
    over = o["over"].to_numpy()
    labels = [f"{n} ({k.replace('_', ' ')})" if k else n for n, k in zip(o["name"], o["kind"])]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=labels, x=o["peak"], orientation="h", name="peak persons arrived",
                         marker={"color": np.where(over, "#e6550d", "#6baed6").tolist(),
                                 "pattern": {"shape": np.where(over, "/", "").tolist()},
                                 "line": {"color": "#333", "width": 1}},
                         text=[f"{p:,.0f}" + (" — over capacity" if ov else "") for p, ov in zip(o["peak"], over)],
                         textposition="outside", cliponaxis=False,
                         hovertemplate="%{y}<br>peak %{x:,.0f} persons<extra></extra>"))
    fig.add_trace(go.Scatter(y=labels, x=o["capacity"], mode="markers", name="capacity",
                             marker={"symbol": "line-ns", "size": 18, "line": {"width": 3, "color": "#000"}},
                             hovertemplate="%{y}<br>capacity %{x:,.0f} persons<extra></extra>"))
    fig.update_layout(**base_layout(height=height or max(220, 60 + 28 * len(o)),
                                    margin={"l": 260, "r": 90, "t": 30, "b": 45},
                                    legend={"orientation": "h", "y": 1.08}),
                      xaxis={"title": {"text": "persons (arrived; capacity as a black line)"}, "rangemode": "tozero"},
                      yaxis={"automargin": True})
    return fig


def shelter_summary(occ: pd.DataFrame | None) -> str:
    if occ is None or not len(occ):
        return "Nobody reached a shelter in this run."
    over = occ[occ["over"]]
    text = (f"{len(occ)} shelters received people; {occ['peak'].sum():,.0f} persons at their peaks together, "
            f"the fullest {occ['name'].iloc[0]} with {occ['peak'].iloc[0]:,.0f}")
    cap = occ["capacity"].iloc[0]
    text += f" (capacity {cap:,.0f})." if np.isfinite(cap) else "."
    if len(over):
        text += " Over capacity: " + "; ".join(f"{n} ({p:,.0f} of {c:,.0f})" for n, p, c in
                                               zip(over["name"], over["peak"], over["capacity"])) + "."
    else:
        text += " None was over capacity."
    return text


# ---------------------------------------------------------------------------------------------
# incident log
# ---------------------------------------------------------------------------------------------
def _handover(run: Run, inc: pd.DataFrame) -> np.ndarray:
    """Time the person was handed over: at the hospital, else dropped at a shelter (unit_actions)."""
    h = inc["at_hospital_s"].to_numpy(dtype=float).copy()
    try:
        acts = run.table("unit_actions")
    except RunError:
        acts = None
    if acts is not None and len(acts):
        drop = acts[acts["action"].astype(str) == "drop_off"].groupby("incident_id")["t_s"].min()
        d = inc["incident_id"].map(drop).to_numpy(dtype=float)
        h = np.where(np.isfinite(h), h, d)
    return h


def _place_names(inc: pd.DataFrame, places: pd.DataFrame | None) -> list[str]:
    xy = inc[["x", "y"]].to_numpy(dtype=float)
    if places is None or not len(places):
        return [f"E {x:.0f}, N {y:.0f}" for x, y in xy]
    p = places[places["kind"].astype(str).str.startswith("gauge") == False]  # noqa: E712 (pandas mask)
    px, py = p["x"].to_numpy(dtype=float), p["y"].to_numpy(dtype=float)
    names = p["name"].astype(str).to_numpy()
    out = []
    for x, y in xy:
        if not len(px):
            out.append(f"E {x:.0f}, N {y:.0f}")
            continue
        d = np.hypot(px - x, py - y)
        k = int(np.argmin(d))
        out.append((f"at {names[k]}" if d[k] < 50 else f"{d[k]:.0f} m from {names[k]}") if d[k] <= NEAR_PLACE_M
                   else f"E {x:.0f}, N {y:.0f}")
    return out


def incident_log(run: Run, places: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """One row per incident, by call time: id, type, priority, place, call, dispatch, arrival, handover
    (local clock times), response (min), unit, destination, outcome, x, y; None without incidents."""
    inc = tables.incidents(run)
    if inc is None:
        return None
    start = run_start(run)
    hand = _handover(run, inc)
    hosp = hospital_list(places)
    shel, _ = shelter_list(run, places)

    def dest(h: int, s: int) -> str:
        if h >= 0:
            return str(hosp["name"].iloc[h]) if hosp is not None and h < len(hosp) else f"hospital #{h}"
        if s >= 0:
            return str(shel["name"].iloc[s]) if shel is not None and s < len(shel) else f"shelter #{s}"
        return "–"

    unit = [f"{k} {u}" if u >= 0 else "–" for k, u in
            zip(inc["unit_kind"].fillna("unit").astype(str), inc["unit_id"].astype(int))]
    resp = (inc["arrive_scene_s"] - inc["call_s"]).to_numpy(dtype=float) / 60.0
    return pd.DataFrame({
        "id": inc["incident_id"].astype(int), "type": inc["kind"].astype(str), "priority": inc["priority"].astype(int),
        "place": _place_names(inc, places),
        "call": [clock(start, t) for t in inc["call_s"]], "dispatch": [clock(start, t) for t in inc["dispatch_s"]],
        "arrival": [clock(start, t) for t in inc["arrive_scene_s"]], "handover": [clock(start, t) for t in hand],
        "response_min": np.round(resp, 1), "unit": unit,
        "destination": [dest(int(h), int(s)) for h, s in zip(inc["hospital"], inc["shelter"])],
        "outcome": inc["outcome"].astype(str).str.replace("_", " "), "x": inc["x"].astype(float),
        "y": inc["y"].astype(float), "call_s": inc["call_s"].astype(float),
    })


def log_summary(log: pd.DataFrame | None) -> str:
    if log is None or not len(log):
        return "No incidents were recorded in this run."
    reached = np.isfinite(log["response_min"].to_numpy(dtype=float))
    r = log.loc[reached, "response_min"]
    text = f"{len(log)} incidents, {int(reached.sum())} reached by a unit, {int((~reached).sum())} not reached by the end"
    if len(r):
        text += f"; response median {r.median():.1f} min, 90th percentile {r.quantile(0.9):.1f} min"
    return text + ". Select a row to show the incident on the map."


# ---------------------------------------------------------------------------------------------
# unit Gantt chart
# ---------------------------------------------------------------------------------------------
def unit_tasks(run: Run) -> pd.DataFrame | None:
    """Bars of the Gantt chart: unit, phase, incident, start_s, end_s (phases with both ends known; a
    unit still on its way at the end of the run ends at the last recorded time)."""
    inc = tables.incidents(run)
    if inc is None:
        return None
    inc = inc[inc["unit_id"] >= 0].copy()
    if inc.empty:
        return None
    inc["handover_s"] = _handover(run, inc)
    from .figures import time_grid

    t_end = float(time_grid(run, 2)[-1])   # the run's end (kpis.json or fields.nc), or the last incident time
    rows = []
    for _, r in inc.iterrows():
        label = f"{r['unit_kind'] if isinstance(r['unit_kind'], str) and r['unit_kind'] else 'unit'} {int(r['unit_id'])}"
        for name, a, b, _c in PHASES:
            ta, tb = float(r[a]), float(r[b])
            if np.isfinite(ta) and not np.isfinite(tb) and name != "to hospital or shelter":
                tb = max(t_end, ta) if not np.isfinite(float(r["clear_s"])) else float(r["clear_s"])
            if np.isfinite(ta) and np.isfinite(tb) and tb > ta:
                rows.append({"unit": label, "phase": name, "incident": int(r["incident_id"]), "start_s": ta,
                             "end_s": tb})
    return pd.DataFrame(rows) if rows else None


def gantt_figure(run: Run) -> go.Figure:
    """A timeline (Gantt chart): one row per unit, a horizontal bar per phase of each incident, on
    local clock time (plotly bars on a date axis, as ``plotly.express.timeline`` draws them, without
    the four seconds of importing plotly.express)."""
    tasks = unit_tasks(run)
    if tasks is None:
        return empty_figure("no unit was dispatched in this run")
    start = run_start(run)
    base = (start if start is not None else dt.datetime(2000, 1, 1, tzinfo=TZ)).replace(tzinfo=None)
    order = sorted(tasks["unit"].unique(), key=lambda u: (u.rsplit(" ", 1)[0], int(u.rsplit(" ", 1)[1])))
    fig = go.Figure()
    for name, _a, _b, colour in PHASES:
        t = tasks[tasks["phase"] == name]
        if t.empty:
            continue
        fig.add_trace(go.Bar(
            name=name, orientation="h", y=t["unit"], base=[base + dt.timedelta(seconds=float(v)) for v in t["start_s"]],
            x=((t["end_s"] - t["start_s"]) * 1000.0).round(0), marker={"color": colour, "line": {"color": "#222", "width": 0.5}},
            customdata=np.stack([t["incident"], ((t["end_s"] - t["start_s"]) / 60).round(1)], axis=1),
            hovertemplate="%{y}: " + name + " of incident #%{customdata[0]}, %{customdata[1]} min<extra></extra>"))
    title = "local time (Asia/Ho_Chi_Minh)" if start is not None else "time since start (the run has no start time)"
    fig.update_layout(**base_layout(height=max(260, 80 + 22 * len(order)), legend={"orientation": "h", "y": 1.1},
                                    margin={"l": 110, "r": 20, "t": 40, "b": 45}, barmode="overlay"),
                      xaxis={"title": {"text": title}, "type": "date"},
                      yaxis={"title": {"text": "unit"}, "categoryorder": "array", "categoryarray": order[::-1]})
    return fig


def gantt_summary(run: Run) -> str:
    tasks = unit_tasks(run)
    if tasks is None:
        return "No unit was dispatched in this run."
    busy = (tasks["end_s"] - tasks["start_s"]).groupby(tasks["unit"]).sum() / 3600.0
    n_inc = tasks.groupby("unit")["incident"].nunique()
    top = busy.idxmax()
    return (f"{len(busy)} units worked on {tasks['incident'].nunique()} incidents; the busiest, {top}, "
            f"spent {busy[top]:.1f} h on {n_inc[top]} incidents; on average a unit was busy {busy.mean():.1f} h.")


# ---------------------------------------------------------------------------------------------
# hospitals
# ---------------------------------------------------------------------------------------------
def hospital_figure(run: Run, places: pd.DataFrame | None) -> go.Figure:
    """Cumulative patients arrived at each hospital, labelled by the services' hospital order."""
    ho = tables.hospital_admissions(run)
    if ho is None:
        return empty_figure("no patient reached a hospital in this run")
    hosp = hospital_list(places)
    start = run_start(run)
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
    for k, (hid, g) in enumerate(ho.groupby("hospital")):
        name = str(hosp["name"].iloc[int(hid)]) if hosp is not None and int(hid) < len(hosp) else f"hospital #{hid}"
        x = ([(start + dt.timedelta(seconds=float(t))).replace(tzinfo=None) for t in g["t"]] if start is not None
             else g["t"] / 3600.0)
        fig.add_trace(go.Scatter(x=x, y=g["patients"], mode="lines+markers", name=name,
                                 line={"shape": "hv", "dash": dashes[k % 6], "width": 2}))
    fig.update_layout(**base_layout(height=320, legend={"font": {"size": 11}}),
                      xaxis={"title": {"text": "local time (Asia/Ho_Chi_Minh)" if start is not None
                                       else "time since start (h)"}},
                      yaxis={"title": {"text": "patients arrived (cumulative)"}, "rangemode": "tozero"})
    return fig
