"""Road network: nodes and directed links as DataFrames, CSR adjacency, nearest node, SCC pruning.

``RoadNetwork.from_frames(nodes, links)`` is the one constructor; the GeoJSON, GraphML and OSM
readers live in :mod:`twin.roads.readers`, return the two frames and know nothing of this class.

Link defaults follow a triangular fundamental diagram with a reaction time of 1 s: jam density
``1/7.5`` veh/m/lane, backward wave speed ``w = 1/(tau k_j)`` (7.5 m/s) and the capacity
``v_f w k_j / (v_f + w)`` (2,338 veh/h/lane at 50 km/h).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from twin.constants import DEFAULT_JAM_DENSITY_VPM_PER_LANE  # one vehicle per 7.5 m of lane
from twin.roads import readers
from twin.roads.graph import largest_strongly_connected

__all__ = ["RoadNetwork", "default_capacity_vph_per_lane", "DEFAULT_JAM_DENSITY_VPM_PER_LANE"]

DEFAULT_REACTION_TIME_S = 1.0
CRS = "EPSG:32649"


def default_capacity_vph_per_lane(free_speed_mps, jam_density_vpm_per_lane=DEFAULT_JAM_DENSITY_VPM_PER_LANE,
                                  reaction_time_s=DEFAULT_REACTION_TIME_S):
    """Capacity of a triangular diagram with ``w = 1/(tau k_j)``: ``v_f w k_j / (v_f + w)`` in veh/h/lane."""
    vf = np.asarray(free_speed_mps, dtype=float)
    kj = np.asarray(jam_density_vpm_per_lane, dtype=float)
    w = 1.0 / (reaction_time_s * kj)
    return vf * w * kj / (vf + w) * 3600.0


def _require_columns(df: pd.DataFrame, cols, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {list(df.columns)}")


def _float_column(df: pd.DataFrame, col: str, what: str, *, positive=True, default=None) -> np.ndarray:
    if col not in df.columns:
        if default is None:
            raise ValueError(f"{what}: missing column {col!r}")
        return np.broadcast_to(np.asarray(default, dtype=float), (len(df),)).astype(float)
    try:
        vals = pd.to_numeric(df[col], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}.{col}: not numeric ({exc})") from None
    if default is not None:
        vals = np.where(np.isnan(vals), np.broadcast_to(default, vals.shape), vals)
    bad = ~np.isfinite(vals) | ((vals <= 0) if positive else np.zeros_like(vals, dtype=bool))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        rule = "finite and > 0" if positive else "finite"
        raise ValueError(f"{what}.{col}: value {float(vals[k])!r} in row {df.index[k]!r} must be {rule}")
    return vals


def _phases(value) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, float) and np.isnan(value):
        return ()
    if isinstance(value, str):
        value = [float(v) for v in value.replace(";", ",").strip("[]() ").split(",") if v.strip()]
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class _CSR:
    ptr: np.ndarray
    links: np.ndarray


class RoadNetwork:
    """Directed road graph.

    ``nodes``: one row per node (row order = node index), columns ``id, x, y`` (EPSG:32649 metres),
    ``signal_phases_s`` (tuple of phase durations, empty when unsignalised), ``signal_offset_s``.
    ``links``: index = link id ``0..L-1``; columns ``from, to`` (node ids), ``length_m, lanes,
    free_speed_mps, capacity_vph_per_lane, jam_density_vpm_per_lane, signal_group`` (-1 = no signal),
    ``geometry`` (shapely LineString, straight from -> to when unknown) and ``source``
    (``real``/``synthetic``).
    """

    crs = CRS

    def __init__(self, nodes: pd.DataFrame, links: pd.DataFrame):
        self.nodes = nodes
        self.links = links
        self._index = pd.Index(nodes["id"].to_numpy())
        self._from_idx = self._index.get_indexer(links["from"].to_numpy()).astype(np.int32)
        self._to_idx = self._index.get_indexer(links["to"].to_numpy()).astype(np.int32)
        self._kdtree = None
        self._out: _CSR | None = None
        self._in: _CSR | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(cls, nodes: pd.DataFrame, links: pd.DataFrame) -> RoadNetwork:
        """Builds the network from a node table and a link table (see the class docstring)."""
        _require_columns(nodes, ["id", "x", "y"], "nodes")
        _require_columns(links, ["from", "to", "length_m", "lanes", "free_speed_mps"], "links")
        if len(nodes) == 0:
            raise ValueError("nodes: the table is empty")
        ids = nodes["id"]
        if ids.isna().any():
            raise ValueError(f"nodes.id: missing value in row {nodes.index[ids.isna().to_numpy()][0]!r}")
        dup = ids.duplicated()
        if dup.any():
            raise ValueError(f"nodes.id: duplicate id {ids[dup].tolist()[0]!r}")
        x = _float_column(nodes, "x", "nodes", positive=False)
        y = _float_column(nodes, "y", "nodes", positive=False)
        n = pd.DataFrame({"id": ids.to_numpy(), "x": x, "y": y})
        phases = nodes["signal_phases_s"] if "signal_phases_s" in nodes.columns else [None] * len(nodes)
        parsed = []
        for k, v in enumerate(phases):
            try:
                p = _phases(v)
            except (TypeError, ValueError):
                raise ValueError(f"nodes.signal_phases_s: value {v!r} in row {nodes.index[k]!r} is not a "
                                 "list of phase durations in seconds") from None
            if any(not (np.isfinite(d) and d > 0) for d in p):
                raise ValueError(f"nodes.signal_phases_s: value {v!r} in row {nodes.index[k]!r} must hold "
                                 "durations > 0 s")
            parsed.append(p)
        n["signal_phases_s"] = pd.Series(parsed, dtype=object)
        n["signal_offset_s"] = (_float_column(nodes, "signal_offset_s", "nodes", positive=False)
                                if "signal_offset_s" in nodes.columns else 0.0)
        for extra in nodes.columns:
            if extra not in n.columns:
                n[extra] = nodes[extra].to_numpy()

        index = pd.Index(n["id"].to_numpy())
        lk = links.reset_index(drop=True)
        for end in ("from", "to"):
            pos = index.get_indexer(lk[end].to_numpy())
            if (pos < 0).any():
                k = int(np.flatnonzero(pos < 0)[0])
                raise ValueError(f"links.{end}: node id {lk[end].tolist()[k]!r} in row {links.index[k]!r} "
                                 "is not in nodes.id")
        length = _float_column(lk, "length_m", "links")
        lanes = _float_column(lk, "lanes", "links")
        vf = _float_column(lk, "free_speed_mps", "links")
        kj = _float_column(lk, "jam_density_vpm_per_lane", "links", default=DEFAULT_JAM_DENSITY_VPM_PER_LANE)
        cap = _float_column(lk, "capacity_vph_per_lane", "links", default=default_capacity_vph_per_lane(vf, kj))
        too_high = cap >= vf * kj * 3600.0
        if too_high.any():
            k = int(np.flatnonzero(too_high)[0])
            raise ValueError(f"links.capacity_vph_per_lane: value {float(cap[k])!r} in row {links.index[k]!r} must be "
                             f"below free_speed_mps x jam_density x 3600 = {vf[k] * kj[k] * 3600:.1f}")
        if "signal_group" in lk.columns:
            sg = pd.to_numeric(lk["signal_group"], errors="coerce").fillna(-1).to_numpy()
            if (sg != np.floor(sg)).any():
                k = int(np.flatnonzero(sg != np.floor(sg))[0])
                raise ValueError(f"links.signal_group: value {lk['signal_group'].iloc[k]!r} in row "
                                 f"{links.index[k]!r} is not an integer phase index")
            sg = sg.astype(np.int32)
        else:
            sg = np.full(len(lk), -1, dtype=np.int32)
        to_pos = index.get_indexer(lk["to"].to_numpy())
        nph = np.array([len(p) for p in parsed])
        bad = (sg >= 0) & (sg >= nph[to_pos])
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"links.signal_group: value {sg[k]} in row {links.index[k]!r}, but node "
                             f"{lk['to'].tolist()[k]!r} has {nph[to_pos[k]]} signal phases")
        out = pd.DataFrame({
            "from": lk["from"].to_numpy(), "to": lk["to"].to_numpy(), "length_m": length, "lanes": lanes,
            "free_speed_mps": vf, "capacity_vph_per_lane": cap, "jam_density_vpm_per_lane": kj,
            "signal_group": sg,
        })
        from_pos = index.get_indexer(lk["from"].to_numpy())
        if "geometry" in lk.columns:
            geom = list(lk["geometry"])
        else:
            geom = [None] * len(lk)
        from shapely.geometry import LineString

        for k, g in enumerate(geom):
            if g is None or (isinstance(g, float) and np.isnan(g)) or getattr(g, "is_empty", False):
                a, b = from_pos[k], to_pos[k]
                geom[k] = LineString([(x[a], y[a]), (x[b], y[b])])
        out["geometry"] = pd.Series(geom, dtype=object)
        if "source" in lk.columns:
            src = lk["source"].fillna("real").astype(str)
            badsrc = ~src.isin(["real", "synthetic"])
            if badsrc.any():
                k = int(np.flatnonzero(badsrc.to_numpy())[0])
                raise ValueError(f"links.source: value {src.iloc[k]!r} in row {links.index[k]!r} must be "
                                 "'real' or 'synthetic'")
            out["source"] = src.to_numpy()
        else:
            out["source"] = "real"
        for extra in lk.columns:
            if extra not in out.columns:
                out[extra] = lk[extra].to_numpy()
        out.index.name = "link_id"
        return cls(n, out)

    @classmethod
    def from_geojson(cls, path, **kwargs) -> RoadNetwork:
        """Reads a GeoJSON road layer (see :func:`twin.roads.read_geojson`)."""
        return cls.from_frames(*readers.read_geojson(path, **kwargs))

    @classmethod
    def from_graphml(cls, path, **kwargs) -> RoadNetwork:
        """Reads a GraphML road graph, e.g. from OSMnx (see :func:`twin.roads.read_graphml`)."""
        return cls.from_frames(*readers.read_graphml(path, **kwargs))

    @classmethod
    def from_osm(cls, path, **kwargs) -> RoadNetwork:
        """Reads an OSM extract (PBF or XML) (see :func:`twin.roads.read_osm`)."""
        return cls.from_frames(*readers.read_osm(path, **kwargs))

    # ------------------------------------------------------------------ queries
    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_links(self) -> int:
        return len(self.links)

    @property
    def node_ids(self) -> np.ndarray:
        return self.nodes["id"].to_numpy()

    def node_index(self, ids, what: str = "node") -> np.ndarray:
        """Row positions (0..N-1) of node ids; raises ValueError naming the first unknown id."""
        arr = np.atleast_1d(np.asarray(ids))
        pos = self._index.get_indexer(arr)
        if (pos < 0).any():
            k = int(np.flatnonzero(pos < 0)[0])
            raise ValueError(f"{what}: node id {arr[k]!r} is not in the network")
        return pos.astype(np.int32)

    @property
    def link_from_index(self) -> np.ndarray:
        return self._from_idx

    @property
    def link_to_index(self) -> np.ndarray:
        return self._to_idx

    def nearest_node(self, x, y):
        """Id of the node nearest to (x, y) in EPSG:32649 metres; arrays in, array out."""
        from scipy.spatial import cKDTree

        if self._kdtree is None:
            self._kdtree = cKDTree(np.column_stack([self.nodes["x"].to_numpy(), self.nodes["y"].to_numpy()]))
        xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            raise ValueError("nearest_node: x and y must be finite")
        _, k = self._kdtree.query(np.column_stack([xs.ravel(), ys.ravel()]))
        ids = self.node_ids[k]
        return ids[0] if xs.ndim == 0 and ys.ndim == 0 else ids.reshape(np.broadcast(xs, ys).shape)

    def csr_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Outgoing adjacency: ``links_out[ptr[n]:ptr[n+1]]`` are the link ids leaving node index n."""
        if self._out is None:
            self._out = self._csr(self._from_idx)
        return self._out.ptr, self._out.links

    def csr_in(self) -> tuple[np.ndarray, np.ndarray]:
        """Incoming adjacency: ``links_in[ptr[n]:ptr[n+1]]`` are the link ids entering node index n."""
        if self._in is None:
            self._in = self._csr(self._to_idx)
        return self._in.ptr, self._in.links

    def _csr(self, key: np.ndarray) -> _CSR:
        order = np.argsort(key, kind="stable").astype(np.int32)
        counts = np.bincount(key, minlength=self.n_nodes)
        ptr = np.zeros(self.n_nodes + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return _CSR(ptr, order)

    def largest_strongly_connected(self) -> RoadNetwork:
        """The largest strongly connected part (every node reaches every other); warns what was cut.

        Node ids are kept, links renumbered 0..L-1; ``self`` when the network is strongly connected.
        The pruning is :func:`twin.roads.graph.largest_strongly_connected`, shared with the readers.
        """
        nodes, links = largest_strongly_connected(self.nodes, self.links, what="RoadNetwork.largest_strongly_connected")
        if nodes is self.nodes and links is self.links:
            return self
        links.index.name = "link_id"
        return type(self)(nodes, links)

    def to_networkx(self):
        """A networkx MultiDiGraph (node ids as keys, link id in ``link_id``) for analysis."""
        import networkx as nx

        g = nx.MultiDiGraph()
        for row in self.nodes.itertuples(index=False):
            g.add_node(row.id, x=row.x, y=row.y)
        for lid, (a, b, L, vf) in enumerate(zip(self.links["from"], self.links["to"], self.links["length_m"],
                                                self.links["free_speed_mps"])):
            g.add_edge(a, b, link_id=lid, length_m=L, free_flow_time_s=L / vf)
        return g

    def __repr__(self) -> str:
        return f"RoadNetwork({self.n_nodes} nodes, {self.n_links} links, crs={self.crs})"

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def grid(n_x: int, n_y: int | None = None, spacing_m: float = 300.0, lanes: float = 2,
             free_speed_mps: float = 50 / 3.6, signal_phases_s: tuple[float, ...] | None = None,
             origin: tuple[float, float] = (0.0, 0.0), source: str = "synthetic") -> RoadNetwork:
        """A synthetic grid with links both ways (tests, benchmarks); with ``signal_phases_s`` every
        node gets a fixed-time signal, east-west links green in phase 0, north-south in phase 1."""
        n_y = n_x if n_y is None else n_y
        ii, jj = np.meshgrid(np.arange(n_x), np.arange(n_y), indexing="xy")
        ids = (jj * n_x + ii).ravel()
        nodes = pd.DataFrame({"id": ids, "x": origin[0] + ii.ravel() * spacing_m,
                              "y": origin[1] + jj.ravel() * spacing_m})
        if signal_phases_s is not None:
            nodes["signal_phases_s"] = [tuple(signal_phases_s)] * len(nodes)
        rows: list[dict[str, Any]] = []
        for j in range(n_y):
            for i in range(n_x):
                a = j * n_x + i
                if i + 1 < n_x:
                    rows.append({"from": a, "to": a + 1, "ew": True})
                    rows.append({"from": a + 1, "to": a, "ew": True})
                if j + 1 < n_y:
                    rows.append({"from": a, "to": a + n_x, "ew": False})
                    rows.append({"from": a + n_x, "to": a, "ew": False})
        links = pd.DataFrame(rows)
        links["length_m"] = spacing_m
        links["lanes"] = lanes
        links["free_speed_mps"] = free_speed_mps
        if signal_phases_s is not None:
            links["signal_group"] = np.where(links["ew"], 0, 1)
        links["source"] = source
        return RoadNetwork.from_frames(nodes, links.drop(columns="ew"))
