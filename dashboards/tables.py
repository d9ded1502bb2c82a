"""Derived series from a run's tables (people, links, incidents, units), cached per run.

Column names are read tolerantly: the first name in each alias list is the one the dashboard
documents (docs/architecture.md, section Dashboard); the others are accepted aliases.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import Run, col

T = ("t_s", "time_s", "t", "time")
X = ("x", "x_m")
Y = ("y", "y_m")
LINK = ("link_id", "link", "id")
VEH = ("vehicles", "n_vehicles", "vehicle_count", "count", "occupancy_veh")
DENSITY = ("density_vpm", "density_veh_per_m", "road_link__vehicle_density")  # vehicles per metre
CLOSED = ("closed", "is_closed", "road_link__is_closed")
SPEED_FACTOR = ("speed_factor", "road_link__speed_factor")
HAZARD = ("hazard", "hazard_rating", "hr")
PERSONS = ("persons", "n_persons", "members", "size")
STATE = ("state", "status", "action")
SHELTER = ("shelter_id", "shelter", "destination_shelter")
T_CALL = ("t_call_s", "call_s", "t_s", "time_s", "created_s")
T_DISPATCH = ("t_dispatch_s", "dispatch_s", "dispatched_s")
T_ARRIVE = ("t_arrive_s", "arrive_scene_s", "t_on_scene_s", "on_scene_s", "arrive_s", "arrival_s")
T_HOSP = ("t_hospital_s", "hospital_s", "at_hospital_s")
T_DONE = ("t_done_s", "clear_s", "t_clear_s", "t_closed_s", "t_resolved_s", "done_s", "closed_s", "end_s")
UNIT = ("unit_id", "unit")
HOSPITAL = ("hospital_id", "hospital")
PRIORITY = ("priority", "severity")
KIND = ("kind", "type", "incident_kind")
OUTCOME = ("outcome", "result")
HIGH_HAZARD_HR = 1.25  # FD2321 default: HR >= 1.25 is "danger for most" (significant and extreme classes)
HIGH_HAZARD_CLASSES = ("significant", "extreme")  # people.parquet hazard_class, from the scenario's thresholds


def _times(df: pd.DataFrame, tcol: str) -> np.ndarray:
    return np.unique(df[tcol].to_numpy(dtype=float))


def _snapshot_index(run: Run, name: str, tcol: str):
    """(times, {time: row positions}) for a table recorded as snapshots."""
    def build():
        df = run.table(name)
        t = df[tcol].to_numpy(dtype=float)
        order = np.argsort(t, kind="stable")
        ts = t[order]
        times, starts = np.unique(ts, return_index=True)
        ends = np.append(starts[1:], len(ts))
        return times, order, starts, ends

    return run._memo(f"snap:{name}", build)


def snapshot_at(run: Run, name: str, t: float) -> pd.DataFrame | None:
    """Rows of a snapshot table at the last recorded time ≤ t (None: table or time column absent)."""
    df = run.table(name)
    tcol = col(df, *T)
    if df is None or tcol is None or len(df) == 0:
        return None
    times, order, starts, ends = _snapshot_index(run, name, tcol)
    k = int(np.searchsorted(times, t + 1e-9, side="right")) - 1
    if k < 0:
        return df.iloc[0:0]
    return df.iloc[order[starts[k]:ends[k]]]


def people_points(run: Run, t: float, max_points: int = 3000) -> dict | None:
    snap = snapshot_at(run, "people", t)
    if snap is None:
        return None
    xc, yc = col(snap, *X), col(snap, *Y)
    if xc is None or yc is None:
        return None
    s = snap[np.isfinite(snap[xc].to_numpy(dtype=float))]
    n = len(s)
    step = max(1, int(np.ceil(n / max_points)))
    s = s.iloc[::step]
    st = col(s, *STATE)
    return {"x": s[xc].round(1).tolist(), "y": s[yc].round(1).tolist(),
            "state": s[st].astype(str).tolist() if st else None, "n": n, "step": step}


def link_state_at(run: Run, t: float, lengths: dict | None = None) -> dict | None:
    """{'closed': [link ids], 'vehicles': {link: count}} at time t from links.parquet.

    Vehicles per link come from a count column, else density (veh/m) × link length (``lengths``)."""
    snap = snapshot_at(run, "links", t)
    if snap is None:
        return None
    lc = col(snap, *LINK)
    if lc is None:
        return None
    closed: list[int] = []
    c = col(snap, *CLOSED)
    if c is not None:
        closed = snap.loc[snap[c].astype(bool), lc].astype(int).tolist()
    else:
        sf = col(snap, *SPEED_FACTOR)
        if sf is not None:
            closed = snap.loc[snap[sf].to_numpy(dtype=float) <= 0.0, lc].astype(int).tolist()
    veh: dict[int, float] = {}
    v = col(snap, *VEH)
    dc = col(snap, *DENSITY)
    if v is not None:
        sub = snap[snap[v].to_numpy(dtype=float) > 0]
        veh = dict(zip(sub[lc].astype(int).tolist(), sub[v].astype(float).tolist()))
    elif dc is not None and lengths:
        sub = snap[snap[dc].to_numpy(dtype=float) > 0]
        for lid, dens in zip(sub[lc].astype(int).tolist(), sub[dc].astype(float).tolist()):
            n = dens * lengths.get(lid, 0.0)
            if n >= 0.5:
                veh[lid] = n
    return {"closed": closed, "vehicles": veh}


def closed_share_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    df = run.table("links")
    tcol, lc = col(df, *T), col(df, *LINK)
    if df is None or tcol is None or lc is None or len(df) == 0:
        return None
    c = col(df, *CLOSED)
    if c is not None:
        closed = df[c].astype(bool)
    else:
        sf = col(df, *SPEED_FACTOR)
        if sf is None:
            return None
        closed = df[sf].to_numpy(dtype=float) <= 0.0
    g = pd.DataFrame({"t": df[tcol].astype(float), "c": np.asarray(closed, dtype=float)}).groupby("t")["c"].mean()
    return g.index.to_numpy(), g.to_numpy() * 100.0


def high_hazard_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """Persons in the significant or extreme hazard class over time (people.parquet).

    The run's ``hazard_class`` column was classified with the scenario's thresholds
    (``people.params.hazard_thresholds``, twin.hazard); tables without it fall back to the FD2321
    default HR >= 1.25."""
    df = run.table("people")
    tcol, hc = col(df, *T), col(df, *HAZARD)
    if df is None or tcol is None or (hc is None and "hazard_class" not in df) or len(df) == 0:
        return None
    w = df[col(df, *PERSONS)].to_numpy(dtype=float) if col(df, *PERSONS) else np.ones(len(df))
    if "hazard_class" in df:
        high = df["hazard_class"].astype(str).isin(HIGH_HAZARD_CLASSES).to_numpy() * w
    else:
        high = (df[hc].to_numpy(dtype=float) >= HIGH_HAZARD_HR) * w
    g = pd.DataFrame({"t": df[tcol].astype(float), "h": high}).groupby("t")["h"].sum()
    return g.index.to_numpy(), g.to_numpy()


def incidents(run: Run) -> pd.DataFrame | None:
    """incidents.parquet with canonical time columns (t_call_s, t_dispatch_s, t_arrive_s, t_done_s)."""
    def build():
        df = run.table("incidents")
        if df is None:
            return None
        out = df.copy()
        for canon, aliases in (("t_call_s", T_CALL), ("t_dispatch_s", T_DISPATCH), ("t_arrive_s", T_ARRIVE),
                               ("t_hospital_s", T_HOSP), ("t_done_s", T_DONE)):
            c = col(df, *aliases)
            out[canon] = df[c].astype(float) if c else np.nan
        if out["t_call_s"].isna().all():
            return None
        return out.sort_values("t_call_s", kind="stable").reset_index(drop=True)

    return run._memo("incidents_canon", build)


def response_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(call time s, response time s) for incidents that were reached."""
    inc = incidents(run)
    if inc is None:
        return None
    ok = inc["t_arrive_s"].notna()
    if not ok.any():
        return None
    return inc.loc[ok, "t_call_s"].to_numpy(), (inc.loc[ok, "t_arrive_s"] - inc.loc[ok, "t_call_s"]).to_numpy()


def open_incidents_at(run: Run, t: float) -> pd.DataFrame | None:
    inc = incidents(run)
    if inc is None or col(inc, *X) is None:
        return None
    done = inc["t_done_s"].to_numpy()
    m = (inc["t_call_s"].to_numpy() <= t) & ~(np.isfinite(done) & (done <= t))
    return inc[m]


def queue_series(run: Run, t_grid: np.ndarray) -> np.ndarray | None:
    """Incidents waiting for a unit (called, not yet dispatched, not closed) at each time."""
    inc = incidents(run)
    if inc is None:
        return None
    call = inc["t_call_s"].to_numpy()[:, None]
    disp = inc["t_dispatch_s"].to_numpy()[:, None]
    done = inc["t_done_s"].to_numpy()[:, None]
    t = t_grid[None, :]
    waiting = (call <= t) & ~(np.isfinite(disp) & (disp <= t)) & ~(np.isfinite(done) & (done <= t))
    return waiting.sum(axis=0)


def utilisation_series(run: Run, t_grid: np.ndarray, n_units: int | None = None) -> tuple[np.ndarray, int] | None:
    """Share of units busy (dispatched and not yet cleared) at each time, in %."""
    inc = incidents(run)
    if inc is None or inc["t_dispatch_s"].isna().all():
        return None
    uc = col(inc, *UNIT)
    units = run.table("units")
    if n_units is None:
        if units is not None and col(units, *UNIT):
            n_units = int(units[col(units, *UNIT)].nunique())
        elif uc is not None:
            u = inc[uc].dropna().astype(str)
            n_units = int(u[u != "-1"].nunique())
    if not n_units:
        return None
    disp = inc["t_dispatch_s"].to_numpy()[:, None]
    end = inc["t_done_s"].fillna(np.inf).to_numpy()[:, None]
    busy = ((disp <= t_grid[None, :]) & (end > t_grid[None, :]))
    if uc is not None:  # the services table writes -1 for "no unit"
        ids = inc[uc].astype(str).to_numpy()
        busy &= (ids != "-1")[:, None]
        n_busy = np.array([len(set(ids[busy[:, j]])) for j in range(busy.shape[1])])
    else:
        n_busy = busy.sum(axis=0)
    return np.minimum(n_busy / n_units * 100.0, 100.0), n_units


T_DEPART = ("depart_scene_s", "t_depart_scene_s", "left_scene_s")


def units_at(run: Run, t: float) -> pd.DataFrame | None:
    """Unit positions at t: from units.parquet when a run has it, else the units on scene (at their
    incident's location between arrival and departure from the scene, from incidents.parquet)."""
    snap = snapshot_at(run, "units", t)
    if snap is not None and col(snap, *X) is not None:
        return snap
    inc = incidents(run)
    if inc is None or col(inc, *X) is None or col(inc, *UNIT) is None:
        return None
    dep = col(inc, *T_DEPART)
    leave = inc[dep].to_numpy(dtype=float) if dep else inc["t_done_s"].to_numpy()
    arr = inc["t_arrive_s"].to_numpy()
    m = (arr <= t) & ~(np.isfinite(leave) & (leave <= t))
    out = inc.loc[m, [col(inc, *UNIT), col(inc, *X), col(inc, *Y)]].copy()
    out.columns = ["unit_id", "x", "y"]
    kc = col(inc, "unit_kind")
    out["unit_id"] = (inc.loc[m, kc].astype(str) + " " if kc else "") + out["unit_id"].astype(str) + " on scene"
    return out


def shelter_occupancy(run: Run) -> pd.DataFrame | None:
    """Long table (t, shelter, persons) from people snapshots with a shelter column."""
    df = run.table("people")
    tcol, sc = col(df, *T), col(df, *SHELTER)
    if df is None or tcol is None or sc is None:
        return None
    w = df[col(df, *PERSONS)].astype(float) if col(df, *PERSONS) else pd.Series(1.0, index=df.index)
    d = pd.DataFrame({"t": df[tcol].astype(float), "shelter": df[sc], "w": w})
    d = d[d["shelter"].notna() & (d["shelter"].astype(str) != "") & (d["shelter"].astype(str) != "-1")]
    if d.empty:
        return None
    return d.groupby(["t", "shelter"])["w"].sum().rename("persons").reset_index()


def hospital_admissions(run: Run) -> pd.DataFrame | None:
    """Long table (t, hospital, patients): cumulative arrivals at each hospital."""
    inc = incidents(run)
    if inc is None:
        return None
    hc = col(inc, *HOSPITAL)
    if hc is None or inc["t_hospital_s"].isna().all():
        return None
    d = inc[inc["t_hospital_s"].notna() & inc[hc].notna() & (inc[hc].astype(str) != "-1")].sort_values("t_hospital_s")
    if d.empty:
        return None
    d = d.assign(patients=1.0)
    d["patients"] = d.groupby(hc)["patients"].cumsum()
    return d.rename(columns={hc: "hospital", "t_hospital_s": "t"})[["t", "hospital", "patients"]]


def flooded_area_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """Flooded area (all depth classes, km²) over time from kpis.json (series_t_s, flooded_area_m2)."""
    k = run.kpis()
    t, a = k.get("series_t_s"), k.get("flooded_area_m2")
    if not isinstance(t, list) or not isinstance(a, list) or len(t) != len(a) or not t:
        return None
    vals = [sum(v for v in x.values() if isinstance(v, (int, float))) if isinstance(x, dict)
            else (float(x) if isinstance(x, (int, float)) else np.nan) for x in a]
    return np.asarray(t, float), np.asarray(vals, float) / 1e6
