"""Seeded forcing perturbations of a forecast member: typhoon track and intensity, rain, reservoir, sea.

Every member ``i`` of a forecast with seed ``S`` draws its perturbation from
``numpy.random.SeedSequence(S).spawn(K)[i]`` (independent of where and in which order members run);
member 0 is the **control** (no perturbation) so the unperturbed forecast is always in the ensemble.

Typhoon track and intensity (when the run's rain is a typhoon replay). The errors grow with lead
time ``τ`` (hours after the issue time) like the mean errors of the official forecasts for the western
North Pacific (WP, where the Joint Typhoon Warning Center (JTWC) issues them).

**Track**: the mean position errors of the North West Pacific official forecasts, 2014-2018, as
tabulated by Tropical Storm Risk (TSR, "Storm Tracker: track forecast error bounds",
tropicalstormrisk.com/tracker/static/tracker_errors.html; TSR takes them from the forecasting
centres' post-season verification): 24 / 34 / 46 / 61 / 78 / 117 / 165 / 223 nm at 0 / 12 / 24 / 36 /
48 / 72 / 96 / 120 h. (Their size agrees with NHC's 2023 Atlantic cone radii, 39 / 67 / 99 / 145 /
205 nm at 24-120 h for two thirds of the errors, i.e. Gaussian means of about 33 / 57 / 84 / 123 /
173 nm: the WP errors are larger, as is known.)

**Intensity**: mean absolute Vmax errors of 5 / 8 / 11 / 13 / 15 / 17 / 18 / 19 kt at the same leads.
**Not verified**: written from memory of the JTWC Annual Tropical Cyclone Reports; no published WP
table of intensity errors by lead time was found to check them (2026-12-04). Replace the column of
:data:`JTWC_WP_ERRORS` (and :data:`ERROR_SOURCE`) with a report's table when one is at hand.

A mean great-circle error ``E`` of a position error that is circular Gaussian with a standard
deviation ``σ`` per component has ``E = σ √(π/2)``; the along-track and cross-track components get
``σ(τ) = E(τ) / √(π/2)`` each (no split between them is published in the reports; equal shares is
the assumption). A Gaussian intensity error with a mean absolute error ``M`` has ``σ = M √(π/2)``.
Each member draws three standard normal numbers ``z_along, z_cross, z_vmax`` once: its error at lead
``τ`` is ``z · σ(τ)`` (a member's error grows along its track and keeps its sign, as forecast errors
do; the ensemble spread grows as the published errors). Positions are moved along and across the
local direction of motion; Vmax is clipped at 15 kt; the central pressure moves with Vmax through
Atkinson & Holliday (1977) (the relation ``twin.sensors.typhoon`` uses for missing pressures).

The rest (engineering choices, not published statistics; stated in forecast.json):

- rain: a multiplicative factor, log-normal with ``σ_ln = 0.3`` (factor 0.74-1.35 at one σ), applied
  to the scenario's rain (typhoon ``rain_scale``, design-storm peak, series, file or gauge scale);
- reservoir: the spillway coefficient and scheduled releases scaled by a log-normal factor with
  ``σ_ln = 0.2``;
- sea: a sea-level offset (tide and surge error) ``N(0, 0.15 m)`` added to the mean sea level, and
  the scenario's surge peak scaled by a log-normal factor with ``σ_ln = 0.25``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["JTWC_WP_ERRORS", "MemberPerturbation", "draw_perturbations", "track_sigma", "perturb_track",
           "perturbed_scenario_dict", "RAIN_SIGMA_LN", "RELEASE_SIGMA_LN", "SEA_OFFSET_SIGMA_M",
           "SURGE_SIGMA_LN", "ERROR_SOURCE"]

#: (lead h, mean track error nm, mean absolute Vmax error kt): WP; track errors from TSR's table of the
#: 2014-2018 official-forecast errors, Vmax errors not verified (see the module docstring)
JTWC_WP_ERRORS: tuple[tuple[float, float, float], ...] = (
    (0.0, 24.0, 5.0), (12.0, 34.0, 8.0), (24.0, 46.0, 11.0), (36.0, 61.0, 13.0), (48.0, 78.0, 15.0),
    (72.0, 117.0, 17.0), (96.0, 165.0, 18.0), (120.0, 223.0, 19.0),
)
ERROR_SOURCE = ("track: mean position errors of the North West Pacific official forecasts 2014-2018 as tabulated "
                "by Tropical Storm Risk (Storm Tracker track forecast error bounds, "
                "tropicalstormrisk.com/tracker/static/tracker_errors.html); intensity: UNVERIFIED mean absolute "
                "Vmax errors as remembered from the JTWC Annual Tropical Cyclone Reports (no published table "
                "found to check them, 2026-12-04)")
NM_M = 1852.0
SQRT_HALF_PI = math.sqrt(math.pi / 2.0)
RAIN_SIGMA_LN = 0.3
RELEASE_SIGMA_LN = 0.2
SEA_OFFSET_SIGMA_M = 0.15
SURGE_SIGMA_LN = 0.25
VMAX_MIN_KT = 15.0


def track_sigma(lead_h) -> tuple[np.ndarray, np.ndarray]:
    """(σ of the along- and of the cross-track error [m], σ of the Vmax error [kt]) at ``lead_h``
    (hours, clipped to the table's 0-120 h)."""
    tab = np.asarray(JTWC_WP_ERRORS)
    lead = np.clip(np.asarray(lead_h, float), 0.0, tab[-1, 0])
    e_nm = np.interp(lead, tab[:, 0], tab[:, 1])
    m_kt = np.interp(lead, tab[:, 0], tab[:, 2])
    return e_nm * NM_M / SQRT_HALF_PI, m_kt * SQRT_HALF_PI


@dataclass(frozen=True)
class MemberPerturbation:
    """One member's draws (standard normals for the track; factors and offsets for the rest)."""

    member: int
    z_along: float = 0.0
    z_cross: float = 0.0
    z_vmax: float = 0.0
    rain_factor: float = 1.0
    release_factor: float = 1.0
    sea_offset_m: float = 0.0
    surge_factor: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_perturbations(members: int, seed: int) -> list[MemberPerturbation]:
    """The perturbations of ``members`` members (member 0: the control, unperturbed)."""
    out = []
    for i, child in enumerate(np.random.SeedSequence(int(seed)).spawn(int(members))):
        if i == 0:
            out.append(MemberPerturbation(member=0))
            continue
        r = np.random.default_rng(child)
        z = r.standard_normal(7)
        out.append(MemberPerturbation(
            member=i, z_along=float(z[0]), z_cross=float(z[1]), z_vmax=float(z[2]),
            rain_factor=float(math.exp(RAIN_SIGMA_LN * z[3])),
            release_factor=float(math.exp(RELEASE_SIGMA_LN * z[4])),
            sea_offset_m=float(SEA_OFFSET_SIGMA_M * z[5]),
            surge_factor=float(math.exp(SURGE_SIGMA_LN * z[6]))))
    return out


def perturb_track(track, issue_utc, p: MemberPerturbation):
    """A copy of ``track`` (``twin.sensors.typhoon.Track``) with the member's errors at the fixes
    after ``issue_utc`` (naive UTC): positions moved along/across the motion, Vmax and pressure
    changed. Fixes at or before the issue time are kept (they are the analysis, not a forecast)."""
    from pyproj import Transformer

    from twin.sensors.typhoon import P_ENV_HPA, Track

    f = track.fixes.copy()
    t = pd.to_datetime(f["time"]).to_numpy(dtype="datetime64[s]").astype(np.int64).astype(float)
    t0 = float(pd.Timestamp(issue_utc).value // 10**9)
    lead_h = (t - t0) / 3600.0
    after = lead_h > 0
    if not after.any() or (p.z_along == 0 and p.z_cross == 0 and p.z_vmax == 0):
        return Track(sid=track.sid, name=track.name, fixes=f.drop(columns=["x", "y"], errors="ignore"))
    x, y = f["x"].to_numpy(float), f["y"].to_numpy(float)
    # direction of motion at each fix (central differences; one-sided at the ends)
    if len(x) > 1:
        gx, gy = np.gradient(x), np.gradient(y)
    else:
        gx, gy = np.zeros_like(x), np.ones_like(y)
    norm = np.hypot(gx, gy)
    norm = np.where(norm > 0, norm, 1.0)
    ux, uy = gx / norm, gy / norm          # along-track unit vector
    nx, ny = -uy, ux                        # cross-track (left of the motion)
    s_pos, s_v = track_sigma(np.maximum(lead_h, 0.0))
    da = np.where(after, p.z_along * s_pos, 0.0)
    dc = np.where(after, p.z_cross * s_pos, 0.0)
    x2, y2 = x + da * ux + dc * nx, y + da * uy + dc * ny
    lon, lat = Transformer.from_crs("EPSG:32649", "EPSG:4326", always_xy=True).transform(x2, y2)
    v = f["vmax_kt"].to_numpy(float)
    v2 = np.where(after, np.maximum(v + p.z_vmax * s_v, VMAX_MIN_KT), v)

    def ah(vk):  # Atkinson & Holliday (1977) pressure of an intensity [hPa]
        return P_ENV_HPA - (np.maximum(vk, 0.0) / 6.7) ** (1 / 0.644)

    pc = f["pc_hpa"].to_numpy(float)
    f["lon"], f["lat"], f["vmax_kt"] = lon, lat, v2
    f["mslp_hpa"] = np.minimum(pc + (ah(v2) - ah(v)), P_ENV_HPA - 1.0)
    f = f.drop(columns=["x", "y", "pc_hpa"])
    return Track(sid=track.sid, name=track.name, fixes=f)


def _scale_release(d: dict, factor: float) -> None:
    res = (d.get("flood") or {}).get("reservoir")
    if res:
        res["spillway_m3_per_s_per_m"] = float(res["spillway_m3_per_s_per_m"]) * factor
    for iv in d.get("interventions") or []:
        if iv.get("type") == "reservoir_release":
            iv["discharge_m3_per_s"] = [float(q) * factor for q in iv["discharge_m3_per_s"]]


def _scale_rain(d: dict, factor: float) -> str:
    rain = (d.get("flood") or {}).get("rain") or {"kind": "none"}
    kind = rain.get("kind")
    if kind == "typhoon":
        rain["rain_scale"] = min(10.0, float(rain.get("rain_scale", 1.0)) * factor)
    elif kind == "design_storm":
        if rain.get("peak_mm_per_h") is None:  # the storm's own peak (IDF), then scaled
            from twin.flood.forcing import design_hyetograph
            from twin.scenario import DesignStorm

            rain["peak_mm_per_h"] = float(np.max(design_hyetograph(DesignStorm(**rain))[1]))
        rain["peak_mm_per_h"] = min(500.0, float(rain["peak_mm_per_h"]) * factor)
    elif kind == "series":
        rain["rain_mm_per_h"] = [min(500.0, float(v) * factor) for v in rain["rain_mm_per_h"]]
    elif kind in ("file", "gauge"):
        rain["scale"] = min(10.0, float(rain.get("scale", 1.0)) * factor)
    return str(kind)


def perturbed_scenario_dict(base: dict, p: MemberPerturbation) -> dict:
    """The base scenario dict (``Scenario.to_dict()``) with the member's rain, reservoir and sea
    perturbations (the typhoon track is handed to ``build_twin(forcing=)``: :func:`perturb_track`)."""
    import copy

    d = copy.deepcopy(base)
    _scale_rain(d, p.rain_factor)
    _scale_release(d, p.release_factor)
    sea = (d.get("flood") or {}).get("sea")
    if sea is not None:
        sea["mean_level_m"] = float(np.clip(float(sea.get("mean_level_m", 0.0)) + p.sea_offset_m, -10.0, 10.0))
        if sea.get("surge"):
            sea["surge"]["peak_m"] = float(min(10.0, float(sea["surge"]["peak_m"]) * p.surge_factor))
    return d
