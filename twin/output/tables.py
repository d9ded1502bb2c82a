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
    from twin.agents.people import PeopleModel
    from twin.agents.services import EmergencyServices
    from twin.build import Twin
    from twin.roads.network import RoadNetwork
    from twin.traffic.model import TrafficModel

__all__ = ["links_table", "units_table", "people_table", "people_state_counts", "trips_table", "free_flow_times",
           "incidents_table", "max_depth_at_places", "place_cells", "places_in_water"]


def _need[C](component: C | None, what: str, name: str, section: str) -> C:
    """``component``, or a ValueError naming the table (``what``) and the component the twin lacks."""
    if component is None:
        raise ValueError(f"{what}: this twin has no {name} (enable {section} in the scenario)")
    return component


def _traffic(tw: Twin, what: str) -> TrafficModel:
    return _need(tw.traffic, what, "traffic component", "traffic")


def _people(tw: Twin, what: str) -> PeopleModel:
    return _need(tw.people, what, "people component", "people")


def _services(tw: Twin, what: str) -> EmergencyServices:
    return _need(tw.services, what, "services component", "services")


def _network(tw: Twin, what: str) -> RoadNetwork:
    return _need(tw.traffic_network, what, "road network", "traffic")


def links_table(tw: Twin, t_s: float) -> pd.DataFrame:
    tm = _traffic(tw, "links_table")
    L = tm.network.n_links
    depth = tw.link_depth if tw.link_depth is not None else np.zeros(L)
    closed = tw.closed
    manual = tw.manual_closed if tw.manual_closed is not None else np.zeros(L, bool)
    df = pd.DataFrame({
        "t_s": np.full(L, float(t_s)),
        "link_id": np.arange(L, dtype=np.int64),
        "depth_m": depth.astype(float),
        "speed_factor": np.asarray(tm.link_speed_factor, dtype=float),
        "closed": closed,
        "closed_by_water": closed & ~manual,
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
    """Where each emergency unit is at ``t_s`` (along its route while it moves, interpolated by
    elapsed travel time; else the place it last reached), its phase (idle, to_scene, on_scene,
    to_hospital, ...), the incident it works on (-1: none) and whether it is available."""
    svc = _services(tw, "units_table")
    us = svc.units
    x, y = svc.positions_at(float(t_s))
    return pd.DataFrame({
        "t_s": np.full(len(us), float(t_s)),
        "unit_id": np.array([u.uid for u in us], dtype=np.int64),
        "unit_kind": [u.kind for u in us],
        "x": x,
        "y": y,
        "phase": [u.phase for u in us],
        "incident_id": np.array([u.incident for u in us], dtype=np.int64),
        "available": np.array([bool(u.available) for u in us], dtype=bool),
    })

def people_table(tw: Twin, t_s: float) -> pd.DataFrame:
    """The people model's state table with ``t_s``, the water depth at each agent's cell and the
    FD2321 hazard class of the agent's own hazard rating (which sees upper floors)."""
    people = _people(tw, "people_table")
    df = people.state_table().copy()
    df.insert(0, "t_s", float(t_s))
    depth, speed = tw.depth(), tw.speed()  # None without a flood component
    if depth is not None:
        r, c, ok = _cells_at(tw, df["x"].to_numpy(), df["y"].to_numpy())
        df["depth_m"] = np.where(ok, depth[r, c], 0.0).astype(float)
    else:
        df["depth_m"] = 0.0
    if "hazard_rating" not in df.columns:
        r, c, ok = _cells_at(tw, df["x"].to_numpy(), df["y"].to_numpy())
        v = np.where(ok, speed[r, c], 0.0) if speed is not None else 0.0
        df["hazard_rating"] = hazard_rating(df["depth_m"].to_numpy(), v)
    df["hazard_class"] = hazard_class_name(df["hazard_rating"].to_numpy(float), people.params.hazard_thresholds)
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(str)
    return df

def people_state_counts(tw: Twin) -> dict:
    df = _people(tw, "people_state_counts").state_table()
    if "state" not in df.columns:
        return {}
    w = df["persons"] if "persons" in df.columns else pd.Series(1.0, index=df.index)
    return {str(k): float(v) for k, v in w.groupby(df["state"].astype(str)).sum().items()}

def trips_table(tw: Twin) -> pd.DataFrame:
    trips = _traffic(tw, "trips_table").trips.copy()
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

    net = _network(tw, "free_flow_times")
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
    return _services(tw, "incidents_table").incident_table().copy()

# a place whose cell is permanent water at the run's resolution is read at the nearest land cell
# within this distance (a building on the bank: a cell or two at coarse grids)
PLACE_LAND_RADIUS_M = 150.0


def place_cells(tw: Twin) -> pd.DataFrame:
    """Where each place inside the grid reads the water a person there meets: its own cell when that
    is land (not sea, not permanent water: :attr:`twin.build.Twin.land`), else the land cell nearest
    to the place's point within :data:`PLACE_LAND_RADIUS_M` (at least 2 cells), else (open water all
    around) its own cell, where only the rise above the normal water surface counts. Gauges (kind
    ``gauge_*``) stand in the water on purpose: read at their own cell, the rise above normal.

    Columns: place_id, name, kind, x, y, row, col (the cell read), read ("place cell", "nearest
    land cell", "rise above normal water"), offset_m (place point to the read cell's centre),
    in_water (the place's own cell is permanent water or sea at this resolution)."""
    cols = ["place_id", "name", "kind", "x", "y", "row", "col", "read", "offset_m", "in_water"]
    pl = getattr(tw.city, "places", None) if tw.city is not None else None
    if pl is None or len(pl) == 0:
        return pd.DataFrame(columns=cols)
    t = tw.terrain
    ny, nx = t.shape
    dx = float(t.cell_size)
    land = np.asarray(tw.land, bool)
    k = max(2, int(np.ceil(PLACE_LAND_RADIUS_M / dx)))
    x = pl["x"].to_numpy(float)
    y = pl["y"].to_numpy(float)
    r, c, ok = _cells_at(tw, x, y)
    rows = []
    for i, (_, p) in enumerate(pl.iterrows()):
        if not ok[i]:
            continue
        rr, cc, read = int(r[i]), int(c[i]), "place cell"
        kind = str(p.get("kind", ""))
        if not land[rr, cc] and kind.startswith("gauge"):
            read = "rise above normal water"  # an instrument in the water: its rise is what it measures
        elif not land[rr, cc]:
            r0, r1, c0, c1 = max(0, rr - k), min(ny, rr + k + 1), max(0, cc - k), min(nx, cc + k + 1)
            wr, wc = np.nonzero(land[r0:r1, c0:c1])
            if wr.size:
                cx, cy = t.xy(wr + r0, wc + c0)
                dist = np.hypot(cx - x[i], cy - y[i])
                j = int(np.argmin(dist))  # ties: the first in row-major order
                if dist[j] <= PLACE_LAND_RADIUS_M + 0.5 * dx * np.sqrt(2):
                    rr, cc, read = int(wr[j] + r0), int(wc[j] + c0), "nearest land cell"
            if read == "place cell":
                read = "rise above normal water"
        cx, cy = t.xy(rr, cc)
        rows.append({"place_id": str(p.get("place_id", i)), "name": str(p.get("name", "")),
                     "kind": kind, "x": float(x[i]), "y": float(y[i]), "row": rr, "col": cc,
                     "read": read, "offset_m": float(np.hypot(cx - x[i], cy - y[i])),
                     "in_water": read != "place cell" and not kind.startswith("gauge")})
    return pd.DataFrame(rows, columns=cols)


def places_in_water(tw: Twin) -> list[dict]:
    """The places whose own cell is permanent water or sea at the run's resolution, each with the
    cell read instead and a message (the run prints them and lists them in kpis and manifest)."""
    pc = place_cells(tw)
    out = []
    dx = float(tw.terrain.cell_size)
    h0 = tw.initial_depth
    for p in pc[pc["in_water"]].to_dict("records"):
        r0, c0 = (int(v) for v in tw.terrain.rowcol(p["x"], p["y"]))
        normal = float(h0[r0, c0]) if h0 is not None and tw.terrain.valid[r0, c0] else 0.0
        where = (f"read at the nearest land cell (row {p['row']}, col {p['col']}), {p['offset_m']:.0f} m away"
                 if p["read"] == "nearest land cell" else
                 f"no land within {PLACE_LAND_RADIUS_M:g} m: only the rise above the normal water surface counts")
        msg = (f"place {p['name']!r} ({p['kind']}, {p['place_id']}) lies in permanent water or sea at "
               f"{dx:g} m (cell row {r0}, col {c0}, {normal:.2f} m deep at t = 0); {where}")
        out.append({k: p[k] for k in ("place_id", "name", "kind", "row", "col", "read", "offset_m")} | {"message": msg})
    return out


def max_depth_at_places(tw: Twin) -> list[dict]:
    """The running maximum of the water a person at each place meets (see :func:`place_cells`):
    the depth above the normal water surface (the initial depth, zero on dry land) at the place's
    land cell, never the depth of a river, lagoon or reservoir cell; ``arrival_time_s``: when that
    cell first had more than 0.1 m (None: never, or a place in open water). ``read`` says which
    cell was read."""
    if tw.city is None or tw.flood is None or getattr(tw.city, "places", None) is None:
        return []
    pc = place_cells(tw)
    if len(pc) == 0:
        return []
    md = np.asarray(tw.max_depth(), float)
    at = np.asarray(tw.arrival_time())  # first depth > 0.1 m (NaN: never)
    h0 = np.zeros(md.shape) if tw.initial_depth is None else np.nan_to_num(np.asarray(tw.initial_depth, float))
    out = []
    for p in pc.to_dict("records"):
        r, c = p["row"], p["col"]
        d = float(md[r, c]) if np.isfinite(md[r, c]) else 0.0
        d = max(0.0, d - float(h0[r, c]))
        arr = float(at[r, c]) if np.isfinite(at[r, c]) and p["read"] != "rise above normal water" else None
        out.append({"place_id": p["place_id"], "name": p["name"], "kind": p["kind"], "x": p["x"], "y": p["y"],
                    "max_depth_m": d, "arrival_time_s": arr, "read": p["read"], "row": r, "col": c})
    order = {"hospital": 0, "shelter": 1, "school": 2}
    out.sort(key=lambda p: (order.get(p["kind"], 9), -p["max_depth_m"]))
    return out


def shelters_table(tw: Twin) -> pd.DataFrame:
    """The people model's shelter list in its order: row ``k`` is shelter ``k`` of ``people.parquet``'s
    ``shelter`` column and ``incidents.parquet``'s (an index, not a place id). ``place_id`` is empty for a
    shelter opened by a decision at a point that is no place; ``capacity`` is in persons (scaled like
    ``people.parquet``'s ``persons``) at the end of the run: a closed shelter's is what it held when closed."""
    pm = tw.people
    if pm is None:
        raise ValueError("shelters_table: the twin has no people model")
    sh = pm.shelters
    n = int(pm.n_shelters)

    def col(name, default):
        if name in sh.columns:
            return [default if (v is None or (isinstance(v, float) and v != v)) else v for v in sh[name].tolist()[:n]]
        return [default] * n

    rep = float(getattr(pm, "_represents", 1.0))
    return pd.DataFrame({
        "shelter": np.arange(n, dtype=np.int64),
        "place_id": pd.Series([str(v) for v in col("place_id", "")], dtype=object),
        "name": pd.Series([str(v) for v in col("name", "")], dtype=object),
        "kind": pd.Series([str(v) for v in col("kind", "shelter")], dtype=object),
        "x": np.asarray(pm.shelter_x[:n], dtype=float),
        "y": np.asarray(pm.shelter_y[:n], dtype=float),
        "capacity": np.asarray(pm.shelter_capacity[:n], dtype=float) * rep,
    })
