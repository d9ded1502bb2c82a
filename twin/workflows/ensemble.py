"""Ensembles: N members of a scenario on Dask (LocalCluster by default, or a given scheduler).

Member ``i`` gets the seed entropy of ``SeedSequence(scenario.seed).spawn(N)[i]`` (its own
independent stream; member results do not depend on where or in which order members run), and,
for each ``--vary key=lo..hi``, ``value = lo + (hi - lo) * i / (N - 1)``. Each member writes a full
run folder ``member-XXX/``; the ensemble writes ``ensemble.json`` and ``exceedance.nc``: the
probability (share of members) that the maximum depth exceeds each threshold, per cell.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np

__all__ = ["run_ensemble", "member_scenarios", "parse_vary", "run_member", "parse_thresholds",
           "check_members", "validate_members", "MAX_MEMBERS", "map_on_dask"]

MAX_MEMBERS = 10_000  # a larger ensemble is a typo, not a plan (each member writes a run folder)


def check_members(members) -> int:
    """``members`` as an int in 1..MAX_MEMBERS; ValueError naming the value otherwise."""
    if isinstance(members, bool) or not isinstance(members, int | np.integer):
        raise ValueError(f"--members {members!r}: expected a whole number of members")
    if not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"--members {members}: must be between 1 and {MAX_MEMBERS}")
    return int(members)


def parse_thresholds(text: str) -> list[float]:
    """``"0.1,0.5,1"`` → depths in m (finite, >= 0, at least one); ValueError naming the bad item."""
    out = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        try:
            v = float(item)
        except ValueError:
            raise ValueError(f"--thresholds {text!r}: {item.strip()!r} is not a depth in m "
                             "(expected numbers separated by commas, e.g. 0.1,0.5,1.0)") from None
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"--thresholds {text!r}: {item.strip()!r} must be a finite depth >= 0 m")
        out.append(v)
    if not out:
        raise ValueError(f"--thresholds {text!r}: give at least one depth in m (e.g. 0.1,0.5,1.0)")
    return out


def parse_vary(text: str) -> tuple[str, float, float]:
    m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*=\s*([-+0-9.eE]+)\s*\.\.\s*([-+0-9.eE]+)\s*$", text)
    if not m:
        raise ValueError(f"--vary {text!r}: expected key.path=lo..hi (e.g. flood.rain.peak_mm_per_h=60..120)")
    try:
        lo, hi = float(m.group(2)), float(m.group(3))
    except ValueError:
        raise ValueError(f"--vary {text!r}: lo and hi must be numbers (e.g. flood.rain.peak_mm_per_h=60..120)") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"--vary {text!r}: lo and hi must be finite")
    return m.group(1), lo, hi


def member_scenarios(scenario, members: int, vary=()) -> list[tuple[dict, list[str]]]:
    """[(scenario dict, overrides)] for each member (seed from SeedSequence.spawn)."""
    from twin.scenario import apply_overrides

    members = check_members(members)
    children = np.random.SeedSequence(scenario.seed).spawn(members)
    base = scenario.to_dict()
    out = []
    for i, child in enumerate(children):
        # the member's seed: 63 bits of its spawned child's state (independent streams per member)
        seed = int(child.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 2**32], dtype=np.uint64)) & (2**63 - 1)
        ov = [f"seed={seed}", f"name={scenario.name}-m{i:03d}"]
        for key, lo, hi in vary:
            val = lo if members == 1 else lo + (hi - lo) * i / (members - 1)
            ov.append(f"{key}={val!r}")
        out.append((apply_overrides(base, ov), ov))
    return out


def validate_members(specs, source: str = "ensemble") -> list:
    """Validate every member's scenario (``member_scenarios`` output) before any member runs; a
    ScenarioError names each failing member, its overrides, the key and the value."""
    from twin.scenario import ScenarioError, _validate

    scenarios, errors = [], []
    for i, (d, ov) in enumerate(specs):
        try:
            scenarios.append(_validate(d, source=f"{source} member {i:03d} ({', '.join(ov[2:]) or 'no --vary'})",
                                       base_dir=None))
        except ScenarioError as exc:
            errors.append(str(exc).replace("invalid scenario:", "").strip())
    if errors:
        raise ScenarioError(f"{len(errors)} of {len(specs)} ensemble members are invalid; nothing was run:\n  "
                            + "\n  ".join(errors))
    return scenarios


def run_member(scenario_dict: dict, out_dir: str, city=None) -> dict:
    """Run one member (in whatever process) and return its summary."""
    from twin.build import build_twin
    from twin.scenario import _validate
    from twin.simulation import Simulation

    sc = _validate(scenario_dict, source=f"ensemble member {out_dir}", base_dir=None)
    t0 = time.perf_counter()
    sim = Simulation(build_twin(sc, city=city), out_dir=out_dir)
    sim.run()
    kp = json.loads((Path(out_dir) / "kpis.json").read_text())
    return {"out_dir": str(out_dir), "seed": sc.seed, "wall_time_s": time.perf_counter() - t0,
            "flooded_area_max_m2": kp.get("flooded_area_max_m2")}


def run_ensemble(scenario, members: int, out_dir, vary=(), scheduler: str | None = None,
                 n_workers: int | None = None, serial: bool = False, thresholds=(0.1, 0.5, 1.0),
                 progress: bool = False, city=None) -> dict:
    out = Path(out_dir)
    specs = member_scenarios(scenario, members, vary)
    validate_members(specs, source=str(scenario.name))
    out.mkdir(parents=True, exist_ok=True)
    dirs = [str(out / f"member-{i:03d}") for i in range(members)]
    if serial:
        results = [run_member(d, o, city) for (d, _), o in zip(specs, dirs)]
        where = "serial"
    else:
        from dask.distributed import Client

        from twin.workflows.dask_local import local_cluster

        cluster = None
        if scheduler:
            client = Client(scheduler)
            where = scheduler
        else:
            import os

            nw = n_workers or max(1, min(members, os.cpu_count() or 1))
            cluster = local_cluster(nw)
            client = Client(cluster)
            where = f"LocalCluster({nw} workers)"
        try:
            futs = [client.submit(run_member, d, o, city, key=f"member-{i:03d}-{scenario.name}", pure=False)
                    for i, ((d, _), o) in enumerate(zip(specs, dirs))]
            if progress:
                from dask.distributed import progress as dprog

                try:
                    dprog(futs)
                except Exception:
                    pass
            results = client.gather(futs)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    for i, (r, (_, ov)) in enumerate(zip(results, specs)):
        r["member"] = i
        r["overrides"] = ov
    exc = exceedance(dirs, thresholds, out / "exceedance.nc")
    summary = {"scenario": scenario.name, "members": results, "vary": [list(v) for v in vary],
               "scheduler": where, "thresholds_m": list(thresholds), "exceedance": exc}
    (out / "ensemble.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def exceedance(member_dirs, thresholds, path: Path) -> str | None:
    """Per-cell probability that the member max depth exceeds each threshold → NetCDF (+ PNGs)."""
    import rasterio
    import xarray as xr

    stack, transform, crs = [], None, None
    for d in member_dirs:
        p = Path(d) / "max_depth.tif"
        if not p.exists():
            continue
        with rasterio.open(p) as src:
            stack.append(src.read(1, masked=True).filled(np.nan))
            transform, crs = src.transform, src.crs
    if not stack:
        return None
    md = np.stack(stack)
    ny, nx = md.shape[1:]
    x = transform.c + (np.arange(nx) + 0.5) * transform.a
    y = transform.f + (np.arange(ny) + 0.5) * transform.e
    valid = np.isfinite(md).all(axis=0)
    prob = np.stack([np.where(valid, (np.nan_to_num(md) > t).mean(axis=0), np.nan) for t in thresholds])
    ds = xr.Dataset(
        {"exceedance_probability": (("threshold", "y", "x"), prob.astype("float32"),
                                    {"long_name": "share of members whose max depth exceeds the threshold",
                                     "units": "1", "grid_mapping": "spatial_ref"})},
        coords={"threshold": ("threshold", np.asarray(thresholds, float), {"units": "m"}),
                "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m"}),
                "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m"})},
        attrs={"Conventions": "CF-1.8", "members": len(stack)},
    )
    from pyproj import CRS

    c = CRS.from_user_input(crs.to_wkt() if crs is not None else "EPSG:32649")
    ds["spatial_ref"] = xr.DataArray(0, attrs={**c.to_cf(), "spatial_ref": c.to_wkt()})
    ds.to_netcdf(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for k, t in enumerate(thresholds):
            fig, ax = plt.subplots(figsize=(7, 7 * ny / max(nx, 1) + 0.6), dpi=100)
            im = ax.imshow(prob[k], vmin=0, vmax=1, cmap="viridis",
                           extent=(x[0], x[-1], y[-1], y[0]))
            fig.colorbar(im, ax=ax, shrink=0.7, label=f"P(max depth > {t:g} m)")
            ax.set_title(f"exceedance probability, {len(stack)} members")
            fig.tight_layout()
            fig.savefig(path.parent / f"exceedance_{t:g}m.png")
            plt.close(fig)
    except Exception:
        pass
    return str(path)


def map_on_dask(func, args: list[tuple], *, keys: list[str] | None = None, scheduler: str | None = None,
                n_workers: int | None = None, serial: bool = False) -> tuple[list, str]:
    """``[func(*a) for a in args]`` on Dask with the ensembles' cluster handling (a given scheduler,
    or a LocalCluster of single-threaded worker processes, OMP_NUM_THREADS=1), or serially.
    Returns (results in order, where they ran). Used by ``twin review``'s counterfactual forks."""
    if serial or not args:
        return [func(*a) for a in args], "serial"
    from dask.distributed import Client

    from twin.workflows.dask_local import local_cluster

    cluster = None
    if scheduler:
        client = Client(scheduler)
        where = scheduler
    else:
        import os

        nw = n_workers or max(1, min(len(args), os.cpu_count() or 1))
        cluster = local_cluster(nw)
        client = Client(cluster)
        where = f"LocalCluster({nw} workers)"
    try:
        futs = [client.submit(func, *a, key=(keys[i] if keys else None), pure=False) for i, a in enumerate(args)]
        results = client.gather(futs)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return list(results), where
