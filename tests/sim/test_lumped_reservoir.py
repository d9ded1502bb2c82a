"""A lumped reservoir's lake is not also on the flood grid.

With ``flood.reservoir`` (the level pool of twin.flood.reservoir_ops, not ``in_grid``) the city bundle's
initial water still held Phú Ninh's lake on the 2-D grid, 14 m deep: a second copy of the level pool's
water. Where the domain's west edge cuts the lake, the free boundary drained it out of the domain (at
100 m, 135 Mm³ in 12 h of the Molave scenario: the grid lake fell from 32.0 to 26.9 m while the level pool
rose to 32.4 m), and its depth set the sub-step of every Tam Kỳ run (14.3 m: 1.27 s at 30 m). The lake is
now taken off the grid (drained each sub-step, still permanent water for the land mask).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.build import _solve_cells, build_twin
from twin.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
MOLAVE = REPO / "scenarios" / "tamky_molave_2020.yaml"
FLOOD_ONLY = ["traffic.enabled=false", "people.enabled=false", "services.enabled=false", "interventions=[]",
              "outputs.png=false", "flood.dtype=float64"]
LAKE_XY = (224500.0, 1716000.0)  # a point inside Phú Ninh (the dam-break scenario's)


def _twin(*extra: str, res: int = 100):
    return build_twin(load_scenario(MOLAVE, FLOOD_ONLY + [f"resolution_m={res}", "duration=1h", *extra]))


@pytest.fixture(scope="module")
def molave():
    return _twin()


def test_the_lake_is_found_and_starts_dry_on_the_grid(molave):
    """The footprint is Phú Ninh's lake (its surface at the normal level is 32.1 km²; the synthetic
    basin's at 100 m is 34.7 km², within 15 %), its ~300 Mm³ are not on the grid at t = 0, and the
    deepest water left on the grid is a river or the lagoon (< 5 m), not the 14 m lake."""
    tw = molave
    lake = tw.reservoir_footprint
    assert lake is not None
    info = tw.forcing["reservoir_footprint"]
    assert info["area_m2"] == pytest.approx(32.10e6, rel=0.15)
    assert 2.5e8 < info["initial_water_m3"] < 3.6e8
    h = np.asarray(tw.flood.depth)
    assert float(h[lake].max()) == 0.0
    assert float(h.max()) < 5.0
    # still permanent water: not land for flooded area, damage and the map scale
    assert not np.asarray(tw.land)[lake].any()
    assert float(np.asarray(tw.initial_depth)[lake].mean()) > 5.0


def test_no_water_leaves_through_the_edge_that_cuts_the_lake(molave):
    """The bug: the free west edge drained the lake out of the domain (the lake meets it on 6 rows at
    100 m; before the fix ~3,000 m³/s left there). After 30 min: less than 1 m³/s, and the model's
    volume balance closes."""
    tw = molave
    lake = tw.reservoir_footprint
    rows = np.nonzero(lake[:, 0])[0]
    assert rows.size >= 3
    tw.flood.run_one_step(1800.0)
    qx, _ = tw.flood.face_discharge()
    out_west = -float(np.sum(np.asarray(qx)[rows, 0])) * tw.terrain.cell_size
    assert abs(out_west) < 1.0, out_west
    vb = tw.flood.volume_balance()
    assert vb["relative_error"] < 1e-9
    # rain on the footprint and runoff into it leave the grid: booked as boundary outflow, not lost
    assert vb["outflow_m3"] > 0


@pytest.fixture(scope="module")
def tamky_10m_cached():
    """The 10 m Tam Kỳ terrain generated into the cache if it is not there yet (its first load warns that
    it generates, which tests/city/test_city.py asserts; on a clean machine this test ran first would fail
    on that warning otherwise)."""
    import warnings

    from twin.city import load_city
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="generating the Tam Kỳ 10 m terrain", category=UserWarning)
        load_city("tamky", resolution_m=10)


def test_the_coupled_sub_step_is_no_longer_set_by_the_lake(tamky_10m_cached):
    """At 30 m on the 10 m city (subgrid factor 3) the lake's 14.3 m set a 1.27 s sub-step; without it the
    deepest water is the river (< 5 m) and the first sub-step is at least 1.5x longer."""
    tw = _twin("flood.subgrid_factor=3", res=30)
    fm = tw.flood
    lake_cells = _solve_cells(fm, tw.reservoir_footprint)
    assert len(lake_cells) > 30000
    fm.run_one_step(10.0)
    assert fm.n_steps <= 6        # 10 s: 8 sub-steps of 1.27 s with the lake on the grid
    d = np.asarray(fm.depth)
    r, c = np.array(lake_cells).T
    assert float(d[r, c].max()) < 0.01


def test_the_lake_is_the_same_from_xy_and_from_the_full_supply_level(molave):
    """``flood.reservoir.xy`` picks the lake explicitly; without it the deepest initial water at the full
    supply level is the seed: both give the same cells. A point on dry land is refused by name."""
    tw = _twin(f"flood.reservoir.xy=[{LAKE_XY[0]}, {LAKE_XY[1]}]")
    assert np.array_equal(tw.reservoir_footprint, molave.reservoir_footprint)
    with pytest.raises(ValueError, match=r"flood\.reservoir\.xy .*not in the city's initial water"):
        _twin("flood.reservoir.xy=[235000, 1725000]")


def test_no_lake_at_the_full_supply_level_leaves_the_grid_as_it_was():
    """A reservoir whose full-supply level no initial water stands at (outside the domain): nothing is
    taken off the grid, and the twin says so in its forcing record."""
    tw = _twin("flood.reservoir.full_supply_level_m=60", "flood.reservoir.initial_level_m=60")
    assert tw.reservoir_footprint is None
    assert tw.forcing["reservoir_footprint"]["cells"] == 0
    assert float(np.asarray(tw.flood.depth).max()) > 10.0   # the bundle's lake is still there


def test_solve_cells_take_coarse_cells_at_least_half_in_the_mask(tmp_path, monkeypatch):
    from twin.flood.subgrid import SubgridTables
    from twin.terrain import Terrain

    monkeypatch.setenv("TWIN_CACHE_DIR", str(tmp_path))

    class _Model:
        subgrid = SubgridTables.from_terrain(Terrain.from_array(np.zeros((5, 6)), 10.0), 3)
        shape = (2, 2)

    m = np.zeros((5, 6), bool)          # fine 5 x 6 in a 2 x 2 coarse grid of 3 x 3 blocks (padded)
    m[0:3, 0:2] = True                  # 6 of 9 pixels: in
    m[0:2, 3:4] = True                  # 2 of 9: out
    m[3:5, 0:3] = True                  # 6 of 9 (3 padding pixels count as outside): in
    assert sorted(_solve_cells(_Model(), m)) == [(0, 0), (1, 0)]


def test_a_lake_filled_on_the_grid_is_walled_where_the_domain_edge_cuts_it():
    """Dam break (``in_grid``) with the inertial solver: the basin meets the free west edge, which drained
    it at normal depth before; now those edge faces are walls and the lake at rest keeps its level (no
    breach here: interventions off)."""
    sc = load_scenario(REPO / "scenarios" / "tamky_phuninh_dambreak.yaml",
                       FLOOD_ONLY + ["resolution_m=100", "flood.solver=inertial", "duration=1h"])
    tw = build_twin(sc)
    fm = tw.flood
    h0 = np.asarray(fm.depth)
    rows = np.nonzero(h0[:, 0] > 5.0)[0]          # the lake on the west edge
    assert rows.size >= 3
    fm.run_one_step(1200.0)
    qx, _ = fm.face_discharge()
    assert float(np.abs(np.asarray(qx)[rows, 0]).max()) == 0.0
    z = np.asarray(fm.elevation)
    assert float(np.median((z + np.asarray(fm.depth))[rows, 0])) == pytest.approx(35.4, abs=0.05)


def test_the_lake_gauge_reads_the_level_pool_in_a_forecast(tmp_path):
    """A stage gauge inside the lake (Phú Ninh's, at the dam) has no grid water under it: a forecast's
    ``gauges.parquet`` gives it the level pool's level at each output time (the pool starts at 32.6 m and
    spills), not the drained bed (29.4 m at 300 m) nor the old grid lake that drained away."""
    import pandas as pd

    from twin.flood.forcing import reservoir_level_at
    from twin.forecast import run_forecast
    from twin.output.forecast_schema import read_forecast_table
    from twin.simulation import run_scenario

    sc = load_scenario(MOLAVE, FLOOD_ONLY + ["resolution_m=300", "duration=30min", "outputs.checkpoint_every=10min",
                                             "outputs.fields=[depth]"])
    run_scenario(sc, out_dir=tmp_path / "base")
    run_forecast(tmp_path / "base", 2, 1200.0, tmp_path / "fc", at=600.0, every_s=600.0, serial=True)
    g = read_forecast_table(tmp_path / "fc", "gauges.parquet")
    lake = g[g["name"].astype(str).str.contains("hồ Phú Ninh")]
    assert len(lake) > 0
    assert lake["stage_m"].notna().all()
    assert (lake["stage_m"] > 32.0).all() and (lake["stage_m"] < 33.0).all()
    # the member's level pool at those times (member 0 is the control: the base scenario's pool)
    tw = build_twin(sc)
    c0 = lake[lake["member"] == 0] if "member" in lake.columns else lake
    for t, v in zip(pd.to_numeric(c0["t_s"]), c0["stage_m"]):
        assert v == pytest.approx(reservoir_level_at(tw, float(t)), abs=1e-9)


def test_a_water_level_stream_in_the_lake_is_refused_for_nudging(tmp_path):
    """Nudging (or the EnKF) toward a water level observed in the lake would pour water into drained cells
    and report the bed as the model's level: the build refuses it, naming the datastream; a gauge on the
    river is accepted."""
    from twin.sensors import Datastream, SensorStore, Station

    path = tmp_path / "wl.duckdb"
    with SensorStore(path) as st:
        st.register([Station("PN", x=226441.2, y=1716585.6), Station("TK", x=230444.5, y=1721780.0)],
                    [Datastream("pn-wl", "PN", "water_level", "m"), Datastream("tk-wl", "TK", "water_level", "m")])

    def build(streams):
        sc = load_scenario(MOLAVE, FLOOD_ONLY + ["resolution_m=300", "duration=30min", "sensors.enabled=true",
                                                 f"sensors.store={path}",
                                                 f"sensors.assimilation={{nudging: {{datastreams: {streams}}}}}"])
        return build_twin(sc)

    with pytest.raises(ValueError, match=r"datastream 'pn-wl' .* lies in the lake of the lumped reservoir"):
        build("[pn-wl, tk-wl]")
    tw = build("[tk-wl]")
    assert tw.assimilator is not None
    tw.close()


def test_water_at_the_full_supply_level_that_reaches_the_sea_is_refused():
    """A full-supply level at the lagoon's (0.3 m) would make the lagoon and the sea strip the "lake" and
    drain the coast every sub-step: refused by name, nothing built."""
    with pytest.raises(ValueError, match=r"flood\.reservoir \(Phu Ninh\): the water standing at .* reaches the sea"):
        _twin("flood.reservoir.full_supply_level_m=0.3", "flood.reservoir.initial_level_m=0.3")


def test_the_cli_refuses_a_reservoir_point_off_the_lake_with_exit_2(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "twin", "run", str(MOLAVE), "--set", "resolution_m=300",
                        "--set", "flood.reservoir.xy=[235000, 1725000]", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "flood.reservoir.xy (Phu Ninh)" in r.stderr and "Traceback" not in r.stderr
