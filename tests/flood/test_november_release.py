"""Historic event as a plausibility check: the late-November flood with Phú Ninh releasing 800 m³/s.

PLAUSIBILITY CHECK ON A PARTLY SYNTHETIC TERRAIN, NOT A CALIBRATION. The press reported 0.5-1.5 m in
the streets of Phước Hòa along the Tam Kỳ river and water in the houses about 30 minutes after the
release was announced (``../shared/data/facts_tamky/FACTS.md``). In the twin the Tam Kỳ river is
synthetic and runs about 1 km from the real (generalised) Phước Hòa polygon, so "Phước Hòa along the
river" is read as the riverside land (within two cells of the river at t = 0) within 1 km of the
polygon. The release's own water is separated from the rain's by a twin experiment: the same scenario
with the gates kept closed (operation: manual, no gate settings).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage

from twin.city import census

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "tamky_november_release.yaml"
GAUGE = "Trạm thủy văn Tam Kỳ (sông Tam Kỳ)"


def _run(out: Path, *sets: str) -> Path:
    cmd = [sys.executable, "-m", "twin", "run", str(SCENARIO), "--out", str(out), "--no-progress",
           "--set", "duration=7h", *[a for s in sets for a in ("--set", s)]]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.slow
def test_november_release_depth_band_and_timing(tmp_path):
    rule = _run(tmp_path / "rule")
    closed = _run(tmp_path / "closed", "flood.reservoir.operation=manual")
    k = json.loads((rule / "kpis.json").read_text())
    res = k["reservoir"]
    assert res["peak_release_m3_s"] == pytest.approx(800.0, rel=1e-6)      # the rule caps at the safe release
    opened = next(e["t_s"] for e in res["events"] if e["event"].startswith("gates opened"))
    assert json.loads((closed / "kpis.json").read_text())["reservoir"]["peak_release_m3_s"] < 100.0

    with xr.open_dataset(rule / "fields.nc") as ds:
        d_rule = np.nan_to_num(ds["depth"].values.astype(float))
        x, y = ds["x"].values, ds["y"].values
        t = (ds["time"].values - ds["time"].values[0]) / np.timedelta64(1, "s")
    with xr.open_dataset(closed / "fields.nc") as ds:
        d_closed = np.nan_to_num(ds["depth"].values.astype(float))
    dx = float(abs(x[1] - x[0]))
    tr = Affine(dx, 0, x[0] - dx / 2, 0, -dx, y[0] + dx / 2)
    leg = census.legacy_wards()
    ph = leg.loc[leg["legacy_name"] == "Phước Hòa", "geometry"].iloc[0]
    near = rasterize([(ph.buffer(1000.0), 1)], out_shape=(len(y), len(x)), transform=tr).astype(bool)
    water = d_rule[0] > 0.05
    bank = ndimage.binary_dilation(water, iterations=2) & ~water & near
    assert bank.sum() >= 30

    # 1. depth in the streets along the river: the reported 0.5-1.5 m band (median of the riverside cells)
    rise = d_rule.max(axis=0) - d_rule[0]
    med = float(np.median(rise[bank]))
    print(f"Phước Hòa riverside max depth: median {med:.2f} m, p25-p75 "
          f"{np.percentile(rise[bank], 25):.2f}-{np.percentile(rise[bank], 75):.2f} m")
    assert 0.5 <= med <= 1.5

    # 2. timing: the release's water (rule minus gates closed > 0.1 m) reaches the city's river gauge, then
    # the riverside houses
    pl = pd.read_csv(REPO / "twin" / "data" / "tamky" / "places.csv")
    g = pl.loc[pl["name"] == GAUGE].iloc[0]
    gr, gc = int((tr.f - g["y"]) // dx), int((g["x"] - tr.c) // dx)
    at_gauge = t[np.flatnonzero(d_rule[:, gr, gc] - d_closed[:, gr, gc] > 0.1)[0]]
    diff = (d_rule - d_closed)[:, bank]
    first = np.array([t[np.flatnonzero(c > 0.1)[0]] if (c > 0.1).any() else np.nan for c in diff.T])
    lag_first = float(np.nanpercentile(first, 10) - at_gauge)
    lag_median = float(np.nanmedian(first) - at_gauge)
    print(f"gates opened at {opened / 3600:.2f} h; release at the city gauge at {at_gauge / 3600:.2f} h; "
          f"in the first riverside houses {lag_first / 60:.0f} min later (median {lag_median / 60:.0f} min)")
    assert at_gauge > opened                      # the wave travels from the dam to the city
    assert np.isfinite(first).mean() > 0.9        # the release reaches nearly every riverside cell
    # reported: ~30 min after the announcement. The twin is slower (~70 min to the first houses on this
    # synthetic river and 100 m grid): asserted at 90 min, and said so in docs/validation.md.
    assert lag_first <= 90 * 60
