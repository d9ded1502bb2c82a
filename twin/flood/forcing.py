"""Time series of forcing (rain, hydrographs, stage) and their validation."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["TimeSeries", "as_times"]


def as_times(times_s, name: str) -> np.ndarray:
    t = np.atleast_1d(np.asarray(times_s, dtype=np.float64))
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"{name}: times_s must be a 1-D sequence of seconds, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError(f"{name}: times_s must be finite, got {t[~np.isfinite(t)][0]!r}")
    if t.size > 1 and not (np.diff(t) > 0).all():
        i = int(np.argmin(np.diff(t) > 0))
        raise ValueError(f"{name}: times_s must increase strictly, got {t[i]!r} then {t[i + 1]!r} at index {i}")
    return t


class TimeSeries:
    """Piecewise-linear series ``values[i]`` at ``times[i]`` (values may be arrays: the first axis is time).

    ``outside="zero"``: zero before the first and after the last time (rain, hydrographs), except
    that a single point means a constant from that time on. ``outside="hold"``: the end values
    are held (stage).
    """

    def __init__(self, times, values, name: str, outside: str = "zero") -> None:
        self.name = name
        self.times = as_times(times, name)
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 0:
            v = np.full(self.times.shape, float(v))
        if v.shape[0] != self.times.size:
            raise ValueError(
                f"{name}: {self.times.size} times but {v.shape[0]} values (first axis must be time), shape {v.shape}"
            )
        if not np.isfinite(v).all():
            raise ValueError(f"{name}: values must be finite")
        self.values = v
        self.outside = outside

    def bracket(self, t: float) -> tuple[int, int, float, bool]:
        """``(i0, i1, w, active)``: the value at ``t`` is ``(1-w)·v[i0] + w·v[i1]``; inactive means zero."""
        ts = self.times
        n = ts.size
        if n == 1:
            return 0, 0, 0.0, (t >= ts[0]) or self.outside == "hold"
        if t <= ts[0]:
            return 0, 0, 0.0, (t == ts[0]) or self.outside == "hold"
        if t >= ts[-1]:
            return n - 1, n - 1, 0.0, (t == ts[-1]) or self.outside == "hold"
        i = int(np.searchsorted(ts, t, side="right")) - 1
        w = (t - ts[i]) / (ts[i + 1] - ts[i])
        return i, i + 1, float(w), True

    def __call__(self, t: float):
        i0, i1, w, active = self.bracket(t)
        if not active:
            return 0.0 * self.values[0]
        return (1.0 - w) * self.values[i0] + w * self.values[i1]

    def integral(self, t0: float, t1: float) -> float:
        """Exact integral of a scalar series over [t0, t1] (for checks)."""
        grid = np.unique(np.concatenate([[t0, t1], self.times[(self.times > t0) & (self.times < t1)]]))
        vals = np.array([self(float(t)) for t in grid])
        return float(np.trapezoid(vals, grid)) if hasattr(np, "trapezoid") else float(np.trapz(vals, grid))


def positive_scalar(v, name: str, allow_zero: bool = True) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{name}: must be finite and {'>=' if allow_zero else '>'} 0, got {v!r}")
    return f
