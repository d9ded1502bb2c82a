"""Tables of a run (one row per link, unit, agent, trip, incident, place) built from a twin's state.

The recorders (:mod:`twin.output.recorders`) call these at table times; their columns are declared
in :mod:`twin.output.schema`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from twin.hazard import hazard_class_name, hazard_rating

if TYPE_CHECKING:  # pragma: no cover
    from twin.build import Twin

__all__ = ["links_table", "units_table", "people_table", "people_state_counts", "trips_table", "free_flow_times",
           "incidents_table", "max_depth_at_places"]


def links_table(tw: Twin, t_s: float) -> pd.DataFrame:
    tm = tw.traffic
    L = tm.network.n_links
    depth = tw.link_depth if tw.link_depth is not None else np.zeros(L)
    closed = tw.closed
    df = pd.DataFrame({
        "t_s": np.full(L, float(t_s)),
        "link_id": np.arange(L, dtype=np.int64),
        "depth_m": depth.astype(float),
        "speed_factor": np.asarray(tm.link_speed_factor, dtype=float),
        "closed": closed,
        "closed_by_water": closed & ~tw.manual_closed,
        "flow_veh_per_s": np.asarray(tm.link_flow, dtype=float),
        "density_veh_per_m": np.asarray(tm.link_density, dtype=float),
        "speed_mps": np.asarray(tm.link_speed, dtype=float),
        "queue_veh": np.asarray(tm.link_queue, dtype=float),
    })
    return df

def _cells_at(tw: Twin, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = tw.terrain.rowcol(np.asarray(x, float), np.asarray(y, float))
    rows, cols = np.asarray(rows, int), np.asarray(cols, int)
    ny, nx = tw.terrain.shape
    ok = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    return np.clip(rows, 0, ny - 1), np.clip(cols, 0, nx - 1), ok

def units_table(tw: Twin, t_s: float) -> pd.DataFrame:
    """Where each emergency unit is at ``t_s`` (the place it last reached: units move between
    places in one hop after their travel time), its phase (idle, to_scene, on_scene, to_hospital,
    ...), the incident it works on (-1: none) and whether it is available."""
    us = tw.services.units
    return pd.DataFrame({
        "t_s": np.full(len(us), float(t_s)),
        "unit_id": np.array([u.uid for u in us], dtype=np.int64),
        "unit_kind": [u.kind for u in us],
        "x": np.array([u.x for u in us], dtype=float),
        "y": np.array([u.y for u in us], dtype=float),
        "phase": [u.phase for u in us],
        "incident_id": np.array([u.incident for u in us], dtype=np.int64),
        "available": np.array([bool(u.available) for u in us], dtype=bool),
    })

def people_table(tw: Twin, t_s: float) -> pd.DataFrame:
    """The people model's state table with ``t_s``, the water depth at each agent's cell and the
    FD2321 hazard class of the agent's own hazard rating (which sees upper floors)."""
    df = tw.people.state_table().copy()
    df.insert(0, "t_s", float(t_s))
    if tw.flood is not None:
        r, c, ok = _cells_at(tw, df["x"].to_numpy(), df["y"].to_numpy())
        df["depth_m"] = np.where(ok, tw.depth()[r, c], 0.0).astype(float)
    else:
        df["depth_m"] = 0.0
    if "hazard_rating" not in df.columns:
        r, c, ok = _cells_at(tw, df["x"].to_numpy(), df["y"].to_numpy())
        v = np.where(ok, tw.speed()[r, c], 0.0) if tw.flood is not None else 0.0
        df["hazard_rating"] = hazard_rating(df["depth_m"].to_numpy(), v)
    df["hazard_class"] = hazard_class_name(df["hazard_rating"].to_numpy(float), tw.people.params.hazard_thresholds)
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(str)
    return df

def people_state_counts(tw: Twin) -> dict:
    df = tw.people.state_table()
    if "state" not in df.columns:
        return {}
    w = df["persons"] if "persons" in df.columns else pd.Series(1.0, index=df.index)
    return {str(k): float(v) for k, v in w.groupby(df["state"].astype(str)).sum().items()}

def trips_table(tw: Twin) -> pd.DataFrame:
    trips = tw.traffic.trips.copy()
    trips = trips.reset_index()
    if "index" in trips.columns and "trip_id" not in trips.columns:
        trips = trips.rename(columns={"index": "trip_id"})
    if "route" in trips.columns:
        trips["route"] = trips["route"].map(lambda r: None if r is None else list(map(int, r)))
    trips["free_flow_time_s"] = free_flow_times(tw, trips["origin"].to_numpy(), trips["destination"].to_numpy())
    return trips

def free_flow_times(tw: Twin, origins: np.ndarray, destinations: np.ndarray) -> np.ndarray:
    """Free-flow shortest travel time [s] between nodes (scipy Dijkstra on length / free speed)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    net = tw.traffic_network
    links = net.links
    n = net.n_nodes
    node_index = {nid: i for i, nid in enumerate(net.nodes.index if "id" not in net.nodes else net.nodes["id"])}
    fr = links["from"].map(node_index).to_numpy()
    to = links["to"].map(node_index).to_numpy()
    w = (links["length_m"] / links["free_speed_mps"]).to_numpy(float)
    # parallel links: keep the fastest
    g = pd.DataFrame({"f": fr, "t": to, "w": w}).groupby(["f", "t"])["w"].min().reset_index()
    A = csr_matrix((g["w"].to_numpy() + 1e-9, (g["f"].to_numpy(), g["t"].to_numpy())), shape=(n, n))
    o = pd.Series(origins).map(node_index).to_numpy()
    d = pd.Series(destinations).map(node_index).to_numpy()
    out = np.full(len(o), np.nan)
    ok = ~(pd.isna(o) | pd.isna(d))
    if ok.any():
        oo, dd = o[ok].astype(int), d[ok].astype(int)
        uo, inv_o = np.unique(oo, return_inverse=True)
        ud, inv_d = np.unique(dd, return_inverse=True)
        if len(ud) < len(uo):  # many-to-few (evacuation to shelters): search back from destinations
            dist = dijkstra(A.T.tocsr(), directed=True, indices=ud)
            out[ok] = dist[inv_d, oo]
        else:
            dist = dijkstra(A, directed=True, indices=uo)
            out[ok] = dist[inv_o, dd]
    out[~np.isfinite(out)] = np.nan
    return out

def incidents_table(tw: Twin) -> pd.DataFrame:
    return tw.services.incident_table().copy()

def max_depth_at_places(tw: Twin) -> list[dict]:
    if tw.city is None or tw.flood is None or getattr(tw.city, "places", None) is None:
        return []
    pl = tw.city.places
    if len(pl) == 0:
        return []
    r, c, ok = _cells_at(tw, pl["x"].to_numpy(), pl["y"].to_numpy())
    md = np.asarray(tw.flood.max_depth)
    at = np.asarray(tw.flood.arrival_time)  # first depth > 0.1 m (NaN: never)
    out = []
    for i, (_, p) in enumerate(pl.iterrows()):
        if not ok[i]:
            continue
        out.append({"place_id": str(p.get("place_id", i)), "name": str(p.get("name", "")),
                    "kind": str(p.get("kind", "")), "x": float(p["x"]), "y": float(p["y"]),
                    "max_depth_m": float(md[r[i], c[i]]) if np.isfinite(md[r[i], c[i]]) else 0.0,
                    "arrival_time_s": (float(at[r[i], c[i]]) if np.isfinite(at[r[i], c[i]]) else None)})
    order = {"hospital": 0, "shelter": 1, "school": 2}
    out.sort(key=lambda p: (order.get(p["kind"], 9), -p["max_depth_m"]))
    return out
