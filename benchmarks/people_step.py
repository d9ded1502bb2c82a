"""People-step benchmark: 120,000 residents in 35,000 households + 3,000 tourists.

Prints one JSON line per case:
- ``people_step``: seconds per PeopleModel.run_one_step under a rising flood with warnings
  (decisions, walking, vehicle trips, hazard), agent-steps/s (households+parties and persons);
- ``mesa_empty_shuffle_do``: a plain Mesa model with the same number of agents (persons, and
  households) doing ``agents.shuffle_do("step")`` of an empty step, measured in the same invocation;
  ratios are the comparable numbers on a shared machine.

Usage: PYTHONPATH=. python benchmarks/people_step.py [--city tamky|synthetic] [--steps 24] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _city(name):
    if name.startswith("synthetic"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.agents.helpers import synthetic_city
        scale = int(name.split(":")[1]) if ":" in name else 8
        return synthetic_city(shelter_capacity=(4000, 4000, 4000), scale=scale)
    from twin.city import load_city
    return load_city(name)


def _flood(city, t, peak_s=6 * 3600.0):
    z = np.nan_to_num(np.asarray(city.terrain.elevation, float), nan=100.0)
    stage = np.quantile(z, 0.3) * min(t / peak_s, 1.0) + 0.5
    d = np.maximum(stage - z, 0.0)
    return d, np.where(d > 0, 0.4, 0.0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--city", default=None, help="city bundle (default tamky, synthetic if unavailable)")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--dt", type=float, default=300.0)
    ap.add_argument("--households", type=int, default=35_000)
    ap.add_argument("--persons", type=int, default=120_000)
    ap.add_argument("--tourists", type=int, default=3_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--traffic", action="store_true",
                    help="vehicle trips through TrafficModel (stepped outside the timed people step)")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import mesa

    from twin.agents import EmergencyServices, PeopleModel

    name = a.city
    if name is None:
        try:
            city = _city("tamky"); name = "tamky"
        except Exception:  # noqa: BLE001 - fall back when the bundle is not there yet
            city = _city("synthetic"); name = "synthetic"
    else:
        city = _city(name)
    traffic = None
    if a.traffic:
        from twin.traffic import TrafficModel
        traffic = TrafficModel(city.roads, dt=2.0, seed=0, record_links=False, threads=a.threads)
        # time spent inside the traffic model's add_trips / trip_status during people steps
        in_traffic = [0.0]
        for meth in ("add_trips", "trip_status"):
            fn = getattr(traffic, meth)

            def timed(*args, _fn=fn, **kw):
                s0 = time.perf_counter()
                try:
                    return _fn(*args, **kw)
                finally:
                    in_traffic[0] += time.perf_counter() - s0
            setattr(traffic, meth, timed)

    t0 = time.perf_counter()
    pm = PeopleModel(city, {"n_households": a.households, "n_persons": a.persons, "n_tourists": a.tourists},
                     np.random.default_rng(1), traffic=traffic)
    build_s = time.perf_counter() - t0
    es = EmergencyServices(city, {}, np.random.default_rng(2), people=pm)
    pm.issue_warning(1800.0, "cell_broadcast")
    pm.issue_warning(3600.0, "door_to_door")
    fields = [_flood(city, (k + 1) * a.dt) for k in range(a.steps)]
    times, es_times, tr_times = [], [], []
    for k in range(a.steps):
        if traffic is not None:
            s = time.perf_counter()
            traffic.run_one_step(a.dt)
            tr_times.append(time.perf_counter() - s)
        s = time.perf_counter()
        pm.run_one_step(a.dt, *fields[k])
        times.append(time.perf_counter() - s)
        s = time.perf_counter()
        es.run_one_step(a.dt)
        es_times.append(time.perf_counter() - s)
    per = float(np.mean(times))

    class Empty(mesa.Agent):
        def step(self):
            pass

    ref = {}
    for label, n in (("persons", pm.n_persons), ("households", pm.n_agents)):
        m = mesa.Model(rng=1)
        for _ in range(n):
            Empty(m)
        reps = 5
        s = time.perf_counter()
        for _ in range(reps):
            m.agents.shuffle_do("step")
        ref[label] = (time.perf_counter() - s) / reps

    print(json.dumps({"case": "people_step", "city": name, "households": int(pm.n_households),
                      "tourist_parties": int(pm.n_agents - pm.n_households), "persons": int(pm.n_persons),
                      "steps": a.steps, "dt_s": a.dt, "build_s": round(build_s, 3),
                      "step_s_mean": round(per, 5), "step_s_max": round(float(np.max(times)), 5),
                      "target_step_s": 0.2, "meets_target": per <= 0.2,
                      "agent_steps_per_s": round(pm.n_agents / per), "person_steps_per_s": round(pm.n_persons / per),
                      "services_step_s_mean": round(float(np.mean(es_times)), 5),
                      "traffic": traffic is not None,
                      "traffic_step_s_mean": round(float(np.mean(tr_times)), 5) if tr_times else None,
                      "vehicle_trips": int(traffic.n_trips) if traffic is not None else 0,
                      "step_s_in_traffic_calls_mean": round(in_traffic[0] / a.steps, 5) if traffic is not None else 0.0,
                      "incidents": len(es.incidents), "persons_by_state": pm.counts()}))
    for label, n in (("persons", pm.n_persons), ("households", pm.n_agents)):
        print(json.dumps({"case": "mesa_empty_shuffle_do", "agents": int(n), "as": label,
                          "step_s": round(ref[label], 5), "agent_steps_per_s": round(n / ref[label]),
                          "people_step_over_empty_step": round(per / ref[label], 3)}))


if __name__ == "__main__":
    main()
