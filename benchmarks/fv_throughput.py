"""Price of the full shallow-water equations: cell updates per second of the finite-volume solver
beside the local-inertial solver, measured in the same invocation on the same problem.

Problem (as benchmarks/flood_throughput.py): circular dam break on an N x N flat grid, dx = 10 m,
Manning n = 0.03, h = 2 m inside a radius of 0.2 L (L = N dx), dry outside, closed walls, 300 s.
Rates are cell updates per second of wall time and per CPU-second (``..._per_cpu_s``: less
sensitive to other load on a shared machine); the ratios are given for both.

One JSON line per case on stdout:
  {"case": "circular_dam_break", "solver": ..., "n": N, "threads": ..., "steps": ...,
   "seconds": ..., "cell_updates_per_s": ..., ...}
and per N a summary line with the price ratios against the inertial run of that invocation:
  cost_ratio_per_cell_update = (inertial cell updates/s) / (fv cell updates/s)   [target <= 3 for fv]
  cost_ratio_per_cell_update_cpu = the same from CPU time
  time_to_solution_ratio     = fv seconds / inertial seconds (FV's time step is shorter)

What the price buys: a "ritter_accuracy" line per solver, the frictionless dry-bed dam break
(h0 = 10 m, 1 100 cells of 0.5 m, 15 s) against Ritter's exact solution: relative L1 depth error,
mean and p99 absolute error [m] and the front (last cell deeper than 0.01 m) against the exact
position of that depth.

Usage: python benchmarks/fv_throughput.py [--sizes 500] [--threads 1] [--repeat 2] [--duration 300]
Each case takes the best of --repeat runs (the machine is shared: the minimum is the least noisy).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twin import FloodModel, Terrain  # noqa: E402
from twin.constants import GRAVITY  # noqa: E402


def circular_dam_break(n: int, solver: str, threads: int | None, dtype: str):
    dx = 10.0
    L = n * dx
    y, x = (np.mgrid[0:n, 0:n] + 0.5) * dx
    h0 = np.where(np.hypot(x - L / 2, y - L / 2) < 0.2 * L, 2.0, 0.0)
    m = FloodModel(Terrain.from_array(np.zeros((n, n)), cell_size=dx), manning=0.03, solver=solver,
                   dtype=dtype, threads=threads)
    m.set_depth(h0)
    return m


def run_case(n: int, solver: str, threads: int | None, dtype: str, duration: float, repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        m = circular_dam_break(n, solver, threads, dtype)
        t0, c0 = time.perf_counter(), time.process_time()
        m.run_one_step(duration)
        el, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or el < best[0]:
            best = (el, m, cpu)
    el, m, cpu = best
    vb = m.volume_balance()
    return {
        "case": "circular_dam_break", "solver": solver, "n": n, "dx_m": 10.0, "duration_s": duration,
        "dtype": dtype, "threads": threads, "steps": m.n_steps, "seconds": round(el, 6),
        "cell_updates_per_s": n * n * m.n_steps / el, "cpu_seconds": round(cpu, 6),
        "cell_updates_per_cpu_s": n * n * m.n_steps / cpu, "mean_dt_s": duration / m.n_steps,
        "max_depth_m": float(m.max_depth.max()), "volume_relative_error": vb["relative_error"],
    }


def ritter_accuracy(solver: str) -> dict:
    n, dx, h0, t = 1100, 0.5, 10.0, 15.0
    x = -200.0 + (np.arange(n) + 0.5) * dx
    m = FloodModel(Terrain.from_array(np.zeros((1, n)), cell_size=dx), manning=0.0, solver=solver)
    m.set_depth(np.where(x < 0, h0, 0.0)[None])
    m.run_one_step(t)
    c = np.sqrt(GRAVITY * h0)
    xi = x / t
    he = np.where(xi <= -c, h0, np.where(xi <= 2 * c, (2 * c - xi) ** 2 / (9 * GRAVITY), 0.0))
    h = m.depth[0].astype(float)
    err = np.abs(h - he)
    front = float(x[np.nonzero(h > 0.01)[0].max()] + 0.5 * dx)
    exact = float((2 * c - 3 * np.sqrt(GRAVITY * 0.01)) * t)
    return {"case": "ritter_accuracy", "solver": solver, "cells": n, "dx_m": dx, "t_s": t,
            "relative_l1": float(err.sum() / he.sum()), "mean_abs_error_m": float(err[(he > 0) | (h > 0)].mean()),
            "p99_abs_error_m": float(np.percentile(err[(he > 0) | (h > 0)], 99)),
            "front_m": front, "front_exact_m": exact, "front_error_rel": (front - exact) / (2 * c * t)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--solvers", nargs="+", default=["inertial", "fv", "fv2"])
    a = ap.parse_args(argv)
    for solver in a.solvers:
        print(json.dumps(ritter_accuracy(solver)), flush=True)
    for n in a.sizes:
        rows = {}
        for solver in a.solvers:
            r = run_case(n, solver, a.threads, a.dtype, a.duration, a.repeat)
            rows[solver] = r
            print(json.dumps(r), flush=True)
        if "inertial" in rows:
            ref = rows["inertial"]
            for solver, r in rows.items():
                if solver == "inertial":
                    continue
                print(json.dumps({
                    "case": "price_of_full_swe", "solver": solver, "n": n, "threads": a.threads,
                    "reference": "inertial (same invocation)",
                    "cost_ratio_per_cell_update": ref["cell_updates_per_s"] / r["cell_updates_per_s"],
                    "cost_ratio_per_cell_update_cpu": ref["cell_updates_per_cpu_s"] / r["cell_updates_per_cpu_s"],
                    "time_to_solution_ratio": r["seconds"] / ref["seconds"],
                    "target_cost_ratio": 3.0 if solver == "fv" else None,
                    "host_cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
                }), flush=True)


if __name__ == "__main__":
    main()
