"""The exercise API against bad input, on a real ``twin exercise`` process: every bad request gets a 4xx
with a JSON message (never a traceback or a 500), and the session still answers afterwards."""
from __future__ import annotations

import json

import pytest

from .helpers import Exercise


@pytest.fixture(scope="module")
def ex(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    with Exercise(out, "--start-paused", speed=600) as e:
        e.wait(lambda s: s["state"] == "paused", timeout=120)
        yield e
        assert e.stop() == 0                      # SIGTERM: the server stops the session...
    # ...which leaves a checkpoint of the unfinished run (twin run --resume finishes it)
    assert json.loads((out / "manifest.json").read_text())["status"] == "checkpointed"
    assert list((out / "checkpoints").glob("ckpt-*.npz"))


def _bad(r, code: int, *words: str) -> dict:
    assert r.status_code == code, (r.status_code, r.text)
    assert "Traceback" not in r.text and "File \"" not in r.text
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"]
    for w in words:
        assert w in body["error"], (w, body)
    return body


def test_every_bad_request_is_a_4xx_with_a_message_and_the_server_survives(ex):
    post = lambda seat, data, **kw: ex.api("POST", "decisions", seat, data=data, **kw)  # noqa: E731
    jpost = lambda seat, obj: post(seat, json.dumps(obj))  # noqa: E731
    # no token, a wrong one, a malformed header
    _bad(ex.api("GET", "session", None), 401, "seat token")
    _bad(ex.api("GET", "kpis", None, headers={"Authorization": "Bearer not-a-token"}), 401)
    _bad(ex.api("POST", "decisions", None, headers={"Authorization": "Basic abc"}, data="{}"), 401)
    _bad(ex.api("GET", "units", None, headers={"Authorization": "Bearer " + "x" * 5000}), 401)
    # malformed bodies
    _bad(post("flood_control", "{not json"), 400, "not valid JSON")
    _bad(post("flood_control", b"\xff\xfe\x00garbage"), 400, "UTF-8")
    _bad(post("flood_control", "[" * 60000), 400, "nested too deeply")
    _bad(post("flood_control", "[1, 2]"), 422, "JSON object")
    _bad(post("flood_control", ""), 400)
    _bad(post("flood_control", "x" * 100_000), 413, "bytes")
    # unknown kinds, forbidden kinds, bad fields
    assert _bad(jpost("flood_control", {"type": "teleport"}), 422, "unknown decision kind")["field"] == "type"
    _bad(jpost("flood_control", {"no_type": 1}), 422, "unknown decision kind")
    _bad(jpost("flood_control", {"type": "warning"}), 403, "may not issue 'warning'")
    _bad(jpost("dispatch", {"type": "road_closure", "near": [229700, 1722300]}), 403)
    assert _bad(jpost("flood_control", {"type": "road_closure", "near": [229700, 1722300], "radius_m": -3}),
                422, "radius_m")["field"] == "radius_m"
    _bad(jpost("flood_control", {"type": "road_closure", "near": [229700, 1722300], "colour": "red"}), 422,
         "unknown field")
    _bad(jpost("dispatch", {"type": "dispatch", "unit_id": "abc", "place": "x"}), 422, "unit_id")
    _bad(jpost("dispatch", {"type": "dispatch", "unit_id": 10**30, "xy": [229500, 1721500]}), 422, "unit_id")
    # out-of-domain coordinates, non-finite numbers
    assert _bad(jpost("flood_control", {"type": "road_closure", "near": [0, 0]}), 422,
                "outside the map")["field"] == "near"
    _bad(jpost("flood_control", {"type": "road_closure", "near": [1e12, 5]}), 422, "near")
    _bad(post("flood_control", '{"type": "road_closure", "near": [NaN, 1722300]}'), 422, "near")
    _bad(post("flood_control", '{"type": "road_closure", "near": [Infinity, 1722300]}'), 422)
    _bad(jpost("flood_control", {"type": "levee", "polyline": [[1, 2], [3, 4]], "crest_m": 5}), 422, "outside the map")
    # the clock
    cpost = lambda seat, obj: ex.api("POST", "control", seat, data=json.dumps(obj))  # noqa: E731
    # times in the past and after the end: slow the clock, jump to the first inject (10 min), pause
    assert cpost("commander", {"action": "speed", "value": 1}).status_code == 200
    assert cpost("commander", {"action": "next_inject"}).status_code == 200
    ex.wait(lambda s: s["t_s"] == 600.0)
    assert cpost("commander", {"action": "pause"}).json()["state"] == "paused"
    assert _bad(jpost("commander", {"type": "warning", "at": 120}), 422, "in the past")["field"] == "at"
    assert _bad(jpost("commander", {"type": "warning", "at": -60}), 422, ">= 0")["field"] == "at"
    _bad(jpost("commander", {"type": "warning", "at": "5h"}), 422, "after the end")
    _bad(jpost("commander", {"type": "warning", "at": "soon"}), 422, "at")
    _bad(cpost("dispatch", {"action": "pause"}), 403, "does not steer the clock")
    _bad(cpost("commander", {"action": "rewind"}), 422, "action")
    _bad(cpost("commander", {"action": "speed", "value": "fast"}), 422, "value")
    _bad(cpost("commander", {"action": "speed", "value": -1}), 422, "speed")
    _bad(cpost("commander", {"action": "speed", "value": 1e12}), 422, "speed")
    _bad(cpost("commander", {"action": "speed"}), 422, "value")
    _bad(ex.api("POST", "control", "commander", data="pause"), 400)
    # routes and methods that do not exist
    _bad(ex.api("GET", "nothing-here", "commander"), 404)
    _bad(ex.api("DELETE", "decisions", "commander"), 405)
    _bad(ex.api("PUT", "session", "commander", data="{}"), 405)
    # a Host header the server does not answer to (DNS rebinding)
    r = ex.api("GET", "session", "commander", headers={"Host": "evil.example"})
    assert r.status_code == 400 and "unknown Host" in r.text
    # still there, still paused, nothing queued by all that, and a good decision is accepted
    s = ex.session("commander")
    assert s["state"] == "paused" and s["t_s"] == 600.0
    d = ex.api("GET", "decisions", "commander").json()
    assert d["pending"] == [] and d["decisions"] == []
    ok = ex.api("POST", "decisions", "commander", json={"type": "warning", "channel": "tv", "area": ["Tam Kỳ"]})
    assert ok.status_code == 202, ok.text
    assert ok.json()["acts_at_s"] == 600.0 and ok.json()["issuer"] == "commander"
    assert ex.proc.poll() is None


def test_openapi_describes_every_route(ex):
    r = ex.api("GET", "openapi.json", "dispatch")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/session", "/control", "/decisions", "/incidents", "/units", "/kpis", "/openapi.json"}
    assert set(doc["paths"]["/decisions"]) == {"get", "post"}
    assert doc["components"]["securitySchemes"]["seat"] == {"type": "http", "scheme": "bearer"}
    # every documented route answers (GET ones) with JSON for a seat
    for path, ops in doc["paths"].items():
        if "get" in ops:
            g = ex.api("GET", path.lstrip("/"), "dispatch")
            assert g.status_code == 200 and isinstance(g.json(), dict), path
    units = ex.api("GET", "units", "dispatch").json()["units"]
    assert units and {"unit_id", "kind", "x", "y", "phase"} <= set(units[0])
    kp = ex.api("GET", "kpis", "dispatch").json()
    assert {"t_s", "flooded_area_m2", "services", "decisions"} <= set(kp)


def test_seats_json_is_private_and_holds_no_token(ex):
    path = ex.out / "seats.json"
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    seats = json.loads(text)
    assert set(seats) == {"control", "commander", "dispatch", "flood_control"} == set(ex.tokens)
    assert all(tok not in text for tok in ex.tokens.values())
    assert seats["dispatch"]["kinds"] == ["dispatch", "extra_units"] and not seats["dispatch"]["control"]
    assert seats["commander"]["control"] and len(seats["commander"]["token_sha256"]) == 64
