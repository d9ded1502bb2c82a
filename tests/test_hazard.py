"""Flood hazard to people (twin.hazard): the FD2321 debris-factor table and classes at their boundary
values, the one-implementation rule, and the map's hazard equal to the people model's hazard."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from twin.hazard import (
    DEFAULT_THRESHOLDS,
    HAZARD_CLASSES,
    check_thresholds,
    debris_factor,
    hazard_class,
    hazard_class_name,
    hazard_rating,
    land_use,
    land_use_index,
    land_use_indices,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("land, d, v, df", [
    # FD2321/TR2 Table 3.1, row "0 to 0.25 m": DF 0 for every land use, 0.25 m included
    ("urban", 0.10, 0.0, 0.0), ("urban", 0.25, 0.0, 0.0), ("pasture", 0.25, 0.0, 0.0), ("woodland", 0.25, 0.0, 0.0),
    # row "0.25 to 0.75 m", 0.75 m included
    ("urban", 0.2501, 0.0, 1.0), ("urban", 0.75, 0.0, 1.0), ("pasture", 0.5, 0.0, 0.0), ("pasture", 0.75, 0.0, 0.0),
    ("woodland", 0.5, 0.0, 0.5), ("woodland", 0.75, 0.0, 0.5),
    # row "d > 0.75 m and/or v > 2 m/s"
    ("urban", 0.7501, 0.0, 1.0), ("pasture", 0.7501, 0.0, 0.5), ("woodland", 0.7501, 0.0, 1.0),
    ("pasture", 0.5, 2.0, 0.0), ("pasture", 0.5, 2.01, 0.5), ("woodland", 0.5, 2.01, 1.0),
    ("pasture", 0.1, 2.5, 0.5), ("urban", 0.1, 2.5, 1.0),  # fast shallow water: last row ("and/or")
    # dry: no debris
    ("urban", 0.0, 3.0, 0.0),
])
def test_debris_factor_table_fd2321(land, d, v, df):
    assert debris_factor(d, v, land) == df
    assert hazard_rating(d, v, land) == pytest.approx(d * (v + 0.5) + df if d > 0 else 0.0, abs=1e-15)


def test_bool_land_use_is_urban_or_pasture_and_arrays_broadcast():
    assert debris_factor(0.5, 0.0, True) == 1.0 and debris_factor(0.5, 0.0, False) == 0.0
    lu = np.array(["urban", "pasture", "woodland"])
    np.testing.assert_array_equal(debris_factor(np.full(3, 0.5), 0.0, lu), [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(debris_factor([0.3, 0.3], 0.0, np.array([True, False])), [1.0, 0.0])
    with pytest.raises(ValueError, match="land use 'forest'"):
        debris_factor(0.5, 0.0, "forest")


def test_the_two_old_implementations_disagreed_here():
    # twin/couplings.py gave 1.125 (DF 1 at exactly 0.25 m) and 0.75 (DF 0.5 for pasture at 0.5 m);
    # twin/agents/hazard.py gave 0.125 and 0.25. The table: 0.25 m is in the first row (DF 0), and
    # pasture/arable has DF 0 up to 0.75 m.
    assert hazard_rating(0.25, 0.0, urban=True) == pytest.approx(0.125)
    assert hazard_rating(0.5, 0.0, urban=False) == pytest.approx(0.25)


def test_hazard_rating_formula_and_dry_cells():
    d = np.array([0.0, 0.2, 0.5, 1.0, 2.0, np.nan, -0.1])
    v = np.array([0.0, 1.0, 0.5, 2.0, 0.0, 1.0, 1.0])
    expect = [0.0, 0.2 * 1.5, 0.5 * 1.0 + 1, 1.0 * 2.5 + 1, 2.0 * 0.5 + 1, 0.0, 0.0]
    np.testing.assert_allclose(hazard_rating(d, v), expect, rtol=0, atol=1e-12)
    # NaN or negative speeds count as still water
    assert hazard_rating(0.4, np.nan) == hazard_rating(0.4, -1.0) == pytest.approx(0.4 * 0.5 + 1.0)


def test_hazard_classes_at_the_thresholds():
    # FD2321/TR2 Table 13.1: "less than 0.75" low, "0.75-1.25" moderate, "1.25-2.0" significant,
    # "more than 2.0" extreme; 1.25 (in two rows) goes to the higher class
    hr = [0.0, 0.7499, 0.75, 1.0, 1.2499, 1.25, 1.9999, 2.0, 2.0001, 5.0]
    assert list(hazard_class(hr)) == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert HAZARD_CLASSES == ("low", "moderate", "significant", "extreme")
    assert list(hazard_class_name([0.0, 0.5, 0.75, 2.0, 2.5])) == ["none", "low", "moderate", "significant", "extreme"]
    # a scenario's own thresholds are used as given
    assert list(hazard_class([0.5, 1.0, 1.5, 3.0], (0.5, 1.0, 1.5))) == [1, 2, 2, 3]


def test_bad_thresholds_are_refused():
    assert check_thresholds([0.5, 1, 2]) == (0.5, 1.0, 2.0)
    for bad in ([1.0, 0.5, 2.0], [0.5, 1.0], [0.5, 1.0, np.inf], [0.0, 1.0, 2.0], "abc"):
        with pytest.raises(ValueError, match="hazard_thresholds"):
            check_thresholds(bad)
    with pytest.raises(ValueError, match="hazard_thresholds"):
        hazard_class([1.0], (2.0, 1.0, 3.0))
    from twin.agents.params import PeopleParams

    with pytest.raises(ValueError, match="people params: hazard_thresholds"):
        PeopleParams.from_dict({"hazard_thresholds": [1.0, 1.0, 2.0]})
    assert DEFAULT_THRESHOLDS == (0.75, 1.25, 2.0)


def test_land_use_from_land_cover():
    lc = np.array([[1, 3], [5, 6]])
    classes = {1: "sea", 3: "urban_dense", 5: "paddy", 6: "forest"}
    np.testing.assert_array_equal(land_use(lc, classes), [["pasture", "urban"], ["pasture", "woodland"]])
    assert land_use(None, None) == "urban"


def test_land_use_indices_from_land_cover_are_the_names_indices():
    """The people model reads land use as indices made from the land-cover codes (no grid of names
    to sort each step): the same as converting the names."""
    rng = np.random.default_rng(3)
    classes = {1: "sea", 3: "urban_dense", 5: "paddy", 6: "forest", 7: "Built-up", 9: "woodland edge"}
    lc = rng.choice([1, 3, 5, 6, 7, 9, 11], size=(50, 40))   # 11: a code with no class (pasture)
    idx = land_use_indices(lc, classes)
    assert idx.dtype == np.int8
    np.testing.assert_array_equal(idx, land_use_index(land_use(lc, classes)))
    assert set(np.unique(idx)) == {0, 1, 2}
    assert land_use_indices(None, None) == "urban"


def test_land_use_indices_give_the_same_ratings_as_the_names():
    """Twin.hazard() hands hazard_rating the land-use grid converted once to indices: the same numbers
    as the names; indices outside 0..2 are refused."""
    rng = np.random.default_rng(5)
    names = rng.choice(np.array(["pasture", "woodland", "urban"], dtype="<U8"), size=(40, 30))
    idx = land_use_index(names)
    assert idx.dtype == np.int8 and idx.shape == names.shape
    d = rng.uniform(-0.2, 2.0, names.shape)
    d[3, 4] = np.nan
    v = rng.uniform(0.0, 3.0, names.shape)
    np.testing.assert_array_equal(hazard_rating(d, v, idx), hazard_rating(d, v, names))
    np.testing.assert_array_equal(debris_factor(d, v, idx), debris_factor(d, v, names))
    np.testing.assert_array_equal(land_use_index(np.array([True, False])), [2, 0])
    with pytest.raises(ValueError, match="land-use index 3"):
        hazard_rating(d, v, np.full(names.shape, 3, np.int8))
    with pytest.raises(ValueError, match="land-use index -1"):
        debris_factor(d, v, np.full(names.shape, -1))


def test_one_implementation_only():
    """One ``def hazard_rating(`` in twin/, and nothing imports the removed copies."""
    defs = [p for p in (ROOT / "twin").rglob("*.py") if re.search(r"^def hazard_rating\(", p.read_text(), re.M)]
    assert [p.relative_to(ROOT).as_posix() for p in defs] == ["twin/hazard.py"]
    assert not (ROOT / "twin" / "agents" / "hazard.py").exists()
    import twin.couplings

    for gone in ("hazard_rating", "hazard_class", "HAZARD_CLASSES", "speed_factor_from_depth", "debris_factor"):
        assert not hasattr(twin.couplings, gone), gone


MOLAVE = ROOT / "scenarios" / "tamky_molave_2020.yaml"
# coarse and short: 300 m grid, heavy rain from 08:00 so that homes flood within the run
FAST = ["resolution_m=300", "start=2020-10-28T08:00", "duration=90min", "coupling_step=5min",
        "flood.rain.time_shift=3h", "flood.rain.rain_scale=10", "outputs.checkpoint_every=null",
        "outputs.png=false", "interventions.0.at=0", "interventions.1.at=10min", "traffic=null", "services=null",
        "people.params={hazard_thresholds: [0.3, 1.0, 1.5]}"]


def test_map_hazard_equals_people_hazard_in_a_coupled_run(tmp_path):
    """At the same cell and time, the people model's hazard for someone at ground level is the
    map's (Twin.hazard(), what fields.nc records): one rule, same land use, same fields; and the
    tables classify with the scenario's thresholds."""
    import pandas as pd
    import xarray as xr

    from twin.agents.people import DRIVE, HOME, TRAPPED, WALK
    from twin.build import build_twin
    from twin.scenario import load_scenario
    from twin.simulation import Simulation

    sc = load_scenario(MOLAVE, FAST)
    tw = build_twin(sc)
    sim = Simulation(tw, out_dir=tmp_path / "run")
    sim.run()
    pm = tw.people
    assert pm.params.hazard_thresholds == (0.3, 1.0, 1.5)
    # people at ground level: at home on the ground floor (also trapped in a one-storey house), or
    # walking / driving; on land cells (on bridges and bank roads they meet the water above the banks)
    at_home = (pm.state == HOME) | ((pm.state == TRAPPED) & (pm.storeys == 1) & (pm.x == pm.home_x)
                                    & (pm.y == pm.home_y))
    x, y = np.where(at_home, pm.home_x, pm.x), np.where(at_home, pm.home_y, pm.y)
    cell = pm._cell_of(x, y)
    ground = np.flatnonzero((at_home | np.isin(pm.state, (WALK, DRIVE))) & ~pm._wet_cells[cell])
    from twin.output import tables

    r, c, ok = tables._cells_at(tw, x[ground], y[ground])
    assert ok.all()
    map_hr = tw.hazard()[r, c]
    wet = map_hr > 0
    assert wet.sum() > 50, "the run must wet some homes for the comparison to mean anything"
    # both debris rows that matter in town occur (DF 0 below 0.25 m, DF > 0 above)
    d = tw.depth()[r, c]
    assert ((d > 0) & (d <= 0.25)).any() and (d > 0.25).any()
    np.testing.assert_array_equal(pm.hr[ground], map_hr)
    # what fields.nc stores at the last record is the same map (float32)
    with xr.open_dataset(tmp_path / "run" / "fields.nc") as ds:
        last = ds["hazard"].isel(time=-1).to_numpy()
    np.testing.assert_allclose(last[r, c], map_hr.astype(np.float32), rtol=0, atol=0)
    # people.parquet classifies with the scenario's thresholds, not the FD2321 defaults
    people = pd.read_parquet(tmp_path / "run" / "people.parquet")
    last_t = people["t_s"].max()
    rows = people[people["t_s"] == last_t].set_index("agent_id")
    expect = hazard_class_name(rows["hazard_rating"].to_numpy(), (0.3, 1.0, 1.5))
    np.testing.assert_array_equal(rows["hazard_class"].to_numpy(), expect)
    assert (rows["hazard_rating"].between(0.3, 0.75, inclusive="left") & (rows["hazard_class"] == "moderate")).any()
