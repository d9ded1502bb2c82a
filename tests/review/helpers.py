"""A small exercise run for the review tests: Tam Kỳ at 300 m for 100 min under heavy rain (a 10 s traffic
step: the review's forks re-run most of it four times), with two
trainee decisions submitted mid-run (an early evacuation order, a road closure), one inject that
applies a decision (source ``exercise``), and the exercise folder files (exercise.yaml, injects.parquet)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

MOLAVE = Path(__file__).resolve().parents[2] / "scenarios" / "tamky_molave_2020.yaml"
FAST = ["resolution_m=300", "start=2020-10-28T08:00", "duration=100min", "coupling_step=5min",
        "flood.rain.time_shift=5h", "flood.rain.rain_scale=10", "outputs.fields_every=30min",
        "outputs.tables_every=10min", "outputs.kpis_every=30min", "outputs.checkpoint_every=10min",
        "outputs.png=false", "interventions=[]", "people.sample_fraction=0.05",
        "services.params={medical_rate_per_1000_per_day: 20}", "traffic.background_trips_per_day=2000",
        "traffic.dt=10"]
OBJECTIVES = [
    {"kind": "ward_evacuated_before_depth", "ward": "Tam Kỳ", "depth_m": 0.3},
    {"kind": "no_hospital_closed"},
    {"kind": "ambulance_response_p90_max", "minutes": 20},
    {"kind": "rescue_wait_max", "minutes": 60},
    {"kind": "evacuated_before_water_min", "share": 0.9, "depth_m": 0.1},
]
ROAD = [229000.0, 1723900.0]     # near the city hospital
END = 6000.0                     # model seconds


def exercise_run(out: Path, decisions: bool = True, overrides=()) -> Path:
    """Run the small exercise into ``out``; returns ``out``."""
    from twin.build import build_twin
    from twin.scenario import load_scenario
    from twin.simulation import Simulation

    sc = load_scenario(MOLAVE, FAST + list(overrides))
    sim = Simulation(build_twin(sc), out_dir=out)
    sim.run(until=600)
    if decisions:
        sim.submit({"type": "evacuation_order"}, source="api", issuer="commander")
    sim.run(until=1200)
    inj = sim.submit({"type": "warning", "channel": "tv", "label": "radio says: river rising"}, source="exercise",
                     issuer="exercise")
    sim.run(until=2400)
    if decisions:
        sim.submit({"type": "road_closure", "near": ROAD, "radius_m": 300}, source="dashboard", issuer="police")
    sim.run()
    doc = yaml.safe_load(sc.to_yaml())
    doc.update({"roles": {"commander": {"kinds": ["warning", "evacuation_order"]},
                          "police": {"kinds": ["road_closure"]}},
                "injects": [{"at": "20min", "message": "radio says: river rising",
                             "decision": {"type": "warning", "channel": "tv"}}],
                "objectives": OBJECTIVES})
    (out / "exercise.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    pd.DataFrame({"inject_id": ["inj-0"], "t_s": [1200.0], "message": ["radio says: river rising"],
                  "decision_id": pd.array([inj.seq], dtype="Int64"),
                  "fired_wall_time": ["2026-12-03T21:00:00.000+00:00"]}).to_parquet(out / "injects.parquet")
    return out
