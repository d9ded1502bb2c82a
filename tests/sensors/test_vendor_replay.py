"""Vendor MQTT JSON mapping and `twin sensors replay` through a real broker into the ingester."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import pytest

from tests.sensors.helpers import REPO, twin_env
from twin.sensors import SensorStore
from twin.sensors.adapters import Decoded, Decoder, VendorMapping, get_path
from twin.sensors.ingest import Ingester
from twin.sensors.model import Datastream

VENDOR_CFG = {
    "datastreams": [{"id": "TK07-level", "station": "TK07", "property": "road_water_depth", "unit": "cm"},
                    {"id": "TK07-rain", "station": "TK07", "property": "rain_rate", "unit": "mm/h"}],
    "mqtt": {"client_id": "vendor-test", "vendor": [{
        "topic": "ioc/tamky/+/telemetry", "pattern": "ioc/tamky/{station}/telemetry",
        "items": "readings", "datastream": "{station}-{kind}", "time": "ts", "time_format": "epoch_ms",
        "value": "v", "unit_path": "u"}]},
}


def test_vendor_decoder_paths_templates_units():
    dec = Decoder({"TK07-level": Datastream("TK07-level", "TK07", "road_water_depth", "cm")},
                  VENDOR_CFG["mqtt"]["vendor"])
    out = Decoded()
    payload = json.dumps({"readings": [{"kind": "level", "ts": 1603843200000, "v": 35, "u": "cm"},
                                       {"kind": "level", "ts": 1603843260000, "v": 0.4, "u": "m"}]})
    dec.decode("ioc/tamky/TK07/telemetry", payload.encode(), np.datetime64("now"), out)
    assert out.ids == ["TK07-level", "TK07-level"]
    assert out.results == [pytest.approx(0.35), pytest.approx(0.4)]
    assert out.times[0] == np.datetime64("2020-10-28T00:00:00", "us")
    dec.decode("ioc/tamky/TK07/telemetry", json.dumps({"readings": [{"kind": "level", "ts": 1, "v": 1, "u": "m3/s"}]}),
               np.datetime64("now"), out)
    dec.decode("ioc/other/TK07", b"{}", np.datetime64("now"), out)
    assert "does not fit" in out.rejects[0][2] and "matches no" in out.rejects[1][2]
    assert get_path({"a": {"b": [{"c": 5}]}}, "a.b[0].c") == 5
    with pytest.raises(KeyError, match="x"):
        get_path({"a": 1}, "a.x")
    assert VendorMapping(topic="a/+/c", datastream="d", value="v").match("a/b/c") == {}


def test_vendor_and_replay_through_broker(broker, tmp_path):
    store = SensorStore(tmp_path / "v.duckdb")
    ing = Ingester(broker, store, VENDOR_CFG, flush_interval_s=0.05)
    th = threading.Thread(target=ing.run, daemon=True)
    th.start()
    assert ing.wait_subscribed(10)
    host, port = broker.split("//")[1].split(":")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="vendor-pub", protocol=mqtt.MQTTv5)
    pub.connect(host, int(port))
    pub.loop_start()
    msg = {"readings": [{"kind": "level", "ts": 1603843200000 + 60000 * i, "v": 10 + i, "u": "cm"} for i in range(5)]}
    pub.publish("ioc/tamky/TK07/telemetry", json.dumps(msg), qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    # replay a CSV series (wide, local time) at full speed with the CLI
    csv = tmp_path / "rain.csv"
    t = pd.date_range("2020-10-28 07:00", periods=30, freq="10min")
    pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M"), "TK07-rain": np.linspace(0, 29, 30)}).to_csv(csv, index=False)
    cfgf = tmp_path / "cfg.json"
    cfgf.write_text(json.dumps(VENDOR_CFG))
    r = subprocess.run([sys.executable, "-m", "twin", "sensors", "replay", str(csv), "--broker", broker, "--speed", "0",
                        "--config", str(cfgf)], cwd=REPO, env=twin_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"published": 30, "rows": 30}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and store.count() < 35:
        time.sleep(0.1)
    ing.stop()
    th.join(10)
    lvl = store.observations("TK07-level")
    np.testing.assert_allclose(lvl["result"], (10 + np.arange(5)) / 100)
    rain = store.observations("TK07-rain")
    assert len(rain) == 30 and rain["phenomenon_time"].iloc[0] == pd.Timestamp("2020-10-28 00:00")
    np.testing.assert_allclose(rain["result"], np.linspace(0, 29, 30))
    store.close()


def test_replay_paces_by_speed(broker, tmp_path):
    from twin.sensors.replay import replay

    s = pd.DataFrame({"datastream_id": "x", "phenomenon_time": pd.date_range("2020-01-01", periods=4, freq="60s"),
                      "result": [1.0, 2.0, 3.0, 4.0]})
    t0 = time.monotonic()
    assert replay(s, broker, speed=120.0) == 4        # 180 s of data at 120x = 1.5 s
    assert 1.4 < time.monotonic() - t0 < 5.0


def test_cli_typhoon_replay_publishes_derived_rain(broker, tmp_path):
    from tests.sensors.test_qc_fixtures import CFG
    from twin.sensors import typhoon

    store = SensorStore(tmp_path / "ty.duckdb")
    ing = Ingester(broker, store, CFG, flush_interval_s=0.05, client_id="ty-test")
    th = threading.Thread(target=ing.run, daemon=True)
    th.start()
    assert ing.wait_subscribed(10)
    r = subprocess.run([sys.executable, "-m", "twin", "sensors", "replay", "--typhoon", "MOLAVE:2020", "--broker", broker,
                        "--speed", "0", "--config", str(CFG)], cwd=REPO, env=twin_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "derived" in r.stderr
    n = json.loads(r.stdout.strip().splitlines()[-1])["published"]
    tr = typhoon.load_track("MOLAVE", 2020)
    assert n == len(pd.date_range(tr.start, tr.end, freq="1h"))      # one rain gauge in the config
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and store.count() < n:
        time.sleep(0.1)
    ing.stop()
    th.join(10)
    rain = store.observations("rg1-rain").set_index("phenomenon_time")["result"]
    # the gauge's configured unit is mm per 10 min; the replay says mm/h in parameters.unit
    from twin.sensors.adapters import config_entities, load_config

    st = {s.station_id: s for s in config_entities(load_config(CFG))[0]}["TK-RG1"]
    for t in (pd.Timestamp("2020-10-28 03:00"), pd.Timestamp("2020-10-28 06:00")):
        assert rain.loc[t] == pytest.approx(float(typhoon.storm_rain_field(tr, t, st.x, st.y)), rel=1e-9)
    assert rain.max() > 1.0
    store.close()
