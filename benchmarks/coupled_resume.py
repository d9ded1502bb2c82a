"""A stretch of the 48-h Tam Kỳ coupled run (30 m flood on the 10 m city, subgrid factor 3) resumed from a
checkpoint, timed by phase and by call: the costs of the storm's peak without re-running the hours before it.

    # once (~20 min): run the 48-h scenario to 15 h and keep its folder with a checkpoint
    nice python benchmarks/coupled_resume.py --make-checkpoint 15 --run-dir /tmp/molave48
    # then, as often as needed: 60 model minutes from that checkpoint, glibc's allocator as it is (in a child
    # process) and with freed memory retained (twin.memory.retain_freed_memory, as the twin command), in turn
    nice python benchmarks/coupled_resume.py --run-dir /tmp/molave48 --minutes 60 --allocator-reference
    # local time steps (flood.local_time_steps 8) against one sub-step for all, in one invocation
    nice python benchmarks/coupled_resume.py --run-dir /tmp/molave48 --minutes 60 --local-time-steps 8 --lts-reference

Each case resumes a copy of the folder (the folder itself is not changed). One JSON line per case: wall time,
``phase_wall_s``, flood sub-steps, per-call times (mean, min, max in ms) of the calls that dominated the
non-flood phases (``FloodModel.to_fine``, ``FloodModel._track_fine_max``, ``TrafficModel.set_link_depth``,
``PeopleModel.run_one_step``), the traffic engine's reroutes, peak RSS; then an ``allocator_ratio`` line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OVERRIDES = ["resolution_m=30", "duration=48h", "outputs.png=false", "flood.dtype=float64", "flood.solver=inertial",
             "flood.subgrid_factor=3"]


def make_checkpoint(hours: float, run_dir: Path) -> dict:
    from twin.build import build_twin
    from twin.scenario import load_scenario
    from twin.simulation import Simulation

    tw = build_twin(load_scenario(REPO / "scenarios" / "tamky_molave_2020.yaml", overrides=OVERRIDES))
    sim = Simulation(tw, out_dir=run_dir)
    t0 = time.perf_counter()
    sim.run(until=hours * 3600.0)
    path = sim.output.checkpoint(sim)
    return {"case": "checkpoint", "hours": hours, "path": str(path), "wall_s": time.perf_counter() - t0}


def _timed(calls: dict, cls, name: str) -> None:
    f = getattr(cls, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            calls[f"{cls.__name__}.{name}"].append(time.perf_counter() - t)

    setattr(cls, name, wrapper)


def resume(run_dir: Path, minutes: float, malloc: str, local_time_steps: int | None = None) -> dict:
    from twin.memory import retain_freed_memory

    retained = retain_freed_memory() if malloc == "retain" else False
    import numpy as np

    import twin.agents.people as people
    import twin.flood.model as flood
    import twin.traffic.model as traffic
    from twin.build import build_twin
    from twin.output.recorders import latest_checkpoint, load_checkpoint
    from twin.simulation import Simulation
    from twin.workflows.runs import scenario_of_run

    calls: dict[str, list[float]] = defaultdict(list)
    for cls, name in [(flood.FloodModel, "to_fine"), (flood.FloodModel, "_track_fine_max"),
                      (traffic.TrafficModel, "set_link_depth"), (people.PeopleModel, "run_one_step")]:
        _timed(calls, cls, name)
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "run"
        shutil.copytree(run_dir, dst)
        ck = latest_checkpoint(dst)
        if ck is None:
            raise SystemExit(f"{run_dir}: no checkpoint (make one with --make-checkpoint HOURS)")
        sc = scenario_of_run(dst)
        if local_time_steps is not None:  # (the run's scenario with flood.local_time_steps changed)
            sc = sc.model_copy(update={"flood": sc.flood.model_copy(update={"local_time_steps": local_time_steps})})
        tw = build_twin(sc)
        sim = Simulation(tw, out_dir=dst)
        sim.set_state(load_checkpoint(ck))
        t_from = sim.time
        ph0, n0, f0 = dict(sim.phase_wall_s), tw.flood.n_steps, tw.flood.lts_substeps
        r0 = tw.traffic.counts()["reroutes"] if tw.traffic is not None else 0
        w0 = time.perf_counter()
        sim.run(until=t_from + minutes * 60.0)
        wall = time.perf_counter() - w0
        return {"case": "resume", "malloc": "retain" if retained else "system", "from_h": t_from / 3600.0,
                "minutes": minutes, "steps": sim.iteration, "run_wall_s": wall,
                "phase_wall_s": {k: round(v - ph0.get(k, 0.0), 3) for k, v in sim.phase_wall_s.items()},
                "flood_substeps": tw.flood.n_steps - n0, "flood_fast_substeps": tw.flood.lts_substeps - f0,
                "local_time_steps": tw.flood.local_time_steps,
                "reroutes": (tw.traffic.counts()["reroutes"] - r0) if tw.traffic is not None else 0,
                "calls_ms": {k: {"n": len(v), "mean": 1e3 * float(np.mean(v)), "min": 1e3 * min(v),
                                 "max": 1e3 * max(v)} for k, v in calls.items()},
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "load_avg_end": os.getloadavg()[0], "machine": platform.machine(), "cpus": os.cpu_count()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="a run folder with a checkpoint (default, as `make bench`: a "
                    "checkpoint at 1 h made first in a temporary folder, and 10 model minutes from it)")
    ap.add_argument("--make-checkpoint", type=float, metavar="HOURS",
                    help="run the 48-h scenario to HOURS into --run-dir (new) and write a checkpoint there")
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--malloc", choices=["retain", "system"], default="retain")
    ap.add_argument("--allocator-reference", action="store_true",
                    help="first the same stretch with --malloc system, in a child process")
    ap.add_argument("--local-time-steps", type=int, metavar="M",
                    help="flood.local_time_steps for the stretch (default: the run's scenario's)")
    ap.add_argument("--lts-reference", action="store_true",
                    help="first the same stretch with flood.local_time_steps 1, in a child process (the ratio after)")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    if args.run_dir is None:  # the small default: a checkpoint at 1 h, then 10 minutes from it
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(make_checkpoint(1.0, Path(tmp) / "run")), flush=True)
            main([*(argv if argv is not None else sys.argv[1:]), "--run-dir", str(Path(tmp) / "run"),
                  "--minutes", f"{args.minutes or 10.0:g}"])
        return
    if args.make_checkpoint is not None:
        print(json.dumps(make_checkpoint(args.make_checkpoint, args.run_dir)), flush=True)
        return
    args.minutes = 60.0 if args.minutes is None else args.minutes

    def reference(*flags: str) -> dict:  # the same stretch in a child process, with flags changed
        out = subprocess.run([sys.executable, __file__, "--run-dir", str(args.run_dir), "--minutes",
                              f"{args.minutes:g}", *flags], capture_output=True, text=True, check=True)
        ref = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(ref), flush=True)
        return ref

    lref = reference("--local-time-steps", "1") if args.lts_reference else None
    ref = reference("--malloc", "system") if args.allocator_reference else None
    line = resume(args.run_dir, args.minutes, args.malloc, args.local_time_steps) | {"load_avg_start": load0}
    print(json.dumps(line), flush=True)
    if lref is not None:
        print(json.dumps({"case": "lts_ratio", "local_time_steps": line["local_time_steps"],
                          "run_wall_ratio": line["run_wall_s"] / lref["run_wall_s"],
                          "flood_wall_ratio": line["phase_wall_s"]["flood"] / lref["phase_wall_s"]["flood"],
                          "flood_steps": [lref["flood_substeps"], line["flood_substeps"]],
                          "flood_fast_substeps": [lref["flood_fast_substeps"], line["flood_fast_substeps"]]}),
              flush=True)
    if ref is not None:
        print(json.dumps({"case": "allocator_ratio", "run_wall_ratio": line["run_wall_s"] / ref["run_wall_s"],
                          "phase_wall_ratio": {k: line["phase_wall_s"].get(k, 0.0) / v
                                               for k, v in ref["phase_wall_s"].items() if v > 0},
                          "max_rss_mb": {"system": ref["max_rss_mb"], "retain": line["max_rss_mb"]}}), flush=True)


if __name__ == "__main__":
    main()
