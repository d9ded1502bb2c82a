"""The coupled clock, outputs, restart, seeds and ensembles on real components (small valley)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from twin.build import build_twin
from twin.output.recorders import load_checkpoint
from twin.scenario import load_scenario
from twin.simulation import NumericalInstability, Simulation

from .helpers import write_scenario


def test_coupling_order_and_event_boundary_rule(scenario, city):
    tw = build_twin(scenario, city=city)
    sim = Simulation(tw, stop_time=1800.0)
    x0, y0, x1, y1 = tw.terrain.bounds
    line = [[x0 + 5.0, 0.5 * (y0 + y1)], [x1 - 5.0, 0.5 * (y0 + y1)]]
    for t_e, name in ((120.0, "exactly_at_step_start"), (150.0, "inside_step"), (1800.0, "at_stop_time")):
        sim.submit({"type": "levee", "polyline": line, "crest_m": 400, "label": name}, at=t_e)
    sim.phase_log = []
    sim.run()
    # a decision exactly at t0 acts on the step starting at t0; inside (t0, t1) -> at t0; at stop: never
    seen = [(json.loads(r["params"])["label"], r["t_s"]) for r in tw.decisions.log if r["source"] == "api"]
    assert seen == [("exactly_at_step_start", 120.0), ("inside_step", 120.0)]
    assert [p.decision.label for p in tw.decisions.pending] == ["at_stop_time"]
    phases = [p for _, p in sim.phase_log]
    # initial callbacks/recorders at iteration 0, then each step in the documented order
    assert phases[:2] == ["callbacks", "recorders"]
    assert phases[2:] == ["events", "flood", "roads", "traffic", "callbacks", "recorders"] * 30
    assert sim.iteration == 30 and sim.time == 1800.0 and tw.flood.time == pytest.approx(1800.0, abs=1e-9)


def test_wall_time_per_phase_is_recorded(tmp_path, city):
    """The manifest tells where a run's time went: wall seconds per phase of the coupled step."""
    import time

    sc = load_scenario(write_scenario(tmp_path), ["duration=20min"])
    sim = Simulation(build_twin(sc, city=city), out_dir=tmp_path / "run")
    t0 = time.perf_counter()
    sim.run()
    elapsed = time.perf_counter() - t0
    ph = sim.phase_wall_s
    assert {"events", "flood", "roads", "traffic", "callbacks", "recorders"} <= set(ph)
    assert all(v >= 0 for v in ph.values()) and ph["flood"] > 0
    assert sum(ph.values()) <= elapsed  # phases are disjoint slices of the run
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(man["phase_wall_s"]) == set(ph)
    # a restart carries the totals on
    st = sim.get_state()
    other = Simulation(build_twin(sc, city=city))
    other.set_state(st, restore_output=False)
    assert other.phase_wall_s == ph


def test_flood_only_runs_without_other_components(tmp_path, city):
    sc = load_scenario(write_scenario(tmp_path), ["traffic=null", "duration=5min"])
    tw = build_twin(sc, city=city)
    assert tw.traffic is None and tw.people is None and tw.component_names() == ["flood"]
    sim = Simulation(tw, out_dir=tmp_path / "run")
    sim.run()
    kp = json.loads((tmp_path / "run" / "kpis.json").read_text())
    assert "travel_time_index" not in kp and kp["volume_balance"]["relative_error"] < 1e-9
    assert len(pd.read_parquet(tmp_path / "run" / "trips.parquet")) == 0


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, city):
    tmp = tmp_path_factory.mktemp("full")
    sc = load_scenario(write_scenario(tmp))
    sim = Simulation(build_twin(sc, city=city), out_dir=tmp / "run")
    sim.run()
    return sim, tmp / "run", tmp


def test_run_folder_has_the_fixed_names(full_run):
    _, run, _ = full_run
    for name in ("manifest.json", "scenario.yaml", "kpis.json", "fields.nc", "max_depth.tif", "trips.parquet",
                 "people.parquet", "incidents.parquet", "links.parquet", "max_depth.png"):
        assert (run / name).is_file(), name
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "completed" and man["seed"] == 1 and man["seed_entropy"] == "1"
    assert man["package_version"] and "git_hash" in man and man["wall_time_s"] > 0
    assert man["scenario"]["duration"] == 1800.0 and man["time_s"] == 1800.0
    assert not (run / "links.parts").exists()


def test_netcdf_is_cf_with_crs(full_run):
    import xarray as xr
    from pyproj import CRS

    _, run, _ = full_run
    raw = xr.open_dataset(run / "fields.nc", decode_times=False)
    assert raw.attrs["Conventions"] == "CF-1.8"
    assert raw["time"].attrs["units"] == "seconds since 2020-10-28 06:00:00+07:00"
    assert list(raw["time"].values) == [0, 300, 600, 900, 1200, 1500, 1800]
    for v in ("depth", "speed", "hazard"):
        assert raw[v].dims == ("time", "y", "x") and raw[v].attrs["grid_mapping"] == "spatial_ref"
    assert raw["depth"].attrs["units"] == "m" and raw["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert CRS.from_wkt(raw["spatial_ref"].attrs["crs_wkt"]).to_epsg() == 32649
    assert raw["x"].values[0] == 600_010.0 and raw["y"].values[0] == 1_749_990.0  # cell centres
    dec = xr.open_dataset(run / "fields.nc")
    assert str(dec["time"].values[0]).startswith("2020-10-27T23:00")  # 06:00 local = 23:00 UTC
    assert np.isnan(dec["depth"].values[0, 0, 0])  # nodata corner


def test_kpis_recomputed_from_the_tables_agree(full_run):
    import xarray as xr

    from twin.couplings import DEPTH_CLASSES

    sim, run, _ = full_run
    kp = json.loads((run / "kpis.json").read_text())
    ds = xr.open_dataset(run / "fields.nc", decode_times=False)
    land = ds["land"].values.astype(bool)
    # flooded area by depth class over time, from the NetCDF (float64 in this test)
    for k, _t in enumerate(ds["time"].values):
        d = ds["depth"].values[k][land]
        for name, lo, hi in DEPTH_CLASSES:
            area = np.count_nonzero((d >= lo) & (d < hi)) * 400.0
            assert kp["flooded_area_m2"][k][name] == pytest.approx(area, rel=0, abs=400.0 * 2)
    assert kp["series_t_s"] == list(ds["time"].values)
    # max depth: GeoTIFF vs flooded_area_max
    import rasterio

    with rasterio.open(run / "max_depth.tif") as src:
        md = src.read(1, masked=True).filled(np.nan)
        assert src.crs.to_epsg() == 32649
    assert kp["flooded_area_max_m2"] == pytest.approx(np.count_nonzero((md >= 0.1) & land) * 400.0)
    # links closed share over time from links.parquet
    links = pd.read_parquet(run / "links.parquet")
    share = links.groupby("t_s")["closed"].mean()
    assert [c["share"] for c in kp["road_links_closed_share"]] == pytest.approx(list(share.values))
    assert kp["road_links_closed_share_max"] == pytest.approx(share.max())
    assert share.max() > 0, "the test flood should close some roads"
    # travel-time index from trips.parquet
    trips = pd.read_parquet(run / "trips.parquet")
    ok = trips["travel_time_s"].notna() & trips["free_flow_time_s"].notna()
    assert ok.sum() > 10
    tti = trips.loc[ok, "travel_time_s"].sum() / trips.loc[ok, "free_flow_time_s"].sum()
    assert kp["travel_time_index"]["index"] == pytest.approx(tti) and tti >= 1.0
    # max depth at places from the GeoTIFF
    for p in kp["max_depth_at_places"]:
        r = int((1_750_000.0 - p["y"]) // 20)
        c = int((p["x"] - 600_000.0) // 20)
        assert p["max_depth_m"] == pytest.approx(md[r, c], abs=1e-6)


def _tables(run):
    return {n: pd.read_parquet(run / f"{n}.parquet") for n in ("trips", "links", "people", "incidents")}


def _fields(run):
    import xarray as xr

    with xr.open_dataset(run / "fields.nc", decode_times=False) as ds:
        return {v: ds[v].values.copy() for v in ("time", "depth", "speed", "hazard")}


def test_resume_is_bit_identical_to_uninterrupted(full_run, city):
    from twin.workflows.runs import resume_run

    sim_a, run_a, tmp = full_run
    sc = load_scenario(run_a / "scenario.yaml")
    run_b = tmp / "interrupted"
    sim = Simulation(build_twin(sc, city=city), out_dir=run_b)

    def interrupt(s):
        if s.iteration == 13:
            raise KeyboardInterrupt

    sim.add_callback("ctrl_c", interrupt)
    with pytest.raises(KeyboardInterrupt):
        sim.run()
    cks = sorted((run_b / "checkpoints").glob("ckpt-*.npz"))
    assert [c.name for c in cks] == ["ckpt-000000013.npz"]
    assert json.loads((run_b / "manifest.json").read_text())["status"] == "checkpointed"
    sim_b = resume_run(run_b, city=city)
    assert sim_b.iteration == sim_a.iteration
    np.testing.assert_array_equal(sim_b.twin.flood.depth, sim_a.twin.flood.depth)
    np.testing.assert_array_equal(sim_b.twin.flood.max_depth, sim_a.twin.flood.max_depth)
    fa, fb = _fields(run_a), _fields(run_b)
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])
    ta, tb = _tables(run_a), _tables(run_b)
    for k in ta:
        pd.testing.assert_frame_equal(ta[k], tb[k])
    ka = json.loads((run_a / "kpis.json").read_text())
    kb = json.loads((run_b / "kpis.json").read_text())
    assert ka == kb


def test_same_seed_identical_different_seed_different(full_run, city, tmp_path):
    sim_a, run_a, _ = full_run
    sc = load_scenario(run_a / "scenario.yaml")
    same = Simulation(build_twin(sc, city=city), out_dir=tmp_path / "same")
    same.run()
    pd.testing.assert_frame_equal(_tables(run_a)["trips"], _tables(tmp_path / "same")["trips"])
    np.testing.assert_array_equal(_fields(run_a)["depth"], _fields(tmp_path / "same")["depth"])
    other = Simulation(build_twin(sc.with_overrides(["seed=2"]), city=city), out_dir=tmp_path / "other")
    other.run()
    ta, to = _tables(run_a)["trips"], _tables(tmp_path / "other")["trips"]
    assert len(ta) != len(to) or not ta[["origin", "destination", "depart_s"]].equals(to[["origin", "destination", "depart_s"]])


def test_nan_depth_stops_with_a_clear_message_and_a_checkpoint(scenario, city, tmp_path):
    tw = build_twin(scenario, city=city)
    sim = Simulation(tw, out_dir=tmp_path / "nan")
    real = tw.depth

    def poisoned():
        d = real().copy()
        if sim.iteration >= 3:
            d[10, 20] = np.nan
        return d

    tw.depth = poisoned
    with pytest.raises(NumericalInstability, match=r"t = 0:03:00 \(iteration 3\): 1 NaN and 0 negative depth cells, first at row 10, col 20"):
        sim.run()
    assert (tmp_path / "nan" / "checkpoints" / "ckpt-000000003.npz").exists()


def test_wall_time_limit_stops_with_a_checkpoint(scenario, city, tmp_path):
    sim = Simulation(build_twin(scenario, city=city), out_dir=tmp_path / "wall", wall_time_limit=1e-9)
    sim.run()
    assert sim.iteration == 1 and "wall-time limit" in sim.stop_reason
    st = load_checkpoint(next((tmp_path / "wall" / "checkpoints").glob("*.npz")))
    assert st["iteration"] == 1


def test_output_interval_must_be_multiple_of_coupling_step(tmp_path, city):
    # refused when the scenario is read (before: only when the Simulation was made), naming the key
    with pytest.raises(ValueError, match=r"outputs\.fields_every \(90 s\) must be a whole multiple of coupling_step \(60 s\)"):
        load_scenario(write_scenario(tmp_path), ["outputs.fields_every=90"])


def test_road_closure_intervention_closes_and_reopens(tmp_path, city):
    sc = load_scenario(write_scenario(tmp_path), [
        "duration=10min",
        "interventions=[{type: road_closure, links: [0, 1], at: 2min, until: 6min},"
        " {type: road_closure, near: [600600, 1749500], radius_m: 1, at: 0}]"])
    tw = build_twin(sc, city=city)
    sim = Simulation(tw)
    closed = {}
    sim.add_callback("watch", lambda s: closed.__setitem__(s.time, tw.traffic.link_closed[:2].copy()))
    sim.run()
    # applied at the start of the step starting at 2 min -> visible from t = 3 min; reopened likewise
    assert [bool(closed[t].all()) for t in (60, 120, 180, 360, 420)] == [False, False, True, True, False]
    near = [r for r in tw.decisions.log if r["decision_id"] == 1]
    assert len(near) == 1 and near[0]["outcome"] == "applied" and tw.manual_closed.sum() >= 1
    # a point off the map is named as such (before: "no road link within 1 m"), one on it far from roads too
    with pytest.raises(ValueError, match=r"interventions\.1\.road_closure\.near: outside the map"):
        build_twin(sc.with_overrides(["interventions.1.near=[0, 0]"]), city=city)
    with pytest.raises(ValueError, match="no road link within radius_m=1 m"):
        build_twin(sc.with_overrides(["interventions.1.near=[600010, 1749990]"]), city=city)
