import numpy as np
import pandas as pd
import pytest
from affine import Affine
from shapely.geometry import LineString

from twin.couplings import LinkDepthSampler, depth_class_areas

# The hazard rating and its classes moved to twin.hazard (tests/test_hazard.py, where the values this
# file asserted for the old twin.couplings copy are corrected: pasture at 0.5 m has DF 0, not 0.5);
# the unused couplings.speed_factor_from_depth was deleted (the depth-speed rule: twin.traffic.flood,
# tests/traffic/test_flood_closures.py).


def test_link_sampler_takes_the_deepest_cell_along_the_geometry():
    # 10 x 10 grid of 10 m cells, NW corner (0, 100)
    tr = Affine(10, 0, 0, 0, -10, 100)
    depth = np.zeros((10, 10))
    depth[5, 3] = 0.7     # cell centred at x=35, y=45
    depth[0, 9] = 9.0     # far corner, on no link
    links = pd.DataFrame({"geometry": [
        LineString([(1, 45), (99, 45)]),             # crosses row 4/5 boundary? y=45 -> row 5
        LineString([(5, 95), (5, 5)]),               # column 0
        LineString([(30, 45), (40, 45), (40, 90)]),  # bent: passes (35,45) then goes north
    ]})
    s = LinkDepthSampler(links, tr, depth.shape, spacing_m=5.0)
    d = s.max(depth)
    assert d[0] == 0.7 and d[1] == 0.0 and d[2] == 0.7
    assert abs(s.mean(depth)[0] - 0.7 / 10) < 1e-12  # 10 distinct cells along row 5


def test_depth_class_areas():
    d = np.array([[0.05, 0.2, 0.4], [0.7, 1.5, 3.0]])
    a = depth_class_areas(d, 100.0)
    assert a == {"0.1-0.3m": 100.0, "0.3-0.5m": 100.0, "0.5-1m": 100.0, "1-2m": 100.0, ">2m": 100.0}


def _river_valley():
    """A 3-cell river (columns 4-6) between banks at 3 m; channel bed at -1 m holding 2 m of water
    (normal surface 1 m); a wide lagoon block (rows 0-8, columns 12-19) with no land within 3 cells
    of its middle."""
    z = np.full((9, 20), 3.0)
    z[:, 4:7] = -1.0
    z[:, 12:] = -2.0
    water = np.zeros(z.shape, bool)
    water[:, 4:7] = True
    water[:, 12:] = True
    h0 = np.where(water, 1.0 - z, 0.0)  # normal surface at 1 m everywhere in the water
    return z, water, h0


def test_road_water_level_bridges_meet_only_water_above_the_banks():
    from twin.couplings import RoadWaterLevel

    z, water, h0 = _river_valley()
    rw = RoadWaterLevel(z, water, normal_depth=h0, radius_cells=3)
    assert rw.deck[4, 5] == 3.0                      # deck at bank level, not the bed
    # normal level: nobody on the bridge meets the 2 m of channel water
    assert rw.met_depth(h0)[4, 5] == 0.0
    # river 1.5 m above normal (surface 2.5 m): still within the banks
    d = h0 + np.where(water, 1.5, 0.0)
    assert rw.met_depth(d)[4, 5] == 0.0
    # overtopping: surface 3.4 m, 0.4 m above the banks; land cells meet their own depth
    d = np.where(water, 3.4 - z, 0.4)
    met = rw.met_depth(d)
    assert abs(met[4, 5] - 0.4) < 1e-12 and abs(met[4, 0] - 0.4) < 1e-12
    # open lagoon (no land within 3 cells of column 16... the middle columns 15-19 at the east edge):
    # the deck is the normal surface, so people meet the rise above normal
    assert rw.deck[4, 19] == 1.0
    assert abs(rw.met_depth(h0 + 0.3)[4, 19] - 0.3) < 1e-12
    # NaN depth counts as dry
    assert rw.met_depth(np.full(z.shape, np.nan)).max() == 0.0


def test_bridge_links_stay_open_while_the_river_stays_in_its_banks():
    """The coupling roads <- flood with the bank rule: a link across the river reads 0 m while the
    river runs 1.5 m above normal in its banks (the plain sampler reads the channel depth, 3.5 m)."""
    from twin.couplings import RoadWaterLevel

    z, water, h0 = _river_valley()
    tr = Affine(10, 0, 0, 0, -10, 90)
    links = pd.DataFrame({"geometry": [LineString([(5, 45), (115, 45)])]})  # x 5..115 m: over the river
    s = LinkDepthSampler(links, tr, z.shape, spacing_m=5.0)
    d = h0 + np.where(water, 1.5, 0.0)
    assert s.max(d)[0] == 3.5
    rw = RoadWaterLevel(z, water, normal_depth=h0)
    assert s.max(rw.met_depth(d))[0] == 0.0


def test_met_depth_at_cells_equals_the_whole_grid_rule():
    from twin.couplings import RoadWaterLevel

    z, water, h0 = _river_valley()
    rw = RoadWaterLevel(z, water, normal_depth=h0)
    rng = np.random.default_rng(4)
    d = h0 + rng.uniform(0, 3, z.shape)
    d[2, 3] = np.nan
    cells = rng.integers(0, z.size, 50)
    np.testing.assert_array_equal(rw.met_depth_at(d.ravel()[cells], cells), rw.met_depth(d).ravel()[cells])


def test_met_depth_on_water_cells_only_is_bit_identical_to_the_whole_grid_rule():
    """met_depth recomputes only the permanent-water cells (precomputed bed and deck); the numbers are
    exactly those of the whole-grid rule, NaN, inf and invalid cells included, and the input is untouched."""
    from twin.couplings import RoadWaterLevel

    z, water, h0 = _river_valley()
    valid = np.ones(z.shape, bool)
    valid[0, :] = False
    rng = np.random.default_rng(11)
    rw = RoadWaterLevel(z, water, valid=valid, normal_depth=h0)
    for _ in range(5):
        d = h0 + rng.uniform(-0.5, 4.0, z.shape)
        d[rng.integers(0, 9, 4), rng.integers(0, 20, 4)] = np.nan
        d[3, 5], d[5, 0] = np.inf, -np.inf
        before = d.copy()
        np.testing.assert_array_equal(rw.met_depth(d), rw.met_depth_full(d))
        np.testing.assert_array_equal(d, before)
    d = np.asfortranarray(h0 + 2.0)   # a non-contiguous layout gives the same numbers
    np.testing.assert_array_equal(rw.met_depth(d), rw.met_depth_full(d))
    dry = RoadWaterLevel(z, np.zeros(z.shape, bool))
    np.testing.assert_array_equal(dry.met_depth(d), dry.met_depth_full(d))
    with pytest.raises(ValueError, match="depth shape"):
        rw.met_depth(d.ravel())


def test_met_depth_is_a_new_array_and_any_nan_or_infinity_is_found():
    """The finiteness test reads the sum (one pass): the same numbers as the whole-grid rule, a new
    array (the input is not written), and one NaN or infinity anywhere still counts as dry / is clipped."""
    from twin.couplings import RoadWaterLevel

    z, water, h0 = _river_valley()
    rw = RoadWaterLevel(z, water, normal_depth=h0)
    d = h0 + np.random.default_rng(7).uniform(0, 3, z.shape)
    keep = d.copy()
    met = rw.met_depth(d)
    np.testing.assert_array_equal(met, rw.met_depth_full(d))
    assert not np.shares_memory(met, d)
    np.testing.assert_array_equal(d, keep)
    for bad in (np.nan, np.inf, -np.inf):
        e = d.copy()
        e[2, 1] = bad                            # a land cell
        got = rw.met_depth(e)
        np.testing.assert_array_equal(got, rw.met_depth_full(e))
        assert np.isfinite(got).all() and (got[2, 1] == 0.0 if np.isnan(bad) else True)
    big = np.full(z.shape, 1e307)                # finite, but the sum overflows: the careful path, same numbers
    np.testing.assert_array_equal(rw.met_depth(big), rw.met_depth_full(big))
