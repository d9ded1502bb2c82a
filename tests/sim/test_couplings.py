import numpy as np
import pandas as pd
from affine import Affine
from shapely.geometry import LineString

from twin.couplings import LinkDepthSampler, depth_class_areas, hazard_class, hazard_rating, speed_factor_from_depth


def test_hazard_rating_fd2321_values():
    # HR = d (v + 0.5) + DF, DF = 0 below 0.25 m, 1 (urban) / 0.5 (rural) above
    assert hazard_rating(0.2, 1.0) == 0.2 * 1.5
    assert hazard_rating(0.5, 2.0, urban=True) == 0.5 * 2.5 + 1.0
    assert hazard_rating(0.5, 2.0, urban=False) == 0.5 * 2.5 + 0.5
    assert hazard_rating(0.0, 3.0) == 0.0
    assert list(hazard_class(np.array([0.5, 0.75, 1.0, 1.3, 2.0, 5.0]))) == [0, 1, 1, 2, 3, 3]


def test_speed_factor_pregnolato():
    f = speed_factor_from_depth(np.array([0.0, 0.1, 0.2, 0.29, 0.5]))
    assert f[0] == 1.0 and f[-1] == 0.0 and f[-2] == 0.0
    # v(100 mm) = 0.0009*1e4 - 55.29 + 86.9448 = 40.6548 km/h
    assert abs(f[1] - 40.6548 / 86.9448) < 1e-12
    assert np.all(np.diff(f) <= 0)


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
