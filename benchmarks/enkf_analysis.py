"""EnKF analysis cost (issue 16): one localised analysis of ``--members`` flood models of ``--n`` x ``--n``
cells from ``--gauges`` stage gauges (default 32 x 750k cells x 20 gauges, localisation 2 km; target <= 2 s).

One JSON line per case on stdout (the machine is shared: compare the ratio, measured in this invocation):

- ``reference_ensemble_mean``: ``EnsembleKalmanFilter.mean("depth")``, one pass over every member's depth
  (a numpy reduction over the same arrays the analysis reads and writes);
- ``enkf_analysis_first``: the first ``assimilate`` (builds the localisation geometry for this gauge set);
- ``enkf_analysis``: median of ``--repeat`` further analyses (the geometry is cached per gauge set), with
  ``ratio_to_reference``, the cells touched and the wall time of the filter alone (AnalysisReport.wall_s).

Each line also has ``cpu_s`` (process CPU time; numpy is single-threaded here, so on a loaded machine it is
closer to the unloaded wall time than ``wall_s``) and ``load1``, the 1-minute load average.

Usage: PYTHONPATH=. python benchmarks/enkf_analysis.py [--members 32] [--n 866] [--cell 30] [--gauges 20]
[--localization 2000] [--repeat 3] [--method ensrf|stochastic]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from twin import FloodModel, Terrain  # noqa: E402
from twin.assimilation import EnsembleKalmanFilter  # noqa: E402


def _line(**kw) -> None:
    kw["load1"] = round(os.getloadavg()[0], 2)
    print(json.dumps(kw), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=32)
    ap.add_argument("--n", type=int, default=866, help="cells per side (866 x 866 = 750k)")
    ap.add_argument("--cell", type=float, default=30.0)
    ap.add_argument("--gauges", type=int, default=20)
    ap.add_argument("--localization", type=float, default=2000.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--method", default="ensrf")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n = a.n
    yy, xx = np.mgrid[0:n, 0:n]
    z = 5.0 + 0.5 * np.sin(yy / 40.0) + 0.3 * np.sin(xx / 55.0)   # a wet plain: 1.2-2.8 m of water
    t = Terrain.from_array(z, cell_size=a.cell, origin=(560000.0, 1720000.0))
    t0 = time.perf_counter()
    models = []
    base = np.maximum(7.0 - z, 0.0)
    for _k in range(a.members):
        m = FloodModel(t)
        m.set_depth(base * rng.uniform(0.7, 1.3))
        models.append(m)
    build_s = time.perf_counter() - t0
    f = EnsembleKalmanFilter(models, obs_error_m=0.05, localization_m=a.localization, method=a.method)
    x, y = t.cell_centers()
    wet = np.argwhere(base > 0.2)       # gauges anywhere on the plain
    pick = wet[rng.choice(len(wet), a.gauges, replace=False)]
    xy = np.column_stack([x[pick[:, 1]], y[pick[:, 0]]])
    truth = z[pick[:, 0], pick[:, 1]] + base[pick[:, 0], pick[:, 1]]
    ref, ref_cpu = [], []
    for _ in range(max(3, a.repeat)):
        t0, c0 = time.perf_counter(), time.process_time()
        f.mean("depth")
        ref.append(time.perf_counter() - t0)
        ref_cpu.append(time.process_time() - c0)
    ref_s = statistics.median(ref)
    common = dict(members=a.members, cells=n * n, gauges=a.gauges, localization_m=a.localization,
                  method=a.method, build_members_s=round(build_s, 2))
    _line(case="reference_ensemble_mean", wall_s=round(ref_s, 4), cpu_s=round(statistics.median(ref_cpu), 4), **common)
    t0 = time.perf_counter()
    rep = f.assimilate(xy, truth + rng.normal(0, 0.05, a.gauges), kind="stage")
    first = time.perf_counter() - t0
    _line(case="enkf_analysis_first", wall_s=round(first, 4), cells_updated=rep.n_cells_updated,
          ratio_to_reference=round(first / ref_s, 2), **common)
    walls, inner, cpus = [], [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        rep = f.assimilate(xy, truth + rng.normal(0, 0.05, a.gauges), kind="stage")
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        inner.append(rep.wall_s)
    w = statistics.median(walls)
    _line(case="enkf_analysis", wall_s=round(w, 4), runs=[round(v, 4) for v in walls],
          report_wall_s=round(statistics.median(inner), 4), cpu_s=round(statistics.median(cpus), 4),
          cells_updated=rep.n_cells_updated,
          ratio_to_reference=round(w / ref_s, 2), target_s=2.0, meets_target=bool(w <= 2.0),
          rmse_prior_m=round(rep.rmse_prior_m, 4), rmse_posterior_m=round(rep.rmse_posterior_m, 4), **common)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
