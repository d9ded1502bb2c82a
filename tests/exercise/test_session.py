"""The paced session on a fake wall clock (twin.exercise.session.PacedSession over a real Simulation of
the small valley): steps when the clock says so, pause/resume/speed/next inject, injects fire with
their decision, decisions from seats act at the next coupling step."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.sim.helpers import X0, Y0, small_city
from twin.exercise.spec import Inject

from .helpers import advance, paced_session

ROAD = [X0 + 350.0, Y0 - 1100.0]


@pytest.fixture(scope="module")
def valley():
    return small_city()


def test_steps_follow_the_wall_clock_and_pause_freezes_it(tmp_path, valley):
    s, clock = paced_session(tmp_path, valley, speed=60.0)       # 60 model s per wall s: one 60 s step per wall second
    assert advance(s, clock, 0.9) == 0 and s.sim.time == 0.0
    assert advance(s, clock, 0.2) == 1 and s.sim.time == 60.0
    assert advance(s, clock, 3.0) == 3 and s.sim.time == 240.0
    assert max(s.lags) < 0.1                                 # taken as soon as due (the fake clock stands still)
    assert s.handle("x", "control", {"action": "pause"})[1]["state"] == "paused"
    assert advance(s, clock, 30.0) == 0 and s.sim.time == 240.0 and s.target() == 240.0
    s.handle("x", "control", {"action": "resume"})
    assert advance(s, clock, 0.9) == 0                      # re-anchored at the time reached: no burst
    assert advance(s, clock, 0.2) == 1 and s.sim.time == 300.0
    code, st = s.handle("x", "control", {"action": "speed", "value": 600})
    assert code == 200 and st["speed"] == 600.0
    assert advance(s, clock, 1.0) == 10 and s.sim.time == 900.0
    assert s.handle("x", "control", {"action": "speed", "value": 0})[0] == 422
    assert s.handle("x", "control", {"action": "rewind"})[0] == 422


def test_a_seat_decision_acts_at_the_next_coupling_step(tmp_path, valley):
    s, clock = paced_session(tmp_path, valley)
    advance(s, clock, 2.5)
    assert s.sim.time == 120.0
    code, body = s.handle("roads", "decide", {"type": "road_closure", "near": ROAD, "radius_m": 100})
    assert code == 202 and body["acts_at_s"] == 120.0 and body["issuer"] == "roads"
    assert body["acts_at_local"] == "2020-10-28T06:02:00+07:00"
    code, bad = s.handle("roads", "decide", {"type": "road_closure", "near": [0, 0]})
    assert code == 422 and bad["field"] == "near" and "outside the map" in bad["error"]
    code, bad = s.handle("roads", "decide", {"type": "road_closure", "near": ROAD, "at": 60})
    assert code == 422 and "in the past" in bad["error"]
    code, bad = s.handle("cmd", "decide", {"type": "warning"})
    assert code == 422 and "people" in bad["error"]          # this scenario has no people model
    pend = s.handle("roads", "decisions", None)[1]["pending"]
    assert [(p["type"], p["acts_at_s"], p["issuer"]) for p in pend] == [("road_closure", 120.0, "roads")]
    advance(s, clock, 1.0)
    log = pd.DataFrame(s.sim.twin.decisions.log)
    assert list(log["t_s"]) == [120.0] and list(log["source"]) == ["api"] and log["outcome"].iloc[0] == "applied"
    assert s.sim.twin.manual_closed.any()


def test_injects_fire_with_their_decision_and_next_inject_jumps(tmp_path, valley):
    injects = [Inject(at=600, message="the creek bridge collapses",
                      decision={"type": "road_closure", "near": ROAD, "radius_m": 100}),
               Inject(at=150, message="rain intensifies")]
    s, clock = paced_session(tmp_path, valley, injects=injects)
    advance(s, clock, 1.1)
    assert s.sim.time == 60.0 and s.fired == []
    advance(s, clock, 1.0)                                  # t = 120: the next step [120, 180) holds 150 s
    assert [f["inject_id"] for f in s.fired] == [1] and s.fired[0]["decision_id"] == -1
    assert s.fired[0]["fired_t_s"] == 120.0
    code, st = s.handle("x", "control", {"action": "next_inject"})
    assert code == 200 and st["state"] == "running"
    n_lags = len(s.lags)
    advance(s, clock, 0.05)                                 # runs straight to t = 600, the step holding it
    assert s.sim.time == 600.0 and len(s.lags) == n_lags     # a jump is no lag
    assert [f["inject_id"] for f in s.fired] == [1, 0]
    did = s.fired[1]["decision_id"]
    assert did >= 0 and s.sim.twin.decisions.pending[0].source == "exercise"
    advance(s, clock, 1.0)
    row = next(r for r in s.sim.twin.decisions.log if r["decision_id"] == did)
    assert (row["t_s"], row["at_s"], row["source"], row["issuer"]) == (600.0, 600.0, "exercise", "exercise")
    assert s.handle("x", "control", {"action": "next_inject"})[0] == 409     # none left
    inj = pd.read_parquet(tmp_path / "run" / "injects.parquet")
    assert list(inj["inject_id"]) == [1, 0] and list(inj["t_s"]) == [150.0, 600.0]
    assert list(inj["decision_id"]) == [-1, did]
    advance(s, clock, 20.0)
    assert s.state == "finished" and s.sim.finished
    assert s.handle("x", "control", {"action": "pause"})[0] == 409
    assert s.handle("x", "decide", {"type": "road_closure", "near": ROAD})[0] == 409


def test_the_session_loop_steps_first_and_answers_polls_while_behind(monkeypatch):
    """session_main behind the clock (a step always due) with 40 polls waiting: the due step goes
    first, then at most MAX_REQUESTS_PER_STEP requests, then the next step; every poll is answered."""
    import multiprocessing as mp

    from twin.exercise import session as S

    events: list[str] = []

    class Behind:
        state, sim, error = "running", None, None

        def __init__(self, cfg):
            pass

        def build(self):
            pass

        def due_in(self):
            return 0.0

        def tick(self):
            events.append("step")
            return True

        def status(self):
            return {"state": self.state}

        def handle(self, seat, op, payload):
            events.append("req")
            return 200, {}

        def stop(self):
            events.append("stopped")

    monkeypatch.setattr(S, "PacedSession", Behind)
    monkeypatch.setattr(S.os, "setpgrp", lambda: None)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    to_s, from_srv = mp.Pipe(duplex=False)[::-1]        # (send end, receive end)
    to_srv_r, to_srv_w = mp.Pipe(duplex=False)
    try:
        for i in range(40):
            to_s.send(("req", i, "seat", "kpis", None))
        to_s.send(("stop",))
        S.session_main(S.SessionConfig(exercise_yaml="-", run_dir="-"), from_srv, to_srv_w)
        answered = []
        while to_srv_r.poll(0):
            m = to_srv_r.recv()
            if m[0] == "resp":
                answered.append(m[1])
    finally:
        for c in (to_s, from_srv, to_srv_r, to_srv_w):
            c.close()
    n = S.MAX_REQUESTS_PER_STEP
    assert answered == list(range(40))
    assert events[0] == "step" and events[1:n + 1] == ["req"] * n and events[n + 1] == "step"
    assert events.count("step") == 3 and events[-1] == "stopped"
