"""FloodModel public API, input validation at the boundary, state round trip, thread invariance."""
from __future__ import annotations

import numpy as np
import pytest

from twin import FloodModel, Terrain, _core


def bowl(n=40, dx=5.0, nodata_corner=False):
    yy, xx = np.mgrid[0:n, 0:n]
    z = 0.002 * ((xx - n / 2) ** 2 + (yy - n / 2) ** 2) * dx / 5 + 0.3 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    if nodata_corner:
        z[:5, :5] = np.nan
    return Terrain.from_array(z, cell_size=dx, origin=(500000.0, 1700000.0), crs="EPSG:32649")


def test_uniform_rain_on_closed_flat_box_gives_exact_depth():
    m = FloodModel(Terrain.from_array(np.zeros((20, 30)), cell_size=10.0), manning=0.03)
    m.set_rainfall([0.0, 3600.0], [36.0, 36.0])  # 36 mm/h = 1e-5 m/s
    m.run_one_step(1000.0)
    assert m.time == 1000.0
    assert m.n_steps >= 1
    # flat box: the water stays level at 10 mm everywhere (tolerance: round-off, 1e-12 m)
    np.testing.assert_allclose(m.depth, 0.01, rtol=0, atol=1e-12)
    vb = m.volume_balance()
    assert set(vb) >= {"volume_m3", "inflow_m3", "outflow_m3", "lost_m3", "rain_m3", "error_m3", "relative_error"}
    assert abs(vb["rain_m3"] - 0.01 * 600 * 100) < 1e-9
    assert vb["relative_error"] <= 1e-12


def test_rain_series_zero_outside_its_span_and_loss_removes_water():
    m = FloodModel(Terrain.from_array(np.zeros((10, 10)), cell_size=10.0))
    m.set_rainfall([100.0, 200.0], [72.0, 72.0])  # 2e-5 m/s for 100 s = 2 mm
    m.run_one_step(50.0)
    assert m.depth.max() == 0.0
    m.run_one_step(250.0)
    np.testing.assert_allclose(m.depth, 0.002, atol=1e-12)
    m.set_loss_rate(36.0)  # 1e-5 m/s: all 2 mm gone after 200 s, not more
    m.run_one_step(400.0)
    assert m.depth.max() == 0.0
    vb = m.volume_balance()
    assert abs(vb["lost_m3"] - 0.002 * 100 * 100) < 1e-9
    assert abs(vb["error_m3"]) < 1e-9


def test_outputs_shapes_and_dtypes():
    m = FloodModel(bowl(), dtype="float32")
    m.set_depth(0.5)
    m.run_one_step(10.0)
    ny, nx = m.depth.shape
    assert m.depth.dtype == np.float32
    assert m.discharge.shape == (2, ny, nx)
    assert m.velocity.shape == (2, ny, nx)
    assert m.speed.shape == (ny, nx)
    for name in ("max_depth", "max_speed", "arrival_time"):
        assert getattr(m, name).shape == (ny, nx)
    assert np.all(m.max_depth >= m.depth)
    qx, qy = m.face_discharge()
    assert qx.shape == (ny, nx + 1) and qy.shape == (ny + 1, nx)
    for key in ("surface_water__depth", "topographic__elevation", "surface_water__max_depth"):
        assert {"dtype", "intent", "optional", "units", "mapping", "doc"} <= set(FloodModel._info[key])


def test_discharge_signs_follow_east_and_north():
    # water piled in the west half flows east; in the south half flows north
    z = np.zeros((10, 10))
    m = FloodModel(Terrain.from_array(z, 10.0))
    h = np.zeros((10, 10))
    h[:, :5] = 1.0
    m.set_depth(h)
    m.run_one_step(5.0)
    assert m.discharge[0][:, 4:6].mean() > 0 and abs(m.discharge[1]).max() < 1e-12
    m = FloodModel(Terrain.from_array(z, 10.0))
    h = np.zeros((10, 10))
    h[5:, :] = 1.0  # rows 5.. are the south half
    m.set_depth(h)
    m.run_one_step(5.0)
    assert m.discharge[1][4:6, :].mean() > 0 and abs(m.discharge[0]).max() < 1e-12


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"manning": -0.01}, "manning"),
        ({"manning": np.full((40, 40), np.nan)}, "manning"),
        ({"manning": np.zeros((3, 3))}, "manning"),
        ({"dtype": "int32"}, "dtype"),
        ({"alpha": 0.0}, "alpha"),
        ({"theta": 1.5}, "theta"),
        ({"threads": 0}, "threads"),
        ({"solver": "nope"}, "solver"),
    ],
)
def test_bad_model_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FloodModel(bowl(), **kwargs)


def test_bad_forcing_and_depth_are_named():
    m = FloodModel(bowl(nodata_corner=True))
    with pytest.raises(ValueError, match="depth"):
        m.set_depth(-1.0)
    with pytest.raises(ValueError, match="depth"):
        m.set_depth(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="rate_mm_per_h"):
        m.set_rainfall([0, 10], [1.0, -1.0])
    with pytest.raises(ValueError, match="increase"):
        m.set_rainfall([10, 0], [1.0, 1.0])
    with pytest.raises(ValueError, match="outside"):
        m.add_inflow([(100, 0)], hydrograph=([0, 10], [1, 1]))
    with pytest.raises(ValueError, match="wall"):
        m.add_inflow([(0, 0)], hydrograph=([0, 10], [1, 1]))
    with pytest.raises(ValueError, match="kind"):
        m.set_boundary("west", "river")
    with pytest.raises(ValueError, match="edge"):
        m.set_boundary("up", "free")
    with pytest.raises(ValueError, match="stage_m"):
        m.set_boundary("west", "stage")
    with pytest.raises(ValueError, match="dt"):
        m.run_one_step(0.0)
    with pytest.raises(ValueError, match="dt"):
        m.run_one_step(float("nan"))


def _kernel_args(n=6, dtype=np.float64):
    ny = nx = n
    z = np.zeros((ny, nx), dtype)
    args = [
        z, np.zeros((ny, nx), dtype), np.zeros((ny, nx + 1), dtype), np.zeros((ny + 1, nx), dtype),
        np.zeros((ny, nx), dtype), np.zeros((ny, nx + 1), dtype), np.zeros((ny + 1, nx), dtype),
        np.array([0.03], dtype), np.zeros(2 * ny + 2 * nx, np.uint8), np.zeros(2 * ny + 2 * nx, dtype),
        np.zeros((ny, nx), dtype), np.zeros((ny, nx), dtype), np.full((ny, nx), np.nan, dtype),
        np.zeros((ny, 5), np.float64),
    ]  # fmt: skip
    return args, dict(dx=1.0, dt=0.1, theta=0.8, t_end=0.1)


def test_kernel_rejects_wrong_dtype_without_conversion():
    args, kw = _kernel_args()
    args[1] = args[1].astype(np.float32)  # mixed float32 depth with float64 elevation
    with pytest.raises(TypeError):
        _core.flood_inertial_step(*args, **kw)
    args, kw = _kernel_args()
    args[2] = np.asfortranarray(np.zeros((7, 6)))[:, :7]  # not C-contiguous
    with pytest.raises(TypeError):
        _core.flood_inertial_step(*args, **kw)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda a, kw: a.__setitem__(0, np.full((6, 6), np.nan)), "elevation"),
        (lambda a, kw: a.__setitem__(7, np.array([-0.03])), "manning"),
        (lambda a, kw: kw.__setitem__("dx", 0.0), "cell_size"),
        (lambda a, kw: kw.__setitem__("dx", -5.0), "cell_size"),
        (lambda a, kw: kw.__setitem__("dt", float("inf")), "dt"),
        (lambda a, kw: a.__setitem__(1, np.zeros((6, 5))), "depth"),
        (lambda a, kw: a.__setitem__(2, np.zeros((6, 6))), "qx"),
        (lambda a, kw: a.__setitem__(8, np.full(24, 7, np.uint8)), "edge_kind"),
        (lambda a, kw: a.__setitem__(4, a[1]), "distinct"),
        (lambda a, kw: kw.__setitem__("theta", 2.0), "theta"),
    ],
)
def test_kernel_validates_inputs_and_names_them(edit, match):
    args, kw = _kernel_args()
    args[1][2, 2] = 0.5
    edit(args, kw)
    with pytest.raises(ValueError, match=match):
        _core.flood_inertial_step(*args, **kw)


def test_terrain_nodata_cells_are_walls():
    z = np.zeros((10, 10))
    z[:, 5] = np.nan  # a wall of nodata down the middle
    m = FloodModel(Terrain.from_array(z, 10.0))
    h = np.zeros((10, 10))
    h[:, :5] = 1.0
    m.set_depth(h)
    m.run_one_step(300.0)
    assert m.depth[:, 5:].max() == 0.0
    assert m.volume_balance()["relative_error"] < 1e-13


def _busy_model(threads, dtype="float64"):
    m = FloodModel(bowl(60, nodata_corner=True), dtype=dtype, threads=threads)
    m.set_depth(np.where(m.terrain.valid, np.clip(0.4 - m.terrain.elevation, 0, None), 0))
    m.set_rainfall([0.0, 600.0, 1200.0], [0.0, 80.0, 10.0])
    m.add_inflow([(30, 2), (31, 2)], hydrograph=([0.0, 900.0], [2.0, 0.5]))
    m.add_pump((20, 40), 0.3, to_cell=(50, 50))
    m.set_boundary("east", "free")
    m.set_boundary("south", "stage", times_s=[0.0, 1200.0], stage_m=[0.2, 0.6])
    m.add_levee([(500000.0 + 100.0, 1700000.0 - 20.0), (500000.0 + 150.0, 1700000.0 - 250.0)], crest_m=1.5)
    return m


def test_state_round_trip_is_bit_identical():
    a = _busy_model(1)
    a.run_one_step(300.0)
    snap = a.get_state()
    a.run_one_step(300.0)
    b = _busy_model(1)
    b.set_state(snap)
    b.run_one_step(300.0)
    assert a.n_steps == b.n_steps and a.time == b.time
    for name in ("depth", "discharge", "max_depth", "max_speed"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.arrival_time, b.arrival_time)
    assert a.volume_balance() == b.volume_balance()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_and_two_threads_bit_identical(dtype):
    a, b = _busy_model(1, dtype), _busy_model(2, dtype)
    for _ in range(3):
        a.run_one_step(200.0)
        b.run_one_step(200.0)
    assert a.n_steps == b.n_steps
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.discharge, b.discharge)
    np.testing.assert_array_equal(a.max_speed, b.max_speed)
    np.testing.assert_array_equal(a.arrival_time, b.arrival_time)
    assert a.volume_balance() == b.volume_balance()
    assert a.depth.max() > 0.1


def test_busy_model_balances_volume():
    m = _busy_model(None)
    for _ in range(4):
        m.run_one_step(300.0)
    vb = m.volume_balance()
    assert vb["outflow_m3"] > 0 and vb["inflow_m3"] > 0 and vb["rain_m3"] > 0
    assert vb["relative_error"] <= 1e-10  # float64 round-off


def test_first_substep_after_set_depth_respects_the_cfl_limit():
    """Regression: the sub-step after set_depth uses the new depth, dt = alpha dx / sqrt(g h_max)."""
    m = FloodModel(Terrain.from_array(np.zeros((40, 40)), 10.0), alpha=0.5)
    h = np.zeros((40, 40))
    h[10:30, 10:30] = 2.0
    m.set_depth(h)
    m.run_one_step(3.0)
    assert m.n_steps == 3  # 0.5 * 10 / sqrt(9.81 * 2) = 1.13 s -> three sub-steps
    assert m.max_depth.max() <= 2.0 + 1e-12  # no overshoot from an oversized first step


def test_every_instruction_set_gives_the_same_bits():
    """The sweep is built for several ISAs (baseline, AVX2, AVX-512); all give identical results."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('flood_api_t', sys.argv[1])\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "_busy_model = mod._busy_model\n"
        "from twin import _core\n"
        "out = []\n"
        "for dt in ('float32', 'float64'):\n"
        "    m = _busy_model(2, dt)\n"
        "    m.run_one_step(400.0)\n"
        "    out.append(hashlib.sha256(m.depth.tobytes() + m.max_speed.tobytes()).hexdigest())\n"
        "import numpy as np\n"
        "from twin import FloodModel, Terrain\n"
        "n = 1500  # one float32 array > 8 MiB: the AVX builds stream the new state out\n"
        "big = FloodModel(Terrain.from_array(np.zeros((n, n)), 10.0), dtype='float32', threads=2)\n"
        "h = np.zeros((n, n), np.float32); h[500:1000, 400:1100] = 2.0\n"
        "big.set_depth(h); big.run_one_step(3.0)\n"
        "out.append(hashlib.sha256(big.depth.tobytes() + big.discharge.tobytes()).hexdigest())\n"
        "print(_core.flood_isa(), *out)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    seen = {}
    for isa in ("base", "avx2", "avx512"):
        env = dict(os.environ, TWIN_FLOOD_ISA=isa, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        res = subprocess.run(
            [sys.executable, "-c", code, os.path.abspath(__file__)], capture_output=True, text=True, env=env, cwd=root
        )
        assert res.returncode == 0, res.stderr
        used, *digests = res.stdout.split()
        seen[used] = tuple(digests)
    assert "base" in seen
    assert len(set(seen.values())) == 1, seen
