"""Local time steps on subgrid topography (FloodModel(..., subgrid=3, local_time_steps=m), flood.local_time_steps;
core_cpp/flood_subgrid.cpp lts_step; docs/design/subgrid-local-time-steps.md).

The test problem: 10 m pixels, a plain rising 1.5 m over 1.8 km with 0.3 m of roughness and a 30 m wide channel
6 m deep along it, holding 2.5 m of water at the start; rain, losses, an inflow into the channel, a free east edge
and a stage on the west edge. The channel's water sets the whole grid's sub-step without local time steps.
Each test states its tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest

from twin import FloodModel, Terrain, _core
from twin.flood.model import LTS_CELL_COST, lts_chain, lts_substep_count


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_CACHE_DIR", str(tmp_path / "cache"))


def _terrain(ny=72, nx=180):
    rng = np.random.default_rng(4)
    x = (np.arange(nx) + 0.5) * 10.0
    z = 4.0 - 1.5e-3 * x + rng.uniform(0.0, 0.3, (ny, nx))
    z[33:36, :] = 4.0 - 1.5e-3 * x - 6.0 + rng.uniform(0.0, 0.2, (3, nx))
    return z


def _channel_plain(m, threads=1, z=None):
    z = _terrain() if z is None else z
    mod = FloodModel(Terrain.from_array(z, 10.0), manning=0.035, subgrid=3, threads=threads, local_time_steps=m)
    lev = np.full(mod.shape, np.nan)
    lev[11, :] = 4.0 - 1.5e-3 * (np.arange(mod.shape[1]) * 30 + 15) - 2.5  # the channel's coarse row
    h0 = np.where(np.isfinite(lev), mod.subgrid.depth_for_level(np.nan_to_num(lev)), 0.0)
    mod.set_depth(h0)
    mod.set_rainfall([0.0, 1800.0, 3600.0], [20.0, 60.0, 10.0])
    mod.set_loss_rate(5.0)
    mod.add_inflow([(11, 0)], ([0.0, 3600.0], [5.0, 15.0]))
    mod.set_boundary("east", "free")
    mod.set_boundary("west", "stage", stage_m=[-1.0])
    return mod


def _run(mod, calls=6, each=600.0):
    for _ in range(calls):
        mod.run_one_step(each)
    return mod


def test_local_time_steps_conserve_volume_and_take_fewer_whole_grid_steps():
    ref = _run(_channel_plain(1))
    lts = _run(_channel_plain(8))
    vb = lts.volume_balance()
    assert vb["rain_m3"] > 0 and vb["outflow_m3"] > 0 and vb["lost_m3"] > 0
    assert vb["relative_error"] < 1e-10  # tolerance 1e-10 relative, float64, as without local time steps
    assert float(lts.depth.min()) >= -1e-9  # no negative depth (the reserve of committed outflow)
    # the channel's cells sub-cycle; the plain takes steps several times longer
    assert ref.lts_substeps == ref.n_steps and lts.lts_substeps >= lts.n_steps
    assert lts.n_steps < ref.n_steps / 2
    assert 0 < lts.lts_fast_cells < lts.depth.size / 2


def test_local_time_steps_give_the_answers_of_the_global_sub_step():
    # measured: fine max depth RMSE 0.35 mm, max 2.5 mm; discharge through mid-channel 0.02 %; tolerance 5 mm RMSE,
    # 3 cm at any pixel, 1 % on the discharge and 0.5 % on the volume held
    ref = _run(_channel_plain(1))
    lts = _run(_channel_plain(8))
    fa, fb = ref.fine_max_depth(), lts.fine_max_depth()
    wet = (fa > 0.01) | (fb > 0.01)
    d = np.abs(fa - fb)
    assert wet.sum() > 3000
    assert float(np.sqrt(np.mean(d[wet] ** 2))) < 0.005
    assert float(d.max()) < 0.03
    qa, qb = ref.face_discharge()[0][:, 30].sum(), lts.face_discharge()[0][:, 30].sum()
    assert abs(qb - qa) / abs(qa) < 0.01
    va, vb = float(ref.depth.sum()), float(lts.depth.sum())
    assert abs(vb - va) / va < 0.005


def _valley(m, threads=1):
    # a V-shaped valley sloping east, filled 4 m deep at its floor: every depth from 4 m to dry across it, so every
    # level of sub-steps has cells; an inflow at the west end, a free east edge
    rng = np.random.default_rng(7)
    x = (np.arange(180) + 0.5) * 10.0
    y = (np.arange(90) + 0.5) * 10.0
    z = 4.0 - 1.5e-3 * x[None, :] + 0.02 * np.abs(y[:, None] - 450.0) + rng.uniform(0.0, 0.2, (90, 180))
    mod = FloodModel(Terrain.from_array(z, 10.0), manning=0.035, subgrid=3, threads=threads, local_time_steps=m)
    xc = (np.arange(mod.shape[1]) + 0.5) * 30.0
    mod.set_depth(mod.subgrid.depth_for_level(np.broadcast_to(8.0 - 1.5e-3 * xc, mod.shape)))
    mod.add_inflow([(15, 0)], ([0.0, 3600.0], [20.0, 40.0]))
    mod.set_boundary("east", "free")
    return mod


def test_levels_of_sub_steps_follow_the_depth_and_keep_the_volume_and_the_answers():
    # measured (m = 16, levels of 2, 4, 8, 16 sub-steps): 618 whole-grid steps against 1010, depth RMSE 1.5 mm and
    # at most 18 mm (next to the inflow) against one sub-step for all, discharge mid-valley 0.1 %; tolerances below.
    # The inflow's own cell is left out: the reference adds each step's inflow after the step (a 0.16 m pulse
    # in that cell at the end of a call), the sub-cycle at the start of each sub-step.
    ref = _valley(1)
    mods = [_valley(16), _valley(16, threads=2)]
    levels = set()
    for _ in range(6):
        ref.run_one_step(600.0)
        for mod in mods:
            mod.run_one_step(600.0)
        if mods[0]._solver._lts_mask is not None:  # (the first call: the valley full, one sub-step for all)
            levels |= set(np.unique(mods[0]._solver._lts_mask >> 2).tolist())
    lts = mods[0]
    assert {1, 2, 3} <= levels  # several levels at once
    assert lts.volume_balance()["relative_error"] < 1e-10 and float(lts.depth.min()) >= -1e-9
    assert lts.n_steps < 0.7 * ref.n_steps
    d = lts.depth - ref.depth
    d[15, 0] = 0.0
    wet = (ref.depth > 0.01) | (lts.depth > 0.01)
    assert float(np.sqrt(np.mean(d[wet] ** 2))) < 0.005 and float(np.abs(d).max()) < 0.04
    qa, qb = ref.face_discharge()[0][:, 30].sum(), lts.face_discharge()[0][:, 30].sum()
    assert abs(qb - qa) / abs(qa) < 0.01
    for a, b in zip((lts.depth, *lts.face_discharge(), lts.fine_max_depth()),
                    (mods[1].depth, *mods[1].face_discharge(), mods[1].fine_max_depth())):
        assert np.array_equal(a, b)  # 1 and 2 threads: bit-identical
    # a step's sub-step count is one whose halvings give every level (2^k or 3 x 2^k within m), else as needed
    assert [lts_substep_count(n, 16) for n in (2, 3, 5, 7, 9, 13, 16)] == [2, 3, 6, 8, 12, 16, 16]
    assert lts_substep_count(5, 5) == 5 and lts_chain(12) == [3, 6, 12]


def test_lake_at_rest_with_a_deep_middle_and_a_shallow_shore_stays_at_rest():
    rng = np.random.default_rng(9)
    z = rng.uniform(0.0, 1.5, (60, 60))
    z[24:36, 24:36] -= 8.0  # a deep hole: local time steps there, one step on the shore
    m = FloodModel(Terrain.from_array(z, 10.0), manning=0.03, subgrid=3, local_time_steps=8)
    h0 = m.subgrid.depth_for_level(1.2)
    m.set_depth(h0)
    lev0 = m.level.copy()
    m.run_one_step(1800.0)
    assert m.n_steps < m.lts_substeps  # the hole sub-cycled
    assert np.abs(m.velocity).max() < 1e-10  # tolerance: max |u| < 1e-10 m/s
    wet = h0 > 0
    assert np.abs(m.level[wet] - lev0[wet]).max() < 1e-12  # level unchanged (1e-12 m)


@pytest.mark.parametrize("counts", [(1, 2, 3)])
def test_thread_count_does_not_change_a_bit_with_local_time_steps(counts):
    out = []
    for threads in counts:
        m = _run(_channel_plain(8, threads=threads), calls=2)
        assert m.n_steps < m.lts_substeps
        out.append((m.depth, *m.face_discharge(), m.max_depth, m.max_speed, m.arrival_time, m.fine_max_depth()))
    for other in out[1:]:
        for a, b in zip(out[0], other):
            assert np.array_equal(a, b, equal_nan=True)  # bit-identical


def test_a_restart_with_local_time_steps_is_bit_identical():
    whole = _run(_channel_plain(8), calls=2)
    first = _run(_channel_plain(8), calls=1)
    state = first.get_state()
    again = _channel_plain(8)
    again.set_state(state)
    again.run_one_step(600.0)
    assert again.n_steps == whole.n_steps and again.lts_substeps == whole.lts_substeps
    for a, b in zip((whole.depth, *whole.face_discharge(), whole.fine_max_depth()),
                    (again.depth, *again.face_discharge(), again.fine_max_depth())):
        assert np.array_equal(a, b)


def test_the_fast_cells_are_the_deep_cells_and_their_neighbours_and_the_choice_follows_the_counts():
    mod = _channel_plain(8)
    mod.run_one_step(60.0)
    s = mod._solver
    h = np.maximum(s.h, 0.0)
    local = np.where(h > 0, s.tables.level_for_depth(h) - s.tables.z_min, 0.0)
    deep_depth = 0.3
    f = mod._forcing
    f.rain0 = f.rain1 = None
    f.loss = None
    before = local.copy()
    s.substep(6.0, mod.time + 6.0, f, lts_substeps=6, lts_deep_depth=deep_depth,
              count_depths=np.array([0.05, deep_depth, 1.0]))
    mask = s._lts_mask
    deep = before > deep_depth
    deep[:, 0] |= mod._edge_value[: mod.shape[0]] - s.tables.z_min[:, 0] > deep_depth  # the stage edge's cells
    # levels of 6 sub-steps: the chain 3, 6; a cell above 3^2 x the deep depth takes 6 sub-steps (depth level 2)
    level = (before > deep_depth).astype(int) + (before > 9 * deep_depth)
    stage = mod._edge_value[: mod.shape[0]] - s.tables.z_min[:, 0]
    level[:, 0] = np.maximum(level[:, 0], (stage > deep_depth).astype(int) + (stage > 9 * deep_depth))
    assert lts_chain(6) == [3, 6] and lts_chain(4) == [2, 4] and lts_chain(8) == [2, 4, 8] and lts_chain(5) == [5]
    near = deep.copy()
    near[1:] |= deep[:-1]
    near[:-1] |= deep[1:]
    near[:, 1:] |= deep[:, :-1]
    near[:, :-1] |= deep[:, 1:]
    assert deep.any() and not deep.all()
    assert np.array_equal((mask & 2) != 0, deep)
    assert np.array_equal(mask >> 2, level) and (level == 1).any() and (level == 2).any()
    assert np.array_equal((mask & 1) != 0, near)
    assert mod.lts_fast_cells == int(near.sum())
    h = np.maximum(s.h, 0.0)
    after = np.where(h > 0, s.tables.level_for_depth(h) - s.tables.z_min, 0.0)
    assert np.array_equal(s.depth_counts, [np.sum(after > t) for t in (0.05, deep_depth, 1.0)])
    # a grid whose cells are mostly deep takes one sub-step for all (the sub-cycle would cost more)
    assert LTS_CELL_COST > 1
    wet = _channel_plain(8)
    wet.set_depth(np.full(wet.shape, 3.0))
    wet.run_one_step(120.0)
    assert wet.n_steps == wet.lts_substeps > 1


def test_bad_local_time_steps_are_refused_naming_the_cause():
    t = Terrain.from_array(_terrain(), 10.0)
    for bad in (0, 65, 2.5, True, "8"):
        with pytest.raises(ValueError, match="local_time_steps"):
            FloodModel(t, subgrid=3, local_time_steps=bad)
    with pytest.raises(ValueError, match="need subgrid topography"):
        FloodModel(t, local_time_steps=4)
    m = FloodModel(t, subgrid=3, local_time_steps=4)
    s = m._solver
    args = (m._z, s._h[0], s._qx[0], s._qy[0], s._h[1], s._qx[1], s._qy[1], s.tables.cells, s.tables.faces_x,
            s.tables.faces_y, m._manning, m._edge_kind, m._edge_value, m._maxh, m._maxs, m._arr, s.max_level,
            m._row_sums)
    kw = dict(dx=30.0, dt=1.0, theta=0.8, t_end=1.0)
    with pytest.raises(TypeError, match="lts_mask"):
        _core.flood_subgrid_step(*args, **kw, lts_substeps=4)
    mask = np.zeros(m.shape, np.uint8)
    with pytest.raises(ValueError, match="lts_substeps"):
        _core.flood_subgrid_step(*args, **kw, lts_substeps=0, lts_mask=mask)
    with pytest.raises(ValueError, match="lts_deep_depth"):
        _core.flood_subgrid_step(*args, **kw, lts_substeps=4, lts_mask=mask, lts_deep_depth=-1.0)
    with pytest.raises(ValueError, match="outside the grid"):
        _core.flood_subgrid_step(*args, **kw, lts_substeps=4, lts_mask=mask, lts_deep_depth=1.0,
                                 lts_sources=np.array([10**9]), lts_source_depth=np.array([0.1]))
    with pytest.raises(ValueError, match="lts_source_depth"):
        _core.flood_subgrid_step(*args, **kw, lts_substeps=4, lts_mask=mask, lts_deep_depth=1.0,
                                 lts_sources=np.array([3]), lts_source_depth=np.array([np.nan]))
    with pytest.raises(ValueError, match="depth_counts"):
        _core.flood_subgrid_step(*args, **kw, count_depths=np.array([0.1]), depth_counts=np.zeros((3, 1)))


def test_scenario_key_needs_subgrid_topography():
    from pydantic import ValidationError

    from twin.scenario import Flood

    assert Flood(subgrid_factor=3, local_time_steps=8).local_time_steps == 8
    with pytest.raises(ValidationError, match="local_time_steps: 8 needs subgrid topography"):
        Flood(local_time_steps=8)
    with pytest.raises(ValidationError, match="local_time_steps"):
        Flood(subgrid_factor=3, local_time_steps=0)


@pytest.mark.parametrize(("deep_depth", "bank"), [(1.0, 1.1), (0.2, 1.5)])
def test_a_fast_cell_keeps_the_outflow_committed_to_its_slow_faces(deep_depth, bank):
    # coarse rows (30 m): high ground, a channel 8 m deep (deep: it sub-cycles), a bank holding 0.1 m between the
    # channel and a dry pit 6 m lower (the bank is fast, its face to the pit slow). The pit's face takes the bank's
    # whole depth for the step (its outflow is limited to what the bank holds); without the reserve the bank's faster
    # face to the channel drained it in the first sub-steps and the committed outflow took it below zero (the
    # kernel stopped: depth below -1 mm in row 12). With a deep depth of 0.2 m (levels of 2, 4, 8 sub-steps above
    # 0.2, 0.8, 3.2 m) and 0.5 m on the bank, the bank is at level 1 and the channel at 3: the bank's face to the pit
    # holds its discharge over 4 sub-steps, which the faster face to the channel must leave to it (checked: with
    # only the slow faces kept in reserve, the same stop).
    # Tolerance: no depth below -1e-12 m, volume to 1e-12 relative.
    cz = np.full((40, 40), 5.0)
    cz[10:12] = -10.0
    cz[12] = 1.0
    cz[13] = -5.0
    z = np.repeat(np.repeat(cz, 3, 0), 3, 1)
    m = FloodModel(Terrain.from_array(z, 10.0), manning=0.02, subgrid=3, threads=1, local_time_steps=8)
    lev = np.full(m.shape, np.nan)
    lev[10:12] = -2.0
    lev[12] = bank
    m.set_depth(np.where(np.isfinite(lev), m.subgrid.depth_for_level(np.nan_to_num(lev, nan=-99.0)), 0.0))
    s, f = m._solver, m._forcing
    f.rain0 = f.rain1 = None
    f.loss = None
    v0 = float(s.h.sum())
    step = 8 * s.stable_dt(8.0)
    s.substep(step, step, f, lts_substeps=8, lts_deep_depth=deep_depth)
    assert np.all(s._lts_mask[10:12] & 3 == 3)  # the channel deep
    assert np.all(s._lts_mask[12] == (1 if deep_depth == 1.0 else 1 | 2 | 1 << 2))  # the bank fast (level 0 or 1)
    assert float(s.h.min()) > -1e-12
    assert abs(float(s.h.sum()) - v0) < 1e-12 * v0
    if deep_depth == 1.0:
        assert np.allclose(s.h[13], 0.1, rtol=0, atol=1e-9)  # the pit has the bank's water
    else:  # (measured 0.4875 m)
        assert np.all(s.h[13] > 0.4)


def test_a_step_with_local_time_steps_refuses_a_value_that_is_not_finite_and_keeps_the_state():
    # a NaN depth (in a deep cell, where the sub-cycle would take it) stops the step with the kernel's message before
    # anything kept is written: depths, discharges and trackers as they were. A NaN rain rate is refused too (the
    # kernel checks rates in its last pass, whose trackers of the other cells it has written by then, as without
    # local time steps; the sub-cycle does not run on top): depths and discharges as they were.
    for where in ("depth", "rain"):
        m = _run(_channel_plain(8), calls=1)
        s, f = m._solver, m._forcing
        f.loss = None
        f.rain0 = f.rain1 = None
        if where == "depth":
            s._h[s._cur][11, 5] = np.nan
        else:
            f.rain0 = np.full(m.shape, 10.0)
            f.rain1 = f.rain0.copy()
            f.rain0[11, 5] = np.nan
            f.rain_w, f.rain_scale = 0.5, 1.0
        def kept(s=s, m=m, everything=where == "depth"):  # (row 11: the deep channel, sub-cycled)
            return (s.h, *s.face_discharge(), m._maxh, s.max_level) if everything else (
                s.h, *s.face_discharge(), m._maxh[11])

        before = [a.copy() for a in kept()]
        with pytest.raises(ValueError, match="depth: non-finite value nan|rain"):
            s.substep(8.0, m.time + 8.0, f, lts_substeps=4, lts_deep_depth=0.5)
        for a, b in zip(before, kept()):
            assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("seed", range(6))
def test_random_terrains_conserve_stay_positive_and_do_not_depend_on_threads(seed):
    # random rough slopes with deep pits and channels, random m, rain, losses, an inflow, free and stage edges:
    # volume to 1e-10, no negative depth, 1 and 2 threads bit-identical (60 such cases checked by hand, 45 of them
    # sub-cycling, none failing; 5 of these 6 sub-cycle)
    rng = np.random.default_rng(seed)
    ny, nx = 3 * int(rng.integers(8, 30)), 3 * int(rng.integers(8, 30))
    z = rng.uniform(0, 2.0, (ny, nx)) + np.linspace(0, rng.uniform(0, 5), nx)[None]
    for _ in range(int(rng.integers(1, 4))):
        r, c = int(rng.integers(0, ny - 6)), int(rng.integers(0, nx - 6))
        z[r:r + int(rng.integers(3, 9)), c:c + int(rng.integers(3, 30))] -= rng.uniform(2, 12)
    m = int(rng.choice([2, 3, 5, 6, 8, 12, 16, 64]))
    n, lev = float(rng.uniform(0.015, 0.06)), float(rng.uniform(np.percentile(z, 10), np.percentile(z, 60)))
    rain, loss, q = [float(x) for x in rng.uniform(0, 80, 2)], float(rng.uniform(0, 10)), float(rng.uniform(0, 20))
    out = []
    for threads in (1, 2):
        mod = FloodModel(Terrain.from_array(z, 10.0), manning=n, subgrid=3, threads=threads, local_time_steps=m)
        wet = np.random.default_rng(seed).uniform(size=mod.shape) < 0.7
        mod.set_depth(np.maximum(mod.subgrid.depth_for_level(np.full(mod.shape, lev)), 0.0) * wet)
        mod.set_rainfall([0.0, 1800.0], rain)
        mod.set_loss_rate(loss)
        mod.set_boundary("east", "free")
        mod.set_boundary("west", "stage", stage_m=[lev])
        mod.add_inflow([(mod.shape[0] // 2, 0)], ([0.0, 1800.0], [q, q]))
        for _ in range(3):
            mod.run_one_step(600.0)
        assert mod.volume_balance()["relative_error"] < 1e-10
        assert float(mod.depth.min()) >= -1e-9
        out.append((mod.depth, *mod.face_discharge(), mod.fine_max_depth(), mod.n_steps, mod.lts_substeps))
    for a, b in zip(out[0], out[1]):
        assert np.array_equal(a, b)
