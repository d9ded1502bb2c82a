"""How many unacknowledged messages a broker lets the ingester hold (it acknowledges after commit).

The ingester PUBACKs a message only once its row is committed, so the broker's in-flight window
bounds how many messages one commit can take. Measured against a real mosquitto left at its
default ``max_inflight_messages`` (20): over MQTT 5 the ingester announces Receive Maximum 65535
and the broker honours it (the whole burst arrives before any commit); over MQTT 3.1.1 the broker's
20 applies, which is why the README asks for ``max_inflight_messages 0`` with ``--protocol 3.1.1``.
Either way nothing is lost: the rest arrives as commits acknowledge.
"""
from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from tests.sensors.helpers import start_mosquitto, stop_pid
from twin.sensors import SensorStore
from twin.sensors.ingest import Ingester

N = 300


@pytest.mark.mosquitto
@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol,first_window", [("5", N), ("3.1.1", 20)])
def test_window_at_mosquitto_default(tmp_path, protocol, first_window):
    proc, port = start_mosquitto(tmp_path, max_inflight_messages=None)   # the broker's default (20)
    try:
        st = SensorStore(tmp_path / "w.duckdb")
        ing = Ingester(f"mqtt://127.0.0.1:{port}", st, None, client_id=f"win-{protocol}",
                       flush_interval_s=3600, protocol=protocol)
        ing.start()
        assert ing.wait_subscribed(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="win-pub", protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        infos = [pub.publish("v1.1/Datastreams(w1)/Observations",
                             json.dumps({"phenomenonTime": f"2020-10-28T{i // 60:02d}:{i % 60:02d}:00Z",
                                         "result": i / 10}), qos=1) for i in range(N)]
        for i in infos:
            i.wait_for_publish(10)
        pub.disconnect()
        pub.loop_stop()
        time.sleep(1.0)                  # let the broker send all it will send without acknowledgements
        first = ing.flush()              # commit, then acknowledge
        total = first
        deadline = time.monotonic() + 20
        while total < N and time.monotonic() < deadline:
            time.sleep(0.2)
            total += ing.flush()
        ing.close()
        assert first == first_window
        assert total == N
        assert st.count() == N and st.count("rejects") == 0
        st.close()
    finally:
        stop_pid(proc)
