"""Compare two run folders: KPIs side by side with differences, and a max-depth difference map."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["compare_runs", "flat_kpis"]


def flat_kpis(kp: dict) -> dict[str, float]:
    """The scalar KPIs of a ``kpis.json`` as ``{label: value}`` (time series left out)."""
    out: dict[str, float] = {}
    for k, v in (kp.get("flooded_area_final_m2") or {}).items():
        out[f"flooded area {k} at end [km²]"] = v / 1e6
    if kp.get("flooded_area_max_m2") is not None:
        out["flooded area ≥0.1 m, max [km²]"] = kp["flooded_area_max_m2"] / 1e6
    vb = kp.get("volume_balance") or {}
    if "volume_m3" in vb:
        out["water volume at end [Mm³]"] = vb["volume_m3"] / 1e6
    for k, v in (kp.get("people_exposure_person_hours") or {}).items():
        out[f"people exposed, {k} [person-h]"] = v
    for k, v in (kp.get("evacuation_clearance_s") or {}).items():
        out[f"evacuation clearance {k} [min]"] = None if v is None else v / 60
    amb = kp.get("ambulance_response_s") or {}
    if amb:
        out["incidents"] = amb.get("n_incidents")
        out["ambulance response median [min]"] = None if amb.get("median_s") is None else amb["median_s"] / 60
        out["ambulance response p90 [min]"] = None if amb.get("p90_s") is None else amb["p90_s"] / 60
        out["unreached incidents"] = amb.get("unreached")
    if kp.get("road_links_closed_share_max") is not None:
        out["road links closed, max [%]"] = 100 * kp["road_links_closed_share_max"]
    tti = kp.get("travel_time_index") or {}
    if tti.get("index") is not None:
        out["travel-time index"] = tti["index"]
    dmg = kp.get("direct_damage") or {}
    if dmg.get("by_class"):
        out["direct damage [M USD]"] = dmg["total_usd"] / 1e6
    for p in kp.get("max_depth_at_places") or []:
        if p.get("kind") in ("hospital", "shelter"):
            out[f"max depth {p['kind']} {p['name']} [m]"] = p["max_depth_m"]
    return out


def compare_runs(run_a, run_b, png: str | Path | None = None) -> dict:
    a, b = Path(run_a), Path(run_b)
    for r in (a, b):
        if not (r / "kpis.json").exists():
            raise FileNotFoundError(f"{r}: no kpis.json (not a finished run folder)")
    ka = flat_kpis(json.loads((a / "kpis.json").read_text()))
    kb = flat_kpis(json.loads((b / "kpis.json").read_text()))
    rows = []
    for key in list(dict.fromkeys(list(ka) + list(kb))):
        va, vb = ka.get(key), kb.get(key)
        diff = (vb - va) if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        rows.append({"kpi": key, "a": va, "b": vb, "b_minus_a": diff})

    def f(v):
        return "n/a" if v is None else (f"{v:,.3f}" if isinstance(v, float) else str(v))

    w = max([len(r["kpi"]) for r in rows] + [3])
    lines = [f"{'KPI':<{w}}  {'A':>14}  {'B':>14}  {'B - A':>14}", f"A = {a}", f"B = {b}", ""]
    lines = lines[1:3] + [f"{'KPI':<{w}}  {'A':>14}  {'B':>14}  {'B - A':>14}"]
    for r in rows:
        lines.append(f"{r['kpi']:<{w}}  {f(r['a']):>14}  {f(r['b']):>14}  {f(r['b_minus_a']):>14}")
    res = {"run_a": str(a), "run_b": str(b), "rows": rows, "table": "\n".join(lines), "png": None}
    ta, tb = a / "max_depth.tif", b / "max_depth.tif"
    if ta.exists() and tb.exists():
        import rasterio

        with rasterio.open(ta) as da, rasterio.open(tb) as db:
            if da.shape != db.shape or da.transform != db.transform:
                res["map_note"] = "grids differ: no difference map"
                return res
            za = da.read(1, masked=True).filled(np.nan)
            zb = db.read(1, masked=True).filled(np.nan)
            transform, crs = da.transform, da.crs
        diff = zb - za
        from twin.output.writers import write_geotiff

        write_geotiff(b / f"compare_{a.name}.tif", diff, transform, crs)
        png = Path(png) if png else b / f"compare_{a.name}.png"
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        lim = float(np.nanpercentile(np.abs(diff), 99)) if np.isfinite(diff).any() else 1.0
        lim = max(lim, 0.05)
        ext = (transform.c, transform.c + transform.a * diff.shape[1], transform.f + transform.e * diff.shape[0], transform.f)
        fig, ax = plt.subplots(figsize=(8, 8 * diff.shape[0] / max(diff.shape[1], 1) + 0.6), dpi=110)
        im = ax.imshow(np.where(np.abs(diff) > 0.01, diff, np.nan), cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
        fig.colorbar(im, ax=ax, shrink=0.7, label="max depth B − A [m]")
        ax.set_title(f"max depth difference: {b.name} − {a.name}")
        fig.tight_layout()
        fig.savefig(png)
        plt.close(fig)
        res["png"] = str(png)
        res["max_depth_diff_m"] = {"min": float(np.nanmin(diff)), "max": float(np.nanmax(diff)),
                                   "mean_abs": float(np.nanmean(np.abs(diff)))}
    return res
