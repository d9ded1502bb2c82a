"""Direct damage and the flooded area by land use (twin.output.damage).

Regression: the agricultural flooded area counted every cell with any water (the rain film of a
typhoon wets all the farmland), so a run showed "agricultural flooded area 117 km²" while its land
flooded by 0.1 m or more peaked at 0.73 km². A cell now counts from 0.1 m, the threshold of the
flooded-area KPI, so the area by land use never exceeds the flooded area."""
from __future__ import annotations

import numpy as np

from twin.couplings import depth_class_areas
from twin.output.damage import FLOODED_MIN_DEPTH_M, direct_damage

CLASSES = {1: "rice paddy", 2: "urban residential"}


def _grid():
    rng = np.random.default_rng(3)
    lc = np.where(np.arange(400).reshape(20, 20) % 2 == 0, 1, 2)
    depth = rng.uniform(0.001, 0.02, lc.shape)           # a rain film everywhere
    depth[2:4, 2:8] = 0.4                                  # a real flood on 12 cells
    depth[10, 10] = 2.5
    return depth, lc


def test_rain_film_is_not_flooded_agricultural_land():
    depth, lc = _grid()
    res = direct_damage(depth, lc, CLASSES, cell_area_m2=100.0 * 100.0)
    flooded = (depth >= FLOODED_MIN_DEPTH_M)
    want_ag = np.count_nonzero(flooded & (lc == 1)) * 1e4
    assert res["by_class"]["agriculture"]["flooded_area_m2"] == want_ag      # was 200 cells × 1 ha before
    assert res["by_class"]["agriculture"]["flooded_area_m2"] < 0.1 * np.count_nonzero(lc == 1) * 1e4
    total_flooded = sum(depth_class_areas(depth, 1e4).values())
    assert sum(c["flooded_area_m2"] for c in res["by_class"].values()) == total_flooded


def test_no_damage_from_a_rain_film_alone():
    depth, lc = _grid()
    film = np.minimum(depth, 0.02)
    res = direct_damage(film, lc, CLASSES, cell_area_m2=1e4)
    assert res["total_usd"] == 0.0
    assert all(c["flooded_area_m2"] == 0.0 for c in res["by_class"].values())
    assert res["min_depth_m"] == FLOODED_MIN_DEPTH_M
