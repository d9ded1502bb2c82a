"""Observables benchmark (issue 14, item 11a): what polling the tables costs next to stepping.

One JSON line per case on stdout; every comparison is a ratio within this one invocation (the
machine is shared, absolute times are not comparable between runs):

- ``traffic_polled_loop``: 15,000 trips on a 20 x 20 signalised grid, 60-s steps for 2 h. The same
  loop is timed four ways: no polling; polling ``trips["arrive_s"].notna().sum()`` after every step
  (the table is rebuilt once per step, routes incrementally); polling the table built as every
  access built it before (all routes from scratch); polling the counter ``n_arrived``. A second
  access within a step is a cache hit (``trips_cache_hit_ms``). Ratios are polled wall time / unpolled.
- ``people_table`` / ``incident_table``: one people + services step on the synthetic test city,
  then the time of a first ``state_table()`` / ``incident_table()`` after the step (a build) and
  of a repeated one (a cache hit, a copy).

Usage: PYTHONPATH=. python benchmarks/observables.py [--trips 15000] [--grid 20] [--horizon 7200]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from twin.roads import RoadNetwork  # noqa: E402
from twin.traffic import TrafficModel  # noqa: E402


def _trips(net, n_trips, seed=1):
    rng = np.random.default_rng(seed)
    ids = net.node_ids
    o = ids[rng.integers(0, len(ids), n_trips)]
    d = ids[rng.integers(0, len(ids), n_trips)]
    same = o == d
    while same.any():
        d[same] = ids[rng.integers(0, len(ids), int(same.sum()))]
        same = o == d
    return pd.DataFrame({"origin": o, "destination": d, "depart_s": np.sort(rng.uniform(0, 3600.0, n_trips))})


def _trips_as_before(tm):
    """``TrafficModel.trips`` as every access built it before the cache (full routes, new dtypes)."""
    from twin.traffic.model import TRIP_STATES, VEHICLE_CLASSES

    e = tm._engine
    n = e.n_vehicles
    ids = tm.network.node_ids
    st = e.get("state")
    dep, arr = e.get("depart"), e.get("arrive")
    df = pd.DataFrame({
        "origin": ids[e.get("origin")], "destination": ids[e.get("dest")],
        "vehicle_class": pd.Categorical.from_codes(e.get("cls").astype(np.int8), VEHICLE_CLASSES),
        "depart_s": dep, "arrive_s": arr, "travel_time_s": arr - dep,
        "state": pd.Categorical.from_codes(st.astype(np.int8), TRIP_STATES),
        "current_link": e.get("cur").astype(np.int64),
    }, index=pd.RangeIndex(n, name="trip_id"))
    df["route"] = tm._routes_full(st)
    df["n_links"] = df["route"].map(len)
    return df


def traffic_case(n_grid, n_trips, horizon):
    net = RoadNetwork.grid(n_grid, spacing_m=300.0, lanes=2)
    trips = _trips(net, n_trips)
    polls = {
        "none": None,
        "trips_frame_cached": lambda tm: int(tm.trips["arrive_s"].notna().sum()),
        "trips_frame_as_before": lambda tm: int(_trips_as_before(tm)["arrive_s"].notna().sum()),
        "n_arrived_counter": lambda tm: tm.n_arrived,
    }
    wall, arrived = {}, {}
    for name, poll in polls.items():
        tm = TrafficModel(net, dt=2.0, seed=0, threads=1)
        tm.add_trips(trips)
        s = time.perf_counter()
        seen = []
        while tm.time < horizon:
            tm.run_one_step(60.0)
            if poll is not None:
                seen.append(poll(tm))
        wall[name] = time.perf_counter() - s
        arrived[name] = seen[-1] if seen else tm.n_arrived
        if name == "trips_frame_cached":
            hit = _timed(lambda tm=tm: tm.trips, reps=20)
    assert len(set(arrived.values())) == 1, arrived  # every poll saw the same state
    steps = int(horizon // 60)
    return {"case": "traffic_polled_loop", "trips": n_trips, "grid": n_grid, "steps_60s": steps,
            "arrived": int(arrived["none"]),
            "step_ms_unpolled": round(1e3 * wall["none"] / steps, 3), "trips_cache_hit_ms": round(1e3 * hit, 3),
            **{f"wall_s_{k}": round(v, 3) for k, v in wall.items()},
            **{f"ratio_{k}_over_none": round(v / wall["none"], 3) for k, v in wall.items() if k != "none"}}


def _timed(fn, reps=5):
    s = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - s) / reps


def agents_case():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "agents"))
    from conftest import synthetic_city

    from twin.agents import EmergencyServices, PeopleModel

    city = synthetic_city(shelter_capacity=(4000, 4000, 4000), households=8000, persons=24000, scale=4)
    pm = PeopleModel(city, {"n_households": 8000, "n_persons": 24000, "n_tourists": 500}, np.random.default_rng(1))
    es = EmergencyServices(city, {}, np.random.default_rng(2), people=pm)
    z = np.asarray(city.terrain.elevation, float)
    out = []
    pm.issue_warning(0.0, "cell_broadcast")
    for k in range(3):
        d = np.maximum(np.quantile(z, 0.3) * (k + 1) / 3 + 0.5 - z, 0.0)
        pm.run_one_step(600.0, d, np.where(d > 0, 0.4, 0.0))
        es.run_one_step(600.0)
    for name, meth, build in (("people_table", pm.state_table, pm._state_frame),
                              ("incident_table", es.incident_table,
                               lambda: es._incident_frame([tuple(i.get(c) for c in _cols()) for i in es.incidents]))):
        rebuilt = _timed(build)
        meth()
        hit = _timed(meth)
        out.append({"case": name, "rows": int(len(meth())), "build_ms": round(1e3 * rebuilt, 3),
                    "cached_ms": round(1e3 * hit, 3), "ratio_cached_over_build": round(hit / rebuilt, 3)})
    return out


def _cols():
    from twin.agents.services import INCIDENT_COLUMNS
    return INCIDENT_COLUMNS


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--trips", type=int, default=15_000)
    ap.add_argument("--grid", type=int, default=20)
    ap.add_argument("--horizon", type=float, default=7200.0)
    a = ap.parse_args(argv)
    print(json.dumps(traffic_case(a.grid, a.trips, a.horizon)), flush=True)
    for line in agents_case():
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
