"""The LocalCluster that ensembles, compares, forecasts and reviews start listens on 127.0.0.1 only.

Before twin.workflows.dask_local, ``dashboard_address=None`` put the diagnostics dashboard on
0.0.0.0:8787 and ``":0"`` put it on a free port of every interface: a scheduler (which runs what it is
sent) and its dashboard offered to the network by a planner's ensemble.
"""
from __future__ import annotations

import os

import psutil

from twin.workflows.dask_local import local_cluster


def _listening(pids: set[int]) -> list[str]:
    out = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            out.append(c.laddr.ip)
    return out


def test_local_cluster_binds_loopback_only():
    from dask.distributed import Client

    with local_cluster(1) as cluster, Client(cluster) as client:
        assert client.submit(lambda: os.environ.get("OMP_NUM_THREADS")).result() == "1"
        worker_pids = set(client.run(os.getpid).values())
        ips = _listening({os.getpid(), *worker_pids})
        assert ips, "no listening sockets found"
        assert set(ips) == {"127.0.0.1"}, ips
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert cluster.dashboard_link and "127.0.0.1" in cluster.dashboard_link
