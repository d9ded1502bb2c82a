"""The Exercise page's drawing tools: a drawing on the exercise city's map becomes the decision JSON the
seat issues through /api/v1/ (issue 15: the builder's drawing tools issue decisions in a running exercise)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from shapely.geometry import LineString, box

from twin.dashboard import drawing as dr
from twin.dashboard.pages import exercise as page
from twin.decisions import parse_decision


@pytest.fixture(scope="module")
def city() -> dr.DrawingCity:
    x0, y0 = 224000.0, 1724000.0
    places = pd.DataFrame({"place_id": ["H1", "S1"], "name": ["Bệnh viện", "Trường học"], "kind": ["hospital", "school"],
                           "x": [x0 + 500, x0 + 1500], "y": [y0 + 500, y0 + 1500], "capacity": [300, 600]})
    street = LineString([(x0 + 1000, y0 + 200), (x0 + 1000, y0 + 2800)])
    links = {0: street, 1: LineString(list(street.coords)[::-1])}
    return dr.DrawingCity("test", "EPSG:32649", (x0, y0, x0 + 3000, y0 + 3000), places, links,
                          {"Tây": box(x0, y0, x0 + 3000, y0 + 3000)})


def _fc(gtype, coords):   # what dash-leaflet's EditControl reports, in the map's metres (Simple CRS)
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                       "geometry": {"type": gtype, "coordinates": coords}}]}


def test_a_drawn_area_becomes_a_road_closure_the_api_takes(city):
    x0, y0 = city.bounds[:2]
    area = _fc("Polygon", [[[x0 + 800, y0 + 900], [x0 + 1200, y0 + 900], [x0 + 1200, y0 + 1300], [x0 + 800, y0 + 1300],
                            [x0 + 800, y0 + 900]]])
    text, msg = page.drawn_decision_json(city, area, "road_closure", "")
    d = json.loads(text)
    assert d["type"] == "road_closure" and sorted(d["links"]) == [0, 1] and "check it" in msg
    parse_decision(d)                                   # what POST /api/v1/decisions validates


def test_a_marker_on_a_hospital_closes_it_and_a_levee_keeps_its_crest(city):
    x0, y0 = city.bounds[:2]
    text, _ = page.drawn_decision_json(city, _fc("Point", [x0 + 520, y0 + 480]), "hospital_closure",
                                       '{"reason": "loss of power"}')
    d = json.loads(text)
    assert (d["type"], d["place"], d["reason"]) == ("hospital_closure", "H1", "loss of power")
    line = _fc("LineString", [[x0 + 100, y0 + 100], [x0 + 2900, y0 + 2900]])
    d = json.loads(page.drawn_decision_json(city, line, "levee", '{"crest_m": 7}')[0])
    assert d["type"] == "levee" and d["crest_m"] == 7 and len(d["polyline"]) == 2


def test_bad_drawings_and_parameters_say_why(city):
    assert page.drawn_decision_json(city, None, "levee", "")[0] is None
    text, msg = page.drawn_decision_json(city, _fc("Point", [0, 0]), "pump", "{not json")
    assert text is None and "not JSON" in msg
    text, msg = page.drawn_decision_json(city, _fc("Point", [0.0, 0.0]), "pump", '{"capacity_m3_per_s": 2}')
    assert text is None and msg                         # outside the map: refused with the reason


def test_the_page_has_the_drawing_tools_and_the_exercise_cli_names_the_city():
    from twin.dashboard.app import Context
    lay = page.layout(Context(runs_dir=".")).to_plotly_json()
    assert "ex-edit" in json.dumps(lay, default=str) and "ex-kind" in json.dumps(lay, default=str)
    assert page.exercise_city(None, {}) is None         # twin serve: no exercise city, the page says so
    import inspect

    from twin.exercise import cli
    assert page.EXERCISE_CITY_KEY in inspect.getsource(cli)
