"""The sweep's exact shortcuts: dry chunks of faces skip the momentum arithmetic, and row segments whose
new depths and speeds stay within the trackers' bounds leave the trackers untouched. Both must give
the same bits as doing all the work (tolerance: 0, bit-identical)."""
from __future__ import annotations

import numpy as np
import pytest

from twin import FloodModel, Terrain, _core


def _dam_break_over_bumps(n=300, dtype=np.float64):
    """A wet disc over a bumpy bed in a mostly dry domain, wider than one tracker segment and many
    flux chunks, so fronts cross chunk and segment borders."""
    yy, xx = np.mgrid[0:n, 0:n]
    z = 0.2 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    h = np.where((xx - 0.4 * n) ** 2 + (yy - 0.5 * n) ** 2 < (0.15 * n) ** 2, 1.5, 0.0)
    return z.astype(dtype), h.astype(dtype)


def _run_kernel(z, h0, steps, dt, use_bounds):
    """Raw kernel calls, with or without the tracker bounds."""
    T = z.dtype
    ny, nx = z.shape
    h = [h0.copy(), np.zeros_like(h0)]
    qx = [np.zeros((ny, nx + 1), T), np.zeros((ny, nx + 1), T)]
    qy = [np.zeros((ny + 1, nx), T), np.zeros((ny + 1, nx), T)]
    maxh, maxs = np.zeros_like(h0), np.zeros_like(h0)
    arr = np.full_like(h0, np.nan)
    sums = np.zeros((ny, _core.FLOOD_ROW_SLOTS))
    nseg = -(-nx // _core.FLOOD_TRACK_SEGMENT)
    kw = {}
    if use_bounds:
        kw = dict(seg_max_depth_min=np.full((ny, nseg), -np.inf, T), seg_max_speed_min=np.full((ny, nseg), -np.inf, T))
    edge_kind = np.zeros(2 * ny + 2 * nx, np.uint8)
    edge_value = np.zeros(2 * ny + 2 * nx, T)
    hmaxes = []
    c = 0
    for i in range(steps):
        hm = _core.flood_inertial_step(
            z, h[c], qx[c], qy[c], h[1 - c], qx[1 - c], qy[1 - c], np.array([0.03], T), edge_kind, edge_value,
            maxh, maxs, arr, sums, dx=5.0, dt=dt, theta=0.8, t_end=(i + 1) * dt, **kw,
        )  # fmt: skip
        hmaxes.append(hm)
        c = 1 - c
    return h[c], qx[c], qy[c], maxh, maxs, arr, hmaxes, kw


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_skipping_tracker_segments_gives_the_same_bits(dtype):
    z, h0 = _dam_break_over_bumps(dtype=dtype)
    a = _run_kernel(z, h0, 120, 0.5, use_bounds=False)
    b = _run_kernel(z, h0, 120, 0.5, use_bounds=True)
    for x, y in zip(a[:6], b[:6]):
        np.testing.assert_array_equal(x, y)  # bit-identical (NaN arrival times compare equal)
    assert a[6] == b[6]
    bounds = b[7]["seg_max_depth_min"]
    assert np.isfinite(bounds).all()  # every segment was visited at least once
    # and the bounds are true lower bounds of the trackers' minimum per segment
    seg = _core.FLOOD_TRACK_SEGMENT
    for s in range(bounds.shape[1]):
        assert (bounds[:, s] <= b[3][:, s * seg:(s + 1) * seg].min(axis=1)).all()


def test_segments_within_their_bounds_are_not_touched():
    """The shortcut is taken: a tracker lowered behind the kernel's back (bound not reset) in a dry
    segment stays as it is, while the same edit with the bound reset is repaired."""
    z, h0 = _dam_break_over_bumps(n=200)
    h0[:, :] = 0.0
    ny, nx = z.shape
    T = z.dtype
    maxh, maxs = np.zeros_like(h0), np.zeros_like(h0)
    arr = np.full_like(h0, np.nan)
    nseg = -(-nx // _core.FLOOD_TRACK_SEGMENT)
    bh, bs = np.full((ny, nseg), -np.inf, T), np.full((ny, nseg), -np.inf, T)
    args = lambda: [  # noqa: E731
        z, h0, np.zeros((ny, nx + 1)), np.zeros((ny + 1, nx)), np.zeros((ny, nx)), np.zeros((ny, nx + 1)),
        np.zeros((ny + 1, nx)), np.array([0.03]), np.zeros(2 * ny + 2 * nx, np.uint8), np.zeros(2 * ny + 2 * nx),
        maxh, maxs, arr, np.zeros((ny, _core.FLOOD_ROW_SLOTS)),
    ]  # fmt: skip
    kw = dict(dx=5.0, dt=0.1, theta=0.8, t_end=0.1, seg_max_depth_min=bh, seg_max_speed_min=bs)
    _core.flood_inertial_step(*args(), **kw)
    assert (bh == 0).all() and (bs == 0).all()
    maxh[3, 5] = -1.0
    _core.flood_inertial_step(*args(), **kw)
    assert maxh[3, 5] == -1.0  # skipped: the new depth 0 is within the segment's bound 0
    bh[3, 0] = -np.inf
    _core.flood_inertial_step(*args(), **kw)
    assert maxh[3, 5] == 0.0 and bh[3, 0] == 0.0


def test_restoring_a_state_resets_the_tracker_bounds():
    """set_state lowers the trackers; the bounds kept from the later state must not hide the rise
    that follows (without the reset, max depth stays at the restored, lower values)."""
    n = 260
    z = np.zeros((n, n))
    m = FloodModel(Terrain.from_array(z, 10.0), manning=0.03)
    m.set_rainfall([0.0, 10_000.0], [200.0, 200.0])  # a rising flood everywhere
    m.run_one_step(200.0)
    s = m.get_state()
    m.run_one_step(200.0)
    first = (m.max_depth, m.max_speed, m.arrival_time)
    m.set_state(s)
    m.run_one_step(200.0)
    second = (m.max_depth, m.max_speed, m.arrival_time)
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    assert first[0].min() > s["max_depth"].max()  # the maxima did rise after the restored state


def test_dry_domain_has_zero_fluxes_and_no_work_on_the_trackers():
    z, _ = _dam_break_over_bumps(n=200)
    h0 = np.zeros_like(z)
    h, qx, qy, maxh, maxs, arr, hmaxes, kw = _run_kernel(z, h0, 5, 0.5, use_bounds=True)
    assert not h.any() and not qx.any() and not qy.any() and not maxh.any() and not maxs.any()
    assert np.isnan(arr).all() and max(hmaxes) == 0.0
    assert (kw["seg_max_depth_min"] == 0).all()


def test_tracker_bounds_are_validated():
    z, h0 = _dam_break_over_bumps(n=20)
    ny, nx = z.shape
    base = [
        z, h0, np.zeros((ny, nx + 1)), np.zeros((ny + 1, nx)), np.zeros((ny, nx)), np.zeros((ny, nx + 1)),
        np.zeros((ny + 1, nx)), np.array([0.03]), np.zeros(2 * ny + 2 * nx, np.uint8), np.zeros(2 * ny + 2 * nx),
        np.zeros((ny, nx)), np.zeros((ny, nx)), np.full((ny, nx), np.nan), np.zeros((ny, _core.FLOOD_ROW_SLOTS)),
    ]  # fmt: skip
    kw = dict(dx=5.0, dt=0.1, theta=0.8, t_end=0.1)
    good = np.full((ny, 1), -np.inf)
    with pytest.raises(ValueError, match="seg_max_depth_min: expected shape"):
        _core.flood_inertial_step(*base, **kw, seg_max_depth_min=np.zeros((ny, 2)), seg_max_speed_min=good)
    with pytest.raises(TypeError, match="seg_max_speed_min"):
        _core.flood_inertial_step(*base, **kw, seg_max_depth_min=good, seg_max_speed_min=good.astype(np.float32))
    with pytest.raises(ValueError, match="both or neither"):
        _core.flood_inertial_step(*base, **kw, seg_max_depth_min=good)
