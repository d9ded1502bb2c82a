"""Fuzz of the C++ boundary (issue 14): random arrays and damaged traffic states into twin._core.

Every call either works or raises a Python exception (ValueError, TypeError, RuntimeError); a crash
kills the test process and a hang trips the timeout. Grids are small so that each example is cheap;
``make sanitize`` runs this file under AddressSanitizer + UBSan, which also catches out-of-range
reads and writes that do not crash a release build.
"""
from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from twin import _core  # noqa: E402

pytestmark = pytest.mark.timeout(600)
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
OK_ERRORS = (ValueError, TypeError, RuntimeError)
SPECIALS = [np.nan, np.inf, -np.inf, 1e308, -1e308, 3e38, 1e39, -3e38, -1.0, 0.0, 1e-300, 0.5, 2.0]


def _values(draw, shape, dtype):
    """An array of the shape with ordinary values, some replaced by specials."""
    a = np.asarray(draw(st.floats(0.0, 2.0)), dtype=np.float64) + np.zeros(shape)
    n = a.size
    if n and draw(st.booleans()):
        k = draw(st.integers(1, min(n, 4)))
        for _ in range(k):
            a.flat[draw(st.integers(0, n - 1))] = draw(st.sampled_from(SPECIALS))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(a.astype(dtype))


@st.composite
def array_arg(draw, shape, dtype, pool):
    """The right array, or a wrong shape, a wrong dtype, a non-contiguous view, or an alias of another."""
    kind = draw(st.sampled_from(["ok"] * 6 + ["shape", "dtype", "strided", "alias", "view"]))
    if kind == "shape":
        shape = tuple(max(0, s + draw(st.integers(-1, 1))) for s in shape) + ((1,) if draw(st.booleans()) else ())
    elif kind == "dtype":
        dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.uint8, np.int8]))
    elif kind == "alias" and pool:
        return draw(st.sampled_from(pool))
    elif kind == "view" and pool:
        base = draw(st.sampled_from(pool))
        flat = base.reshape(-1)
        n = int(np.prod(shape))
        if flat.size > n:
            off = draw(st.integers(0, flat.size - n))
            return flat[off:off + n].reshape(shape)
    a = _values(draw, shape, dtype)
    if kind == "strided" and a.ndim == 2 and a.shape[1] > 1:
        return np.repeat(a, 2, axis=1)[:, ::2]
    pool.append(a)
    return a


@st.composite
def inertial_call(draw):
    T = draw(st.sampled_from([np.float32, np.float64]))
    ny, nx = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pool: list = []
    A = lambda shape, dt=T: draw(array_arg(shape, dt, pool))  # noqa: E731
    args = [A((ny, nx)), A((ny, nx)), A((ny, nx + 1)), A((ny + 1, nx)), A((ny, nx)), A((ny, nx + 1)),
            A((ny + 1, nx)), A((draw(st.sampled_from([1, ny * nx])),)), A((2 * ny + 2 * nx,), np.uint8),
            A((2 * ny + 2 * nx,)), A((ny, nx)), A((ny, nx)), A((ny, nx)), A((ny, 5), np.float64)]  # fmt: skip
    if args[8].dtype == np.uint8:
        args[8] = np.ascontiguousarray(np.minimum(args[8], 3).astype(np.uint8)) if draw(st.booleans()) else args[8]
    scal = st.sampled_from([0.1, 1.0, 0.0, -1.0, 1e39, np.nan, np.inf, 1e-30])
    kw = dict(dx=draw(scal), dt=draw(scal), theta=draw(st.sampled_from([0.8, 1.0, -0.1, np.nan])), t_end=draw(scal))
    if draw(st.booleans()):
        n = draw(st.sampled_from([1, ny * nx]))
        kw.update(rain0=A((n,)), rain1=A((n,)), rain_w=draw(st.sampled_from([0.5, 2.0])), rain_scale=draw(scal))
    if draw(st.booleans()):
        kw.update(loss=A((draw(st.sampled_from([1, ny * nx])),)), loss_scale=draw(scal))
    if draw(st.booleans()):
        nseg = -(-nx // _core.FLOOD_TRACK_SEGMENT)
        kw.update(seg_max_depth_min=A((ny, nseg)), seg_max_speed_min=A((ny, nseg)))
    return args, kw


@SETTINGS
@given(inertial_call())
def test_inertial_kernel_never_crashes(call):
    args, kw = call
    try:
        hmax = _core.flood_inertial_step(*args, **kw)
    except OK_ERRORS:
        return
    assert np.isfinite(hmax)
    assert np.isfinite(args[4]).all() and (args[4] >= -1e-3).all()  # accepted: the new depth is sound


@st.composite
def fv_call(draw):
    T = draw(st.sampled_from([np.float32, np.float64]))
    ny, nx = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pool: list = []
    A = lambda shape, dt=T: draw(array_arg(shape, dt, pool))  # noqa: E731
    nb = 2 * (ny + nx)
    order = draw(st.sampled_from([1, 2, 3]))
    d = dict(z=A((ny, nx)), manning=A((ny, nx)), active=np.ones((ny, nx), np.uint8), h=A((ny, nx)),
             hu=A((ny, nx)), hv=A((ny, nx)), out_h=A((ny, nx)), out_hu=A((ny, nx)), out_hv=A((ny, nx)),
             bc_kind=np.asarray(draw(st.lists(st.integers(-1, 3), min_size=nb, max_size=nb)), np.int8),
             bc_stage=A((nb,)), bc_q=A((nb,)), work=A((3 * ny * nx if order == 2 else 0,)))
    scal = st.sampled_from([0.1, 1.0, 0.0, -1.0, 1e39, np.nan, np.inf])
    d.update(dx=draw(scal), dt=draw(scal), order=order, check_state=draw(st.booleans()))
    if draw(st.booleans()):
        n = draw(st.sampled_from([1, ny * nx]))
        d.update(rain0=A((n,)), rain1=A((n,)), rain_w=0.5, rain_scale=draw(scal))
    if draw(st.booleans()):
        d.update(loss=A((1,)), loss_scale=draw(scal))
    if draw(st.booleans()):
        d.update(max_depth=A((ny, nx)), max_speed=A((ny, nx)), arrival_time=A((ny, nx)), t_end=draw(scal))
    if draw(st.booleans()):
        d.update(face_z_x=A((ny, nx + 1)))
    return d


@SETTINGS
@given(fv_call())
def test_fv_kernel_never_crashes(d):
    try:
        smax, hmax = _core.fv_step(**d)
    except OK_ERRORS:
        return
    assert np.isfinite(hmax) and np.isfinite(d["out_h"]).all() and (d["out_h"] >= 0).all()


# ------------------------------------------------------------------ traffic
_BASE: dict = {}


def _base_state():
    """Valid states of a small grid with trips in every state (cached: the model is built once)."""
    if not _BASE:
        import pandas as pd

        from twin.roads import RoadNetwork
        from twin.traffic import TrafficModel

        net = RoadNetwork.grid(3, signal_phases_s=(20.0, 20.0))
        m = TrafficModel(net, dt=1.0, time_to_teleport_s=30.0)
        rng = np.random.default_rng(3)
        n = 60
        ids = net.nodes["id"].to_numpy()
        m.add_trips(pd.DataFrame({"origin": rng.choice(ids, n), "destination": rng.choice(ids, n),
                                  "depart_s": rng.uniform(0, 120, n),
                                  "vehicle_class": rng.choice(["car", "motorbike", "emergency", "bus"], n)}))
        m.run_one_step(60.0)
        _BASE["model"] = m
        _BASE["state"] = m._engine.get_state()
    return _BASE["model"], _BASE["state"]


BAD_VALUES = [-1, 0, 1, 2, 5, 7, 255, np.iinfo(np.int32).max, np.iinfo(np.int32).min, 2**40, -(2**40),
              np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-300, 0.5]


@st.composite
def damaged_state(draw):
    _, base = _base_state()
    s = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in base.items()}
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(sorted(k for k in s if k not in ("n_links", "n_nodes", "dt"))))
        v = draw(st.sampled_from(BAD_VALUES))
        a = s[field]
        if isinstance(a, np.ndarray):
            how = draw(st.sampled_from(["value"] * 8 + ["short", "dtype"]))
            if how == "short":
                s[field] = a[:-1].copy()
            elif how == "dtype":
                s[field] = a.astype(np.float32 if a.dtype != np.float32 else np.int64)
            elif a.size:
                i = draw(st.integers(0, a.size - 1))
                if np.issubdtype(a.dtype, np.integer):
                    if isinstance(v, float) and not np.isfinite(v):
                        v = -1
                    v = int(np.clip(int(v) if np.isfinite(v) else -1, np.iinfo(a.dtype).min, np.iinfo(a.dtype).max))
                a[i] = v
        else:
            s[field] = v if draw(st.booleans()) else str(v)
    return s


@SETTINGS
@given(damaged_state(), st.integers(1, 40))
def test_traffic_set_state_never_crashes_or_hangs(state, n_steps):
    m, base = _base_state()
    e = m._engine
    try:
        e.set_state(state)
    except OK_ERRORS:
        e.set_state(base)  # a refused state leaves the engine as it was; restore for the next example
        return
    try:  # accepted: the engine must step, route and report without crashing
        e.step(n_steps)
        e.queue_counts()
        e.counts()
        e.class_cost(1)
    finally:
        e.set_state(base)


@SETTINGS
@given(st.lists(st.sampled_from([1.0, 100.0, 1e6, 1e308, 1e-300, 0.0, -1.0, np.nan, np.inf]), min_size=1, max_size=4),
       st.sampled_from([1.0, 1e-6, 1e-300, 0.0, -1.0, np.nan, 1e300]))
def test_traffic_constructor_never_crashes(lengths, dt):
    n = len(lengths)
    try:
        e = _core.TrafficEngine(
            np.arange(n, dtype=np.int32), np.arange(1, n + 1, dtype=np.int32), np.asarray(lengths, float),
            np.ones(n), np.full(n, 13.9), np.full(n, 1800.0), np.full(n, 0.133), np.arange(n + 1, dtype=float),
            np.zeros(n + 1), np.zeros(n + 2, np.int32), np.zeros(0), np.zeros(n + 1), np.full(n, -1, np.int32),
            dt, np.ones(5))  # fmt: skip
    except OK_ERRORS:
        return
    e.add_trips(np.zeros(3, np.int32), np.full(3, n, np.int32), np.zeros(3), np.ones(3, np.uint8),
                np.zeros(3, np.uint8))
    e.step(5)


@SETTINGS
@given(st.lists(st.sampled_from(BAD_VALUES), min_size=1, max_size=12), st.integers(0, 3))
def test_traffic_setters_never_crash(values, which):
    m, base = _base_state()
    e = m._engine
    L = e.n_links
    v = np.resize(np.asarray(values, dtype=np.float64), L)
    ids = np.asarray([int(x) if np.isfinite(x) and abs(x) < 2**31 else -1 for x in values], np.int32)
    try:
        if which == 0:
            e.set_link_speeds(np.ascontiguousarray(v))
        elif which == 1:
            e.set_lanes(ids, np.resize(v, ids.size))
        elif which == 2:
            e.set_closed(ids, True)
        else:
            e.reroute(ids)
        e.step(5)
    except OK_ERRORS:
        pass
    finally:
        e.set_state(base)
