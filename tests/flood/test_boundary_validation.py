"""The C++ boundary of the flood kernels (issue 14, items 21 and 22): one validation standard.

Finite where finite is required (checked after the cast to the kernel's dtype, on every sub-step),
non-negative where required, no array the kernel writes overlapping another argument, and a call that
would need an absurd number of sub-steps refused with its cause. Each test failed before the change:
the kernels ran on silently (negative depths, +inf/NaN states) or the model hung.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from twin import FloodModel, Terrain, _core
from twin.flood.fv import FVSolver

pytestmark = pytest.mark.timeout(60)


def _inertial_args(n=6, dtype=np.float64):
    ny = nx = n
    args = [
        np.zeros((ny, nx), dtype), np.zeros((ny, nx), dtype), np.zeros((ny, nx + 1), dtype),
        np.zeros((ny + 1, nx), dtype), np.zeros((ny, nx), dtype), np.zeros((ny, nx + 1), dtype),
        np.zeros((ny + 1, nx), dtype), np.array([0.03], dtype), np.zeros(2 * ny + 2 * nx, np.uint8),
        np.zeros(2 * ny + 2 * nx, dtype), np.zeros((ny, nx), dtype), np.zeros((ny, nx), dtype),
        np.full((ny, nx), np.nan, dtype), np.zeros((ny, 5), np.float64),
    ]  # fmt: skip
    args[1][2, 2] = 0.5
    return args, dict(dx=1.0, dt=0.1, theta=0.8, t_end=0.1)


# ------------------------------------------------------------------ inertial kernel: sources and depths
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "edit, match",
    [
        # negative rain, per cell and uniform: depths went negative silently
        (lambda a, kw, T: kw.update(rain0=np.full(36, -5.0, T), rain1=np.full(36, -5.0, T), rain_scale=1.0), "rain0"),
        (lambda a, kw, T: kw.update(rain0=np.array([-5.0], T), rain1=np.array([-5.0], T), rain_scale=1.0), "rain0"),
        (lambda a, kw, T: kw.update(rain0=np.ones(36, T), rain1=np.ones(36, T), rain_scale=-1.0), "rain_scale"),
        # negative loss capacity: water created from nothing
        (lambda a, kw, T: kw.update(loss=np.full(36, -2.0, T), loss_scale=1.0), "loss"),
        (lambda a, kw, T: kw.update(loss=np.array([1.0], T), loss_scale=-1.0), "loss_scale"),
        # a negative input depth propagated (depths to -3e38)
        (lambda a, kw, T: a[1].__setitem__((4, 1), -3e38), r"depth: value .* \(row 4, col 1\) is negative"),
    ],
)
def test_inertial_kernel_refuses_negative_sources_and_depths(edit, match, dtype):
    args, kw = _inertial_args(dtype=dtype)
    edit(args, kw, dtype)
    with pytest.raises(ValueError, match=match):
        _core.flood_inertial_step(*args, **kw)


def test_inertial_kernel_checks_scalars_after_the_cast_to_float32():
    args, kw = _inertial_args(dtype=np.float32)
    kw.update(rain0=np.ones(36, np.float32), rain1=np.ones(36, np.float32), rain_scale=1e39)
    with pytest.raises(ValueError, match=r"rain_scale: .*float32 \(1e\+39 overflows it\)"):
        _core.flood_inertial_step(*args, **kw)
    args, kw = _inertial_args(dtype=np.float32)
    kw["dt"] = 1e39  # finite in float64, +inf in float32
    with pytest.raises(ValueError, match="dt"):
        _core.flood_inertial_step(*args, **kw)


def test_inertial_kernel_refuses_a_rain_depth_that_overflows_per_cell():
    args, kw = _inertial_args(dtype=np.float32)
    big = np.full(36, 3e38, np.float32)  # finite rates, but rate x scale is +inf in float32
    kw.update(rain0=big, rain1=big, rain_scale=10.0)
    with pytest.raises(ValueError, match=r"rain0/rain1/loss: .*not finite"):
        _core.flood_inertial_step(*args, **kw)


def test_inertial_kernel_refuses_views_offset_by_a_row():
    """h and h_out as views of one buffer, one row apart: the sweep would read rows it already wrote."""
    args, kw = _inertial_args()
    buf = np.zeros((7, 6))
    args[1], args[4] = buf[:-1], buf[1:]  # both C-contiguous, different data pointers
    with pytest.raises(ValueError, match="depth_out and depth share memory"):
        _core.flood_inertial_step(*args, **kw)
    args, kw = _inertial_args()
    qbuf = np.zeros((8, 6))
    args[3], args[6] = qbuf[:-1], qbuf[1:]  # qy (7, 6) and qy_out overlap
    with pytest.raises(ValueError, match="qy_out and qy share memory"):
        _core.flood_inertial_step(*args, **kw)
    args, kw = _inertial_args()
    args[10] = args[4]  # the trackers are written too
    with pytest.raises(ValueError, match="share memory"):
        _core.flood_inertial_step(*args, **kw)


def test_inertial_kernel_still_runs_valid_input():
    args, kw = _inertial_args()
    kw.update(rain0=np.ones(36), rain1=np.ones(36), rain_scale=1e-3, loss=np.array([0.5]), loss_scale=1e-3)
    hmax = _core.flood_inertial_step(*args, **kw)
    assert np.isfinite(hmax) and args[4].min() >= 0.0


# ------------------------------------------------------------------ finite-volume kernel
def _fv(dtype="float64"):
    s = FVSolver(np.zeros((4, 5)), 1.0, 0.0, dtype=dtype)

    def args(**o):
        d = dict(z=s.z, manning=s.manning, active=s.active, h=s.h, hu=s.hu, hv=s.hv, out_h=s._oh, out_hu=s._ohu,
                 out_hv=s._ohv, bc_kind=s.bc_kind, bc_stage=s.bc_stage, bc_q=s.bc_q, work=s._work)
        d.update(o)
        return d

    return s, args


def test_fv_nonnegative_inputs_refuse_plus_inf():
    """require_nonnegative accepted +inf (manning = inf ran and returned NaN)."""
    s, args = _fv()
    s.h[1, 1] = 1.0
    with pytest.raises(ValueError, match="manning: value inf"):
        _core.fv_step(**args(manning=np.full((4, 5), np.inf)), dx=1.0, dt=0.01)
    with pytest.raises(ValueError, match="rain0: value inf"):
        r = np.full(1, np.inf)
        _core.fv_step(**args(), dx=1.0, dt=0.01, rain0=r, rain1=r, rain_scale=1.0)


def test_fv_float32_rain_overflow_is_an_error_not_inf():
    """float32: rain rates x scale overflowed to +inf everywhere and the step returned silently."""
    s, args = _fv("float32")
    r = np.full(1, 3e38, np.float32)  # a finite float32 rate; times 10 it is +inf
    with pytest.raises(ValueError, match=r"new state is not finite .*float32"):
        _core.fv_step(**args(), dx=1.0, dt=0.01, rain0=r, rain1=r, rain_scale=10.0)
    with pytest.raises(ValueError, match=r"rain_scale: .*float32"):
        _core.fv_step(**args(), dx=1.0, dt=0.01, rain0=r, rain1=r, rain_scale=1e39)
    with pytest.raises(ValueError, match="loss_scale"):
        _core.fv_step(**args(), dx=1.0, dt=0.01, loss=np.ones(1, np.float32), loss_scale=1e39)


def test_fv_huge_depth_becomes_an_error_not_nan():
    """set_depth(1e150) in float64: the step's fluxes overflowed and the state came back NaN."""
    s, args = _fv()
    s.h[1, 1] = 1e150
    with pytest.raises(ValueError, match="new state is not finite"):
        _core.fv_step(**args(), dx=1.0, dt=1.0)


def test_fv_refuses_views_offset_by_a_row():
    s, args = _fv()
    buf = np.zeros((5, 5))
    with pytest.raises(ValueError, match="out_h and h share memory"):
        _core.fv_step(**args(h=buf[:-1], out_h=buf[1:]), dx=1.0, dt=0.01)
    with pytest.raises(ValueError, match="share memory"):
        md = np.zeros((4, 5))
        _core.fv_step(**args(), dx=1.0, dt=0.01, max_depth=md, max_speed=md, arrival_time=np.zeros((4, 5)))


@pytest.mark.parametrize("solver", ["inertial", "fv"])
def test_state_is_checked_on_every_substep(solver):
    """A non-finite value that reaches the state between sub-steps (the fv solver checked every 8th
    sub-step only) is refused on the next sub-step, whatever its number."""
    m = FloodModel(Terrain.from_array(np.zeros((8, 8)), 10.0), solver=solver)
    m.set_depth(0.5)
    m.run_one_step(3.0)
    assert m.n_steps % 8 != 0
    m._solver.h[3, 3] = np.inf  # what a broken edit between sub-steps would leave
    with pytest.raises(ValueError, match="finite"):
        m.run_one_step(1.0)


# ------------------------------------------------------------------ subgrid kernel: inputs checked as read
def _subgrid_args(threads):
    """The arguments of one sub-step of a subgrid model that has run a while (its trackers and level caches
    hold values), every array a copy; manning per cell."""
    z = np.random.default_rng(4).uniform(0.0, 1.5, (27, 36))
    m = FloodModel(Terrain.from_array(z, 10.0), manning=np.full(z.shape, 0.04), subgrid=3, threads=threads)
    m.set_rainfall([0.0, 600.0], [120.0, 120.0])
    m.run_one_step(300.0)
    s, f, t, i = m._solver, m._forcing, m.subgrid, m._solver.inputs
    c, n = s._cur, 1 - s._cur
    arrays = {"z": i.z, "h": s._h[c], "qx": s._qx[c], "qy": s._qy[c], "h_out": s._h[n], "qx_out": s._qx[n],
              "qy_out": s._qy[n], "manning": np.full((9, 12), 0.04)}
    arrays = {k: np.array(v, copy=True) for k, v in arrays.items()}
    kept = {"max_depth": f.max_depth, "max_speed": f.max_speed, "arrival_time": f.arrival_time,
            "max_level": s.max_level, "level_cache": s._level_cache, "depth_cache": s._depth_cache,
            "level_segment": s._level_segment}
    kept = {k: np.array(v, copy=True) for k, v in kept.items()}
    def call(**edit):
        a = {k: v.copy() for k, v in arrays.items()} | edit
        return _core.flood_subgrid_step(
            a["z"], a["h"], a["qx"], a["qy"], a["h_out"], a["qx_out"], a["qy_out"], t.cells, t.faces_x, t.faces_y,
            a["manning"], f.edge_kind, f.edge_value, kept["max_depth"], kept["max_speed"], kept["arrival_time"],
            kept["max_level"], np.zeros_like(f.row_sums), dx=i.cell_size, dt=0.5, theta=i.theta, t_end=300.5,
            rain0=np.array([0.0]), rain1=np.array([0.0]), rain_w=0.0, rain_scale=0.0, threads=threads,
            level_cache=kept["level_cache"], depth_cache=kept["depth_cache"], level_segment=kept["level_segment"],
            face_weight=0.3)  # fmt: skip
    return arrays, kept, call


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "name, at, value, match",
    [
        ("h", (3, 4), np.nan, r"depth: non-finite value nan at flat index 40"),
        ("h", (8, 11), np.inf, r"depth: non-finite value inf at flat index 107"),
        ("qx", (2, 12), -np.inf, r"qx: non-finite value -inf at flat index 38"),
        ("qy", (9, 5), np.nan, r"qy: non-finite value nan at flat index 113"),  # the south edge's face row
        ("z", (5, 5), np.nan, r"elevation: non-finite value nan at flat index 65"),
        ("manning", (1, 2), -0.01, r"manning: value -0.01 at flat index 14 must be finite and >= 0"),
        ("manning", (6, 0), np.inf, r"manning: value inf at flat index 72 must be finite and >= 0"),
    ],
)
def test_subgrid_kernel_refuses_a_non_finite_input_before_writing_anything_kept(name, at, value, match, threads):
    """The subgrid kernel checks elevation, depth, qx, qy and a per-cell manning as its first passes read them
    (a separate scan before the kernel was ~10 % of a mostly dry sub-step) and stops before its last pass: the
    call is refused with the value and its index, and the trackers and level caches are unchanged bit for bit."""
    arrays, kept, call = _subgrid_args(threads)
    call()  # valid input runs (and writes the trackers and caches): the copies to compare are taken after it
    before = {k: v.copy() for k, v in kept.items()}
    bad = arrays[name].copy()
    bad[at] = value
    with pytest.raises(ValueError, match=match):
        call(**{name: bad})
    for k, v in kept.items():
        assert np.array_equal(v, before[k], equal_nan=True), k


# ------------------------------------------------------------------ the model: casts and the sub-step cap
def test_float32_model_refuses_rates_that_overflow_float32():
    m = FloodModel(Terrain.from_array(np.zeros((3, 3)), 1.0), dtype="float32", solver="fv")
    with pytest.raises(ValueError, match=r"rate_mm_per_h: value 1e\+39 .*float32"):
        m.set_rainfall([0.0], [1e39])
    with pytest.raises(ValueError, match="float32"):
        m.set_loss_rate(1e39)
    with pytest.raises(ValueError, match="float32"):
        m.set_depth(1e39)
    with pytest.raises(ValueError, match="stage_m.*float32"):
        m.set_boundary("west", "stage", stage_m=1e39)


@pytest.mark.parametrize("solver", ["inertial", "fv"])
@pytest.mark.parametrize(
    "setup, cause",
    [
        (lambda m: m.set_depth(1e12), r"deepest water is 1e\+12 m at cell"),
        (lambda m: m.set_rainfall([0.0], [1e39]), r"largest rain rate is 1e\+39 mm/h"),
        (lambda m: m.set_boundary("west", "stage", stage_m=1e300), r"stage boundary brings 1e\+300 m"),
    ],
)
def test_run_refuses_an_absurd_number_of_substeps(solver, setup, cause):
    """A 3 x 3 grid of 1 m cells with absurd water needed ~4e8 sub-steps per 600 s: an apparent hang."""
    m = FloodModel(Terrain.from_array(np.zeros((3, 3)), 1.0), solver=solver)
    setup(m)
    with pytest.raises(ValueError, match=r"max_substeps") as err:
        for _ in range(3):  # rain needs a first sub-step to fill the cells
            m.run_one_step(600.0)
    assert "would need about" in str(err.value)
    assert re.search(cause, str(err.value)), str(err.value)


def test_substep_cap_can_be_raised_and_counts_substeps():
    m = FloodModel(Terrain.from_array(np.zeros((3, 3)), 1.0))
    m.set_depth(1.0)
    m.max_substeps = 50  # 600 s at ~0.16 s per sub-step needs ~3,800
    with pytest.raises(ValueError, match=r"stopped after 0 sub-steps .*limit of 50 per call"):
        m.run_one_step(600.0)
    assert m.time == 0.0  # refused before the first sub-step: nothing ran
    m.max_substeps = 10_000
    m.run_one_step(600.0)
    assert m.time == 600.0 and 50 < m.n_steps <= 10_000


@pytest.mark.parametrize("value", [-0.01, np.nan, np.inf])
def test_subgrid_kernel_refuses_a_bad_uniform_manning_before_running(value):
    # a uniform (one-value) manning is checked by the binding before the kernel (a per-cell one in its passes)
    arrays, kept, call = _subgrid_args(1)
    before = {k: v.copy() for k, v in kept.items()}
    with pytest.raises(ValueError, match=r"manning: value .* at flat index 0 must be finite and >= 0"):
        call(manning=np.array([value]))
    for k, v in kept.items():
        assert np.array_equal(v, before[k], equal_nan=True), k
