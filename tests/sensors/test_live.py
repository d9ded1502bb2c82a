"""`twin live`: the coupled Simulation paced by a speed factor, assimilating MQTT observations."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd

from tests.sim.helpers import X0, Y0, small_city, write_scenario
from twin.output.recorders import load_checkpoint
from twin.sensors.live import run_live

SCENARIO = """
name: valley-live
description: live test valley
city: valley
resolution_m: 20
start: 2020-10-28T07:00
duration: 30min
coupling_step: 60
seed: 1
flood:
  dtype: float64
  rain: {kind: design_storm, peak_mm_per_h: 60, duration: 30min, peak_fraction: 0.3}
outputs:
  fields_every: 5min
  kpis_every: 5min
  tables_every: 5min
  chunk_records: 2
"""

GX, GY = X0 + 610.0, Y0 - 610.0     # a cell centre in the valley


def test_live_run_assimilates_observations_as_they_arrive(broker, tmp_path):
    cfg = {
        "stations": [{"id": "G1", "x": GX, "y": GY}, {"id": "R1", "x": X0 + 200.0, "y": Y0 - 600.0}],
        "datastreams": [{"id": "g1-wl", "station": "G1", "property": "water_level", "unit": "m"},
                        {"id": "r1-rain", "station": "R1", "property": "rain_rate", "unit": "mm/h"}],
        "assimilation": {"nudging": {"relaxation_time_s": 120, "radius_m": 100, "max_age_s": 600},
                         "rain": {"method": "idw", "max_age_s": 900}},
    }
    host, port = broker.split("//")[1].split(":")
    published = {}
    seen = []

    def on_step(sim, info):
        seen.append(info)
        if sim.iteration == 4:
            os.kill(os.getpid(), signal.SIGUSR1)      # "fork a forecast from the live state now"
        if sim.iteration == 1:         # the twin is live: the field devices start reporting
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="field", protocol=mqtt.MQTTv5)
            c.connect(host, int(port))
            c.loop_start()
            # 07:00 local = 00:00 UTC; observed level 3.2 m at the gauge from 07:01, rain 20 mm/h
            msgs = []
            for k in range(1, 31):
                t = (np.datetime64("2020-10-28T00:00:00") + np.timedelta64(60 * k, "s")).astype(str) + "Z"
                msgs.append(("v1.1/Datastreams(g1-wl)/Observations", {"phenomenonTime": t, "result": 3.2}))
                msgs.append(("v1.1/Datastreams(r1-rain)/Observations", {"phenomenonTime": t, "result": 20.0}))
            msgs.append(("v1.1/Datastreams(g1-wl)/Observations", {"phenomenonTime": "garbage", "result": 1}))
            for tp, p in msgs:
                c.publish(tp, json.dumps(p), qos=1).wait_for_publish(10)
            c.disconnect()
            c.loop_stop()
            published["n"] = len(msgs)

    run_dir = tmp_path / "run"
    t0 = pd.Timestamp.now()
    rc = run_live(write_scenario(tmp_path, SCENARIO), broker, config=cfg, speed=900.0, city=small_city(),
                  run_dir=run_dir, duration_s=600, on_step=on_step, client_id="live-test")
    wall = (pd.Timestamp.now() - t0).total_seconds()
    assert rc == 0
    assert wall >= 600 / 900 * 0.9              # paced: 600 model s at 900x is at least ~0.67 s
    live = json.loads((run_dir / "live.json").read_text())
    assert live["t_s"] == 600.0
    assert live["observations"] == 60 and live["rejects"] == 1
    # nudging pulled the model level at the gauge toward the observed 3.2 m
    st = {r["datastream_id"]: r for r in live["nudging_stats"]}["g1-wl"]
    assert st["n"] >= 3 and abs(st["bias_after_m"]) < abs(st["bias_before_m"])
    assert live["assimilation_last"]["rain_mean_mm_per_h"] == 20.0   # one gauge: a uniform 20 mm/h
    assert (run_dir / "manifest.json").exists() and (run_dir / "fields.nc").exists()
    assert (run_dir / "sensors.duckdb").exists()
    ckpt = live["last_checkpoint"]
    state = load_checkpoint(ckpt)
    assert state["time_s"] == 300.0 and "assimilator" in state["twin"]
    assert [i["iteration"] for i in seen] == list(range(0, 11))


def test_scenario_sensors_section_assimilates_in_a_normal_run(tmp_path):
    """`sensors: {enabled, store, assimilation}` in a scenario -> build_twin's Assimilator at step 6."""
    from twin.sensors import Datastream, SensorStore, Station
    from twin.simulation import run_scenario

    store = tmp_path / "obs.duckdb"
    with SensorStore(store) as st:
        st.register([Station("G1", x=GX, y=GY)], [Datastream("g1-wl", "G1", "water_level", "m")])
        t = np.datetime64("2020-10-28T00:00:00") + np.arange(0, 1800, 60) * np.timedelta64(1, "s")
        st.insert("g1-wl", t, np.full(t.size, 3.2))
    text = SCENARIO + f"""
sensors:
  enabled: true
  store: {store}
  assimilation:
    nudging: {{relaxation_time_s: 120, radius_m: 100, max_age_s: 600}}
"""
    sim = run_scenario(write_scenario(tmp_path, text), city=small_city(), stop_time=600)
    a = sim.twin.assimilator
    stats = a.statistics().set_index("datastream_id").loc["g1-wl"]
    assert stats["n"] == 10
    assert abs(stats["bias_after_m"]) < abs(stats["bias_before_m"])
    a.close()
