"""Typhoon replay from the JTWC best tracks: rain, wind and a simple surge estimate (all *derived*).

Data: ``twin/data/jtwc/jtwc_wp_tracks_within300km_tamky_1945_2021.csv`` (JTWC Western North Pacific
best tracks of the 195 storms passing within 300 km of Tam Kỳ, 1945-2021; see SOURCE.md there).
Everything this module returns is a **parametric model driven by the observed track**, not an
observation: series it writes are labelled ``derived`` (source ``typhoon:<SID>:<model>``).

Rain: R-CLIPER azimuthal-mean rain rate (Tuleya, DeMaria & Kuligowski 2007, *Evaluation of GFDL
and simple statistical model rainfall forecasts for U.S. landfalling tropical storms*, Weather and
Forecasting 22, 56-70, eqs. 1-2 and Table 1; the climatology of Lonfat, Marks & Chen 2004)::

    U   = 1 + (Vmax_kt - 35) / 33                    (normalised intensity, Vmax in knots)
    T0  = a1 + b1 U     rain rate at the centre           [in/day]
    Tm  = a2 + b2 U     rain rate at the radius rm        [in/day]
    rm  = a3 + b3 U     radius of maximum rain            [km]
    re  = a4 + b4 U     e-folding radius outside rm       [km]
    R(r) = T0 + (Tm - T0) r / rm          r <  rm
    R(r) = Tm exp(-(r - rm) / re)         r >= rm
    a1 = -1.10, b1 = 3.96, a2 = -1.60, b2 = 4.80 (in/day); a3 = 64.5, b3 = -13.0, a4 = 150.0, b4 = -16.0 (km)

converted with 1 in/day = 25.4/24 mm/h. R-CLIPER is a climatology of the azimuthal mean: it has
no orographic enhancement (the Trường Sơn range west of Tam Kỳ more than doubles real totals:
Molave 2020 brought 300-600 mm in two days), so ``scale`` (default 1) lets a scenario calibrate.

Wind: Holland (1980) gradient-wind profile with ``B = ρ e Vmax² / Δp`` (clipped to [1, 2.5]),
``p(r) = pc + Δp exp(-(Rm/r)^B)``, inflow angle 20°, plus half the storm's translation velocity
(a common asymmetry correction, e.g. Phadke et al. 2003). Missing central pressure comes from
Atkinson & Holliday (1977) ``Vmax_kt = 6.7 (1010 - pc)^0.644``; missing RMW from Willoughby et al.
(2006) ``Rm = 46.4 exp(-0.0155 Vmax + 0.0169 φ)`` km (Vmax m/s, φ latitude).

Surge (a rough, *derived* estimate for the sea boundary, not a surge model): inverse barometer
``Δp(r) / (ρw g)`` plus a steady wind set-up across the shelf ``τ_on L / (ρw g h)`` with
``τ = ρa Cd U²``, ``Cd = (0.75 + 0.067 U) 10⁻³`` (Garratt 1977), the onshore wind component
against the coast's offshore normal (Tam Kỳ's coast faces ENE: 65° by default), shelf width
``L`` = 30 km and mean depth ``h`` = 30 m (central Vietnam's narrow shelf). Set-down is not
modelled (negative set-up is clipped to 0).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twin.constants import GRAVITY

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TRACK_FILE = "jtwc_wp_tracks_within300km_tamky_1945_2021.csv"
TAMKY_LONLAT = (108.48, 15.57)

# R-CLIPER coefficients (Tuleya et al. 2007, Table 1): in/day and km
RCLIPER = dict(a1=-1.10, b1=3.96, a2=-1.60, b2=4.80, a3=64.5, b3=-13.0, a4=150.0, b4=-16.0)
IN_PER_DAY_TO_MM_PER_H = 25.4 / 24.0
KT = 0.514444  # m/s per knot
NM_KM = 1.852
P_ENV_HPA = 1010.0
RHO_AIR = 1.15
RHO_WATER = 1025.0
G = GRAVITY
INFLOW_ANGLE_DEG = 20.0


def track_file() -> Path:
    """The best-track CSV: ``twin/data/jtwc/`` (or the city bundle's copy under ``twin/data/tamky/``)."""
    for p in (DATA_DIR / "jtwc" / TRACK_FILE, DATA_DIR / "tamky" / TRACK_FILE,
              DATA_DIR / "tamky" / "jtwc" / TRACK_FILE):
        if p.exists():
            return p
    raise FileNotFoundError(f"JTWC best-track file {TRACK_FILE} not found under {DATA_DIR}")


@functools.lru_cache(maxsize=1)
def load_tracks() -> pd.DataFrame:
    """All fixes, one row per (storm, time) (the 34/50/64-kt radius rows collapsed to one)."""
    path = track_file()
    df = pd.read_csv(path)
    df["time"] = pd.to_datetime(df["iso_time_utc"], utc=True).dt.tz_localize(None)
    df["name"] = df["name"].fillna("").astype(str).str.upper()
    df["year"] = df["time"].dt.year
    # r34: mean of the quadrant radii on the 34-kt row
    r34 = df.loc[df["wind_radius_kt"] == 34.0, ["sid", "time", "r_ne_nm", "r_se_nm", "r_sw_nm", "r_nw_nm"]]
    r34 = r34.assign(r34_km=r34[["r_ne_nm", "r_se_nm", "r_sw_nm", "r_nw_nm"]].replace(0.0, np.nan).mean(axis=1) * NM_KM)
    fixes = df.sort_values(["sid", "time", "wind_radius_kt"]).drop_duplicates(["sid", "time"], keep="first")
    fixes = fixes.merge(r34[["sid", "time", "r34_km"]], on=["sid", "time"], how="left")
    fixes["rmw_km"] = fixes["rmw_nm"].where(fixes["rmw_nm"] > 0) * NM_KM
    fixes["mslp_hpa"] = fixes["mslp_hpa"].where(fixes["mslp_hpa"] > 0)
    return fixes[["sid", "name", "year", "time", "lat", "lon", "vmax_kt", "mslp_hpa", "type", "rmw_km",
                  "r34_km", "dist_tamky_km"]].reset_index(drop=True)


def list_storms() -> pd.DataFrame:
    """One row per storm: sid, name, year, start, end, vmax_kt (max), min_dist_km."""
    f = load_tracks()
    g = f.groupby("sid")
    return pd.DataFrame({
        "name": g["name"].first(), "year": g["year"].min(), "start": g["time"].min(), "end": g["time"].max(),
        "vmax_kt": g["vmax_kt"].max(), "min_dist_km": g["dist_tamky_km"].min(),
    }).reset_index().sort_values("start").reset_index(drop=True)


def _utm():
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", "EPSG:32649", always_xy=True)


@dataclass
class Track:
    """One storm's best track; times UTC (naive datetime64). Positions also in EPSG:32649 metres."""

    sid: str
    name: str
    fixes: pd.DataFrame

    def __post_init__(self):
        f = self.fixes.sort_values("time").reset_index(drop=True)
        x, y = _utm().transform(f["lon"].to_numpy(), f["lat"].to_numpy())
        f["x"], f["y"] = x, y
        v = f["vmax_kt"].astype(float).to_numpy()
        pc = f["mslp_hpa"].astype(float).to_numpy()
        est = P_ENV_HPA - (np.maximum(v, 0) / 6.7) ** (1 / 0.644)  # Atkinson & Holliday 1977
        f["pc_hpa"] = np.where(np.isfinite(pc), pc, est)
        rmw = f["rmw_km"].astype(float).to_numpy()
        will = 46.4 * np.exp(-0.0155 * v * KT + 0.0169 * f["lat"].to_numpy())  # Willoughby et al. 2006
        f["rmw_km"] = np.where(np.isfinite(rmw) & (rmw > 0), rmw, will)
        self.fixes = f
        self._ts = (f["time"].to_numpy(dtype="datetime64[s]").astype(np.int64)).astype(float)

    @property
    def start(self) -> pd.Timestamp:
        return self.fixes["time"].iloc[0]

    @property
    def end(self) -> pd.Timestamp:
        return self.fixes["time"].iloc[-1]

    def at(self, t_utc) -> dict | None:
        """Interpolated state at ``t_utc`` (linear between fixes); ``None`` outside the track."""
        ts = float(_to_utc_seconds(t_utc))
        if ts < self._ts[0] or ts > self._ts[-1]:
            return None
        f = self.fixes

        def interp(col):
            return float(np.interp(ts, self._ts, f[col].to_numpy(dtype=float)))

        i = int(np.clip(np.searchsorted(self._ts, ts, side="right") - 1, 0, len(self._ts) - 2)) if len(self._ts) > 1 else 0
        if len(self._ts) > 1:
            dt = self._ts[i + 1] - self._ts[i]
            vx = (f["x"].iloc[i + 1] - f["x"].iloc[i]) / dt
            vy = (f["y"].iloc[i + 1] - f["y"].iloc[i]) / dt
        else:
            vx = vy = 0.0
        return dict(lat=interp("lat"), lon=interp("lon"), x=interp("x"), y=interp("y"),
                    vmax_kt=interp("vmax_kt"), pc_hpa=interp("pc_hpa"), rmw_km=interp("rmw_km"),
                    translation_mps=(float(vx), float(vy)))

    def closest_approach(self, lon: float = TAMKY_LONLAT[0], lat: float = TAMKY_LONLAT[1]) -> dict:
        """Time and distance [km] of the closest 6-hourly fix to a point (default Tam Kỳ)."""
        x, y = _utm().transform(lon, lat)
        d = np.hypot(self.fixes["x"] - x, self.fixes["y"] - y) / 1000.0
        i = int(np.argmin(d))
        return {"time": self.fixes["time"].iloc[i], "distance_km": float(d.iloc[i]),
                "vmax_kt": float(self.fixes["vmax_kt"].iloc[i])}


def _to_utc_seconds(t) -> int:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value // 10**9)


def load_track(name: str, year: int | None = None) -> Track:
    """A storm by name (case-insensitive) and year, or by JTWC id (``"WP212020"``).

    >>> load_track("MOLAVE", 2020).closest_approach()["distance_km"] < 60
    True
    """
    f = load_tracks()
    key = str(name).strip().upper()
    if key.startswith("WP") and key[2:].isdigit():
        sel = f[f["sid"] == key]
    else:
        sel = f[f["name"] == key]
        if year is not None:
            sel = sel[sel["year"] == int(year)]
    if sel.empty:
        raise ValueError(f"storm {name!r}{'' if year is None else f' ({year})'} is not in {track_file()}; "
                         f"see twin.sensors.typhoon.list_storms()")
    sids = sel["sid"].unique()
    if len(sids) > 1:
        raise ValueError(f"storm name {name!r} matches several storms {list(sids)}: give the year or the JTWC id")
    sid = str(sids[0])
    fx = f[f["sid"] == sid].copy()
    return Track(sid=sid, name=str(fx["name"].iloc[0]), fixes=fx)


def _as_track(track, year=None) -> Track:
    if isinstance(track, Track):
        return track
    if isinstance(track, (tuple, list)):
        return load_track(*track)
    return load_track(track, year)


def _to_utm(x, y, crs):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if crs in (None, "EPSG:32649", 32649):
        return x, y
    from pyproj import Transformer

    tr = Transformer.from_crs(crs, "EPSG:32649", always_xy=True)
    return tr.transform(x, y)


# ------------------------------------------------------------------------------------- rain
def rcliper_rain_rate(r_km, vmax_kt) -> np.ndarray:
    """R-CLIPER azimuthal-mean rain rate [mm/h] at radius ``r_km`` for intensity ``vmax_kt``."""
    r = np.asarray(r_km, dtype=np.float64)
    c = RCLIPER
    u = 1.0 + (float(vmax_kt) - 35.0) / 33.0
    t0 = c["a1"] + c["b1"] * u
    tm = c["a2"] + c["b2"] * u
    rm = max(c["a3"] + c["b3"] * u, 1.0)
    re = max(c["a4"] + c["b4"] * u, 1.0)
    inner = t0 + (tm - t0) * r / rm
    outer = tm * np.exp(-(r - rm) / re)
    rate = np.where(r < rm, inner, outer) * IN_PER_DAY_TO_MM_PER_H
    return np.maximum(rate, 0.0)


def storm_rain_field(track, t_utc, x, y, crs="EPSG:32649", *, year: int | None = None,
                     scale: float = 1.0) -> np.ndarray:
    """Rain rate [mm/h] (derived, R-CLIPER) at points ``x, y`` (any broadcastable shapes, in
    ``crs``) at UTC time ``t_utc`` for ``track`` (a :class:`Track`, a name with ``year=`` or a
    ``(name, year)`` tuple). Zero outside the track's time span."""
    tr = _as_track(track, year)
    xs, ys = _to_utm(x, y, crs)
    st = tr.at(t_utc)
    if st is None:
        return np.zeros(np.broadcast(xs, ys).shape)
    r_km = np.hypot(xs - st["x"], ys - st["y"]) / 1000.0
    return scale * rcliper_rain_rate(r_km, st["vmax_kt"])


def storm_rain_series(track, times_utc, x, y, crs="EPSG:32649", *, year=None, scale=1.0) -> np.ndarray:
    """Stack of :func:`storm_rain_field` over ``times_utc``: shape ``(nt,) + broadcast(x, y).shape``."""
    tr = _as_track(track, year)
    return np.stack([storm_rain_field(tr, t, x, y, crs, scale=scale) for t in times_utc])


# ------------------------------------------------------------------------------------- wind
def _holland(st, r_m):
    dp = max(P_ENV_HPA - st["pc_hpa"], 1.0) * 100.0  # Pa
    vmax = st["vmax_kt"] * KT
    b = float(np.clip(RHO_AIR * np.e * vmax**2 / dp, 1.0, 2.5))
    rm = st["rmw_km"] * 1000.0
    f = 2 * 7.292e-5 * np.sin(np.radians(st["lat"]))
    r = np.maximum(r_m, 1.0)
    a = (rm / r) ** b
    v = np.sqrt(b * dp / RHO_AIR * a * np.exp(-a) + (r * f / 2) ** 2) - r * f / 2
    p = st["pc_hpa"] + dp / 100.0 * np.exp(-a)
    return v, p


def storm_wind_field(track, t_utc, x, y, crs="EPSG:32649", *, year=None):
    """Holland (1980) wind (derived): returns ``(speed_mps, u_mps, v_mps, pressure_hpa)`` at the points."""
    tr = _as_track(track, year)
    xs, ys = _to_utm(x, y, crs)
    shape = np.broadcast(xs, ys).shape
    st = tr.at(t_utc)
    if st is None:
        z = np.zeros(shape)
        return z, z.copy(), z.copy(), np.full(shape, P_ENV_HPA)
    dx, dy = xs - st["x"], ys - st["y"]
    r = np.maximum(np.hypot(dx, dy), 1.0)
    v, p = _holland(st, r)
    # counter-clockwise tangential unit vector (northern hemisphere), turned inward by the inflow angle
    tx, ty = -dy / r, dx / r
    cx, cy = -dx / r, -dy / r
    a = np.radians(INFLOW_ANGLE_DEG)
    u = v * (np.cos(a) * tx + np.sin(a) * cx) + 0.5 * st["translation_mps"][0]
    w = v * (np.cos(a) * ty + np.sin(a) * cy) + 0.5 * st["translation_mps"][1]
    return np.hypot(u, w), u, w, p


def surge_estimate(track, t_utc, x, y, crs="EPSG:32649", *, year=None, shore_normal_deg: float = 65.0,
                   shelf_width_m: float = 30e3, shelf_depth_m: float = 30.0) -> dict:
    """Rough surge at a coast point (derived): inverse barometer + steady shelf wind set-up [m].

    ``shore_normal_deg``: azimuth (clockwise from north) of the offshore direction of the coast."""
    _, u, v, p = storm_wind_field(track, t_utc, x, y, crs, year=year)
    speed = np.hypot(u, v)
    az = np.radians(shore_normal_deg)
    onshore = -(u * np.sin(az) + v * np.cos(az))       # wind component blowing towards the land
    cd = (0.75 + 0.067 * speed) * 1e-3
    tau_on = RHO_AIR * cd * speed * np.maximum(onshore, 0.0)
    setup = tau_on * shelf_width_m / (RHO_WATER * G * shelf_depth_m)
    ib = (P_ENV_HPA - p) * 100.0 / (RHO_WATER * G)
    return {"inverse_barometer_m": ib, "wind_setup_m": setup, "surge_m": ib + setup,
            "wind_speed_mps": speed, "pressure_hpa": p}


def derived_series(track, times_utc, x: float, y: float, crs="EPSG:32649", *, year=None, scale=1.0,
                   shore_normal_deg: float = 65.0) -> pd.DataFrame:
    """Rain, wind, pressure and surge at one point over ``times_utc``, labelled ``derived``
    (columns: time_utc, rain_mm_per_h, wind_speed_mps, pressure_hpa, surge_m, source)."""
    tr = _as_track(track, year)
    rows = []
    for t in times_utc:
        rain = float(storm_rain_field(tr, t, x, y, crs, scale=scale))
        s = surge_estimate(tr, t, x, y, crs, shore_normal_deg=shore_normal_deg)
        rows.append(dict(time_utc=pd.Timestamp(t), rain_mm_per_h=rain, wind_speed_mps=float(s["wind_speed_mps"]),
                         pressure_hpa=float(s["pressure_hpa"]), surge_m=float(s["surge_m"])))
    df = pd.DataFrame(rows)
    df["source"] = f"derived:typhoon:{tr.sid}:{tr.name}:rcliper+holland1980"
    return df
