"""The SensorThings MQTT fast path decodes exactly what the general path decodes.

``Decoder._sta_fast`` handles the one shape devices publish (``{"phenomenonTime": "...Z", "result":
number}``) with less work; anything else must fall through to ``Decoder._sta``. Every payload below
is decoded twice, once with the fast path and once with it switched off, and the rows and reject
reasons must be identical.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from twin.sensors.adapters import Decoded, Decoder
from twin.sensors.model import Datastream

TOPIC = "v1.1/Datastreams({})/Observations"

CASES = [
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:00:00Z", "result": 1.5}'),
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:01:00Z", "result": 3}'),              # int result
    ("st1", b'{"phenomenonTime": "2020-10-28T00:02:00Z", "result": 120.0}'),          # cm -> m
    ("st1", b'{"phenomenonTime": "2020-10-28T00:03:00Z", "result": 1.2, "parameters": {"unit": "m"}}'),
    ("rd1", b'{"phenomenonTime": "2020-10-28T00:10:00Z", "result": 2.0}'),            # mm per 600 s -> mm/h
    ("new", b'{"phenomenonTime": "2020-10-28T00:04:00Z", "result": -0.0}'),           # unregistered
    ("'a b'", b'{"phenomenonTime": "2020-10-28T00:05:00Z", "result": 4.0}'),          # quoted id
    ("rg1", b'{"result": 1.0, "phenomenonTime": "2020-10-28T00:06:00Z"}'),            # key order
    ("rg1", b'{"phenomenonTime": "2020-10-28T07:07:00+07:00", "result": 1.0}'),       # offset
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:08:00.250Z", "result": 1.0}'),        # fractional seconds
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:00:00Z/2020-10-28T00:09:00Z", "result": 1.0}'),  # interval
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:10:00Z", "result": "2.5"}'),          # numeric string
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:11:00Z", "result": 1.0, "resultTime": "x"}'),
    # malformed: every one must be rejected with the general path's reason
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:12:00Z", "result": NaN}'),
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:13:00Z", "result": Infinity}'),
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:14:00Z", "result": -Infinity}'),
    ("rg1", ('{"phenomenonTime": "2020-10-28T00:15:00Z", "result": ' + "9" * 400 + "}").encode()),
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:16:00Z", "result": true}'),
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:17:00Z", "result": null}'),
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:18:00Z", "result": "high"}'),
    ("rg1", b'{"phenomenonTime": "2020-13-28T00:19:00Z", "result": 1.0}'),            # month 13
    ("rg1", b'{"phenomenonTime": "2020-10-28X00:20:00Z", "result": 1.0}'),
    ("rg1", b'{"phenomenonTime": 1603843200, "result": 1.0}'),
    ("rg1", b'{"phenomenonTime": "2020-10-28T00:21:00Z"}'),
    ("rg1", b'{"result": 1.0, "x": 2}'),
    ("rg1", b'[{"phenomenonTime": "2020-10-28T00:22:00Z", "result": 1.0}]'),
    ("rg1", b'{not json'),
    ("rg1", b'\xff\xfe\x00garbage'),
    ("rg1", b''),
    (" ", b'{"phenomenonTime": "2020-10-28T00:23:00Z", "result": 1.0}'),             # blank id
    ("", b'{"phenomenonTime": "2020-10-28T00:24:00Z", "result": 1.0}'),              # empty id
    ("bad", b'{"phenomenonTime": "2020-10-28T00:25:00Z", "result": 1.0}'),           # unit unfit for property
]


def _decoder():
    return Decoder({"rg1": Datastream("rg1", "S1", "rain_rate", unit="mm/h"),
                    "st1": Datastream("st1", "S2", "river_stage", unit="cm"),
                    "rd1": Datastream("rd1", "S3", "rain_rate", unit="mm", interval_s=600),
                    "bad": Datastream("bad", "S4", "river_stage", unit="cm")})


def _decode_all(fast: bool):
    dec = _decoder()
    if not fast:
        dec._sta_fast = lambda *a: False
    if "bad" in dec.datastreams:   # a stored datastream whose unit no longer converts (edited by hand)
        dec.datastreams["bad"].unit = "mm/h"
    out = Decoded()
    rec = np.datetime64("2020-10-28T00:00:00", "us")
    for ds, payload in CASES:
        dec.decode(TOPIC.format(ds), payload, rec, out)
    return out


def test_fast_path_equals_general_path():
    fast, slow = _decode_all(True), _decode_all(False)
    assert fast.ids == slow.ids
    assert [np.datetime64(t, "us") for t in fast.times] == [np.datetime64(t, "us") for t in slow.times]
    assert fast.results == slow.results                          # exact, not approximately
    assert [type(r) for r in fast.results] == [float] * len(fast.results)
    assert fast.payloads == slow.payloads and fast.topics == slow.topics
    assert [r[:3] for r in fast.rejects] == [r[:3] for r in slow.rejects]
    # what was accepted, and converted, is what it should be
    got = dict(zip([f"{i}@{np.datetime64(t, 's')}" for i, t in zip(fast.ids, fast.times)], fast.results))
    assert got["rg1@2020-10-28T00:01:00"] == 3.0
    assert got["st1@2020-10-28T00:02:00"] == pytest.approx(1.2, abs=1e-12)
    assert got["st1@2020-10-28T00:03:00"] == 1.2
    assert got["rd1@2020-10-28T00:10:00"] == pytest.approx(12.0, abs=1e-12)   # 2 mm in 10 min
    assert got["a b@2020-10-28T00:05:00"] == 4.0
    assert got["rg1@2020-10-28T00:07:00"] == 1.0                 # +07:00 converted to UTC
    assert got["rg1@2020-10-28T00:09:00"] == 1.0                 # interval: its end
    assert got["rg1@2020-10-28T00:10:00"] == 2.5
    assert len(fast.ids) == 13
    reasons = [r[2] for r in fast.rejects]
    assert len(reasons) == len(CASES) - 13
    assert sum("not finite" in r for r in reasons) == 4          # NaN, +-Infinity, a 400-digit integer
    assert any("payload is not UTF-8" in r for r in reasons)
    assert any("empty datastream id" in r for r in reasons)
    assert any("does not fit observed property" in r for r in reasons)


def test_fast_path_takes_the_common_shape():
    """The fast path must actually be used for the shape devices send (else it is dead code)."""
    dec = _decoder()
    calls = []
    general = dec._sta
    dec._sta = lambda *a: (calls.append(a), general(*a))
    out = Decoded()
    for i in range(100):
        payload = json.dumps({"phenomenonTime": f"2020-10-28T00:{i % 60:02d}:{i // 60:02d}Z", "result": i / 10}).encode()
        dec.decode(TOPIC.format("rg1"), payload, np.datetime64("2020-10-28T00:00:00", "us"), out)
    assert len(out.ids) == 100 and not out.rejects
    assert calls == []
    assert dec.sta_datastream(TOPIC.format("rg1")) == "rg1"
    assert dec.sta_datastream("v1.1/Things(1)/Observations") is None


def test_non_bytes_payloads_take_the_general_path():
    """json.loads would read a UTF-16 bytearray; the general path rejects anything not UTF-8."""
    utf16 = json.dumps({"phenomenonTime": "2020-10-28T00:00:00Z", "result": 1.0}).encode("utf-16")
    for payload in (bytearray(utf16), memoryview(utf16)):
        out = Decoded()
        _decoder().decode(TOPIC.format("rg1"), payload, np.datetime64("2020-10-28T00:00:00", "us"), out)
        assert out.ids == [] and [r[2] for r in out.rejects] == ["payload is not UTF-8"]
    out = Decoded()   # a str payload (tests, replay in-process) is decoded like bytes
    _decoder().decode(TOPIC.format("rg1"), '{"phenomenonTime": "2020-10-28T00:00:00Z", "result": 1.0}',
                      np.datetime64("2020-10-28T00:00:00", "us"), out)
    assert out.ids == ["rg1"] and out.results == [1.0] and not out.rejects
