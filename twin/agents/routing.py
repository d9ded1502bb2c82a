"""Road-graph and flood-grid routing used by people and emergency services.

Shortest paths use scipy's Dijkstra over a CSR matrix built once from the network's links; link
weights (lengths, current travel times, closures as infinity) are swapped in per query. Many-to-one
trees (dijkstra from the destination over the reversed graph) give, for every node, the remaining
cost and the next hop towards that destination, so thousands of walkers move with a few vectorised
numpy operations per step instead of per-agent path lists.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree


class RoadGraph:
    """Node coordinates and directed links of a RoadNetwork (or anything with ``nodes``/``links``)."""

    def __init__(self, network):
        nodes = network.nodes
        links = network.links
        if "id" in nodes.columns:
            ids = nodes["id"].to_numpy()
        else:
            ids = nodes.index.to_numpy()
        for col in ("x", "y"):
            if col not in nodes.columns:
                raise ValueError(f"road network nodes: missing column {col!r}")
        for col in ("from", "to", "length_m", "free_speed_mps"):
            if col not in links.columns:
                raise ValueError(f"road network links: missing column {col!r}")
        self.n_nodes = len(nodes)
        self.n_links = len(links)
        self.node_x = nodes["x"].to_numpy(dtype=float)
        self.node_y = nodes["y"].to_numpy(dtype=float)
        if hasattr(network, "link_from_index"):       # twin.roads.RoadNetwork
            self.link_from = np.asarray(network.link_from_index, dtype=np.int64)
            self.link_to = np.asarray(network.link_to_index, dtype=np.int64)
        else:
            index = pd.Index(ids)
            self.link_from = index.get_indexer(links["from"].to_numpy()).astype(np.int64)
            self.link_to = index.get_indexer(links["to"].to_numpy()).astype(np.int64)
            bad = (self.link_from < 0) | (self.link_to < 0)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise ValueError(f"road network links: row {k} refers to a node id not in nodes")
        self.length_m = links["length_m"].to_numpy(dtype=float)
        self.free_speed_mps = links["free_speed_mps"].to_numpy(dtype=float)
        if np.any(~(self.length_m > 0)) or np.any(~(self.free_speed_mps > 0)):
            raise ValueError("road network links: length_m and free_speed_mps must be > 0")
        self.link_mid_x = 0.5 * (self.node_x[self.link_from] + self.node_x[self.link_to])
        self.link_mid_y = 0.5 * (self.node_y[self.link_from] + self.node_y[self.link_to])
        self._kd = cKDTree(np.column_stack([self.node_x, self.node_y]))
        # parallel links: keep the link index per (from, to) for lookups; CSR build keeps the minimum
        key = self.link_from * self.n_nodes + self.link_to
        order = np.lexsort((self.length_m, key))
        k_sorted = key[order]
        first = np.ones(len(order), bool)
        first[1:] = k_sorted[1:] != k_sorted[:-1]
        self._pair_key = k_sorted[first]
        self._pair_link = order[first]

    # ------------------------------------------------------------------ lookups
    def nearest_node(self, x, y):
        _, i = self._kd.query(np.column_stack([np.atleast_1d(x), np.atleast_1d(y)]))
        return np.asarray(i, dtype=np.int64)

    def link_between(self, u, v):
        """Link index from u to v (the shortest if parallel); -1 where none."""
        key = np.asarray(u, dtype=np.int64) * self.n_nodes + np.asarray(v, dtype=np.int64)
        j = np.searchsorted(self._pair_key, key)
        j = np.clip(j, 0, len(self._pair_key) - 1)
        ok = self._pair_key[j] == key
        return np.where(ok, self._pair_link[j], -1)

    # ------------------------------------------------------------------ graphs
    def matrix(self, weight, undirected=False):
        """CSR matrix of link weights; infinite weights (closed links) are dropped."""
        w = np.asarray(weight, dtype=float)
        ok = np.isfinite(w)
        f, t, w = self.link_from[ok], self.link_to[ok], np.maximum(w[ok], 1e-9)
        if undirected:
            f, t, w = np.concatenate([f, t]), np.concatenate([t, f]), np.concatenate([w, w])
        # keep the minimum over duplicates (csr would sum them)
        key = f * self.n_nodes + t
        order = np.lexsort((w, key))
        key, f, t, w = key[order], f[order], t[order], w[order]
        first = np.ones(len(key), bool)
        first[1:] = key[1:] != key[:-1]
        return csr_matrix((w[first], (f[first], t[first])), shape=(self.n_nodes, self.n_nodes))

    def trees_to(self, dest_nodes, weight, undirected=False):
        """Many-to-one trees: (cost (D, N), next_node (D, N)) for each destination node.

        ``next_node[k, n]`` is the next node from n towards destination k (-9999 at the
        destination and where unreachable).
        """
        m = self.matrix(weight, undirected)
        rev = m if undirected else m.T.tocsr()
        dest = np.asarray(dest_nodes, dtype=np.int64)
        if len(dest) == 0:
            return np.zeros((0, self.n_nodes)), np.zeros((0, self.n_nodes), np.int64)
        cost, pred = dijkstra(rev, directed=True, indices=dest, return_predecessors=True)
        return cost, pred.astype(np.int64)

    def route(self, origin, dest, weight):
        """Shortest directed route: (links list, total cost). Cost inf and [] if unreachable."""
        if origin == dest:
            return [], 0.0
        m = self.matrix(weight)
        cost, pred = dijkstra(m, directed=True, indices=int(origin), return_predecessors=True)
        if not np.isfinite(cost[dest]):
            return [], float("inf")
        nodes = [int(dest)]
        while nodes[-1] != origin:
            nodes.append(int(pred[nodes[-1]]))
        nodes.reverse()
        links = self.link_between(np.array(nodes[:-1]), np.array(nodes[1:]))
        # the cheapest parallel link by *this* weight
        w = np.asarray(weight, dtype=float)
        out = []
        for u, v, lk in zip(nodes[:-1], nodes[1:], links):
            cand = np.flatnonzero((self.link_from == u) & (self.link_to == v)) if lk >= 0 else []
            out.append(int(cand[np.argmin(w[cand])]) if len(cand) > 1 else int(lk))
        return out, float(cost[dest])


class GridRouter:
    """Boat routing over a coarse copy of the flood grid (8-connected Dijkstra).

    A coarse cell is water when its mean depth exceeds the boat's draft; water cells cost
    ``dx/boat_speed``, dry cells ``dx/land_speed`` (the boat on its trailer), so every cell is
    reachable and boats prefer water routes when they are fast.
    """

    def __init__(self, shape, transform, max_cells=40000):
        self.ny, self.nx = shape
        self.transform = transform
        f = max(1, int(np.ceil(np.sqrt(self.ny * self.nx / max_cells))))
        self.f = f
        self.cny, self.cnx = -(-self.ny // f), -(-self.nx // f)
        self.cdx = abs(transform.a) * f
        n = self.cny * self.cnx
        idx = np.arange(n).reshape(self.cny, self.cnx)
        src, dst, dist = [], [], []
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            r0, r1 = max(0, -dr), self.cny - max(0, dr)
            c0, c1 = max(0, -dc), self.cnx - max(0, dc)
            a = idx[r0:r1, c0:c1].ravel()
            b = idx[r0 + dr:r1 + dr, c0 + dc:c1 + dc].ravel()
            d = np.full(a.size, np.hypot(dr, dc) * self.cdx)
            src += [a, b]; dst += [b, a]; dist += [d, d]
        self._src = np.concatenate(src)
        self._dst = np.concatenate(dst)
        self._dist = np.concatenate(dist)
        self.n = n

    def coarse_depth(self, depth):
        f = self.f
        depth = np.asarray(depth, dtype=float).reshape(self.ny, self.nx)
        pad = np.zeros((self.cny * f, self.cnx * f))
        inner = pad[: self.ny, : self.nx]
        inner[...] = depth
        if not np.isfinite(depth).all():
            np.nan_to_num(inner, copy=False)
        return pad.reshape(self.cny, f, self.cnx, f).mean(axis=(1, 3)).ravel()

    def cell_of(self, x, y):
        a = ~self.transform
        x, y = np.asarray(x, float), np.asarray(y, float)
        c, r = a.a * x + a.b * y + a.c, a.d * x + a.e * y + a.f
        r = np.clip(np.floor(r).astype(np.int64) // self.f, 0, self.cny - 1)
        c = np.clip(np.floor(c).astype(np.int64) // self.f, 0, self.cnx - 1)
        return r * self.cnx + c

    def cell_centre(self, cells):
        """Map coordinates (x, y) of the centres of coarse cells ``cells``."""
        cells = np.asarray(cells, np.int64)
        r, c = cells // self.cnx, cells % self.cnx
        col = np.minimum((c + 0.5) * self.f, self.nx - 0.5)
        row = np.minimum((r + 0.5) * self.f, self.ny - 0.5)
        t = self.transform
        return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f

    def matrix(self, depth, draft_m, boat_speed, land_speed):
        """Sparse graph of coarse-cell travel times for this flood state (reuse it for many queries)."""
        cd = self.coarse_depth(depth) if depth is not None else np.zeros(self.n)
        wet = cd > draft_m
        speed = np.where(wet[self._src] & wet[self._dst], boat_speed, land_speed)
        return csr_matrix((self._dist / speed, (self._src, self._dst)), shape=(self.n, self.n))

    def times_from(self, cell, depth=None, draft_m=0.3, boat_speed=2.5, land_speed=4.0, matrix=None,
                   predecessors=False):
        """Travel time from coarse cell ``cell`` to every coarse cell (symmetric costs); with
        ``predecessors`` also the shortest-path tree (``(times, pred)``)."""
        m = matrix if matrix is not None else self.matrix(depth, draft_m, boat_speed, land_speed)
        return dijkstra(m, directed=True, indices=int(cell), return_predecessors=bool(predecessors))
