"""Connectivity of a road graph given as frames: the one largest-strongly-connected-component pruning.

Shared by :meth:`twin.roads.RoadNetwork.largest_strongly_connected` and the readers
(:func:`twin.roads.repair_connectivity`), so a network loaded from a file and one pruned in memory
lose exactly the same nodes and links, with the same warning.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["RoadDataError", "largest_strongly_connected"]


class RoadDataError(ValueError):
    """A road file or table that cannot be turned into a network; the message names the file and field."""


def largest_strongly_connected(nodes: pd.DataFrame, links: pd.DataFrame, *, what: str = "road network",
                               repair: str = "largest", stacklevel: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The nodes and links of the largest strongly connected component (every node reaches every other).

    ``nodes`` needs an ``id`` column, ``links`` ``from``/``to`` columns of node ids. Node ids and the row
    order are kept; both tables come back with a fresh 0..n-1 index. When the graph is not strongly
    connected, ``repair="largest"`` keeps the largest component and warns what was cut (naming
    ``what``), ``repair="error"`` raises :class:`RoadDataError` with the same message. A strongly
    connected graph comes back as the same two objects.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if repair not in ("largest", "error"):
        raise ValueError(f"repair: expected 'largest' or 'error', got {repair!r}")
    index = pd.Index(nodes["id"].to_numpy())
    if not index.is_unique:
        raise RoadDataError(f"{what}: field 'id' has the duplicate node id {index[index.duplicated()][0]!r}")
    f = index.get_indexer(links["from"].to_numpy())
    t = index.get_indexer(links["to"].to_numpy())
    bad = (f < 0) | (t < 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        end = "from" if f[k] < 0 else "to"
        raise RoadDataError(f"{what}: {int(bad.sum())} links refer to unknown nodes "
                            f"(field 'from'/'to', e.g. {links[end].iloc[k]!r})")
    n, n_links = len(index), len(links)
    g = coo_matrix((np.ones(n_links), (f, t)), shape=(n, n)).tocsr()
    ncomp, labels = connected_components(g, directed=True, connection="strong")
    if ncomp <= 1:
        return nodes, links
    keep = labels == int(np.argmax(np.bincount(labels)))
    lkeep = keep[f] & keep[t]
    kept_n, kept_l = int(keep.sum()), int(lkeep.sum())
    msg = (f"{what}: road graph is not strongly connected ({ncomp} components); kept the largest: "
           f"{kept_n} of {n} nodes ({100 * kept_n / n:.1f} %), {kept_l} of {n_links} links; "
           f"removed {n - kept_n} nodes and {n_links - kept_l} links")
    if repair == "error":
        raise RoadDataError(msg)
    warnings.warn(msg, UserWarning, stacklevel=stacklevel + 1)
    return nodes[keep].reset_index(drop=True), links[lkeep].reset_index(drop=True)
