"""Flood solver throughput: circular dam break on a flat rough plane, one JSON line per case.

Problem (issue 2): N x N cells, dx = 10 m, Manning n = 0.03, h = 2 m inside a circle of radius
0.2 L (L = N dx) at the centre, dry outside, closed walls, 300 s simulated. Cases: N = 500 and
2000, float32 and float64, 1 and 2 threads. Each case runs in a fresh subprocess so its peak
resident memory is its own: ``peak_rss_bytes_per_cell`` = (peak RSS after the run − peak RSS after
the imports) / N², which counts the terrain, the model and every temporary of the set-up.

In the same invocation a pure-numpy implementation of the same scheme (twin.flood.reference) runs
a few sub-steps of the same problem as the reference; ``ratio`` lines give the C++ rate over the
numpy rate. Rates are cell updates per second of wall time, and per CPU-second
(``cell_updates_per_cpu_s``, less sensitive to other load on a shared machine); the load average
is printed with each case.

    python benchmarks/flood_throughput.py            # all cases (a few minutes on 2 cores)
    python benchmarks/flood_throughput.py --quick    # N = 500 only

The issue's problem is mostly dry (the wet disc covers 13 % of the domain at the start, about a quarter
after 300 s), and the kernel skips the momentum arithmetic of dry faces and the trackers of segments
that cannot change (both exact). So that nobody mistakes that for the dense rate, every run also
repeats N = 2000 float32 with the same dam break into a 0.5 m deep lake (``lake_depth_m``: every
face wet, no shortcut applies), with its own numpy reference.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _dam_break_depth(N: int, dtype, lake_m: float = 0.0):
    import numpy as np

    c = (N - 1) / 2.0
    yy = (np.arange(N, dtype=dtype) - dtype(c))[:, None]
    xx = (np.arange(N, dtype=dtype) - dtype(c))[None, :]
    r2 = yy * yy + xx * xx  # in cells
    h = np.zeros((N, N), dtype)
    h[r2 < dtype((0.2 * N) ** 2)] = 2.0
    if lake_m:
        h += dtype(lake_m)
    return h


def run_solver_case(N: int, dtype: str, threads: int, sim_s: float, lake_m: float = 0.0) -> dict:
    import numpy as np

    from twin import FloodModel, Terrain

    base = _peak_rss()
    t0 = time.perf_counter()
    terrain = Terrain.from_array(np.zeros((N, N), np.float64), 10.0)
    m = FloodModel(terrain, manning=0.03, dtype=dtype, threads=threads)
    h = _dam_break_depth(N, np.dtype(dtype).type, lake_m)
    m.set_depth(h)
    del h
    setup_s = time.perf_counter() - t0
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    m.run_one_step(sim_s)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    updates = N * N * m.n_steps
    vb = m.volume_balance()
    return {
        "case": "solver",
        "N": N,
        "dtype": dtype,
        "threads": threads,
        "lake_depth_m": lake_m,
        "sim_s": sim_s,
        "n_steps": m.n_steps,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "setup_s": round(setup_s, 4),
        "cell_updates_per_s": updates / wall,
        "cell_updates_per_cpu_s": updates / cpu * threads if cpu > 0 else None,
        "peak_rss_bytes_per_cell": (_peak_rss() - base) / (N * N),
        "relative_volume_error": vb["relative_error"],
        "max_depth_m": float(m.max_depth.max()),
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def run_numpy_case(N: int, dtype: str, steps: int, lake_m: float = 0.0) -> dict:
    import numpy as np

    from twin.flood import reference

    T = np.dtype(dtype)
    z = np.zeros((N, N), T)
    h = _dam_break_depth(N, T.type, lake_m)
    qx, qy = np.zeros((N, N + 1), T), np.zeros((N + 1, N), T)
    mh, ms, ar = h.copy(), np.zeros((N, N), T), np.full((N, N), np.nan, T)
    hmax, t = float(h.max()), 0.0
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        dt = reference.stable_dt(hmax, 10.0)
        t += dt
        h, qx, qy, hmax = reference.inertial_step(z, h, qx, qy, 0.03, 10.0, dt, 0.8, t, mh, ms, ar)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "case": "numpy_reference",
        "N": N,
        "dtype": dtype,
        "threads": 1,
        "lake_depth_m": lake_m,
        "n_steps": steps,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "cell_updates_per_s": N * N * steps / wall,
        "cell_updates_per_cpu_s": N * N * steps / cpu if cpu > 0 else None,
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def _child(args: list[str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark case {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 500 only")
    p.add_argument("--sim-s", type=float, default=300.0)
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    p.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        kind = a.child[0]
        if kind == "solver":
            res = run_solver_case(int(a.child[1]), a.child[2], int(a.child[3]), float(a.child[4]), float(a.child[5]))
        else:
            res = run_numpy_case(int(a.child[1]), a.child[2], int(a.child[3]), float(a.child[4]))
        print(json.dumps(res))
        return
    sizes = a.sizes or ([500] if a.quick else [500, 2000])
    host = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    cases = [(N, dtype, 0.0) for N in sizes for dtype in ("float32", "float64")]
    cases.append((2000, "float32", 0.5))  # the fully wet variant (see the module docstring)
    for N, dtype, lake in cases:
        ref = _child(["numpy", str(N), dtype, str(20 if N <= 500 else 10), str(lake)])
        ref.update(host)
        print(json.dumps(ref), flush=True)
        for threads in (1, 2):
            res = _child(["solver", str(N), dtype, str(threads), str(a.sim_s), str(lake)])
            res.update(host)
            print(json.dumps(res), flush=True)
            ratio = {
                "case": "ratio",
                "N": N,
                "dtype": dtype,
                "threads": threads,
                "lake_depth_m": lake,
                "speedup_vs_numpy": res["cell_updates_per_s"] / ref["cell_updates_per_s"],
                "speedup_vs_numpy_cpu": (
                    res["cell_updates_per_cpu_s"] / ref["cell_updates_per_cpu_s"]
                    if res["cell_updates_per_cpu_s"] and ref["cell_updates_per_cpu_s"]
                    else None
                ),
            }
            print(json.dumps(ratio), flush=True)

if __name__ == "__main__":
    main()
