"""One forecast member: the run's state at the issue time, perturbed forcing, the horizon, recorded.

Runs in whatever process (a Dask worker, or this one). What a worker keeps between members
(:func:`twin.city.load_city_cached`, :data:`_STATE_CACHE`): the city bundle, loaded once per worker and
per ``(city, resolution)``, and the checkpoint state, read once per worker and per file. A member
builds its own twin from the cached city (components own their state; building from a loaded city
is cheap next to loading it) and hands back plain arrays: nothing of the city travels per task.

A member's scenario is the run's scenario with ``duration`` = issue time + horizon, the member's
perturbations (:mod:`twin.forecast.perturb`), no sensors (the state is the analysis; no observation
exists after the issue time), no outputs written, and the components asked for:

- ``flood,roads``: the flood model and the road network's closures (the traffic model with no
  background demand holds the closure rule, :func:`twin.traffic.flood.link_flood_arrays`);
  people, services and the traffic state of the run are left out;
- ``full``: every component of the run, restored from the checkpoint (a coupled fork).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_member", "member_scenario", "COMPONENT_SETS", "parse_components", "clear_caches"]

_STATE_CACHE: dict[tuple[str, float, int], dict] = {}
#: decision kinds that need people or services (left out of a flood+roads member's history)
_PEOPLE_SERVICES_KINDS = ("warning", "evacuation_order", "shelter_open", "shelter_close", "extra_units", "dispatch")
COMPONENT_SETS = ("flood", "roads", "traffic", "people", "services")
PLACE_KINDS = {"hospital": "hospital", "shelter": "shelter", "school": "school", "fire_station": "station",
               "police": "station", "pumping_station": "station"}


def parse_components(text: str) -> list[str]:
    """``"flood,roads"`` or ``"full"`` → the component names; ValueError naming a bad one."""
    items = [s.strip().lower() for s in str(text).split(",") if s.strip()]
    if items == ["full"]:
        return list(COMPONENT_SETS)
    bad = [s for s in items if s not in COMPONENT_SETS]
    if bad or "flood" not in items:
        raise ValueError(f"--components {text!r}: expected 'full' or a list of {', '.join(COMPONENT_SETS)} "
                         f"including flood{f' (unknown: {bad[0]!r})' if bad else ''}")
    if ("traffic" in items or "people" in items or "services" in items) and "roads" not in items:
        items.append("roads")
    return [c for c in COMPONENT_SETS if c in items]


def clear_caches() -> None:
    from twin.city import _LOADED

    _LOADED.clear()
    _STATE_CACHE.clear()


def _city(name: str, resolution_m: float):
    from twin.city import load_city_cached

    return load_city_cached(name, resolution_m)


def _state(path: str) -> dict:
    from twin.output.recorders import load_checkpoint

    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime, st.st_size)
    if key not in _STATE_CACHE:
        _STATE_CACHE.clear()  # one forecast at a time per worker: keep one state
        _STATE_CACHE[key] = load_checkpoint(p)
    return _STATE_CACHE[key]


def member_scenario(base: dict, perturbation, t0_s: float, horizon_s: float, components: list[str]) -> dict:
    """The member's scenario dict (see the module docstring)."""
    from twin.forecast.perturb import perturbed_scenario_dict

    d = perturbed_scenario_dict(base, perturbation)
    d["name"] = f"{base['name']}-fc-m{perturbation.member:03d}"
    d["duration"] = float(t0_s + horizon_s)
    d["sensors"] = None
    out = dict(d.get("outputs") or {})
    out.update({"png": False, "checkpoint_every": None, "wall_time_limit": None})
    d["outputs"] = out
    if "roads" in components:
        tr = dict(d.get("traffic") or {})
        tr["enabled"] = True
        if "traffic" not in components:
            tr.update({"background_trips_per_day": 0.0, "informed_share": 0.0, "record_link_log": False})
        d["traffic"] = tr
    else:
        d["traffic"] = None
    for c in ("people", "services"):
        if c not in components:
            d[c] = None
    if "people" not in components or "services" not in components:
        # warnings, orders, shelters and units need people/services: history in the state, not acted on here
        d["interventions"] = [iv for iv in d.get("interventions") or [] if iv.get("type") not in _PEOPLE_SERVICES_KINDS]
    return d


def _twin_state(state: dict, components: list[str]) -> dict:
    """The checkpoint's twin state restricted to the member's components."""
    st = dict(state["twin"])
    drop = {"assimilator"}
    if "traffic" not in components:
        drop |= {"traffic"}
    drop |= {c for c in ("people", "services") if c not in components}
    for k in drop:
        st.pop(k, None)
    if "people" not in components or "services" not in components:
        dec = dict(st.get("decisions", {}))
        dec["structural"] = [s for s in dec.get("structural", []) if not _needs_people(s)]
        dec["pending"] = [p for p in dec.get("pending", [])
                          if not _needs_people(p)]
        st["decisions"] = dec
    return st


def _decision_type(entry: Any) -> str | None:
    d = entry.get("decision") if isinstance(entry, dict) else None
    if isinstance(d, str):
        import json

        try:
            d = json.loads(d)
        except ValueError:
            return None
    return d.get("type") if isinstance(d, dict) else None


def _needs_people(entry: Any) -> bool:
    return _decision_type(entry) in _PEOPLE_SERVICES_KINDS


def _ward_weights(tw) -> tuple[list[str], tuple[np.ndarray, np.ndarray] | None, np.ndarray, np.ndarray]:
    """(ward names, ward code raster, home weight per cell, persons per ward): homes are spread over
    a ward's land cells by the city's building fraction (uniform where the city has none)."""
    city = tw.city
    wr = getattr(city, "ward_raster", None)
    pop = getattr(city, "population", None)
    land = np.asarray(tw.land, bool)
    bf = getattr(city, "building_fraction", None)
    w = np.where(land, np.nan_to_num(np.asarray(bf, float)) if bf is not None else 1.0, 0.0)
    if wr is None or pop is None or "persons" not in getattr(pop, "columns", []):
        return [], None, w, np.zeros(0)
    names_col = "ward_name" if "ward_name" in pop.columns else "ward"
    codes_col = "ward" if np.issubdtype(pop["ward"].dtype, np.number) else "ward_id"
    names = [str(n) for n in pop[names_col]]
    codes = np.asarray(pop[codes_col], dtype=np.int64)
    persons = np.asarray(pop["persons"], dtype=float)
    return names, (np.asarray(wr), codes), w, persons


def run_member(spec: dict, city=None) -> dict:
    """Run one member (``spec``: see :func:`twin.forecast.ensemble.member_specs`) and return its
    recorded arrays: depth and running maximum depth at each output time, gauges, places, road
    closures, ward hazard and home shares, and (full members) ambulance response times."""
    from twin.build import build_twin
    from twin.forecast.perturb import MemberPerturbation, perturb_track
    from twin.hazard import DEFAULT_THRESHOLDS, hazard_class
    from twin.output.tables import place_cells
    from twin.scenario import _validate
    from twin.simulation import Simulation

    t_start = time.perf_counter()
    p = MemberPerturbation(**spec["perturbation"])
    comps = list(spec["components"])
    base = spec["base_scenario"]
    t0, horizon, every = float(spec["t0_s"]), float(spec["horizon_s"]), float(spec["every_s"])
    d = member_scenario(base, p, t0, horizon, comps)
    sc = _validate(d, source=f"forecast member {p.member}", base_dir=None)
    if city is None:
        from twin.build import city_resolution_m

        city = _city(sc.city, city_resolution_m(sc))
    forcing: dict = {}
    rain = sc.flood.rain
    track_info = None
    if rain.kind == "typhoon":
        from twin.sensors import typhoon as ty

        track = ty.load_track(rain.storm, rain.season)
        import pandas as pd

        issue_utc = (pd.Timestamp(sc.start_utc).tz_convert("UTC").tz_localize(None)
                     + pd.Timedelta(seconds=t0 + float(rain.time_shift)))
        forcing["typhoon_track"] = perturb_track(track, issue_utc, p)
        track_info = {"issue_utc": str(issue_utc)}
    t_build = time.perf_counter()
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # build warnings: once in forecast.json, not K times
        tw = build_twin(sc, city=city, forcing=forcing)
    build_s = time.perf_counter() - t_build
    sim = Simulation(tw)
    state = _state(spec["checkpoint"])
    st = dict(state)
    st["twin"] = _twin_state(state, comps)
    st["schedules"] = {}
    base_sc = _validate(base, source="forecast base", base_dir=None)
    sim.set_state(st, restore_output=False, fork_at=t0, base_scenario=base_sc)
    if abs(sim.time - t0) > 1e-6:
        raise ValueError(f"{spec['checkpoint']}: the checkpoint is at t = {sim.time:g} s, not {t0:g} s")

    valid = np.asarray(tw.valid, bool)
    land = np.asarray(tw.land, bool) & valid
    h0 = np.nan_to_num(np.asarray(tw.initial_depth, float)) if tw.initial_depth is not None else np.zeros(valid.shape)
    z = np.asarray(tw.terrain.elevation, float)
    pc = place_cells(tw)
    pc = pc[~pc["kind"].astype(str).str.startswith("gauge")].reset_index(drop=True) if len(pc) else pc
    pl = getattr(tw.city, "places", None)
    gauges = (pl[pl["kind"].astype(str).str.startswith("gauge")].reset_index(drop=True)
              if pl is not None and len(pl) else None)
    g_rc = []
    if gauges is not None:
        for row in gauges.itertuples(index=False):
            r, c = tw.terrain.rowcol(float(row.x), float(row.y))
            g_rc.append((int(r), int(c)) if 0 <= r < valid.shape[0] and 0 <= c < valid.shape[1] else (-1, -1))
    from twin.flood.forcing import reservoir_level_at

    lake = getattr(tw, "reservoir_footprint", None)
    wnames, wr, weights, persons = _ward_weights(tw)
    thresholds = [float(v) for v in spec["share_thresholds"]]
    hz_t = tuple(getattr(getattr(tw.people, "params", None), "hazard_thresholds", DEFAULT_THRESHOLDS)
                 if tw.people is not None else DEFAULT_THRESHOLDS)
    n_out = int(round(horizon / every)) + 1
    times = t0 + every * np.arange(n_out)
    ny, nx = valid.shape
    depth = np.full((n_out, ny, nx), np.nan, np.float32)
    runmax = np.full((n_out, ny, nx), np.nan, np.float32)
    fmax = np.where(valid, np.asarray(tw.depth(), float), np.nan)
    L = tw.traffic.network.n_links if tw.traffic is not None else 0
    closed_car = np.zeros((n_out, L), bool)
    closed_amb = np.zeros((n_out, L), bool)
    place_depth = np.zeros((n_out, len(pc)))
    gauge_depth = np.full((n_out, len(g_rc)), np.nan)
    gauge_stage = np.full((n_out, len(g_rc)), np.nan)
    n_w = len(wnames)
    ward_sig = np.zeros((n_out, n_w))
    # home share above each threshold (running max) per ward, the last column the whole city
    share = np.zeros((n_out, n_w + 1, len(thresholds)))
    wsum_city = float(weights.sum())
    wmask = [wr[0] == code for code in wr[1]] if wr is not None else []
    wsum = np.array([float(weights[m].sum()) for m in wmask])

    def record(k: int) -> None:
        h = np.where(valid, np.asarray(tw.depth(), float), np.nan)
        depth[k] = h
        runmax[k] = fmax
        hn = np.nan_to_num(h)
        if len(pc):
            rr, cc = pc["row"].to_numpy(int), pc["col"].to_numpy(int)
            place_depth[k] = np.maximum(0.0, hn[rr, cc] - h0[rr, cc])
        for j, (r, c) in enumerate(g_rc):
            if r >= 0 and valid[r, c]:
                lv = reservoir_level_at(tw, float(times[k])) if lake is not None and lake[r, c] else None
                if lv is not None:
                    # a gauge in the lumped reservoir's lake reads the level pool (the grid holds no lake)
                    gauge_stage[k, j] = lv
                    gauge_depth[k, j] = max(lv - z[r, c], 0.0)
                    continue
                gauge_depth[k, j] = hn[r, c]
                gauge_stage[k, j] = z[r, c] + hn[r, c]
        if tw.traffic is not None:
            closed_car[k] = np.asarray(tw.traffic.link_closed_to("car"), bool)
            closed_amb[k] = np.asarray(tw.traffic.link_closed_to("emergency"), bool)
        rise = np.clip(np.nan_to_num(fmax) - h0, 0.0, None)
        for m, thr in enumerate(thresholds):
            above = weights * (rise > thr)
            share[k, n_w, m] = float(above.sum()) / wsum_city if wsum_city > 0 else 0.0
            for i in range(n_w):
                share[k, i, m] = float(above[wmask[i]].sum()) / wsum[i] if wsum[i] > 0 else 0.0
        if n_w:
            sig = (hazard_class(tw.hazard(), hz_t) >= 2) & (hn - h0 > 0)
            for i in range(n_w):
                ward_sig[k, i] = persons[i] * (float(weights[wmask[i] & sig].sum()) / wsum[i] if wsum[i] > 0 else 0.0)

    step_every = int(round(every / sim.dt))
    i0 = sim.iteration

    def on_step(s) -> None:
        np.fmax(fmax, np.where(valid, np.asarray(tw.depth(), float), np.nan), out=fmax)
        n = s.iteration - i0
        if n % step_every == 0:
            record(n // step_every)

    link_ids: list[str] = []
    link_names: list[str] = []
    if tw.traffic is not None:
        links = tw.traffic.network.links
        link_ids = [str(v) for v in (links["link_id"] if "link_id" in links.columns else links.index)]
        link_names = ([str(v) if v is not None else "" for v in links["name"]] if "name" in links.columns
                      else [""] * len(link_ids))
    record(0)
    from twin.output.schedules import IterationInterval

    sim.add_callback("forecast_record", on_step, IterationInterval(1))
    t_run = time.perf_counter()
    sim.run()
    run_s = time.perf_counter() - t_run
    response = np.zeros(0)
    if tw.services is not None:
        inc = tw.services.incident_table()
        if len(inc):
            med = (inc["kind"].astype(str) == "medical") & (inc["call_s"] >= t0)
            response = inc.loc[med, "response_time_s"].to_numpy(float)
    return {
        "member": p.member, "perturbation": p.to_dict(), "land": land, "warnings": list(tw.warnings), "track": track_info, "times_s": times,
        "depth": depth, "running_max": runmax,
        "place_depth": place_depth, "place_ids": pc["place_id"].astype(str).tolist() if len(pc) else [],
        "gauge_depth": gauge_depth, "gauge_stage": gauge_stage,
        "gauge_ids": gauges["place_id"].astype(str).tolist() if gauges is not None else [],
        "closed_car": closed_car, "closed_amb": closed_amb, "link_ids": link_ids, "link_names": link_names,
        "ward_names": wnames, "ward_significant_persons": ward_sig, "home_share": share,
        "response_s": response, "build_s": build_s, "run_s": run_s,
        "wall_s": time.perf_counter() - t_start,
        "flood_max_depth_m": float(np.nanmax(np.where(land, runmax[-1], np.nan))) if land.any() else 0.0,
    }
