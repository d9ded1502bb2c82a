"""Forcing: time series and their validation, and the physics that makes them from a scenario.

- :class:`TimeSeries` — piecewise-linear series (rain, hydrographs, stage) and their checks;
- design storms from an IDF relation (:func:`idf_intensity_mm_per_h`, :func:`design_hyetograph`);
- the sea stage from tide constituents and a surge (:func:`tide_stage`);
- rain for a twin (design storm, series, gauge or file, typhoon track replay: :func:`rain_series`);
- the Phú Ninh level-pool reservoir and its scheduled releases (:func:`reservoir_release`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from twin.build import Twin

__all__ = ["TimeSeries", "as_times", "idf_intensity_mm_per_h", "design_hyetograph", "tide_stage", "TIDE_PERIODS_H",
           "series_from_csv", "rain_series", "typhoon_rain", "reservoir_release", "reservoir_outlet",
           "reservoir_level_at", "draw_release", "stepped_hydrograph"]


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
        if hasattr(np, "trapezoid"):
            return float(np.trapezoid(vals, grid))
        return float(np.trapz(vals, grid))  # type: ignore[attr-defined]  # numpy < 2.0 (pyproject allows 1.26)


def positive_scalar(v, name: str, allow_zero: bool = True) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{name}: must be finite and {'>=' if allow_zero else '>'} 0, got {v!r}")
    return f


# periods of the main tidal constituents [h]
TIDE_PERIODS_H = {"M2": 12.4206012, "S2": 12.0, "N2": 12.65834751, "K2": 11.96723606,
                  "K1": 23.93447213, "O1": 25.81934171, "P1": 24.06589022, "Q1": 26.868350}


# ------------------------------------------------------------------------------------------------
# forcing
# ------------------------------------------------------------------------------------------------
def idf_intensity_mm_per_h(return_period_years: float, duration_s: float) -> float:
    """Mean rain intensity [mm/h] of a storm of given return period and duration.

    Sherman form i = a·T^m / (D + b)^n, D in minutes, with a = 1714, m = 0.2, b = 20, n = 0.75.
    **Illustrative** coefficients chosen for the central Vietnamese coast (100-year 6-h ≈ 300 mm,
    10-year 6-h ≈ 190 mm, 100-year 1-h ≈ 160 mm), not a fitted IDF of a station: give
    ``peak_mm_per_h`` in the scenario when a local design value is known.
    """
    d_min = duration_s / 60.0
    return 1714.0 * return_period_years**0.2 / (d_min + 20.0) ** 0.75


def design_hyetograph(storm, dt_s: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """(times_s, rain_mm_per_h) piecewise-constant blocks for a :class:`DesignStorm`."""
    D = storm.duration
    n = max(1, int(round(D / dt_s)))
    dt_s = D / n
    t_mid = (np.arange(n) + 0.5) * dt_s
    tp = storm.peak_fraction * D
    if storm.shape == "triangular":  # exact triangle (the flood model interpolates linearly)
        peak = storm.peak_mm_per_h if storm.peak_mm_per_h is not None else 2.0 * idf_intensity_mm_per_h(
            storm.return_period_years, D)
        return np.array([0.0, tp, D]) + storm.start, np.array([0.0, peak, 0.0])
    if storm.shape == "uniform":
        mean = storm.peak_mm_per_h if storm.peak_mm_per_h is not None else idf_intensity_mm_per_h(
            storm.return_period_years, D)
        rates = np.full(n, mean)
    elif storm.shape == "triangular":
        peak = storm.peak_mm_per_h if storm.peak_mm_per_h is not None else 2.0 * idf_intensity_mm_per_h(
            storm.return_period_years, D)
        rise = np.clip(t_mid / tp, 0, 1) if tp > 0 else np.ones(n)
        fall = np.clip((D - t_mid) / (D - tp), 0, 1) if tp < D else np.ones(n)
        rates = peak * np.where(t_mid <= tp, rise, fall)
    else:  # chicago: alternating blocks from the IDF depths
        T = storm.return_period_years or 10.0
        depth = np.array([idf_intensity_mm_per_h(T, k * dt_s) * k * dt_s / 3600.0 for k in range(1, n + 1)])
        inc = np.diff(np.concatenate([[0.0], depth])) / (dt_s / 3600.0)
        order = np.argsort(-inc)
        rates = np.zeros(n)
        ip = min(n - 1, int(storm.peak_fraction * n))
        left, right = ip, ip + 1
        for j, k in enumerate(order):
            if j == 0:
                rates[ip] = inc[k]
            elif (j % 2 == 1 and right < n) or left <= 0:
                rates[right] = inc[k]
                right += 1
            else:
                left -= 1
                rates[left] = inc[k]
        if storm.peak_mm_per_h is not None:
            rates *= storm.peak_mm_per_h / rates.max()
    # piecewise constant as step points: value at block start, zero after
    times = np.concatenate([np.arange(n) * dt_s, [D]]) + storm.start
    vals = np.concatenate([rates, [0.0]])
    return times, vals


def tide_stage(sea, times_s: np.ndarray) -> np.ndarray:
    """Sea level [m above MSL] at ``times_s``: mean + Σ A·cos(2πt/P − φ) + surge bell."""
    t = np.asarray(times_s, dtype=float)
    eta = np.full(t.shape, sea.mean_level_m, dtype=float)
    for c in sea.constituents:
        P = c.period_h if c.period_h is not None else TIDE_PERIODS_H.get(c.name.upper())
        if P is None:
            raise ValueError(f"flood.sea.constituents: unknown constituent {c.name!r}; give period_h")
        eta += c.amplitude_m * np.cos(2 * np.pi * t / (P * 3600.0) - np.deg2rad(c.phase_deg))
    if sea.surge is not None:
        s = sea.surge
        x = (t - s.peak_time) / s.duration
        eta += np.where(np.abs(x) < 0.5, s.peak_m * np.cos(np.pi * x) ** 2, 0.0)
    return eta


def series_from_csv(path: Path, tcol: str, vcol: str, start) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(path)
    for c in (tcol, vcol):
        if c not in df:
            raise ValueError(f"{path}: column {c!r} not found (columns: {list(df.columns)})")
    t = df[tcol]
    if pd.api.types.is_numeric_dtype(t):
        ts = t.to_numpy(float)
    else:
        dt = pd.to_datetime(t)
        if dt.dt.tz is None:
            dt = dt.dt.tz_localize(start.tzinfo)
        ts = (dt - pd.Timestamp(start)).dt.total_seconds().to_numpy()
    v = pd.to_numeric(df[vcol], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {vcol} row {i + 2} has bad value {df[vcol].iloc[i]!r} (need a number >= 0)")
    if np.any(np.diff(ts) < 0):
        raise ValueError(f"{path}: {tcol} must be increasing")
    return ts, v


def rain_series(tw: Twin) -> tuple[np.ndarray, np.ndarray] | None:
    sc = tw.scenario
    rain = sc.flood.rain
    if rain.kind == "none":
        return None
    if rain.kind == "design_storm":
        return design_hyetograph(rain)
    if rain.kind == "series":
        return np.asarray(rain.times, float), np.asarray(rain.rain_mm_per_h, float)
    if rain.kind == "file":
        t, v = series_from_csv(rain.file, "t_s", "rain_mm_per_h", sc.start)
        tw.input_files.append(rain.file)
        return t, v * rain.scale
    if rain.kind == "gauge":
        t, v = series_from_csv(rain.file, rain.time_column, rain.value_column, sc.start)
        tw.input_files.append(rain.file)
        return t, v * rain.scale
    if rain.kind == "typhoon":
        return typhoon_rain(tw)
    raise ValueError(f"flood.rain.kind {rain.kind!r} not supported")


def typhoon_rain(tw: Twin):
    """Rain from a best-track replay (``twin.sensors.typhoon``: R-CLIPER rain, Holland wind, surge).

    Rain is a per-cell field every 30 min when the grid is small enough (cells x times <= 4e6),
    else the rate at the domain centre applied uniformly; the surge (inverse barometer + wind
    set-up at the sea cells' centre) is added to the sea stage when ``surge: true``.
    """
    from twin.sensors import typhoon as ty

    sc = tw.scenario
    if sc.flood.rain.kind != "typhoon":
        raise ValueError(f"flood.rain.kind: typhoon_rain needs kind: typhoon, got {sc.flood.rain.kind!r}")
    r = sc.flood.rain  # narrowed to TyphoonRain by its kind (no import: twin.scenario -> decisions -> here)
    if r.track_file is not None:
        raise ValueError("flood.rain.track_file: custom track files are not supported yet; use a JTWC storm name/id")
    # a forecast member hands in its perturbed track (twin.forecast.perturb) through build_twin(forcing=)
    track = tw.forcing.get("typhoon_track") or ty.load_track(r.storm, r.season)
    step = 1800.0
    times = np.arange(0.0, sc.duration + step, step)
    t_utc = [pd.Timestamp(sc.start_utc).tz_convert("UTC").tz_localize(None) + pd.Timedelta(seconds=float(t + r.time_shift))
             for t in times]
    ny, nx = tw.terrain.shape
    x, y = tw.terrain.cell_centers()
    if len(times) * ny * nx <= 4_000_000:
        X, Y = np.meshgrid(x, y)
        rate = ty.storm_rain_series(track, t_utc, X, Y, crs="EPSG:32649", scale=r.rain_scale)
        rate = np.where(tw.terrain.valid[None], rate, 0.0)
    else:
        xc, yc = float(np.mean(x)), float(np.mean(y))
        rate = ty.storm_rain_series(track, t_utc, xc, yc, crs="EPSG:32649", scale=r.rain_scale).reshape(-1)
    if r.max_rain_mm_per_h is not None:
        rate = np.minimum(rate, r.max_rain_mm_per_h)
    tw.forcing["typhoon"] = {"sid": track.sid, "name": track.name}
    if r.surge and tw.sea_mask is not None:
        rows, cols = np.nonzero(tw.sea_mask)
        sx, sy = float(np.mean(x[cols])), float(np.mean(y[rows]))
        surge = np.array([float(np.asarray(ty.surge_estimate(track, t, sx, sy, crs="EPSG:32649")["surge_m"]))
                          for t in t_utc])
        tw.forcing["typhoon_surge_m"] = (times, surge)
    return times, rate


def reservoir_release(tw: Twin, rain: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Level-pool Phú Ninh reservoir over the run: release = scheduled releases + spill above full supply.

    Storage change = inflow − release, inflow = runoff coefficient 0.7 × rain × catchment 235 km²
    (Phú Ninh catchment), surface area 33 km² (both public figures, rounded).
    """
    sc = tw.scenario
    res = sc.flood.reservoir
    if res is not None and res.in_grid:
        res = None  # the reservoir is on the grid: no lumped level pool
    sched = [iv for iv in sc.interventions if iv.type == "reservoir_release"]
    if res is None and not sched:
        return None
    dt = 300.0
    t = np.arange(0.0, sc.duration + dt, dt)
    q_sched = np.zeros_like(t)
    for iv in sched:
        q_sched += np.interp(t, np.asarray(iv.times) , np.asarray(iv.discharge_m3_per_s), left=0.0, right=0.0) * (t >= iv.at)
    if res is None:
        return t, q_sched
    if res.operation != "simple":
        run = operated_reservoir(tw, t, rain, extra_out=q_sched)
        return t, run.release_m3_s
    q_in = SIMPLE_RUNOFF_COEFFICIENT * _rain_rate(t, rain) / 1000.0 / 3600.0 * SIMPLE_CATCHMENT_M2
    q, levels, level = _simple_pool(res, t, q_in, q_sched)
    tw.forcing["reservoir_simple"] = {"inflow": q_in, "sched": q_sched, "release": q}
    tw.forcing["reservoir_level_m"] = level
    tw.forcing["reservoir_level_series"] = (t, levels)
    return t, q


SIMPLE_CATCHMENT_M2, SIMPLE_AREA_M2, SIMPLE_RUNOFF_COEFFICIENT = 235e6, 33e6, 0.7


def _simple_pool(res, t: np.ndarray, q_in: np.ndarray, q_sched: np.ndarray, i0: int = 0,
                 base_levels: np.ndarray | None = None, base_q: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """The simple level pool (a prism of 33 km², spill above full supply) over ``t``: (release, levels,
    final level). From step ``i0`` on, with the steps before copied from ``base_levels``/``base_q``."""
    q = np.zeros_like(t)
    levels = np.zeros_like(t)
    level = res.initial_level_m
    if i0 > 0 and base_levels is not None and base_q is not None:
        levels[:i0], q[:i0] = base_levels[:i0], base_q[:i0]
        level = float(base_levels[i0])
    from twin.flood.reservoir_ops import PHU_NINH

    for i in range(i0, len(t)):
        dt = (t[i + 1] - t[i]) if i + 1 < len(t) else (t[i] - t[i - 1] if i > 0 else 0.0)
        levels[i] = level
        spill = max(0.0, level - res.full_supply_level_m) * res.spillway_m3_per_s_per_m
        q[i] = q_sched[i] + spill
        level += (q_in[i] - q[i]) * dt / SIMPLE_AREA_M2
        if level < PHU_NINH.dead_level_m:   # the prism has no water below the outlets: no answer
            raise ValueError(f"flood.reservoir ({res.name}): the releases would draw the level pool down to "
                             f"{level:.2f} m by t = {t[i] + dt:g} s, below the dead level "
                             f"{PHU_NINH.dead_level_m:g} m: it does not hold that water (release less or for "
                             "shorter)")
    return q, levels, float(level)


def draw_release(tw: Twin, t_s: float, times: np.ndarray, discharge_m3_s: np.ndarray) -> dict:
    """A release decided during the run, drawn from the lumped level pool (``flood.reservoir`` without
    ``in_grid``): the pool is re-integrated from the first of its steps at or after ``t_s`` with the
    release added to its outflow (an operated reservoir never releases more than it holds above the
    lowest sill), and ``tw.forcing["reservoir_release"]``, the level series and the operated run are
    replaced. Returns {"t": times, "q": the new release into the city [m³/s], "from_index": first step
    changed, "asked_m3" (the release asked), "release_change_m3" (what the pool's release changes by over
    the run: the release, less what spill and the rule no longer give), "level_before_m"/"level_after_m"
    (the pool's level at the run's end)}.
    The past (steps before ``from_index``) is kept bit for bit."""
    t, q_old = (np.asarray(a, float) for a in tw.forcing["reservoir_release"])
    i0 = min(int(np.searchsorted(t, t_s, side="left")), len(t) - 1)
    extra = np.interp(t, np.asarray(times, float), np.asarray(discharge_m3_s, float), left=0.0, right=0.0)
    extra[:i0] = 0.0
    level_before = float(tw.forcing["reservoir_level_m"])
    ops = tw.forcing.get("reservoir_ops")
    if ops is not None:
        old_run = ops["run"]
        ops["extra_out"] = extra if ops["extra_out"] is None else np.asarray(ops["extra_out"], float) + extra
        run = operated_reservoir(tw, t, None, t_from=float(t[i0]))
        q_new = np.maximum(q_old - old_run.release_m3_s + run.release_m3_s, 0.0)
        change = run.release_m3_s - old_run.release_m3_s
    else:
        simple = tw.forcing.get("reservoir_simple")
        if simple is None:
            raise ValueError("reservoir release: the scenario's reservoir has no lumped level pool")
        res = _reservoir(tw)
        t_lv, lv_old = tw.forcing["reservoir_level_series"]
        sched = np.asarray(simple["sched"], float) + extra
        q_pool, levels, level = _simple_pool(res, t, simple["inflow"], sched, i0=i0, base_levels=np.asarray(lv_old),
                                             base_q=simple["release"])
        change = q_pool - simple["release"]
        q_new = np.maximum(q_old - simple["release"] + q_pool, 0.0)
        tw.forcing["reservoir_simple"] = {"inflow": simple["inflow"], "sched": sched, "release": q_pool}
        tw.forcing["reservoir_level_m"] = level
        tw.forcing["reservoir_level_series"] = (t, levels)
    q_new[:i0] = q_old[:i0]
    tw.forcing["reservoir_release"] = (t, q_new)
    dts = np.gradient(t) if len(t) > 1 else np.ones(1)
    # what the decision asks from t_s to the run's end (its hydrograph integrated exactly)
    tt = np.asarray(times, float)
    edges = np.array([np.nextafter(tt[0], -np.inf), np.nextafter(tt[-1], np.inf)])  # zero outside: steps
    grid = np.concatenate([tt, edges, [t_s, t[-1]]])
    grid = np.unique(grid[(grid >= t_s) & (grid <= t[-1])])
    asked = float(np.trapezoid(np.interp(grid, tt, np.asarray(discharge_m3_s, float), left=0.0, right=0.0), grid))
    return {"t": t, "q": q_new, "from_index": i0, "asked_m3": asked,
            "release_change_m3": float((change * dts).sum()), "level_before_m": level_before,
            "level_after_m": float(tw.forcing["reservoir_level_m"])}


def stepped_hydrograph(t: np.ndarray, q_old: np.ndarray, q_new: np.ndarray, i0: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, discharge) that follow ``q_old`` up to just before ``t[i0]`` and ``q_new`` from it: a step,
    so nothing changes before the step where a decision acts (linear interpolation between t[i0-1] and
    t[i0] would otherwise start the change up to one step early)."""
    if i0 <= 0:
        return t, q_new
    t_pre = np.nextafter(t[i0], -np.inf)
    q_pre = float(np.interp(t_pre, t, q_old))
    return (np.concatenate([t[:i0], [t_pre], t[i0:]]), np.concatenate([q_new[:i0], [q_pre], q_new[i0:]]))


def reservoir_level_at(tw: Twin, t_s: float) -> float | None:
    """The lumped level pool's water level [m] at ``t_s`` (seconds from the scenario start): the operated
    reservoir's run (re-integrated by gate decisions) or the simple pool's series; None without one."""
    ops = tw.forcing.get("reservoir_ops")
    if ops is not None:
        run = ops["run"]
        return float(np.interp(t_s, run.t_s, run.level_m))
    ser = tw.forcing.get("reservoir_level_series")
    if ser is not None:
        return float(np.interp(t_s, ser[0], ser[1]))
    return None


def _reservoir(tw: Twin):
    """The scenario's ``flood.reservoir`` section (these helpers run only when it is given)."""
    res = tw.scenario.flood.reservoir
    if res is None:
        raise ValueError("flood.reservoir: this scenario has no reservoir section")
    return res


def _reservoir_inflow(tw: Twin, t: np.ndarray, rain) -> np.ndarray:
    res = _reservoir(tw)
    from twin.flood.reservoir_ops import PHU_NINH
    return (res.base_inflow_m3_per_s
            + res.runoff_coefficient * _rain_rate(t, rain) / 1000.0 / 3600.0 * PHU_NINH.catchment_m2)


def _rain_rate(t: np.ndarray, rain) -> np.ndarray:
    """Rain [mm/h] the reservoir's catchment sees at ``t``: the series, or a field's domain mean."""
    if rain is None:
        return np.zeros_like(t)
    tr, vr = rain
    if np.ndim(vr) > 1:  # a rain field: the reservoir sees the domain mean
        vr = np.asarray(vr).mean(axis=tuple(range(1, np.ndim(vr))))
    return np.interp(t, tr, vr, left=0.0, right=0.0)


def operated_reservoir(tw: Twin, t: np.ndarray, rain, extra_gates: list | None = None, t_from: float = 0.0,
                       extra_out: np.ndarray | None = None):
    """Phú Ninh operated by its rule or by gate settings (twin.flood.reservoir_ops) over the run's times
    ``t``; kept in ``tw.forcing["reservoir_ops"]`` (a gate decision re-integrates from its time with
    ``extra_gates`` and ``t_from``)."""
    from twin.flood.reservoir_ops import PHU_NINH, PoolState, operate
    res = _reservoir(tw)
    ops = tw.forcing.get("reservoir_ops")
    gates = [(float(g.at), PHU_NINH.gate(g.spillway), float(g.opening_m)) for g in res.gates]
    if ops is not None:
        gates = list(ops["gates"])
    gates += list(extra_gates or [])
    q_in = ops["inflow"] if ops is not None else _reservoir_inflow(tw, t, rain)
    extra_out = ops["extra_out"] if ops is not None else extra_out
    run = operate(PHU_NINH, t, q_in, PoolState(res.initial_level_m), start=tw.scenario.start.replace(tzinfo=None),
                  mode=res.operation, safe_release_m3_s=res.safe_release_m3_per_s, manual=gates, t_from=t_from,
                  base=ops["run"] if ops is not None else None, extra_out_m3_s=extra_out)
    tw.forcing["reservoir_ops"] = {"run": run, "gates": gates, "inflow": q_in, "extra_out": extra_out}
    tw.forcing["reservoir_level_m"] = float(run.level_m[-1])
    return run


def reservoir_outlet(tw: Twin) -> str:
    """The city's inflow point that a reservoir release enters: the scenario's reservoir outlet, a
    scenario release's outlet, or the first inflow of kind 'reservoir*'."""
    f = tw.scenario.flood
    outlets = [iv.outlet for iv in tw.scenario.interventions if iv.type == "reservoir_release" and iv.outlet]
    outlet = (f.reservoir.outlet if f.reservoir is not None and f.reservoir.outlet else None) or (
        outlets[0] if outlets else None)
    if outlet is None:
        inf = getattr(tw.city, "inflows", None)
        if inf is None or not len(inf) or not inf["kind"].astype(str).str.contains("reservoir").any():
            raise ValueError("reservoir release: no outlet given and the city has no inflow of kind 'reservoir*'")
        cand = inf[inf["kind"].astype(str).str.contains("reservoir")]
        outlet = str(cand.iloc[0]["name"])
    return outlet
