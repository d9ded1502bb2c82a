"""The web map's pieces without a browser (twin/dashboard/basemap.py, mapframes.py): fixed class
scales, images on the model grid in UTM metres, depth above the normal water surface, hazard
classes with the scenario's thresholds, local clock time."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.dashboard import basemap, mapframes
from twin.dashboard.app import create_app
from twin.dashboard.layers import layers_from_city
from twin.dashboard.pages import map as map_page

from . import fixture_run as fx
from .helpers import hex_rgb, png_pixels

decode, rgb = png_pixels, hex_rgb


def test_classify_edges_are_inclusive_below():
    got = basemap.classify(np.array([0.0, 0.049, 0.05, 0.149, 0.15, 1.0, 1.99, 2.0, 9.0, np.nan]), basemap.DEPTH_EDGES_M)
    assert got.tolist() == [0, 0, 1, 1, 2, 5, 5, 6, 6, 255]
    with pytest.raises(ValueError, match="increasing"):
        basemap.classify(np.zeros(3), (0.3, 0.1))


def test_grid_png_draws_fixed_colours_on_the_grid_cells():
    x = 1000.0 + 30.0 * (np.arange(4) + 0.5)
    y = 5000.0 - 30.0 * (np.arange(3) + 0.5)
    g = np.array([[0.0, 0.1, 0.4, 3.0], [np.nan, 0.04, 0.2, 1.5], [-0.2, 0.6, 0.05, 0.0]])
    url, bounds = basemap.grid_png(g, x, y, basemap.DEPTH_EDGES_M, basemap.DEPTH_COLOURS)
    assert bounds == [[4910.0, 1000.0], [5000.0, 1120.0]]          # [[south, west], [north, east]] in metres
    px = decode(url)
    assert px.shape == (3, 4, 4)
    idx = basemap.classify(g, basemap.DEPTH_EDGES_M)
    for r in range(3):
        for c in range(4):
            k = int(idx[r, c])
            colour = basemap.DEPTH_COLOURS[k] if k != 255 else None
            if colour is None:
                assert px[r, c, 3] == 0, (r, c)
            else:
                assert tuple(px[r, c, :3]) == rgb(colour) and px[r, c, 3] == 255, (r, c)


def test_difference_scale_hides_small_changes_and_caps_at_half_a_metre():
    x = np.array([15.0, 45.0, 75.0, 105.0])
    y = np.array([45.0, 15.0])
    d = np.array([[0.04, -0.04, 0.2, -3.0], [6.0, 0.0, -0.1, 0.35]])
    px = decode(basemap.grid_png(d, x, y, basemap.DIFF_EDGES_M, basemap.DIFF_COLOURS, how="absmax")[0])
    assert px[0, 0, 3] == 0 and px[0, 1, 3] == 0 and px[1, 1, 3] == 0            # |Δ| < 5 cm: not drawn
    assert tuple(px[0, 3, :3]) == rgb(basemap.DIFF_COLOURS[0])                   # −3 m: the −0.5 m class
    assert tuple(px[1, 0, :3]) == rgb(basemap.DIFF_COLOURS[-1])                  # +6 m: the +0.5 m class
    assert tuple(px[0, 2, :3]) == rgb(basemap.DIFF_COLOURS[6])                   # +0.2 m: 0.15–0.3
    with pytest.raises(ValueError, match="colours"):
        basemap.grid_png(d, x, y, basemap.DIFF_EDGES_M, basemap.DEPTH_COLOURS)


def test_large_grid_is_block_reduced_with_padding():
    g = np.zeros((2500, 1300)); g[2499, 1299] = 1.0
    red, f = basemap.reduce_grid(g, max_px=1200)
    assert f == 3 and red.shape == (834, 434) and red[-1, -1] == 1.0
    x = 30.0 * (np.arange(1300) + 0.5)
    y = 30.0 * 2500 - 30.0 * (np.arange(2500) + 0.5)
    w, e, s, n = basemap.grid_extent(x, y, red.shape, f)
    assert (w, n) == (0.0, 75000.0) and e == 434 * 90.0 and s == 75000.0 - 834 * 90.0


def test_map_options_are_utm_metres_in_leaflet_simple_crs():
    opts = basemap.map_options((218820.0, 244920.0, 1709490.0, 1735290.0), width_px=900)
    assert opts["crs"] == "Simple" and opts["attributionControl"] is False
    assert opts["bounds"] == [[1709490.0, 218820.0], [1735290.0, 244920.0]]
    assert opts["minZoom"] <= np.log2(900 / 26100) - 1
    assert basemap.from_latlng({"lat": 1722324.0, "lng": 229715.0}) == (229715.0, 1722324.0)
    assert basemap.from_latlng(basemap.to_latlng(1.0, 2.0)) == (1.0, 2.0)


def test_places_are_keyboard_markers_with_ids_and_labels():
    p = fx.places()
    ms = basemap.place_markers(p, id_type="map-place")
    assert [m.id for m in ms] == [{"type": "map-place", "id": k} for k in p["place_id"]]
    m = ms[0]
    assert m.keyboard is True and m.zIndexOffset >= 1000 and m.title.startswith("Bệnh viện Đa khoa Quảng Nam")
    assert m.position == [float(p.y[0]), float(p.x[0])]
    assert "place-label major" in m.iconOptions["html"] and "place-hospital" in m.iconOptions["className"]
    bad = p.assign(name=["<b>x</b>", "a", "b", "c"])
    assert "&lt;b&gt;" in basemap.place_markers(bad)[0].iconOptions["html"]


def test_basemap_layers_roads_by_class_and_no_click_takers():
    lay = layers_from_city(fx.FixtureCity())
    tree = basemap.basemap_layers(lay, control=True)
    assert [t.name for t in tree] == ["terrain and water", "plain background", "roads (by class)", "places"]
    flat = basemap.basemap_layers(lay, control=False, places=False)
    for pane in flat:                                  # terrain and roads never take a click
        assert pane.style["pointerEvents"] == "none"
    n_links = len(fx.links())
    assert sum(len(v) for v in lay.road_classes.values()) == n_links        # one geometry per undirected link


def test_clock_time_is_local_whatever_the_offset_written():
    assert mapframes.parse_start("2020-10-28T06:00:00+07:00").strftime("%H:%M") == "06:00"
    assert mapframes.parse_start("2020-10-27T23:00:00+00:00").strftime("%H:%M %d/%m") == "06:00 28/10"
    assert mapframes.parse_start("2020-10-28 06:00:00").tz.key == "Asia/Ho_Chi_Minh"     # naive = local
    assert mapframes.parse_start("not a date") is None
    s = mapframes.parse_start("2020-10-28T23:30")
    assert mapframes.clock(s, 3600.0) == "00:30 29/10" and mapframes.clock(None, 5400.0) == "t + 1 h 30 min"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("maprun")
    fx.write_run(root / "small", scale=1.0, name="a", city="fixture")
    fx.write_run(root / "big", scale=2.5, seed=3, name="b", city="fixture")
    return create_app(root, city_loader=fx.fixture_city_loader)._twin_ctx


def test_depth_is_above_the_normal_water_in_the_same_classes_in_every_run(two_runs):
    """River cells wet from the start show only their rise; the two runs use the same colours for
    the same depth (the old map rescaled per run)."""
    import xarray as xr

    for name in ("small", "big"):
        run = two_runs.run(name)
        store = map_page.build_map(two_runs, name)[2]
        with xr.open_dataset(run.path / "fields.nc") as ds:
            d = ds["depth"].values
        k = 6
        excess = np.clip(d[k] - d[0], 0.0, None)                     # fixture: no city water -> first frame
        px = decode(store["images"]["depth"][k])
        idx = basemap.classify(excess, basemap.DEPTH_EDGES_M)
        for r, c in [(r, c) for r in range(0, fx.NY, 7) for c in range(0, fx.NX, 9)]:
            colour = basemap.DEPTH_COLOURS[idx[r, c]]
            assert (px[r, c, 3] == 0) if colour is None else tuple(px[r, c, :3]) == rgb(colour), (name, r, c)
        river = d[0] > 0.5
        assert river.any() and (excess[river] < d[k][river]).all()  # the river is not painted by its depth


def test_city_normal_water_is_subtracted(two_runs):
    run = two_runs.run("small")
    layers = two_runs.layers.for_run(run)
    first = np.zeros((fx.NY, fx.NX))
    w0 = np.zeros_like(first); w0[:5] = 1.0
    layers.water_depth0 = w0
    try:
        d0, text = mapframes._normal_water(layers, first, None)
        assert d0 is w0 or np.array_equal(d0, w0)
        assert "initial water of the city bundle" in text
    finally:
        layers.water_depth0 = None


def test_hazard_classes_use_the_scenario_thresholds(tmp_path):
    import yaml

    fx.write_run(tmp_path / "r", city="fixture")
    scen = yaml.safe_load((tmp_path / "r" / "scenario.yaml").read_text())
    scen["people"] = {"params": {"hazard_thresholds": [0.1, 0.2, 0.3]}}
    (tmp_path / "r" / "scenario.yaml").write_text(yaml.safe_dump(scen))
    ctx = create_app(tmp_path, city_loader=fx.fixture_city_loader)._twin_ctx
    out = map_page.build_map(ctx, "r")
    assert "(0.1–0.2)" in str(out[8][1].children)                          # legend from the scenario
    px = decode(out[2]["images"]["hazard"][6])
    colours = {tuple(p) for p in px[px[..., 3] > 0][:, :3].tolist()}
    assert colours and colours <= {rgb(c) for c in basemap.HAZARD_COLOURS}
    assert rgb(basemap.HAZARD_COLOURS[3]) in colours                       # HR > 0.3: extreme
    scen["people"]["params"]["hazard_thresholds"] = [0.5, 0.2, 0.3]
    (tmp_path / "r" / "scenario.yaml").write_text(yaml.safe_dump(scen))
    ctx = create_app(tmp_path, city_loader=fx.fixture_city_loader)._twin_ctx
    msg = map_page.build_map(ctx, "r")[6]
    assert "hazard_thresholds" in msg.children and "scenario.yaml" in msg.children


def test_series_summary_names_peak_and_clock_time():
    import plotly.graph_objects as go

    start = mapframes.parse_start("2020-10-28T06:00")
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0.1, 0.9, 0.3], name="simulated depth", meta=[0.0, 1800.0, 3600.0]))
    fig.update_layout(title={"text": "Bệnh viện (hospital)"}, yaxis={"title": {"text": "water depth (m)"}})
    text = map_page.series_summary(fig, start)
    assert text.startswith("Bệnh viện (hospital)") and "peak 0.90" in text and "06:30 28/10/2020" in text


def test_frames_cache_reuses_until_the_run_changes(two_runs):
    run = two_runs.run("small")
    layers = two_runs.layers.for_run(run)
    a = map_page.FRAMES.get(run, layers)
    assert map_page.FRAMES.get(run, layers) is a
    assert isinstance(a.t_s, np.ndarray) and len(a.images["people"]) == len(a.t_s)
    assert all(isinstance(s, str) for s in a.summaries) and pd.notna(a.start)


def test_place_series_is_confined_to_listed_runs_and_known_places(two_runs):
    from twin.dashboard.runs import UNKNOWN_RUN

    fig, text = map_page.place_series(two_runs, "../../etc/passwd", "H1")
    assert text == UNKNOWN_RUN and fig.layout.annotations[0].text == UNKNOWN_RUN
    fig, text = map_page.place_series(two_runs, "small", "no-such-place")
    assert "no-such-place" in text and "not in this city bundle" in text
    assert map_page.build_map(two_runs, "small", 10_000)[5] == 12                 # a frame index is clamped


def test_people_and_closed_roads_are_drawn_where_they_are(two_runs):
    """Every recorded agent is a dot at its own position (north up, not flipped); a closed link is
    red at its midpoint and an open one is not."""
    run = two_runs.run("small")
    store = map_page.build_map(two_runs, "small")[2]
    w, n = fx.X0, fx.Y0
    k, t = 6, 6 * 1800.0
    ppl = decode(store["images"]["people"][k])
    scale = ppl.shape[1] / (fx.NX * fx.DX)                       # px per metre
    assert ppl.shape[0] == round(fx.NY * fx.DX * scale)
    people = pd.read_parquet(run.path / "people.parquet")
    snap = people[people.t_s == t]
    c = np.round((snap.x.to_numpy() - w) * scale).astype(int)
    r = np.round((n - snap.y.to_numpy()) * scale).astype(int)
    ok = (r >= 0) & (r < ppl.shape[0]) & (c >= 0) & (c < ppl.shape[1])
    assert ok.sum() > 0.95 * len(snap)
    assert (ppl[r[ok], c[ok], 3] > 0).all()
    assert tuple(ppl[r[ok][0], c[ok][0], :3]) == mapframes.PALETTE[mapframes.PEOPLE_COLOUR][0]
    assert (ppl[..., 3] > 0).mean() < 0.5                         # dots, not a wash over the map
    closed = decode(store["images"]["closed"][k])
    links = pd.read_parquet(run.path / "links.parquet")
    state = links[links.t_s == t].set_index("link_id")["closed"]
    geoms = fx.links()["geometry"]
    red = mapframes.PALETTE[mapframes.CLOSED_COLOUR][0]
    for lid, is_closed in state.items():
        mx, my = geoms[lid].interpolate(0.5, normalized=True).coords[0]
        px = closed[int(round((n - my) * scale)), int(round((mx - w) * scale))]
        assert (px[3] > 0 and tuple(px[:3]) == red) == bool(is_closed), lid
    assert state.any() and not state.all()
