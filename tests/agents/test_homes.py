"""Homes are placed on land: nobody lives in the sea, a river or the lagoon."""
import numpy as np

from twin.agents import PeopleModel
from twin.city import load_city


def test_no_home_on_permanent_water_and_ward_totals_kept():
    city = load_city("tamky", resolution_m=100)
    pm = PeopleModel(city, {}, np.random.default_rng(3))
    lc = np.asarray(city.landcover).ravel()
    water_codes = [k for k, v in city.landcover_classes.items() if v in ("water", "sea")]
    assert water_codes, city.landcover_classes
    on_water = np.isin(lc[pm.home_cell], water_codes)
    assert on_water.sum() == 0
    # the ward totals of the bundle are still met exactly
    assert pm.n_households == int(round(city.population["households"].sum()))
