"""Derived series from a run's tables (people, links, incidents, units), cached per run.

Tables are read through the run-folder schema (:mod:`twin.output.schema`, via :meth:`Run.table`):
the column names used here are the schema's, a table with a missing or mistyped column is refused
with a message naming the file and column, and a table a run does not have (yet) is a typed empty
frame. Integer id columns use -1 for "none"; time columns use NaN for "not (yet)".
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import Run

HIGH_HAZARD_HR = 1.25  # FD2321 default (significant and above); runs classify with their own thresholds
HIGH_HAZARD_CLASSES = ("significant", "extreme")  # people.parquet hazard_class  # FD2321: HR > 1.25 is "danger for most" (significant and extreme classes)


def _snapshot_index(run: Run, name: str):
    """(times, order, starts, ends) of a table recorded as snapshots (one block of rows per ``t_s``)."""
    def build():
        t = run.table(name)["t_s"].to_numpy(dtype=float)
        order = np.argsort(t, kind="stable")
        times, starts = np.unique(t[order], return_index=True)
        ends = np.append(starts[1:], len(t))
        return times, order, starts, ends

    return run._memo(f"snap:{name}", build)


def snapshot_at(run: Run, name: str, t: float) -> pd.DataFrame | None:
    """Rows of a snapshot table (links, people, units) at the last recorded time ≤ t (None: no rows)."""
    df = run.table(name)
    if len(df) == 0:
        return None
    times, order, starts, ends = _snapshot_index(run, name)
    k = int(np.searchsorted(times, t + 1e-9, side="right")) - 1
    if k < 0:
        return df.iloc[0:0]
    return df.iloc[order[starts[k]:ends[k]]]


def people_points(run: Run, t: float, max_points: int = 3000) -> dict | None:
    snap = snapshot_at(run, "people", t)
    if snap is None:
        return None
    s = snap[np.isfinite(snap["x"].to_numpy(dtype=float))]
    n = len(s)
    step = max(1, int(np.ceil(n / max_points)))
    s = s.iloc[::step]
    return {"x": s["x"].round(1).tolist(), "y": s["y"].round(1).tolist(),
            "state": s["state"].astype(str).tolist(), "n": n, "step": step}


def link_state_at(run: Run, t: float, lengths: dict | None = None) -> dict | None:
    """{'closed': [link ids], 'vehicles': {link: count}} at time t from links.parquet.

    Vehicles per link are the density (veh/m) × the link length (``lengths``: link id → m); without
    lengths no vehicle counts are given."""
    snap = snapshot_at(run, "links", t)
    if snap is None:
        return None
    closed = snap.loc[snap["closed"].to_numpy(dtype=bool), "link_id"].astype(int).tolist()
    veh: dict[int, float] = {}
    if lengths:
        sub = snap[snap["density_veh_per_m"].to_numpy(dtype=float) > 0]
        for lid, dens in zip(sub["link_id"].astype(int).tolist(), sub["density_veh_per_m"].astype(float).tolist()):
            n = dens * lengths.get(lid, 0.0)
            if n >= 0.5:
                veh[lid] = n
    return {"closed": closed, "vehicles": veh}


def closed_share_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """Share of road links closed [%] at each table time."""
    df = run.table("links")
    if len(df) == 0:
        return None
    g = pd.DataFrame({"t": df["t_s"].astype(float), "c": df["closed"].astype(float)}).groupby("t")["c"].mean()
    return g.index.to_numpy(), g.to_numpy() * 100.0


def high_hazard_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """Persons in the significant or extreme hazard class over time (people.parquet): the run's
    ``hazard_class`` column was classified with the scenario's thresholds
    (``people.params.hazard_thresholds``, twin.hazard)."""
    df = run.table("people")
    if len(df) == 0:
        return None
    high = df["hazard_class"].astype(str).isin(HIGH_HAZARD_CLASSES).to_numpy() * df["persons"].to_numpy(dtype=float)
    g = pd.DataFrame({"t": df["t_s"].astype(float), "h": high}).groupby("t")["h"].sum()
    return g.index.to_numpy(), g.to_numpy()


def incidents(run: Run) -> pd.DataFrame | None:
    """incidents.parquet sorted by call time (None: no incidents)."""
    def build():
        df = run.table("incidents")
        if len(df) == 0:
            return None
        return df.sort_values("call_s", kind="stable").reset_index(drop=True)

    return run._memo("incidents_sorted", build)


def response_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(call time s, response time s) for incidents that were reached."""
    inc = incidents(run)
    if inc is None:
        return None
    ok = inc["arrive_scene_s"].notna()
    if not ok.any():
        return None
    return inc.loc[ok, "call_s"].to_numpy(), (inc.loc[ok, "arrive_scene_s"] - inc.loc[ok, "call_s"]).to_numpy()


def open_incidents_at(run: Run, t: float) -> pd.DataFrame | None:
    inc = incidents(run)
    if inc is None:
        return None
    done = inc["clear_s"].to_numpy(dtype=float)
    m = (inc["call_s"].to_numpy(dtype=float) <= t) & ~(np.isfinite(done) & (done <= t))
    return inc[m]


def queue_series(run: Run, t_grid: np.ndarray) -> np.ndarray | None:
    """Incidents waiting for a unit (called, not yet dispatched, not closed) at each time."""
    inc = incidents(run)
    if inc is None:
        return None
    call = inc["call_s"].to_numpy(dtype=float)[:, None]
    disp = inc["dispatch_s"].to_numpy(dtype=float)[:, None]
    done = inc["clear_s"].to_numpy(dtype=float)[:, None]
    t = t_grid[None, :]
    waiting = (call <= t) & ~(np.isfinite(disp) & (disp <= t)) & ~(np.isfinite(done) & (done <= t))
    return waiting.sum(axis=0)


def utilisation_series(run: Run, t_grid: np.ndarray, n_units: int | None = None) -> tuple[np.ndarray, int] | None:
    """Share of units busy (dispatched and not yet cleared) at each time, in %."""
    inc = incidents(run)
    if inc is None or inc["dispatch_s"].isna().all():
        return None
    ids = inc["unit_id"].to_numpy(dtype=np.int64)
    if n_units is None:
        units = run.table("units")
        n_units = int(units["unit_id"].nunique()) if len(units) else int(np.unique(ids[ids >= 0]).size)
    if not n_units:
        return None
    disp = inc["dispatch_s"].to_numpy(dtype=float)[:, None]
    end = inc["clear_s"].fillna(np.inf).to_numpy(dtype=float)[:, None]
    busy = (disp <= t_grid[None, :]) & (end > t_grid[None, :]) & (ids >= 0)[:, None]  # -1: no unit
    n_busy = np.array([np.unique(ids[busy[:, j]]).size for j in range(busy.shape[1])])
    return np.minimum(n_busy / n_units * 100.0, 100.0), n_units


def units_at(run: Run, t: float) -> pd.DataFrame | None:
    """Unit positions at t (unit_id, x, y, and unit_kind, phase from units.parquet). A run without
    units.parquet (written before it existed) shows the units on scene instead: at their incident's
    location between arrival and departure from the scene (incidents.parquet); their ``unit_id`` is
    then a label such as ``ambulance 3 on scene``."""
    snap = snapshot_at(run, "units", t)
    if snap is not None:
        return snap
    inc = incidents(run)
    if inc is None:
        return None
    leave = inc["depart_scene_s"].to_numpy(dtype=float)
    leave = np.where(np.isfinite(leave), leave, inc["clear_s"].to_numpy(dtype=float))
    arr = inc["arrive_scene_s"].to_numpy(dtype=float)
    m = (arr <= t) & ~(np.isfinite(leave) & (leave <= t)) & (inc["unit_id"].to_numpy() >= 0)
    on = inc.loc[m]
    kind = on["unit_kind"].astype(str).where(on["unit_kind"].notna(), "unit")
    return pd.DataFrame({"unit_id": (kind + " " + on["unit_id"].astype(str) + " on scene").to_numpy(),
                         "x": on["x"].to_numpy(), "y": on["y"].to_numpy()})


def shelter_occupancy(run: Run) -> pd.DataFrame | None:
    """Long table (t, shelter, persons): persons in each shelter (state ``sheltered``) over time."""
    df = run.table("people")
    d = df[(df["shelter"].to_numpy() >= 0) & (df["state"].astype(str) == "sheltered").to_numpy()]
    if d.empty:
        return None
    d = pd.DataFrame({"t": d["t_s"].astype(float), "shelter": d["shelter"], "w": d["persons"].astype(float)})
    return d.groupby(["t", "shelter"])["w"].sum().rename("persons").reset_index()


def hospital_admissions(run: Run) -> pd.DataFrame | None:
    """Long table (t, hospital, patients): cumulative arrivals at each hospital."""
    inc = incidents(run)
    if inc is None:
        return None
    d = inc[inc["at_hospital_s"].notna() & (inc["hospital"] >= 0)].sort_values("at_hospital_s")
    if d.empty:
        return None
    d = d.assign(patients=1.0)
    d["patients"] = d.groupby("hospital")["patients"].cumsum()
    return d.rename(columns={"at_hospital_s": "t"})[["t", "hospital", "patients"]]


def flooded_area_series(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """Flooded area (all depth classes, km²) over time from kpis.json (series_t_s, flooded_area_m2)."""
    k = run.kpis()
    t, a = k.get("series_t_s"), k.get("flooded_area_m2")
    if not isinstance(t, list) or not isinstance(a, list) or len(t) != len(a) or not t:
        return None
    vals = [sum(v for v in x.values() if isinstance(v, (int, float))) if isinstance(x, dict)
            else (float(x) if isinstance(x, (int, float)) else np.nan) for x in a]
    return np.asarray(t, float), np.asarray(vals, float) / 1e6
