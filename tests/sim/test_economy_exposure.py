"""Industry and tourism exposure KPIs (twin.output.kpis.economy_exposure)."""
from __future__ import annotations

import pandas as pd
import pytest

from twin.output import kpis as K


def test_workers_and_guests_exposed_and_days_of_disruption():
    places = pd.DataFrame({"place_id": [0, 1, 2, 3], "name": ["KCN", "beach", "hotel", "hospital"],
                           "kind": ["industrial_zone", "tourism", "hotel", "hospital"],
                           "capacity": [15000, 2000, 100, 700], "tourists": [0, 0, 60, 0]})
    md = [{"place_id": 0, "name": "KCN", "kind": "industrial_zone", "max_depth_m": 0.6},
          {"place_id": 1, "name": "beach", "kind": "tourism", "max_depth_m": 0.1},
          {"place_id": 2, "name": "hotel", "kind": "hotel", "max_depth_m": 1.2},
          {"place_id": 3, "name": "hospital", "kind": "hospital", "max_depth_m": 3.0}]
    e = K.economy_exposure(md, places)
    assert [p["name"] for p in e["places"]] == ["KCN", "beach", "hotel"]       # not the hospital
    assert e["workers_exposed"] == 15000                                       # 0.6 m >= 0.15 m
    assert e["guests_exposed"] == 60                                           # the hotel's tourists; beach dry
    assert e["disruption_days"] == pytest.approx(14.0 + 0.0 + 45.0)            # bands 0.5-1 and 1-2 m
    kcn = e["places"][0]
    assert 0.3 < kcn["damage_fraction"] < 0.5                                  # JRC Asia industrial at 0.6 m
    assert K.disruption_days(0.149) == 0.0 and K.disruption_days(2.5) == 90.0


def test_no_places_no_exposure():
    e = K.economy_exposure([], None)
    assert e["workers_exposed"] == 0 and e["guests_exposed"] == 0 and e["places"] == []
