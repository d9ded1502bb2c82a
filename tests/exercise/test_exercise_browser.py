"""Two seats steer a real ``twin exercise`` process from two Chromium tabs: pause, a road closure and a
boat dispatch from different seats, a forbidden kind refused, resume to the end; the decisions land in
decisions.parquet at the model times the pages showed, and ``twin replay`` reproduces the KPIs."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from .helpers import Exercise


def _acts_at(text: str) -> float:
    m = re.search(r"acts at t = (\d+) s", text)
    assert m, text
    return float(m.group(1))


def _join(browser, ex, seat):
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    ctx.set_default_timeout(60000)
    page = ctx.new_page()
    page.goto(ex.url + "/exercise")
    page.fill("#ex-token", ex.tokens[seat])
    page.click("#ex-join")
    page.wait_for_function(f"() => document.querySelector('#ex-seat').innerText.startsWith('Seat {seat}')")
    return ctx, page


def _issue(page, decision: dict) -> str:
    before = page.inner_text("#ex-result")
    page.fill("#ex-decision", json.dumps(decision))
    page.click("#ex-issue")
    page.wait_for_function(f"() => document.querySelector('#ex-result').innerText !== {json.dumps(before)}")
    return page.inner_text("#ex-result")


@pytest.mark.browser
def test_two_seats_steer_an_exercise_and_replay_reproduces_it(browser, tmp_path, artifacts_dir, capsys):
    run = tmp_path / "run"
    # flood_control may steer the clock in this run (the shipped file gives that to the commander)
    with Exercise(run, "--set", "roles.flood_control.control=true", speed=300) as ex:
        ctx_a, roads = _join(browser, ex, "flood_control")
        ctx_b, disp = _join(browser, ex, "dispatch")
        try:
            roads.wait_for_function("() => document.querySelector('#ex-state').innerText === 'running'"
                                    " && !document.querySelector('#ex-time').innerText.startsWith('t = 0 s')")
            roads.click("#ex-pause")
            roads.wait_for_function("() => document.querySelector('#ex-control-msg').innerText.startsWith('pause: paused')")
            paused = ex.session()
            assert paused["state"] == "paused"
            t_pause = paused["t_s"]
            # both seats see the same clock
            for p in (roads, disp):
                p.wait_for_function(f"() => document.querySelector('#ex-time').innerText.startsWith('t = {t_pause:.0f} s')"
                                    " && document.querySelector('#ex-state').innerText === 'paused'")
            # a road closure from flood_control, a boat from dispatch, a warning refused to dispatch
            closure = _issue(roads, {"type": "road_closure", "near": [229700, 1722300], "radius_m": 250,
                                     "label": "closed by the roads seat"})
            assert closure.startswith("Decision ") and "(road_closure) queued" in closure
            units = ex.api("GET", "units", "dispatch").json()["units"]
            boat = next(u for u in units if u["kind"] == "boat" and u["phase"] == "idle")
            sent = _issue(disp, {"type": "dispatch", "unit_id": boat["unit_id"], "xy": [229500, 1721500]})
            assert "(dispatch) queued" in sent
            refused = _issue(disp, {"type": "warning", "channel": "tv"})
            assert refused.startswith("Refused (403)") and "may not issue 'warning'" in refused
            assert _acts_at(closure) == _acts_at(sent) == t_pause      # paused: both act at the next step's start
            # the builder's drawing tools on the Exercise page: a marker on the city's map gives the decision
            # JSON (a road closure near it) that the seat would issue; not issued here (replay below)
            roads.wait_for_selector("#ex-map .place-marker", timeout=60000)
            roads.fill("#ex-decision", "")
            roads.fill("#ex-params", '{"radius_m": 200}')
            roads.press("#ex-params", "Enter")
            roads.click("#ex-map .leaflet-draw-draw-marker")
            box = roads.locator("#ex-map").bounding_box()
            roads.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.55 * box["height"])
            roads.wait_for_function("() => document.querySelector('#ex-decision').value.includes('road_closure')",
                                    timeout=60000)
            drawn = json.loads(roads.input_value("#ex-decision"))
            assert drawn["type"] == "road_closure" and drawn["radius_m"] == 200 and len(drawn["near"]) == 2
            roads.screenshot(path=str(artifacts_dir / "exercise_roads_seat.png"), full_page=True)
            # the pending decisions are on both pages
            for p in (roads, disp):
                p.wait_for_function("() => document.querySelector('#ex-decisions').innerText.includes('pending')")
            roads.click("#ex-resume")
            roads.fill("#ex-speed", "3600")
            roads.click("#ex-speed-set")
            for p in (roads, disp):
                p.wait_for_function("() => document.querySelector('#ex-state').innerText === 'finished'", timeout=120000)
            assert "t = 3600 s" in disp.inner_text("#ex-time")
            final = ex.session("dispatch")
            assert [o["kind"] for o in final["objectives"]] == ["ambulance_response_p90_max", "rescue_wait_max"]
            assert all(o["status"] in ("met", "missed", "unmeasured") for o in final["objectives"])
            assert "rescue_wait_max" in disp.inner_text("#ex-objectives")
            text = disp.inner_text("#ex-decisions")
            assert "road_closure by flood_control (api): applied" in text
            assert "dispatch by dispatch (api): applied" in text
            assert "hospital_closure by exercise (exercise): applied" in text        # the inject's decision
            injects = disp.inner_text("#ex-injects")
            assert "lost power" in injects and "Hydromet" in injects
            disp.screenshot(path=str(artifacts_dir / "exercise_dispatch_seat.png"), full_page=True)
        finally:
            ctx_a.close()
            ctx_b.close()
    log = pd.read_parquet(run / "decisions.parquet")
    mine = log[log["source"] == "api"].set_index("type")
    assert mine.loc["road_closure", "issuer"] == "flood_control" and mine.loc["dispatch", "issuer"] == "dispatch"
    assert mine.loc["road_closure", "t_s"] == _acts_at(closure) and mine.loc["dispatch", "t_s"] == _acts_at(sent)
    assert (mine["outcome"] == "applied").all()
    assert "warning" not in set(log["type"])
    inj = pd.read_parquet(run / "injects.parquet")
    assert list(inj["inject_id"]) == [0, 1, 2] and list(inj["t_s"]) == [600.0, 1200.0, 2400.0]
    by_id = log.set_index("decision_id")
    assert by_id.loc[int(inj["decision_id"].iloc[2]), "type"] == "hospital_closure"
    # twin replay of the exercise run: the same KPIs, bit for bit (the CLI in this process: the twin's
    # modules are loaded already)
    from twin.cli import main

    rc = main(["replay", str(run), "--out", str(tmp_path / "replay"), "--quiet"])
    assert rc == 0, capsys.readouterr().err[-3000:]
    assert (run / "kpis.json").read_bytes() == (tmp_path / "replay" / "kpis.json").read_bytes()
    replayed = pd.read_parquet(tmp_path / "replay" / "decisions.parquet")
    assert list(replayed["t_s"]) == list(log["t_s"]) and list(replayed["type"]) == list(log["type"])
    # twin review lists both trainee decisions with their effect, the inject's decision, and the objectives
    rc = main(["review", str(run), "--out", str(tmp_path / "review"), "--serial"])
    assert rc == 0, capsys.readouterr().err[-3000:]
    report = json.loads((tmp_path / "review" / "review.json").read_text())
    trainee = {d["type"]: d for d in report["decisions"] if d["role"] == "trainee"}
    assert set(trainee) == {"road_closure", "dispatch"}
    assert trainee["road_closure"]["issuer"] == "flood_control" and trainee["dispatch"]["issuer"] == "dispatch"
    assert all(d["effect"] is not None for d in trainee.values())
    assert {d["type"] for d in report["decisions"] if d["role"] == "inject"} == {"road_closure", "hospital_closure"}
    assert [o["kind"] for o in report["objectives"]] == ["ambulance_response_p90_max", "rescue_wait_max"]


@pytest.mark.browser
def test_the_page_says_so_when_no_exercise_runs(browser, tmp_path):
    """Under ``twin serve`` (no /api/v1 routes) the Exercise page answers a token with a message."""
    from tests.dashboard.helpers import Server
    from twin.dashboard.app import create_app

    with Server(create_app(tmp_path)) as srv:
        ctx = browser.new_context()
        try:
            page = ctx.new_page()
            page.goto(srv.url + "/exercise")
            page.fill("#ex-token", "anything")
            page.click("#ex-join")
            page.wait_for_function("() => document.querySelector('#ex-seat').innerText.length > 0")
            assert page.inner_text("#ex-seat").startswith("No exercise runs on this server")
            assert page.inner_text("#ex-state") == "not joined"
        finally:
            ctx.close()
