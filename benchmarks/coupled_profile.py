"""Coupled-step phase profile: the Tam Kỳ coupled scenario (30 m flood, subgrid factor 3 on the 10 m city)
for ``--hours``, with the shared per-step fields (``Simulation(share_fields=True)``, the default) and,
with ``--reference``, without them (every consumer recomputes the depth and speed on the twin's grid),
in the same invocation, each on a freshly built twin of the same scenario and seed.

One JSON line per case (wall and CPU time of the run, ``phase_wall_s`` and each phase's share of the
step, ``per_hour``: the wall time, phases and flood sub-steps of each simulated hour), then a ``ratio`` line: optimised / reference wall per phase, and whether the two runs wrote the
same KPIs, series and tables (they must: the shared fields change no number).

The run keeps freed memory for the next allocation (``twin.memory.retain_freed_memory``, as the ``twin``
command does); ``--allocator-reference`` first runs the same case in a child process with the C allocator as
it is (``TWIN_MALLOC=system``) and adds an ``allocator_ratio`` line (also: peak RSS of both).

    nice python benchmarks/coupled_profile.py --hours 1 --reference
    nice python benchmarks/coupled_profile.py --hours 2 --set start=2020-10-28T12:00 --allocator-reference
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _run(hours: float, share: bool, out: Path, factor: int = 3, resolution_m: float = 30.0,
         extra: tuple[str, ...] = ()) -> dict:
    from twin.build import build_twin
    from twin.output.schedules import IterationInterval
    from twin.scenario import load_scenario
    from twin.simulation import Simulation

    over = [f"resolution_m={resolution_m:g}", f"duration={hours:g}h", "outputs.png=false", "flood.dtype=float64",
            "flood.solver=inertial", f"flood.subgrid_factor={factor}", *extra]
    sc = load_scenario(REPO / "scenarios" / "tamky_molave_2020.yaml", overrides=over)
    w0 = time.perf_counter()
    tw = build_twin(sc)
    wb = time.perf_counter() - w0
    sim = Simulation(tw, out_dir=out, share_fields=share)
    per_hour: list[dict] = []
    marks = {"wall": time.perf_counter(), "phases": {}, "substeps": 0, "fast": 0}

    def hourly(s) -> None:  # the wall time, phases and flood sub-steps of each simulated hour
        now, ph_now = time.perf_counter(), dict(s.phase_wall_s)
        per_hour.append({"hour": round(s.time / 3600.0, 3), "wall_s": round(now - marks["wall"], 3),
                         "phase_wall_s": {k: round(v - marks["phases"].get(k, 0.0), 3) for k, v in ph_now.items()},
                         "flood_substeps": tw.flood.n_steps - marks["substeps"],
                         "flood_fast_substeps": tw.flood.lts_substeps - marks["fast"]})
        marks.update(wall=now, phases=ph_now, substeps=tw.flood.n_steps, fast=tw.flood.lts_substeps)

    sim.add_callback("benchmark_hourly", hourly, IterationInterval(max(1, round(3600.0 / sim.dt))))
    w0, c0 = time.perf_counter(), time.process_time()
    marks["wall"] = w0
    sim.run()
    wr, cr = time.perf_counter() - w0, time.process_time() - c0
    ph = dict(sim.phase_wall_s)
    step = sum(ph.values())
    return {"case": "shared_fields" if share else "reference", "scenario": sc.name, "hours": hours,
            "steps": sim.iteration, "twin_grid": list(tw.terrain.shape), "flood_grid": list(tw.flood.shape),
            "build_wall_s": wb, "run_wall_s": wr, "run_cpu_s": cr, "phase_wall_s": ph,
            "phase_share": {k: v / step for k, v in ph.items()}, "load_avg_end": os.getloadavg()[0],
            "overrides": list(extra), "flood_substeps": tw.flood.n_steps,
            "flood_fast_substeps": tw.flood.lts_substeps, "per_hour": per_hour,
            "malloc": "retain" if _RETAINED else "system",
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "machine": platform.machine(), "cpus": os.cpu_count()}


def _kernels(hours: float, repeat: int = 5) -> dict:
    """The per-consumer work, old path against new, on the same arrays of the built twin after ``hours``
    of flood (best of ``repeat``, seconds per call): the downscaling, met_depth on the whole grid against
    the water cells only, a hazard map from land-use names against indices, the NaN check."""
    import numpy as np

    from twin.build import build_twin
    from twin.hazard import hazard_rating
    from twin.scenario import load_scenario
    from twin.simulation import Simulation, _nan_checker

    over = ["resolution_m=30", f"duration={max(hours, 1 / 30):g}h", "outputs.png=false", "flood.dtype=float64",
            "flood.solver=inertial", "flood.subgrid_factor=3", "traffic=null", "services=null"]
    tw = build_twin(load_scenario(REPO / "scenarios" / "tamky_molave_2020.yaml", overrides=over))
    sim = Simulation(tw)
    sim.run()
    tw.open_field_cache()           # as inside a step: the NaN check reads the shared depth
    d, v = tw.depth(), tw.speed()
    rw = tw.people._road_water

    def best(fn):
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    def nan_old():
        valid = tw.valid
        x = d[valid]
        return (~np.isfinite(x)).any() or (x < 0).any()

    out = {"case": "kernels", "hours": hours, "grid": list(d.shape),
           "downscale_s": best(tw._depth_direct),
           "met_depth_full_s": best(lambda: rw.met_depth_full(d)), "met_depth_s": best(lambda: rw.met_depth(d)),
           "hazard_names_s": best(lambda: hazard_rating(d, v, tw.urban)),
           "hazard_indices_s": best(lambda: hazard_rating(d, v, tw._urban_index())),
           "nan_check_old_s": best(nan_old), "nan_check_s": best(lambda: _nan_checker(sim))}
    out["same"] = {"met_depth": bool(np.array_equal(rw.met_depth(d), rw.met_depth_full(d))),
                   "hazard": bool(np.array_equal(hazard_rating(d, v, tw.urban), hazard_rating(d, v, tw._urban_index())))}
    return out


def _same_outputs(a: Path, b: Path) -> dict:
    """Compare the two run folders: KPIs (minus wall-clock entries), series and tables."""
    import pandas as pd

    def kpis(p: Path) -> dict:
        k = json.loads((p / "kpis.json").read_text())
        return {key: v for key, v in k.items() if "wall" not in key and "time_s_run" not in key}

    out = {"kpis": kpis(a) == kpis(b)}
    for f in sorted(x.name for x in a.glob("*.parquet")):
        if (b / f).exists():
            ta, tb = (pd.read_parquet(x / f).drop(columns=["wall_time"], errors="ignore") for x in (a, b))
            out[f] = bool(ta.equals(tb))
    return out


_RETAINED = False  # whether this process keeps freed memory (retain_freed_memory applied)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--reference", action="store_true", help="also run without shared fields (the reference)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a scenario override, e.g. --set start=2020-10-28T12:00 (the storm's peak; repeatable)")
    ap.add_argument("--allocator-reference", action="store_true",
                    help="also run the case in a child process with TWIN_MALLOC=system (glibc's defaults), first")
    ap.add_argument("--kernels", action="store_true",
                    help="instead: time each consumer's old and new path on the same arrays after --hours of flood")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    from twin.memory import retain_freed_memory

    if args.allocator_reference:
        import subprocess

        cmd = [sys.executable, __file__, "--hours", f"{args.hours:g}"] + [f"--set={x}" for x in args.set]
        child = subprocess.run(cmd, env={**os.environ, "TWIN_MALLOC": "system"}, capture_output=True, text=True,
                               check=True)
        sysref = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps(sysref), flush=True)
    global _RETAINED
    _RETAINED = retain_freed_memory()
    if args.kernels:
        print(json.dumps(_kernels(args.hours) | {"load_avg_start": load0, "load_avg_end": os.getloadavg()[0]}),
              flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        if args.reference:
            lines.append(_run(args.hours, False, Path(tmp) / "ref", extra=tuple(args.set)))
            print(json.dumps(lines[-1] | {"load_avg_start": load0}), flush=True)
        lines.append(_run(args.hours, True, Path(tmp) / "opt", extra=tuple(args.set)))
        print(json.dumps(lines[-1] | {"load_avg_start": load0}), flush=True)
        if args.allocator_reference:
            new = lines[-1]
            print(json.dumps({"case": "allocator_ratio", "hours": args.hours,
                              "run_wall_ratio": new["run_wall_s"] / sysref["run_wall_s"],
                              "phase_wall_ratio": {k: new["phase_wall_s"].get(k, 0.0) / v
                                                   for k, v in sysref["phase_wall_s"].items() if v > 0},
                              "max_rss_mb": {"system": sysref["max_rss_mb"], "retain": new["max_rss_mb"]},
                              "load_avg_end": os.getloadavg()[0]}), flush=True)
        if args.reference:
            ref, opt = lines
            ratio = {k: opt["phase_wall_s"].get(k, 0.0) / v for k, v in ref["phase_wall_s"].items() if v > 0}
            print(json.dumps({"case": "ratio", "hours": args.hours, "run_wall_ratio": opt["run_wall_s"] / ref["run_wall_s"],
                              "run_cpu_ratio": opt["run_cpu_s"] / ref["run_cpu_s"], "phase_wall_ratio": ratio,
                              "same_outputs": _same_outputs(Path(tmp) / "ref", Path(tmp) / "opt"),
                              "load_avg_end": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
