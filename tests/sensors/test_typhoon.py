"""Typhoon replay: best-track loading, R-CLIPER rain, Holland wind, surge estimate."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.sensors import typhoon as ty


def test_molave_track_matches_source_facts():
    tr = ty.load_track("MOLAVE", 2020)
    assert tr.sid == "WP212020"
    ca = tr.closest_approach()  # SOURCE.md: landfall 2020-10-28 06Z, 42 km from Tam Kỳ, 70 kt
    assert ca["time"] == pd.Timestamp("2020-10-28 06:00")
    assert abs(ca["distance_km"] - 42.0) < 2.0
    assert ca["vmax_kt"] == 70.0
    assert ty.load_track("wp212020").sid == "WP212020"
    with pytest.raises(ValueError, match="NOSUCHSTORM"):
        ty.load_track("NOSUCHSTORM", 2020)


def test_rcliper_formula_and_continuity():
    c = ty.RCLIPER
    # Vmax = 35 kt -> U = 1: Tm = a2 + b2 = 3.2 in/day at rm = a3 + b3 = 51.5 km
    tm = (c["a2"] + c["b2"]) * 25.4 / 24
    assert ty.rcliper_rain_rate(51.5, 35.0) == pytest.approx(tm, rel=1e-12)
    t0 = (c["a1"] + c["b1"]) * 25.4 / 24
    assert ty.rcliper_rain_rate(0.0, 35.0) == pytest.approx(t0, rel=1e-12)
    # continuous at rm, exponential decay with e-folding re = a4 + b4 = 134 km outside
    rm = 51.5
    assert ty.rcliper_rain_rate(rm - 1e-9, 35.0) == pytest.approx(ty.rcliper_rain_rate(rm, 35.0), rel=1e-6)
    assert ty.rcliper_rain_rate(rm + 134.0, 35.0) == pytest.approx(tm / np.e, rel=1e-12)
    # stronger storm: more rain at its peak
    assert ty.rcliper_rain_rate(30, 100).max() > ty.rcliper_rain_rate(30, 50).max()


def test_storm_rain_field_over_tamky_grid():
    tr = ty.load_track("MOLAVE", 2020)
    st = tr.at("2020-10-28T06:00Z")
    x = st["x"] + np.linspace(-200e3, 200e3, 41)
    y = st["y"] + np.linspace(-200e3, 200e3, 41)
    X, Y = np.meshgrid(x, y)
    f = ty.storm_rain_field(tr, "2020-10-28T06:00Z", X, Y)
    assert f.shape == (41, 41) and np.all(f >= 0)
    r = np.hypot(X - st["x"], Y - st["y"]) / 1000
    np.testing.assert_allclose(f, ty.rcliper_rain_rate(r, st["vmax_kt"]), rtol=1e-12)
    # outside the track's time span: no rain
    assert np.all(ty.storm_rain_field(tr, "2021-01-01", X, Y) == 0)
    # lon/lat input gives the same value as UTM input
    lon, lat = ty.TAMKY_LONLAT
    xu, yu = ty._utm().transform(lon, lat)
    assert ty.storm_rain_field("MOLAVE", "2020-10-28T03:00Z", lon, lat, crs="EPSG:4326", year=2020) == \
        pytest.approx(ty.storm_rain_field(tr, "2020-10-28T03:00Z", xu, yu))


def test_holland_peak_wind_and_inverse_barometer():
    st = dict(lat=15.0, vmax_kt=100.0, pc_hpa=950.0, rmw_km=30.0, translation_mps=(0.0, 0.0))
    r = np.linspace(1e3, 300e3, 3000)
    v, p = ty._holland(st, r)
    # B = rho e Vmax^2 / dp  => V(rm) ~ Vmax (minus the small Coriolis term)
    assert v.max() == pytest.approx(100 * ty.KT, rel=0.03)
    assert abs(r[np.argmax(v)] - 30e3) < 2e3
    assert p[0] == pytest.approx(950.0, abs=0.5) and p[-1] < 1010.0
    tr = ty.load_track("MOLAVE", 2020)
    s = ty.surge_estimate(tr, "2020-10-28T06:00Z", tr.at("2020-10-28T06:00Z")["x"], tr.at("2020-10-28T06:00Z")["y"])
    # at the centre: inverse barometer = dp * 100 / (rho_w g)
    dp = 1010.0 - tr.at("2020-10-28T06:00Z")["pc_hpa"]
    assert float(s["inverse_barometer_m"]) == pytest.approx(dp * 100 / (1025 * 9.81), rel=1e-3)


def test_derived_series_labelled():
    df = ty.derived_series(("MOLAVE", 2020), pd.date_range("2020-10-28", periods=5, freq="3h"), 108.48, 15.57,
                           crs="EPSG:4326")
    assert df["source"].str.startswith("derived:").all()
    assert df["rain_mm_per_h"].max() > 1.0 and df["surge_m"].max() > 0.1
