"""EnKF cycle in the live twin, members in this process vs on Dask workers (``enkf.dask``).

One cycle = what :meth:`twin.sensors.assimilation.Assimilator.apply` does with ``method: enkf`` per coupling
step: advance every member ``--step`` seconds, one localised analysis from ``--gauges`` stage gauges, and
the ensemble mean of depth and face discharge for the model. Default: 16 members of 300 x 300 cells, 6
gauges, 60 s steps, 2 Dask worker processes (LocalCluster, one thread each, OMP_NUM_THREADS=1).

One JSON line per case on stdout (the machine is shared: compare the ratio, measured in this invocation):

- ``in_process``: median wall per cycle, members one after the other in this process;
- ``dask``: the same members on ``--workers`` workers (shipped once; per cycle only the localisation
  windows, ``(K, by, bx)``, go to the analysis and back, plus one partial sum per worker for the mean),
  with ``ratio_to_in_process`` and ``max_abs_diff_mean_m`` (ensemble-mean depth, Dask minus in process);
  ``setup_s`` is the one-off cost of starting the cluster and shipping the members.

Usage: PYTHONPATH=. python benchmarks/enkf_live.py [--members 16] [--n 300] [--cycles 3] [--step 60]
[--workers 2] [--gauges 6]
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


def _members(t: Terrain, base: np.ndarray, k: int, seed: int) -> list[FloodModel]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        m = FloodModel(t, manning=0.035, threads=1)
        m.set_boundary("east", "free")
        m.set_depth(base * rng.uniform(0.8, 1.2))
        out.append(m)
    return out


def _cycle(f, step: float, xy: np.ndarray, obs: np.ndarray, mean_fn, parts: dict) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    f.advance(step)
    t1 = time.perf_counter()
    f.assimilate(xy, obs, kind="stage")
    t2 = time.perf_counter()
    h = mean_fn()
    t3 = time.perf_counter()
    for k, v in (("advance_s", t1 - t0), ("analysis_s", t2 - t1), ("mean_s", t3 - t2)):
        parts.setdefault(k, []).append(v)
    return t3 - t0, h


def _medians(parts: dict) -> dict:
    return {k: round(statistics.median(v), 3) for k, v in parts.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--cell", type=float, default=30.0)
    ap.add_argument("--gauges", type=int, default=6)
    ap.add_argument("--localization", type=float, default=1500.0)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--step", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    from twin.assimilation.dask_members import DaskEnsembleKalmanFilter, DaskMembers

    n = a.n
    yy, xx = np.mgrid[0:n, 0:n]
    z = 5.0 - xx * 0.002 + 0.4 * np.sin(yy / 25.0)          # a plain falling east, 0.6-3.4 m of water
    t = Terrain.from_array(z, cell_size=a.cell, origin=(560000.0, 1720000.0))
    base = np.maximum(6.0 - z, 0.0)
    rng = np.random.default_rng(1)
    x, y = t.cell_centers()
    pick = np.argwhere(base > 0.5)
    pick = pick[rng.choice(len(pick), a.gauges, replace=False)]
    xy = np.column_stack([x[pick[:, 1]], y[pick[:, 0]]])
    obs = [z[pick[:, 0], pick[:, 1]] + base[pick[:, 0], pick[:, 1]] + rng.normal(0, 0.05, a.gauges)
           for _ in range(a.cycles)]
    common = dict(members=a.members, cells=n * n, gauges=a.gauges, step_s=a.step, cycles=a.cycles,
                  localization_m=a.localization)
    kw = dict(obs_error_m=0.05, localization_m=a.localization, seed=0)

    local = EnsembleKalmanFilter(_members(t, base, a.members, 7), **kw)

    def local_mean():
        sums: dict[str, np.ndarray] = {}
        for m in local.models:        # the model's discharge mean, as the Assimilator does
            ss = m.get_state()["solver_state"]
            for k in ("qx", "qy"):
                sums[k] = sums.get(k, 0.0) + ss[k]
        return local.mean("depth")

    walls, h_local, parts = [], None, {}
    for c in range(a.cycles):
        w, h_local = _cycle(local, a.step, xy, obs[c], local_mean, parts)
        walls.append(w)
    w_local = statistics.median(walls)
    win = local._bufs[0].shape if local._bufs is not None else (0, 0, 0)
    common["window_shape"] = list(win)
    _line(case="in_process", wall_per_cycle_s=round(w_local, 3), runs=[round(v, 3) for v in walls],
          **_medians(parts), **common)

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env={"OMP_NUM_THREADS": "1"})
    client = Client(cluster)
    try:
        dm = DaskMembers.from_models(client, _members(t, base, a.members, 7), workers=a.workers)
        remote = DaskEnsembleKalmanFilter(dm, **kw)
        setup = time.perf_counter() - t0
        walls, h_dask, parts = [], None, {}
        for c in range(a.cycles):
            w, h_dask = _cycle(remote, a.step, xy, obs[c], lambda: dm.sums(["qx", "qy"])["depth"] / a.members,
                               parts)
            walls.append(w)
        w_dask = statistics.median(walls)
        rep = remote.reports[-1]
        box_cells = rep.n_cells_updated
        dm.close()
    finally:
        client.close()
        cluster.close()
    _line(case="dask", wall_per_cycle_s=round(w_dask, 3), runs=[round(v, 3) for v in walls], workers=a.workers,
          setup_s=round(setup, 2), ratio_to_in_process=round(w_dask / w_local, 3), **_medians(parts),
          window_mb_per_cycle=round(2 * 8 * float(np.prod(win)) / 1e6, 1),
          max_abs_diff_mean_m=float(np.max(np.abs(h_dask - h_local))), cells_updated=box_cells, **common)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
