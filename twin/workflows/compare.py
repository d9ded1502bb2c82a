"""Compare two run folders: KPIs side by side with differences, and a max-depth difference map."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["compare_runs", "flat_kpis", "read_kpis", "run_city"]

# the types of the kpis.json keys flat_kpis reads: "num" a number, "num?" a number or null,
# ("map", t) an object of t, ("obj", {key: t}) an object with those keys, ("list", {key: t}) a list of
# such objects; a missing key or a null section is fine (a run without that component)
_KPI_TYPES = {
    "flooded_area_final_m2": ("map", "num"),
    "flooded_area_max_m2": "num?",
    "volume_balance": ("obj", {"volume_m3": "num"}),
    "people_exposure_person_hours": ("map", "num?"),
    "evacuation_clearance_s": ("map", "num?"),
    "ambulance_response_s": ("obj", {"n_incidents": "num?", "median_s": "num?", "p90_s": "num?", "unreached": "num?"}),
    "road_links_closed_share_max": "num?",
    "travel_time_index": ("obj", {"index": "num?"}),
    "direct_damage": ("obj", {"total_usd": "num?"}),
    "max_depth_at_places": ("list", {"kind": "str?", "max_depth_m": "num?"}),
}


def _type_ok(v, t: str) -> bool:
    if v is None:
        return t.endswith("?")
    if t.startswith("num"):
        return isinstance(v, int | float) and not isinstance(v, bool)
    return isinstance(v, str)


def _check_kpis(kp: dict, path) -> None:
    """ValueError naming ``path``, the key and the value where ``kp`` has a type flat_kpis cannot use."""
    def bad(key, v, what):
        r = repr(v)
        raise ValueError(f"{path}: {key}: expected {what}, got {r if len(r) <= 80 else r[:77] + '...'}")

    for key, t in _KPI_TYPES.items():
        v = kp.get(key)
        if v is None:
            continue
        if isinstance(t, str):
            if not _type_ok(v, t):
                bad(key, v, "a number")
            continue
        kind, sub = t
        if kind in ("map", "obj") and not isinstance(v, dict):
            bad(key, v, "an object")
        if kind == "map":
            for k, x in v.items():
                if not _type_ok(x, sub):
                    bad(f"{key}.{k}", x, "a number")
        elif kind == "obj":
            for k, st in sub.items():
                if k in v and not _type_ok(v[k], st):
                    bad(f"{key}.{k}", v[k], "a number" if st.startswith("num") else "a string")
        else:
            if not isinstance(v, list):
                bad(key, v, "a list")
            for i, item in enumerate(v):
                if not isinstance(item, dict):
                    bad(f"{key}.{i}", item, "an object")
                for k, st in sub.items():
                    if k in item and not _type_ok(item[k], st):
                        bad(f"{key}.{i}.{k}", item[k], "a number" if st.startswith("num") else "a string")


def read_kpis(run) -> dict:
    """A run folder's ``kpis.json`` as a dict, checked: FileNotFoundError when absent, ValueError
    naming the file (and the key and value) when it is not JSON, not an object, or of wrong types."""
    path = Path(run) / "kpis.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no kpis.json (not a finished run folder)")
    try:
        kp = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a KPI file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; "
                         "truncated or damaged?)") from None
    if not isinstance(kp, dict):
        raise ValueError(f"{path}: expected a JSON object of KPIs, got a {type(kp).__name__}")
    _check_kpis(kp, path)
    return kp


def run_city(run) -> str | None:
    """The city a run folder was run for (its scenario's ``city``: a bundle name, or a bundle folder's
    name), from manifest.json or scenario.yaml; None when neither says."""
    run = Path(run)
    city = None
    try:
        man = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        city = (man.get("scenario") or {}).get("city") if isinstance(man, dict) else None
    except (OSError, ValueError, AttributeError):
        city = None
    if city is None:
        try:
            import yaml

            sc = yaml.safe_load((run / "scenario.yaml").read_text(encoding="utf-8"))
            city = sc.get("city") if isinstance(sc, dict) else None
        except (OSError, ValueError, yaml.YAMLError):
            city = None
    if not isinstance(city, str) or not city.strip():
        return None
    return Path(city).name if ("/" in city or "\\" in city) else city


def _read_depth(path: Path):
    """(max depth array, transform, crs, shape) of a run's max_depth.tif; ValueError naming the file."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            if src.count < 1:
                raise ValueError(f"{path}: a GeoTIFF without bands")
            z = src.read(1, masked=True).filled(np.nan)
            return z, src.transform, src.crs
    except (RasterioError, OSError) as exc:
        raise ValueError(f"{path}: not a readable GeoTIFF ({exc})") from None


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


def compare_runs(run_a, run_b, png: str | Path | None = None, force: bool = False) -> dict:
    """KPIs of two run folders side by side (and a max-depth difference map when the grids match).

    Runs of different cities are refused (ValueError naming both) unless ``force``; then the result's
    ``warnings`` says so."""
    a, b = Path(run_a), Path(run_b)
    for r in (a, b):
        if not r.is_dir():
            raise FileNotFoundError(f"{r}: no such run folder")
    kpa, kpb = read_kpis(a), read_kpis(b)
    warnings = []
    ca, cb = run_city(a), run_city(b)
    if ca is not None and cb is not None and ca != cb:
        msg = (f"{a} is a run of city {ca!r} and {b} a run of city {cb!r}: their KPIs and maps do not "
               "describe the same place")
        if not force:
            raise ValueError(msg + "; pass --force (force=True) to compare them anyway")
        warnings.append(msg + " (compared anyway: --force)")
    ka, kb = flat_kpis(kpa), flat_kpis(kpb)
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
    res = {"run_a": str(a), "run_b": str(b), "rows": rows, "table": "\n".join(lines), "png": None,
           "cities": [ca, cb], "warnings": warnings}
    ta, tb = a / "max_depth.tif", b / "max_depth.tif"
    if ta.exists() and tb.exists():
        za, transform, crs = _read_depth(ta)
        zb, tb_transform, _ = _read_depth(tb)
        if za.shape != zb.shape or transform != tb_transform:
            res["map_note"] = "grids differ: no difference map"
            return res
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
