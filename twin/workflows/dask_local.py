"""The one way this package starts a Dask ``LocalCluster``: every socket on the loopback interface.

``LocalCluster``'s defaults listen on all interfaces (the scheduler with ``dashboard_address=":0"``, the
dashboard on ``0.0.0.0:8787`` with ``dashboard_address=None``): a workstation running an ensemble would
offer its scheduler, which executes whatever it is sent, to the network. Servers here bind 127.0.0.1
(docs/design/dashsec-confined-server.md); a cluster on other machines is reached with ``--scheduler``.
"""
from __future__ import annotations

from typing import Any

LOOPBACK = "127.0.0.1"


def local_cluster(n_workers: int) -> Any:
    """A process-based ``LocalCluster`` of ``n_workers`` one-thread workers (OMP_NUM_THREADS=1) whose
    scheduler, workers and diagnostics dashboard listen on 127.0.0.1 only (free ports)."""
    from dask.distributed import LocalCluster

    return LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True, host=LOOPBACK,
                        dashboard_address=f"{LOOPBACK}:0", env={"OMP_NUM_THREADS": "1"})
