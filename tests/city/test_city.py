"""The shipped city bundles: Tam Kỳ (synthetic layers on real coastline/rivers/QL1A) and Đà Nẵng (real SRTM)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twin.city import PLACE_KINDS, City, load_city, synth

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tamky() -> City:
    return load_city("tamky")


@pytest.fixture(scope="module")
def danang() -> City:
    return load_city("danang")


def _cell(city, lon, lat):
    x, y = synth.to_utm(np.array((lon, lat)))
    r, c = city.terrain.rowcol(np.array([x]), np.array([y]))
    return int(r[0]), int(c[0])


def test_tamky_attributes_and_grid(tamky):
    c = tamky
    assert c.name == "tamky" and c.resolution_m == 30
    ny, nx = c.terrain.elevation.shape
    assert (ny, nx) == (860, 870)
    for a in (c.manning, c.landcover, c.building_fraction, c.water_depth0, c.ward_raster, c.sea_cells):
        assert a.shape == (ny, nx)
    assert str(c.terrain.crs).upper().endswith("32649") or c.terrain.crs.to_epsg() == 32649
    assert np.isfinite(c.terrain.elevation).all()
    # Manning n is exactly the class table of the manifest
    for code, meta in c.manifest["layers"]["landcover"]["classes"].items():
        sel = c.landcover == int(code)
        assert sel.any(), meta["name"]
        assert np.all(c.manning[sel] == meta["manning_n"])
    assert set(c.landcover_classes.values()) >= {"sea", "water", "urban_dense", "urban_sparse", "paddy", "forest", "sand"}
    # every layer is labelled real or synthetic with a source and licence
    for name, layer in c.manifest["layers"].items():
        assert isinstance(layer["synthetic"], bool) and layer["source"] and layer["licence"], name
        for key in ("file", "raster", "nodes_file", "summary"):
            if layer.get(key):
                assert (c.path / layer[key]).exists(), (name, layer[key])
    assert c.manifest["layers"]["terrain"]["synthetic"] is True


def test_tamky_terrain_reads_as_documented(tamky):
    c, z = tamky, tamky.terrain.elevation
    sea = c.landcover == 1
    assert (z[sea] < 1.0).all() and (z[sea] < 0).mean() > 0.99 and sea[0, -1]   # NE corner is sea
    centre = _cell(c, 108.478, 15.571)
    assert 2.0 < z[centre] < 10.0                                   # city plain
    assert c.landcover[centre] == 3                                 # dense urban at the centre
    # Trường Giang lagoon (real WDBII course) is water at ~0.3 m with a bed below sea level
    water = c.landcover == 2
    lagoon_depth = c.water_depth0[water & (z < 0)]
    assert lagoon_depth.size > 500 and np.median(lagoon_depth) > 1.0
    # dunes between sea and lagoon higher than the lagoon bank: max of a W-E profile at 15.64 N
    r, _ = _cell(c, 108.5, 15.64)
    row = z[r]
    lc_row = c.landcover[r]
    east = np.where(lc_row == 1)[0].min()                           # first sea cell
    assert row[east - 30:east].max() > 5.0                          # dune crest within 900 m of the beach
    # Phú Ninh: reservoir water at 32 m, dam crest 37.6 m, a closed basin below the crest
    res = water & (c.water_depth0 > 0) & (np.abs(z + c.water_depth0 - 32.0) < 1e-3)
    assert res.sum() * 900 > 10e6                                   # > 10 km² of reservoir in the domain
    assert np.isclose(z.max(where=~res & (np.abs(z - 37.6) < 0.05), initial=0), 37.6, atol=0.05)
    from scipy import ndimage
    lab, _ = ndimage.label(z < 37.5)
    rr, cc = np.argwhere(res)[len(np.argwhere(res)) // 2]
    basin = lab == lab[rr, cc]
    assert not basin[centre] and basin.sum() < 2 * res.sum()       # water at crest level cannot reach the city
    # rivers: the Tam Kỳ river channel is below its banks
    inflow = c.inflows.set_index("kind").loc["reservoir_release"]
    r0, c0 = c.terrain.rowcol(np.array([inflow["x"]]), np.array([inflow["y"]]))
    assert c.landcover[r0[0], c0[0]] == 2


def test_tamky_sea_cells_are_the_tidal_boundary(tamky):
    c = tamky
    assert (c.sea_cells & (c.landcover == 1)).sum() == (c.landcover == 1).sum()
    extra = c.sea_cells & (c.landcover != 1)
    # only lagoon water on the domain edge besides the sea (the Trường Giang ends)
    assert extra.sum() > 0 and (c.landcover[extra] == 2).all()
    edge = np.zeros_like(extra)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    assert not (extra & ~edge).any()


def test_tamky_population_and_places(tamky):
    pop = tamky.population
    assert list(pop["ward_name"]) == ["Tam Kỳ", "Bàn Thạch", "Hương Trà", "Quảng Phú"]
    assert list(pop["ward"]) == [1, 2, 3, 4]                        # the codes of ward_raster
    for code in pop["ward"]:
        assert (tamky.ward_raster == code).sum() > 1000
    assert pop["persons"].sum() == pytest.approx(120_000, rel=0.05)
    assert pop["households"].sum() == pytest.approx(35_000, rel=0.05)
    shares = pop[["share_motorbike", "share_car", "share_no_vehicle"]].sum(axis=1)
    assert np.allclose(shares, 1.0)
    assert (pop["share_motorbike"] > 0.7).all()                      # motorbike-dominant
    assert ((pop["share_elderly"] > 0) & (pop["share_elderly"] < 0.3)).all()
    assert (pop["mean_storeys"] >= 1).all()
    pl = tamky.places
    for col in ("place_id", "name", "kind", "x", "y", "capacity", "ward", "source"):
        assert col in pl
    assert set(pl["kind"]) == set(PLACE_KINDS)
    assert "Bệnh viện Đa khoa tỉnh Quảng Nam" in set(pl["name"])
    assert (pl.loc[pl["kind"] == "hotel", "tourists"] > 0).all()
    assert pop["tourists"].sum() == pl.loc[pl["kind"] == "hotel", "tourists"].sum()
    # every place on land (gauges on water allowed) and inside the domain
    x0, y0, x1, y1 = tamky.terrain.bounds
    assert pl["x"].between(x0, x1).all() and pl["y"].between(y0, y1).all()
    r, cc = tamky.terrain.rowcol(pl["x"].to_numpy(), pl["y"].to_numpy())
    on_water = np.isin(tamky.landcover[r, cc], (1, 2))
    assert not on_water[~pl["kind"].str.startswith("gauge").to_numpy()].any()
    # ward column agrees with the ward raster
    assert list(tamky.ward_raster[r, cc]) == list(pl["ward"])
    names = dict(zip(pop["ward"], pop["ward_name"]))
    assert [names.get(int(v), "") for v in pl["ward"]] == list(pl["ward_name"])
    # every building (not the gauges) is reachable: a road node within 250 m
    bld = pl[~pl["kind"].str.startswith("gauge")]
    nn = tamky.roads.nearest_node(bld["x"].to_numpy(), bld["y"].to_numpy())
    nodes = tamky.roads.nodes.set_index("id")
    gap = np.hypot(nodes.loc[nn, "x"].to_numpy() - bld["x"].to_numpy(), nodes.loc[nn, "y"].to_numpy() - bld["y"].to_numpy())
    assert gap.max() < 250.0
    # tide gauge sits by the Trường Giang toward An Hòa, the stage gauge on the Tam Kỳ river
    assert "An Hòa" in pl.loc[pl["kind"] == "gauge_tide", "name"].iloc[0]
    assert len(tamky.inflows) >= 2 and "Phú Ninh" in tamky.inflows["name"].iloc[0]


def test_tamky_roads_complete_and_routable(tamky):
    net = tamky.roads
    L = net.links
    for col in ("from", "to", "length_m", "lanes", "free_speed_mps", "capacity_vph_per_lane",
                "jam_density_vpm_per_lane", "geometry", "source"):
        assert col in L, col
    for col in ("length_m", "lanes", "free_speed_mps", "capacity_vph_per_lane", "jam_density_vpm_per_lane"):
        assert (L[col] > 0).all(), col
    assert np.allclose([g.length for g in L["geometry"]], L["length_m"])
    real = L[L["source"] == "real"]
    assert len(real) > 100 and set(real["name"]) == {"Quốc lộ 1A"}
    names = set(L["name"])
    for street in ("Phan Châu Trinh", "Hùng Vương", "Điện Biên Phủ", "Nguyễn Hoàng", "Võ Chí Công (đường ven biển 129)"):
        assert street in names
    assert L["bridge"].sum() > 10                                    # bridges over the rivers and lagoon
    # strongly connected: any ward to any ward, both ways
    import networkx as nx
    G = nx.DiGraph()
    G.add_weighted_edges_from(zip(L["from"], L["to"], L["length_m"] / L["free_speed_mps"]))
    assert nx.is_strongly_connected(G)
    wards = tamky.wards
    assert len(wards) == 4
    ends = {}
    for w in wards.itertuples():
        p = w.geometry.representative_point()
        ends[w.ward] = net.nearest_node(p.x, p.y)
    from twin.traffic import TrafficModel
    tm = TrafficModel(net, dt=1.0, seed=0)
    for a in ends:
        for b in ends:
            if a != b:
                t = nx.shortest_path_length(G, ends[a], ends[b], weight="weight")
                assert 0 < t < 3600, (a, b, t)
                # the traffic engine routes the same pair (motorbikes: same free speeds in the city)
                nodes, links, t_tm = tm.shortest_path(ends[a], ends[b], "car")
                assert len(links) > 0 and t_tm == pytest.approx(t, rel=0.05), (a, b, t, t_tm)
    # local street density in the dense centre: ≥ 8 km of street per km²
    from shapely.geometry import box
    cx, cy = synth.to_utm(np.array(synth.CENTRE_LONLAT))
    sq = box(cx - 500, cy - 500, cx + 500, cy + 500)
    km = sum(g.intersection(sq).length for g in L["geometry"]) / 2 / 1000   # two directions per street
    assert km > 8.0


def test_tamky_10m_generated_deterministically(tmp_path, monkeypatch, tamky):
    monkeypatch.setenv("TWIN_CACHE_DIR", str(tmp_path))
    with pytest.warns(UserWarning, match="generating the Tam Kỳ 10 m terrain"):
        c10 = load_city("tamky", resolution_m=10)
    assert c10.terrain.elevation.shape == (2580, 2610)
    # the shipped 30 m layer is the 3x3 aggregate of the generated 10 m terrain: block mean, and on water
    # cells the mean of the water sub-cells (channel burning); land cover by majority, water if any
    lc30 = synth.block_mode(c10.landcover, 3)
    assert (lc30 == tamky.landcover).all()
    bm = synth.coarsen_elevation(c10.terrain.elevation, c10.landcover, lc30, 3)
    assert np.abs(bm - tamky.terrain.elevation).max() < 1e-3
    dry = lc30 != 2
    assert np.abs(synth.block_mean(c10.terrain.elevation, 3)[dry] - tamky.terrain.elevation[dry]).max() < 1e-3
    assert (c10.landcover == 1).mean() == pytest.approx((tamky.landcover == 1).mean(), abs=0.005)
    assert c10.roads.n_links == tamky.roads.n_links
    # second load uses the cache (no warning)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_city("tamky", resolution_m=10)


def _spill_level(city, r0, c0):
    """Lowest water level at which cell (r0, c0) is connected (4-neighbour) to the sea cells."""
    from scipy import ndimage
    z = city.terrain.elevation
    lo, hi = z[r0, c0], 100.0
    for _ in range(30):
        m = 0.5 * (lo + hi)
        lab, _ = ndimage.label(z < m)
        if lab[r0, c0] and (lab == lab[r0, c0])[city.sea_cells].any():
            hi = m
        else:
            lo = m
    return hi


@pytest.mark.parametrize("res", [30, 90])
def test_inflows_sit_in_channels_that_drain_to_the_sea(tamky, res):
    c = tamky if res == 30 else load_city("tamky", resolution_m=res)
    assert {"row", "col"} <= set(c.inflows.columns)
    for f in c.inflows.itertuples():
        assert c.landcover[f.row, f.col] == 2, f.name                  # on water
        z0 = c.terrain.elevation[f.row, f.col]
        # the river drains: water at most 0.7 m above the inflow cell reaches the sea (no sills, no pits)
        assert _spill_level(c, f.row, f.col) < z0 + 0.7, (res, f.name, z0)


def test_coarser_resolution_resamples(tamky):
    c60 = load_city("tamky", resolution_m=60)
    assert c60.terrain.elevation.shape == (430, 435)
    lc60 = synth.block_mode(tamky.landcover, 2)
    assert (c60.landcover == lc60).all()
    assert np.allclose(c60.terrain.elevation, synth.coarsen_elevation(tamky.terrain.elevation, tamky.landcover, lc60, 2),
                       atol=1e-3)
    c90 = load_city("tamky", resolution_m=90)          # 25,800 m is not a multiple of 90: last row dropped
    assert c90.terrain.elevation.shape == (286, 290)
    assert c90.terrain.origin == tamky.terrain.origin
    lc90 = synth.block_mode(tamky.landcover[:858], 3)
    assert np.allclose(c90.terrain.elevation,
                       synth.coarsen_elevation(tamky.terrain.elevation[:858], tamky.landcover[:858], lc90, 3), atol=1e-3)
    assert set(np.unique(c90.ward_raster)) == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="must divide"):
        load_city("tamky", resolution_m=7)
    with pytest.raises(FileNotFoundError, match="available: .*tamky"):
        load_city("atlantis")


def test_danang_loads_the_real_srtm(danang):
    import rasterio
    c = danang
    assert c.manifest["layers"]["terrain"]["synthetic"] is False
    z = c.terrain.elevation
    src = REPO / "twin" / "data" / "danang" / "sources" / "srtm_gl1_danang_108.08-108.32E_15.87-16.12N.tif"
    with rasterio.open(src) as s:
        raw = s.read(1)
        for lon, lat in [(108.2208, 16.0678), (108.2640, 16.0030), (108.1500, 15.9500)]:   # centre, Marble Mts, plain
            rr, cc = s.index(lon, lat)
            win = raw[max(rr - 1, 0):rr + 2, max(cc - 1, 0):cc + 2]
            r, col = _cell(c, lon, lat)
            assert win.min() - 1 <= z[r, col] <= win.max() + 1, (lon, lat, z[r, col], win)
    assert z.max() > 500                                            # Sơn Trà / western hills
    # sea: SRTM ocean at 0 m, connected to the edge; the East Sea is the north-east
    assert c.sea_cells.mean() > 0.1 and c.sea_cells[_cell(c, 108.30, 16.10)]   # the East Sea
    assert (z[c.sea_cells] <= 0.05).all()
    assert c.roads.n_links > 1000 and (c.roads.links["source"] == "real").sum() > 100


def test_cli_info_lists_every_layer_with_provenance():
    r = subprocess.run([sys.executable, "-m", "twin", "city", "info", "tamky"], capture_output=True, text=True,
                       cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    m = json.loads((REPO / "twin" / "data" / "tamky" / "manifest.json").read_text())
    for name, layer in m["layers"].items():
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert ("SYNTHETIC" if layer["synthetic"] else "REAL") in line
        assert layer["licence"] in out
    for must in ("terrain", "roads", "places", "population", "wards", "landcover", "coastline_rivers",
                 "national_roads", "typhoon_tracks"):
        assert must in m["layers"]
    assert "CC BY-SA 4.0" in out and "LGPL" in out and "30 m" in out


def test_render_png(tamky, artifacts_dir):
    from twin.city.plot import render_city
    p = render_city(tamky, artifacts_dir / "city_tamky.png", dpi=90)
    assert p.stat().st_size > 100_000
    import matplotlib.image as mpimg
    img = mpimg.imread(p)[..., :3]
    blue = (img[..., 2] > 0.45) & (img[..., 0] < 0.3)
    assert 0.1 < blue.mean() < 0.5                                   # the sea and rivers are there
