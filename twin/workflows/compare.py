"""Compare two run folders: KPIs side by side with differences, and a max-depth difference map.

``compare_replicates`` compares two scenarios over N common-seed replicates with a 90 % interval
on each KPI's difference (see its docstring for the method and the dashboard's default).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["compare_runs", "run_differences", "run_frame", "flat_kpis", "read_kpis", "run_city", "compare_replicates", "paired_interval",
           "replicate_seeds", "DASHBOARD_DEFAULT_REPLICATES", "INTERVAL_LEVEL"]

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
        if isinstance(sub, str):  # ("map", type of every value)
            for k, x in v.items():
                if not _type_ok(x, sub):
                    bad(f"{key}.{k}", x, "a number")
        elif kind == "obj":  # ("obj" | "list", {key: type})
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


#: the difference map hides changes smaller than this [m] and caps its colour scale at ±DIFF_SCALE_M
DIFF_HIDE_M = 0.05
DIFF_SCALE_M = 0.5


def run_frame(run) -> dict:
    """What a run covers, for :func:`run_differences`: ``start`` (ISO local time), ``duration_s``,
    ``grid`` ((ny, nx), cell size and origin, rounded to 1 cm) and ``resolution_m``; None where the
    run folder does not say."""
    run = Path(run)
    out: dict = {"start": None, "duration_s": None, "grid": None, "resolution_m": None}
    try:
        kp = json.loads((run / "kpis.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kp = {}
    kp = kp if isinstance(kp, dict) else {}
    try:
        import yaml

        sc = yaml.safe_load((run / "scenario.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, ImportError, yaml.YAMLError):
        sc = {}
    sc = sc if isinstance(sc, dict) else {}
    start = kp.get("start_local") or sc.get("start")
    out["start"] = None if start is None else str(start).replace(" ", "T")
    dur = sc.get("duration_s", sc.get("duration"))
    if isinstance(dur, (int, float)) and not isinstance(dur, bool):
        out["duration_s"] = float(dur)
    elif isinstance(dur, str):
        try:
            from twin.valuetypes import parse_duration

            out["duration_s"] = float(parse_duration(dur))
        except Exception:   # an unreadable duration is not a difference we can state
            out["duration_s"] = None
    if out["duration_s"] is None and isinstance(kp.get("end_time_s"), (int, float)):
        out["duration_s"] = float(kp["end_time_s"])
    res = sc.get("resolution_m")
    out["resolution_m"] = float(res) if isinstance(res, (int, float)) and not isinstance(res, bool) else None
    tif = run / "max_depth.tif"
    if tif.is_file():
        try:
            import rasterio

            with rasterio.open(tif) as src:
                t = src.transform
                out["grid"] = (tuple(src.shape), round(t.a, 2), round(-t.e, 2), round(t.c, 2), round(t.f, 2))
        except Exception:   # an unreadable raster: _read_depth names it when the map is drawn
            out["grid"] = None
    return out


def run_differences(run_a, run_b) -> list[str]:
    """Warnings, in words, where two runs do not cover the same thing: different grids (size, cell,
    origin), durations or start times. Their KPIs are then not like for like (a longer run
    accumulates more people-hours; a coarser grid floods differently); empty when they match."""
    fa, fb = run_frame(run_a), run_frame(run_b)
    out = []
    if fa["grid"] and fb["grid"] and fa["grid"] != fb["grid"]:
        (sa, dxa, _, xa, ya), (sb, dxb, _, xb, yb) = fa["grid"], fb["grid"]
        out.append(f"different grids: A is {sa[1]} × {sa[0]} cells of {dxa:g} m from ({xa:.0f}, {ya:.0f}), "
                   f"B {sb[1]} × {sb[0]} cells of {dxb:g} m from ({xb:.0f}, {yb:.0f}): no cell-by-cell "
                   "difference map, and flooded areas and depths are not like for like")
    elif not (fa["grid"] and fb["grid"]) and fa["resolution_m"] and fb["resolution_m"] \
            and fa["resolution_m"] != fb["resolution_m"]:
        out.append(f"different grids: A at {fa['resolution_m']:g} m, B at {fb['resolution_m']:g} m resolution")
    if fa["duration_s"] is not None and fb["duration_s"] is not None and abs(fa["duration_s"] - fb["duration_s"]) > 1e-6:
        out.append(f"different durations: A {fa['duration_s'] / 3600:g} h, B {fb['duration_s'] / 3600:g} h: "
                   "KPIs that accumulate (people-hours, damage, incidents) are not like for like")
    if fa["start"] and fb["start"] and fa["start"] != fb["start"]:
        out.append(f"different start times: A {fa['start']}, B {fb['start']}: the same model time is a "
                   "different moment of the event (tide, rain, daylight)")
    return out


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


def flat_kpis(kp: dict) -> dict[str, float | None]:
    """The scalar KPIs of a ``kpis.json`` as ``{label: value}`` (time series left out)."""
    out: dict[str, float | None] = {}
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
    for run in (a, b):
        if not run.is_dir():
            raise FileNotFoundError(f"{run}: no such run folder")
    kpa, kpb = read_kpis(a), read_kpis(b)
    warnings = []
    ca, cb = run_city(a), run_city(b)
    if ca is not None and cb is not None and ca != cb:
        msg = (f"{a} is a run of city {ca!r} and {b} a run of city {cb!r}: their KPIs and maps do not "
               "describe the same place")
        if not force:
            raise ValueError(msg + "; pass --force (force=True) to compare them anyway")
        warnings.append(msg + " (compared anyway: --force)")
    warnings += run_differences(a, b)
    ka, kb = flat_kpis(kpa), flat_kpis(kpb)
    rows: list[dict[str, Any]] = []
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
    res: dict[str, Any] = {"run_a": str(a), "run_b": str(b), "rows": rows, "table": "\n".join(lines), "png": None,
           "cities": [ca, cb], "warnings": warnings}
    from twin.output.kpi_catalog import compare_rows

    # the catalog's view (twin.output.kpi_catalog): headline KPIs first, units, direction, better/worse
    res["decision_rows"] = compare_rows(kpa, kpb)
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

        lim = DIFF_SCALE_M  # fixed in every comparison: a street's 20 cm is not washed out by a dam's 6 m
        ext = (transform.c, transform.c + transform.a * diff.shape[1], transform.f + transform.e * diff.shape[0], transform.f)
        fig, ax = plt.subplots(figsize=(8, 8 * diff.shape[0] / max(diff.shape[1], 1) + 0.6), dpi=110)
        im = ax.imshow(np.where(np.abs(diff) >= DIFF_HIDE_M, diff, np.nan), cmap="RdBu_r", vmin=-lim, vmax=lim,
                       extent=ext)
        fig.colorbar(im, ax=ax, shrink=0.7, extend="both",
                     label=f"max depth B − A [m] (|Δ| < {DIFF_HIDE_M:g} m not shown; capped at ±{lim:g} m)")
        ax.set_title(f"max depth difference: {b.name} − {a.name}")
        fig.tight_layout()
        fig.savefig(png)
        plt.close(fig)
        res["png"] = str(png)
        res["max_depth_diff_m"] = {"min": float(np.nanmin(diff)), "max": float(np.nanmax(diff)),
                                   "mean_abs": float(np.nanmean(np.abs(diff)))}
    return res


# ---------------------------------------------------------------------------------------------
# Replicates: two scenarios over N common seeds, each KPI's difference with a 90 % interval

#: Replicates the dashboard's compare runs by default (2 x 8 runs): with 8 paired differences the
#: t quantile (1.89 for 7 degrees of freedom) is within 15 % of the normal one (1.64), so more
#: replicates narrow the interval mainly through 1/sqrt(N), at the cost of 2 runs each.
DASHBOARD_DEFAULT_REPLICATES = 8
#: Two-sided coverage of the interval on each KPI's difference B - A.
INTERVAL_LEVEL = 0.90

METHOD = ("paired t-interval: replicate i of A and of B share seed i (common random numbers); "
          "d_i = KPI(B_i) - KPI(A_i); mean(d) +/- t(1 - (1 - level)/2, n - 1) * sd(d) / sqrt(n), "
          "sd with n - 1; a difference whose interval contains 0 is explained by the seed noise")


def paired_interval(a, b, level: float = INTERVAL_LEVEL) -> dict:
    """The ``level`` two-sided t-interval of the mean paired difference ``b - a``.

    ``a[i]`` and ``b[i]`` are the KPI of replicate ``i`` of A and B (same seed). Returns ``n``,
    ``mean``, ``sd`` (of the differences, n - 1 in the denominator), ``lo``, ``hi`` and ``verdict``:
    ``"noise"`` when the interval contains 0 (the seed noise explains the difference), ``"real"``
    when it does not, ``"n/a"`` with fewer than two pairs (no interval). Identical differences
    give a zero-width interval (a deterministic effect is real however small)."""
    from scipy.stats import t as student_t

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_interval: a and b must be 1-D of equal length, got {a.shape} and {b.shape}")
    if not (0.0 < level < 1.0):
        raise ValueError(f"paired_interval: level must be within (0, 1), got {level!r}")
    d = b - a
    n = int(d.size)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "lo": None, "hi": None, "verdict": "n/a"}
    mean = float(d.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "lo": None, "hi": None, "verdict": "n/a"}
    sd = float(d.std(ddof=1))
    if np.all(d == d[0]):   # no spread: exactly the common value (no rounding noise in the mean)
        mean, sd = float(d[0]), 0.0
    half = float(student_t.ppf(0.5 + level / 2.0, n - 1)) * sd / np.sqrt(n)
    lo, hi = mean - half, mean + half
    return {"n": n, "mean": mean, "sd": sd, "lo": lo, "hi": hi,
            "verdict": "noise" if lo <= 0.0 <= hi else "real"}


def replicate_seeds(scenario, n: int) -> list[int]:
    """The N common seeds: those of ``SeedSequence(scenario.seed).spawn(n)``, the ensemble's member seeds."""
    from twin.workflows.ensemble import member_scenarios

    return [int(d["seed"]) for d, _ in member_scenarios(scenario, n)]


def _scenario_input(x, what: str):
    """A Scenario, a scenario file, or a run folder (its scenario.yaml)."""
    from twin.scenario import Scenario, load_scenario

    if isinstance(x, Scenario):
        return x
    p = Path(x)
    if p.is_dir():
        if not (p / "scenario.yaml").is_file():
            raise FileNotFoundError(f"{what} {p}: a folder without scenario.yaml (not a run folder)")
        return load_scenario(p / "scenario.yaml")
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p}: no such scenario file or run folder")
    return load_scenario(p)


def _run_jobs(jobs, scheduler=None, n_workers=None, serial=False, city=None, progress=False):
    """Run ``[(scenario dict, out_dir)]`` with the ensemble's ``run_member``: in this process, on a
    LocalCluster (one thread per worker process) or on the Dask scheduler at ``scheduler``."""
    from twin.workflows.ensemble import run_member

    if serial:
        return [run_member(d, o, city) for d, o in jobs], "serial"
    import os

    from dask.distributed import Client

    from twin.workflows.dask_local import local_cluster

    cluster = None
    if scheduler:
        client, where = Client(scheduler), scheduler
    else:
        nw = n_workers or max(1, min(len(jobs), os.cpu_count() or 1))
        cluster = local_cluster(nw)
        client, where = Client(cluster), f"LocalCluster({nw} workers)"
    try:
        futs = [client.submit(run_member, d, o, city, key=f"replicate-{Path(o).parent.name}-{Path(o).name}",
                              pure=False) for d, o in jobs]
        if progress:
            from dask.distributed import progress as dprog

            dprog(futs)
        return client.gather(futs), where
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def compare_replicates(scenario_a, scenario_b, n: int, out_dir, *, level: float = INTERVAL_LEVEL,
                       scheduler: str | None = None, n_workers: int | None = None, serial: bool = False,
                       city=None, progress: bool = False) -> dict:
    """Compare scenarios A and B over ``n`` replicates with common random numbers.

    ``scenario_a``/``scenario_b``: Scenario objects, scenario files or run folders (their
    ``scenario.yaml``). Replicate ``i`` of A and of B both run with seed ``i`` of
    ``SeedSequence(A.seed).spawn(n)`` (the ensemble's member seeds; B's own seed is not used), so
    the seed noise largely cancels in each pair. The 2n runs go to a Dask LocalCluster by default,
    the scheduler at ``scheduler``, or this process with ``serial``; they are written to
    ``out_dir/a/rep-XXX`` and ``out_dir/b/rep-XXX``, the result to ``out_dir/compare_replicates.json``.

    For each scalar KPI (:func:`flat_kpis`) the difference B - A gets a ``level`` (90 %) paired
    t-interval (:func:`paired_interval`, replicates where either KPI is missing left out) and a
    verdict: ``noise`` (the interval contains 0: the seed noise explains it), ``real``, or ``n/a``.
    The t-interval assumes the paired differences are roughly normal; with few replicates and a
    skewed KPI (counts of rare incidents) treat the bounds as approximate.

    The dashboard's compare runs ``DASHBOARD_DEFAULT_REPLICATES`` = 8 replicates by default.
    """
    import json

    from twin.scenario import apply_overrides

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"replicates: must be an integer >= 2 (an interval needs two paired differences), got {n!r}")
    sa, sb = _scenario_input(scenario_a, "scenario A"), _scenario_input(scenario_b, "scenario B")
    if str(sa.city) != str(sb.city):
        raise ValueError(f"scenario A is of city {sa.city!r} and scenario B of city {sb.city!r}: "
                         "replicates compare two scenarios of one city")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = replicate_seeds(sa, int(n))
    jobs = []
    for tag, sc in (("a", sa), ("b", sb)):
        base = sc.to_dict()
        for i, seed in enumerate(seeds):
            d = apply_overrides(base, [f"seed={seed}", f"name={sc.name}-r{i:03d}"], source=f"replicate {tag}{i}")
            jobs.append((d, str(out / tag / f"rep-{i:03d}")))
    results, where = _run_jobs(jobs, scheduler, n_workers, serial, city, progress)
    kp = [flat_kpis(json.loads((Path(o) / "kpis.json").read_text())) for _, o in jobs]
    ka, kb = kp[:n], kp[n:]
    rows = []
    for key in dict.fromkeys([k for d in kp for k in d]):
        pairs = [(x.get(key), y.get(key)) for x, y in zip(ka, kb)]
        pairs = [(x, y) for x, y in pairs if _number(x) and _number(y)]
        iv = paired_interval([x for x, _ in pairs], [y for _, y in pairs], level)
        rows.append({"kpi": key, "a_mean": float(np.mean([x for x, _ in pairs])) if pairs else None,
                     "b_mean": float(np.mean([y for _, y in pairs])) if pairs else None,
                     "b_minus_a": iv["mean"], "sd": iv["sd"], "lo": iv["lo"], "hi": iv["hi"],
                     "n": iv["n"], "verdict": iv["verdict"]})
    res_decision = _decision_rows([json.loads((Path(o) / "kpis.json").read_text()) for _, o in jobs], n, level)
    res = {"scenario_a": sa.name, "scenario_b": sb.name, "replicates": int(n), "seeds": seeds,
           "level": level, "method": METHOD, "scheduler": where, "out_dir": str(out),
           "runs_a": [o for _, o in jobs[:n]], "runs_b": [o for _, o in jobs[n:]],
           "wall_time_s": [r.get("wall_time_s") for r in results], "rows": rows,
           "decision_rows": res_decision}
    res["table"] = _replicates_table(res)
    (out / "compare_replicates.json").write_text(json.dumps(res, indent=2, default=str))
    return res


def _decision_rows(kps: list[dict], n: int, level: float) -> list[dict]:
    """The KPI catalog's rows (twin.output.kpi_catalog: headline first, units, direction) with each
    difference's paired interval; ``direction_verdict`` is better/worse only where the interval
    excludes 0 (``real``), else ``noise``."""
    from twin.output.kpi_catalog import catalog_values

    vals = [{m.id: (m, v) for m, v in catalog_values(k)} for k in kps]
    ids = list(dict.fromkeys(i for d in vals for i in d))
    out = []
    for i in ids:
        meta = next(d[i][0] for d in vals if i in d)
        pairs = [(x[i][1] if i in x else None, y[i][1] if i in y else None) for x, y in zip(vals[:n], vals[n:])]
        pairs = [(x, y) for x, y in pairs if _number(x) and _number(y)]
        iv = paired_interval([x for x, _ in pairs], [y for _, y in pairs], level)
        dv = iv["verdict"]
        if dv == "real" and meta.better:
            dv = "better" if (iv["mean"] < 0) == (meta.better == "lower") else "worse"
        out.append({"id": i, "label": meta.label, "unit": meta.unit, "direction": meta.direction,
                    "group": meta.group, "headline": meta.headline,
                    "a_mean": float(np.mean([x for x, _ in pairs])) if pairs else None,
                    "b_mean": float(np.mean([y for _, y in pairs])) if pairs else None,
                    "b_minus_a": iv["mean"], "lo": iv["lo"], "hi": iv["hi"], "n": iv["n"],
                    "verdict": iv["verdict"], "direction_verdict": dv})
    out.sort(key=lambda r: (0, r["headline"]) if r["headline"] else (1, ("decision", "context", "diagnostic").index(r["group"])))
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)


def _replicates_table(res: dict) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:,.3f}"

    rows = res["rows"]
    w = max([len(r["kpi"]) for r in rows] + [3])
    pct = f"{100 * res['level']:g} %"
    lines = [f"A = {res['scenario_a']}", f"B = {res['scenario_b']}",
             f"{res['replicates']} replicates with common seeds; {pct} paired t-interval of B - A "
             "('noise': the interval contains 0, the seed noise explains the difference)", "",
             f"{'KPI':<{w}}  {'A mean':>12}  {'B mean':>12}  {'B - A':>12}  {pct + ' interval':>27}  verdict"]
    for r in rows:
        iv = "n/a" if r["lo"] is None else f"[{f(r['lo'])}, {f(r['hi'])}]"
        lines.append(f"{r['kpi']:<{w}}  {f(r['a_mean']):>12}  {f(r['b_mean']):>12}  {f(r['b_minus_a']):>12}  "
                     f"{iv:>27}  {r['verdict']}")
    return "\n".join(lines)
