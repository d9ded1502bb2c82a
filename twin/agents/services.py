"""Emergency services on a SimPy clock lock-stepped with the coupled simulation.

A dispatch centre keeps a priority queue of incidents (priority 1 = life-threatening first, then
call time) and sends the suitable available unit with the shortest current travel time:

- ambulances and fire/rescue trucks drive the road network with the traffic component's current link
  travel times (or free speed reduced by depth when no traffic model is attached); links deeper than
  the unit's stall/wading depth are impassable, closed links are respected;
- rescue boats work where the water is deeper than their draft and move over a coarse copy of the
  flood grid (on their trailer over dry land);
- hospitals have beds (``simpy.Container``); a flooded hospital closes and patients go to the next;
- rescued households are dropped at the nearest shelter with room (full shelters are skipped);
- a hospital can also be closed by a decision (``hospital_closure``: power loss, evacuation): no
  patient is delivered there afterwards.

Units are drawn where they are: each move keeps its route as waypoints timed by the travel times
the dispatcher used (road nodes for road units, coarse flood-grid cells for boats), and
:meth:`EmergencyServices.positions_at` interpolates along it, so a boat is seen crossing the
water. The model itself still routes a unit from the place it last reached (``Unit.x``/``y``).

Units are plain records driven by one SimPy process per job; every phase change is written to the
action log and every incident to the incident table. ``get_state``/``set_state`` rebuild the SimPy
environment from those records, so restarts are bit-identical.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from typing import Any

import numpy as np
import pandas as pd
import simpy
from scipy.sparse.csgraph import dijkstra

from .eventlog import EventLog
from .params import ServicesParams
from .population import _apply_affine
from .routing import GridRouter, RoadGraph

INCIDENT_COLUMNS = [
    "incident_id", "kind", "priority", "call_s", "x", "y", "agent_id", "persons", "depth_m",
    "unit_id", "unit_kind", "dispatch_s", "arrive_scene_s", "depart_scene_s", "at_hospital_s",
    "hospital", "shelter", "clear_s", "outcome", "response_time_s", "route_length_m", "travel_time_s",
]
ACTION_COLUMNS = ["t_s", "unit_id", "unit_kind", "incident_id", "action", "x", "y", "detail"]


def _action_log() -> EventLog:
    """The services' unit actions: (time, unit, incident, action, place, detail)."""
    return EventLog(ACTION_COLUMNS, kind="action", defaults={"unit_id": -1, "unit_kind": "", "incident_id": -1,
                                                              "detail": ""})


@dataclasses.dataclass
class Unit:
    uid: int
    kind: str
    station: int          # row in EmergencyServices.stations
    home_node: int
    home_x: float
    home_y: float
    node: int
    x: float
    y: float
    available: bool = True
    phase: str = "idle"
    phase_end: float = 0.0
    incident: int = -1
    job: int = 0          # increments per dispatch; a stale process sees a changed job and stops
    seq: int = 0          # order in which the current phase's timeout was scheduled
    at_station: bool = True
    target: int = -1      # hospital / shelter index of the current transport phase
    pending_eta: float = 0.0
    goal_x: float = math.nan  # where a manual dispatch to a place sends the unit (phase "to_place")
    goal_y: float = math.nan
    goal_node: int = -1
    # the current move's route: waypoints and the model time the unit passes each (empty: not moving)
    path_x: list[float] = dataclasses.field(default_factory=list)
    path_y: list[float] = dataclasses.field(default_factory=list)
    path_t: list[float] = dataclasses.field(default_factory=list)


#: phases in which a unit travels along its route
TRAVEL_PHASES = frozenset({"to_scene", "to_hospital", "to_shelter", "to_place", "return"})


class EmergencyServices:
    """Dispatch centre, units, hospitals and shelters; ``run_one_step(dt)`` advances SimPy to t+dt."""

    _name = "EmergencyServices"
    _info = {
        "surface_water__depth": {"dtype": float, "intent": "in", "optional": True, "units": "m",
                                 "mapping": "cell", "doc": "flood depth (from the people model or set_flood)"},
        "road_link__travel_time": {"dtype": float, "intent": "in", "optional": True, "units": "s",
                                   "mapping": "link", "doc": "current link travel times from traffic"},
        "incident__response_time": {"dtype": float, "intent": "out", "optional": False, "units": "s",
                                    "mapping": "incident", "doc": "call to first unit on scene"},
    }

    def __init__(self, city, params=None, rng=None, traffic=None, people=None):
        self.params = p = ServicesParams.from_dict(params)
        self.rng = np.random.default_rng(rng)
        self.city = city
        self.traffic = traffic
        self.people = people
        net = traffic.network if traffic is not None and hasattr(traffic, "network") else city.roads
        if people is not None and people.graph.n_links == len(net.links):
            self.graph = people.graph
        else:
            self.graph = RoadGraph(net)
        self.terrain = city.terrain
        self.shape = tuple(self.terrain.shape)
        self._inv = ~self.terrain.transform
        self.grid = GridRouter(self.shape, self.terrain.transform, p.boat_grid_cells)
        self.time_s = 0.0
        self._depth = None
        self._road_depth = None
        self._coupled = False
        self._flood_version = 0
        self._cache: dict = {}
        self.closed_links: set[int] = set()
        self._link_cell = self._cell_of(self.graph.link_mid_x, self.graph.link_mid_y)
        places = city.places
        self.hospitals = places[places["kind"] == "hospital"].reset_index(drop=True)
        fs = places[places["kind"] == "fire_station"].reset_index(drop=True)
        if len(fs) == 0:   # no fire station in the bundle: trucks and boats wait at the hospitals
            fs = self.hospitals
        self.stations = pd.concat([self.hospitals.assign(station_kind="hospital"),
                                   fs.assign(station_kind="fire_station")], ignore_index=True)
        self.stations["node"] = self.graph.nearest_node(self.stations["x"], self.stations["y"])
        self.hospital_node = self.graph.nearest_node(self.hospitals["x"], self.hospitals["y"]) if len(
            self.hospitals) else np.zeros(0, np.int64)
        self.hospital_cell = self._cell_of(self.hospitals["x"], self.hospitals["y"])
        beds = self.hospitals["capacity"].to_numpy(float) if len(self.hospitals) else np.zeros(0)
        self.hospital_beds = np.where(np.isfinite(beds) & (beds > 0), beds, p.hospital_default_beds).astype(int)
        self.hospital_free0 = np.round(self.hospital_beds * (1 - p.hospital_occupancy0)).astype(int)
        self.hospital_closed = np.zeros(len(self.hospitals), bool)
        # units
        self.units: list[Unit] = []
        nh = len(self.hospitals)
        for s in range(nh):
            for _ in range(p.ambulances_per_hospital):
                self._add_unit("ambulance", s)
        fire_rows = list(range(nh, len(self.stations)))
        for s in fire_rows:
            for _ in range(p.fire_trucks_per_station):
                self._add_unit("fire_truck", s)
        n_boats = p.n_boats if p.n_boats is not None else p.boats_per_station * len(fire_rows)
        for k in range(n_boats):
            self._add_unit("boat", fire_rows[k % len(fire_rows)] if fire_rows else 0)
        self.population = float(city.population["persons"].sum()) if people is None else float(people.n_persons)
        # records
        self.incidents: list[dict] = []
        self.actions = _action_log()   # columnar: no per-row tuple for the GC to scan
        self._queue: list[tuple] = []
        self._inc_agent = np.zeros(0, np.int64)   # per incident (see _queued)
        self._inc_kinds = np.zeros(0, np.int64)
        self._discharges: dict[int, tuple] = {}   # seq -> (t_out_s, hospital, person or -1)
        self._seq = 0
        self._dispatch_pending = False
        self._future_calls: list[tuple] = []
        self._new_env(0.0)

    # ------------------------------------------------------------------ setup helpers
    def _cell_of(self, x, y):
        c, r = _apply_affine(self._inv, x, y)
        ny, nx = self.shape
        return np.clip(np.floor(r).astype(np.int64), 0, ny - 1) * nx + np.clip(np.floor(c).astype(np.int64), 0, nx - 1)

    def _add_unit(self, kind, station):
        if kind not in self.params.unit_classes:
            raise ValueError(f"services params: unit_classes has no {kind!r}")
        row = self.stations.iloc[station]
        n = int(row["node"])
        self.units.append(Unit(len(self.units), kind, station, n, float(row["x"]), float(row["y"]), n,
                               float(row["x"]), float(row["y"])))

    def station_at(self, x: float, y: float) -> int:
        """Row of the station (hospital or fire station) at (x, y) within 1 m, or -1."""
        d = np.hypot(self.stations["x"].to_numpy(float) - float(x), self.stations["y"].to_numpy(float) - float(y))
        hit = np.flatnonzero(d < 1.0)
        return int(hit[0]) if hit.size else -1

    def hospital_at(self, x: float, y: float) -> int:
        """Index of the hospital at (x, y) within 1 m, or -1."""
        if len(self.hospitals) == 0:
            return -1
        d = np.hypot(self.hospitals["x"].to_numpy(float) - float(x), self.hospitals["y"].to_numpy(float) - float(y))
        hit = np.flatnonzero(d < 1.0)
        return int(hit[0]) if hit.size else -1

    def close_hospital(self, h: int, t_s: float, reason: str = "closed by decision") -> str:
        """Close hospital ``h`` at ``t_s`` (a decision: power loss, damage): no deliveries there from
        now on; its patients move to the nearest open hospitals with beds. Returns what was done."""
        h = int(h)
        if not 0 <= h < len(self.hospitals):
            raise ValueError(f"close_hospital: no hospital {h} (hospitals 0..{len(self.hospitals) - 1})")
        name = str(self.hospitals["name"].iloc[h]) if "name" in self.hospitals.columns else f"hospital {h}"
        if self.hospital_closed[h]:
            return f"hospital {h} ({name}) was already closed"
        self.hospital_closed[h] = True
        self._log(t_s, None, -1, "hospital_closed", self.hospitals["x"].iloc[h], self.hospitals["y"].iloc[h],
                  f"hospital {h}: {reason}")
        self._evacuate_hospital(h, t_s)
        return f"hospital {h} ({name}) closed: {reason}"

    def add_units(self, kind: str, count: int, station: int | None = None) -> list[int]:
        """Reinforcements joining during the run: ``count`` units of ``kind`` in service from now, at
        the stations (ambulances at the hospitals; fire trucks and boats at the fire stations), each
        at the station with the fewest units of that kind (ties: the first). They take calls from the
        next dispatch on (every step starts with one). Returns their unit ids."""
        if kind not in self.params.unit_classes:
            raise ValueError(f"add_units: unknown unit kind {kind!r}; kinds are {sorted(self.params.unit_classes)}")
        if int(count) != count or count < 1:
            raise ValueError(f"add_units: count must be a whole number >= 1, got {count!r}")
        nh = len(self.hospitals)
        rows = list(range(nh)) if kind == "ambulance" else list(range(nh, len(self.stations)))
        if station is not None:
            if not 0 <= int(station) < len(self.stations):
                raise ValueError(f"add_units: no station {station} (stations 0..{len(self.stations) - 1})")
            rows = [int(station)]
        if not rows:
            rows = list(range(len(self.stations)))
        if not rows:
            raise ValueError("add_units: the city has no hospital or fire station to base units at")
        have = {r: sum(1 for u in self.units if u.kind == kind and u.station == r) for r in rows}
        ids = []
        for _ in range(int(count)):
            r = min(rows, key=lambda q: (have[q], q))
            self._add_unit(kind, r)
            have[r] += 1
            u = self.units[-1]
            ids.append(u.uid)
            self._log(self.time_s, u, -1, "joined", u.x, u.y, "reinforcement")
        return ids

    def _new_env(self, t0):
        self.env = simpy.Environment(initial_time=t0)
        self.beds = [simpy.Container(self.env, capacity=max(int(b), 1), init=int(f))
                     for b, f in zip(self.hospital_beds, self.hospital_free0)]

    # ------------------------------------------------------------------ flood and roads
    def set_flood(self, depth, road_depth=None) -> None:
        """Give the services the current flood depth ``(ny, nx)`` (done automatically from ``people``).

        ``road_depth``: the water met on roads where it differs from the flood depth (on bridges and
        bank roads only the water above the banks, ``twin.couplings.RoadWaterLevel``); road units
        route on it, boats on the flood depth. None: the flood depth."""
        self._depth = self._grid_field(depth, "depth")
        self._road_depth = self._depth if road_depth is None else self._grid_field(road_depth, "road_depth")
        self._flood_version += 1
        self._cache.clear()
        self._coupled = True

    def _grid_field(self, a, name):
        if a is None:
            return None
        d = np.asarray(a, float)
        if d.shape != self.shape and d.shape != (self.shape[0] * self.shape[1],):
            raise ValueError(f"EmergencyServices.set_flood: {name} shape {d.shape} != city grid {self.shape}")
        d = d.ravel()
        ok = np.isfinite(d)
        if not ok.all():
            return np.where(ok, d, 0.0)   # NaN (no data) counts as dry
        # a read-only field (the step's shared depth, the people's met depth) is kept as it is: nobody
        # can change it
        return d if not d.flags.writeable else d.copy()

    def close_links(self, ids) -> None:
        """Closures used when no traffic model is attached (with one, its closures apply)."""
        self.closed_links.update(int(i) for i in np.atleast_1d(ids))
        self._cache.clear()

    def open_links(self, ids) -> None:
        self.closed_links.difference_update(int(i) for i in np.atleast_1d(ids))
        self._cache.clear()

    def depth_at_xy(self, x, y) -> float:
        if self._depth is None:
            return 0.0
        return float(self._depth[self._cell_of(x, y)])

    def link_times(self, kind: str) -> np.ndarray:
        """Current link travel times [s] for unit kind ``kind`` (inf = impassable)."""
        key = ("lt", kind)
        if key in self._cache:
            return self._cache[key]
        uc = self.params.unit_classes[kind]
        g = self.graph
        depth = np.zeros(g.n_links) if self._road_depth is None else self._road_depth[self._link_cell]
        if self.traffic is not None:
            try:
                t = np.asarray(self.traffic.link_travel_time_s(uc.vehicle_class), float).copy()
            except (KeyError, ValueError):
                t = np.asarray(self.traffic.link_travel_time_s("car"), float).copy()
        else:
            factor = np.clip(1.0 - depth / uc.stall_depth_m, 0.05, 1.0)
            t = g.length_m / (g.free_speed_mps * factor)
            if self.closed_links:
                t[list(self.closed_links)] = np.inf
        t[depth > uc.stall_depth_m] = np.inf
        t[~np.isfinite(t) | (t < 0)] = np.inf
        self._cache[key] = t
        return t

    def route(self, kind: str, origin_node: int, dest_node: int):
        """Current route of a road unit: (links, time_s, length_m)."""
        links, time_s = self.graph.route(int(origin_node), int(dest_node), self.link_times(kind))
        return links, time_s, float(self.graph.length_m[links].sum()) if links else 0.0

    def _matrix(self, kind):
        key = ("m", kind)
        if key not in self._cache:
            self._cache[key] = self.graph.matrix(self.link_times(kind))
        return self._cache[key]

    def _times_from(self, kind, node, predecessors=False):
        """Road: seconds from ``node`` to every node (Dijkstra, cached per unit position and step;
        with ``predecessors`` also the shortest-path tree, for drawing the route).

        Dispatch asks this from each available unit's node, so a step costs at most one Dijkstra
        per unit position however many incidents wait."""
        key = ("from", kind, int(node))
        if key not in self._cache:
            self._cache[key] = dijkstra(self._matrix(kind), directed=True, indices=int(node),
                                        return_predecessors=True)
        dist, pred = self._cache[key]
        return (dist, pred) if predecessors else dist

    def _boat_times(self, x, y, predecessors=False):
        """Boat: seconds from (x, y) to every coarse cell (costs are symmetric); with
        ``predecessors`` also the shortest-path tree over the coarse cells."""
        uc = self.params.unit_classes["boat"]
        cell = int(self.grid.cell_of(x, y))
        key = ("boat", cell)
        if key not in self._cache:
            if "boat_matrix" not in self._cache:
                d = None if self._depth is None else self._depth.reshape(self.shape)
                self._cache["boat_matrix"] = self.grid.matrix(d, uc.stall_depth_m, uc.speed_mps,
                                                              self.params.boat_land_speed_mps)
            self._cache[key] = self.grid.times_from(cell, matrix=self._cache["boat_matrix"], predecessors=True)
        dist, pred = self._cache[key]
        return (dist, pred) if predecessors else dist

    # ------------------------------------------------------------------ where units are
    def _route_path(self, unit, x, y, node, travel_s, delay_s=0.0) -> None:
        """Keep the route of the move ``unit`` starts now to (x, y) (road ``node``): waypoints timed
        by the same travel times the dispatcher used; the unit waits ``delay_s`` first (a boat's
        launch) and reaches (x, y) ``travel_s`` after it started moving."""
        t0 = float(self.env.now) + float(delay_s)
        unit.path_x, unit.path_y, unit.path_t = [], [], []
        if not (math.isfinite(travel_s) and travel_s > 0):
            return
        mode = self.params.unit_classes[unit.kind].mode
        if mode == "boat":
            dist, pred = self._boat_times(unit.x, unit.y, predecessors=True)
            src, dst = int(self.grid.cell_of(unit.x, unit.y)), int(self.grid.cell_of(x, y))
            cells = _walk(pred, src, dst)
            px, py = self.grid.cell_centre(np.asarray(cells, np.int64))
        else:
            dist, pred = self._times_from(unit.kind, unit.node, predecessors=True)
            cells = _walk(pred, int(unit.node), int(node))
            px, py = self.graph.node_x[cells], self.graph.node_y[cells]
        total = float(dist[cells[-1]]) if cells else 0.0
        scale = travel_s / total if total > 0 and math.isfinite(total) else 0.0
        ts = [t0 + float(dist[c]) * scale for c in cells] if scale > 0 else []
        xs, ys = [float(unit.x)], [float(unit.y)]
        tt = [t0]
        if ts:  # interior waypoints (the first and the last cell/node lie at the ends)
            xs += [float(v) for v in px[1:-1]]
            ys += [float(v) for v in py[1:-1]]
            tt += ts[1:-1]
        xs.append(float(x))
        ys.append(float(y))
        tt.append(t0 + float(travel_s))
        unit.path_x, unit.path_y, unit.path_t = xs, ys, tt

    def positions_at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Where every unit is at model time ``t_s``: along its route when it is moving
        (interpolated by elapsed travel time), else the place it last reached."""
        xs = np.array([u.x for u in self.units], dtype=float)
        ys = np.array([u.y for u in self.units], dtype=float)
        for i, u in enumerate(self.units):
            if u.phase in TRAVEL_PHASES and len(u.path_t) >= 2:
                xs[i] = float(np.interp(t_s, u.path_t, u.path_x))
                ys[i] = float(np.interp(t_s, u.path_t, u.path_y))
        return xs, ys

    # ------------------------------------------------------------------ stepping
    def run_one_step(self, dt: float) -> None:
        dt = float(dt)
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"EmergencyServices.run_one_step: dt must be > 0, got {dt}")
        t0, t1 = self.time_s, self.time_s + dt
        if self._coupled:   # the coupled simulation gave this step's flood (Twin.couple_services)
            self._coupled = False
        elif self.people is not None and self.people.met_depth is not None:
            # stand-alone use with a people model: the flood the people model last saw
            raw = self.people.flood_depth
            self.set_flood(self.people.met_depth if raw is None else raw, road_depth=self.people.met_depth)
        self._update_hospitals(t0)
        self._sweep_queue(t0)
        calls = []
        if self.people is not None:
            for c in self.people.pop_rescue_calls(until_s=t1):
                prio = 1 if (c["vulnerable"] or c["depth_m"] >= 1.5) else 2
                calls.append((max(c["t_s"], t0), "rescue", prio, c["x"], c["y"], c["agent"], c["persons"], False))
        lam = self.params.medical_rate_per_1000_per_day * self.population / 1000.0 * dt / 86400.0
        n = int(self.rng.poisson(lam))
        times = np.sort(t0 + self.rng.random(n) * dt)
        for t in times:
            prio = 1 if self.rng.random() < self.params.life_threatening_share else int(2 + self.rng.integers(0, 2))
            transport = bool(self.rng.random() < self.params.transport_share or prio == 1)
            if self.people is not None:
                person = self.people.random_person()
                a = int(self.people.p_hh[person])
                x, y = float(self.people.x[a]), float(self.people.y[a])
            else:
                k = int(self.rng.integers(0, self.graph.n_nodes))
                a, x, y = -1, float(self.graph.node_x[k]), float(self.graph.node_y[k])
            calls.append((float(t), "medical", prio, x, y, a, 1, transport))
        while self._future_calls and self._future_calls[0][0] < t1:
            calls.append(self._future_calls.pop(0))
        calls.sort(key=lambda c: c[0])
        for c in calls:
            self.env.process(self._call_process(*c))
        for t in self._shift_starts(t0, t1):
            if t > t0:
                self.env.process(self._shift_process(t))
        self._try_dispatch()
        self.env.run(until=t1)
        self.time_s = t1

    def _call_process(self, t, kind, prio, x, y, agent, persons, transport):
        if t > self.env.now:
            yield self.env.timeout(t - self.env.now)
        self._register(t, kind, prio, x, y, agent, persons, transport)

    def _register(self, t, kind, prio, x, y, agent, persons, transport):
        iid = len(self.incidents)
        inc = {c: None for c in INCIDENT_COLUMNS}
        inc.update(incident_id=iid, kind=kind, priority=int(prio), call_s=float(t), x=float(x), y=float(y),
                   agent_id=int(agent), persons=int(persons), depth_m=self.depth_at_xy(x, y),
                   node=int(self.graph.nearest_node(x, y)[0]), transport=bool(transport), outcome="waiting")
        self.incidents.append(inc)
        self._log(t, None, iid, "call", x, y, f"{kind} p{prio} {persons} persons")
        if kind == "rescue" and self.people is not None and agent >= 0 and not self.people.is_trapped(agent):
            self._cancel_untrapped(iid, float(t))
            return iid
        heapq.heappush(self._queue, (int(prio), float(t), iid))
        self._request_dispatch()
        return iid

    def _request_dispatch(self):
        """Dispatch once all calls of this instant are in (so priority 1 wins over earlier calls)."""
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self.env.process(self._dispatch_process())

    def _dispatch_process(self):
        yield self.env.timeout(0.0)
        self._dispatch_pending = False
        self._try_dispatch()

    def report_incident(self, t_s, kind, x, y, priority=1, persons=1, agent=-1, transport=True) -> None:
        """Inject an incident (e.g. from a scenario event); it is called at ``max(t_s, now)``."""
        if kind not in ("rescue", "medical"):
            raise ValueError(f"report_incident: kind must be 'rescue' or 'medical', got {kind!r}")
        self._future_calls.append((max(float(t_s), self.time_s), kind, int(priority), float(x), float(y),
                                   int(agent), int(persons), bool(transport)))
        self._future_calls.sort(key=lambda c: c[0])

    def _log(self, t, unit, iid, action, x, y, detail=""):
        self.actions.append(t, action, unit_id=-1 if unit is None else unit.uid,
                            unit_kind="" if unit is None else unit.kind, incident_id=int(iid), x=float(x), y=float(y),
                            detail=detail)

    def on_duty(self, unit, t) -> bool:
        sh = self.params.shifts.get(unit.kind)
        if sh is None or sh[1] >= 86400.0:
            return True
        return ((t - sh[0]) % 86400.0) < sh[1]

    def _shift_starts(self, t0, t1):
        """Times in [t0, t1) when some unit kind comes on duty."""
        out = []
        for start, length in self.params.shifts.values():
            if length >= 86400.0:
                continue
            k = math.ceil((t0 - start) / 86400.0)
            t = start + k * 86400.0
            while t < t1:
                out.append(t)
                t += 86400.0
        return sorted(set(out))

    def _shift_process(self, t):
        yield self.env.timeout(t - self.env.now)
        self._try_dispatch()

    def _update_hospitals(self, t):
        if self._depth is None or len(self.hospitals) == 0:
            return
        flooded = self._depth[self.hospital_cell] > self.params.hospital_close_depth_m
        for h in np.flatnonzero(flooded & ~self.hospital_closed):
            self.hospital_closed[h] = True
            self._log(t, None, -1, "hospital_closed", self.hospitals["x"].iloc[h], self.hospitals["y"].iloc[h],
                      f"hospital {h} depth {self._depth[self.hospital_cell[h]]:.2f} m")
            self._evacuate_hospital(int(h), t)

    # ------------------------------------------------------------------ dispatch
    def _suitable(self, inc):
        d = inc["depth_m"]
        uc = self.params.unit_classes
        kinds = []
        if inc["kind"] == "medical":
            kinds.append("ambulance")
        kinds.append("fire_truck")
        kinds = [k for k in kinds if k in uc and d <= uc[k].stall_depth_m]
        if "boat" in uc and d > uc["boat"].stall_depth_m:
            kinds.append("boat")
        return kinds

    def _eta(self, unit, inc):
        uc = self.params.unit_classes[unit.kind]
        if uc.mode == "boat":
            t = self._boat_times(unit.x, unit.y)[int(self.grid.cell_of(inc["x"], inc["y"]))]
            return t + (self.params.boat_launch_s if unit.at_station else 0.0)
        return self._times_from(unit.kind, unit.node)[inc["node"]]

    def _cancel_untrapped(self, iid: int, t) -> None:
        """Close rescue call ``iid`` at ``t``: its household is no longer trapped."""
        inc = self.incidents[iid]
        inc.update(outcome="cancelled_no_longer_trapped", clear_s=t)
        self._log(t, None, iid, "cancelled", inc["x"], inc["y"], "no longer trapped")

    def _queued(self):
        """The queue in dispatch order (priority, call time, incident), the incidents' ids, and per
        entry: the household a rescue waits for (-1: none) and the unit kinds that suit it (bits of
        :meth:`_kind_bits`). Both are fixed when the call is registered, so they are derived once per
        incident and kept in arrays by incident id."""
        n_inc = len(self.incidents)
        have = len(self._inc_agent)
        if have < n_inc:   # the incidents registered since: their household and suitable kinds
            bits = self._kind_bits()
            new = self.incidents[have:]
            self._inc_agent = np.concatenate([self._inc_agent, np.array(
                [int(c["agent_id"]) if c["kind"] == "rescue" and c["agent_id"] >= 0 else -1 for c in new], np.int64)])
            self._inc_kinds = np.concatenate([self._inc_kinds, np.array(
                [sum(bits[k] for k in self._suitable(c)) for c in new], np.int64)])
        items = sorted(self._queue)   # the order the queue pops in (its entries are distinct)
        iids = np.fromiter((it[2] for it in items), np.int64, count=len(items))
        return items, iids, self._inc_agent[iids], self._inc_kinds[iids]

    def _kind_bits(self) -> dict[str, int]:
        return {k: 1 << b for b, k in enumerate(self.params.unit_classes)}

    def _not_trapped(self, agents: np.ndarray) -> np.ndarray:
        """Which of the queued rescues (their households ``agents``, -1: none) no longer wait."""
        out = np.zeros(agents.shape, bool)
        if self.people is not None:
            has = agents >= 0
            out[has] = ~self.people.are_trapped(agents[has])
        return out

    def _sweep_queue(self, t):
        """Cancel queued rescues whose household is no longer trapped (the water went down)."""
        if self.people is None or not self._queue:
            return
        items, iids, agents, _ = self._queued()
        gone = self._not_trapped(agents)
        if not gone.any():
            return
        for n in np.flatnonzero(gone).tolist():   # in dispatch order
            self._cancel_untrapped(items[n][2], t)
        self._queue = [it for it, g in zip(items, gone.tolist()) if not g]   # sorted, so a heap

    def _try_dispatch(self):
        """Give the free units to the waiting incidents in dispatch order (priority, call time,
        incident): each to the quickest suitable free unit. A queued rescue whose household is no
        longer trapped is cancelled when its turn comes, while some unit is free.

        Only the entries that can change are visited: those a free unit suits and those to cancel
        (the households' states do not change while units are dispatched)."""
        now = self.env.now
        free = [u for u in self.units if u.available and self.on_duty(u, now)]
        if not free or not self._queue:
            return
        bits = self._kind_bits()
        items, iids, agents, kinds_of = self._queued()
        gone = self._not_trapped(agents)
        free_bits = 0
        for u in free:
            free_bits |= bits[u.kind]
        stay = np.ones(len(items), bool)
        for n in np.flatnonzero(gone | ((kinds_of & free_bits) != 0)).tolist():
            if not free:
                break
            iid = items[n][2]
            inc = self.incidents[iid]
            if gone[n]:
                self._cancel_untrapped(iid, now)
                stay[n] = False
                continue
            if not int(kinds_of[n]) & free_bits:
                continue
            kinds = self._suitable(inc)
            best, best_t = None, math.inf
            for u in free:
                if u.kind in kinds:
                    eta = self._eta(u, inc)
                    if eta < best_t:
                        best, best_t = u, eta
            if best is None:
                continue
            free.remove(best)
            free_bits = 0
            for u in free:
                free_bits |= bits[u.kind]
            self._dispatch(best, inc, best_t)
            stay[n] = False
        if not stay.all():
            self._queue = [it for it, k in zip(items, stay.tolist()) if k]   # sorted, so a heap

    def _dispatch(self, unit, inc, eta):
        now = self.env.now
        unit.available = False
        unit.job += 1
        unit.incident = inc["incident_id"]
        inc.update(unit_id=unit.uid, unit_kind=unit.kind, dispatch_s=now, travel_time_s=float(eta),
                   outcome="dispatched")
        if self.params.unit_classes[unit.kind].mode == "road":
            links, _, length = self.route(unit.kind, unit.node, inc["node"])
            inc["route_length_m"] = length
            inc["route_links"] = links
        else:
            inc["route_length_m"] = float(math.hypot(inc["x"] - unit.x, inc["y"] - unit.y))
        self._log(now, unit, inc["incident_id"], "dispatch", unit.x, unit.y, f"eta {eta:.0f} s")
        launch = self.params.boat_launch_s if (self.params.unit_classes[unit.kind].mode == "boat"
                                               and unit.at_station) else 0.0
        self._route_path(unit, inc["x"], inc["y"], inc["node"], float(eta) - launch, delay_s=launch)
        self._start_phase(unit, "to_scene", float(eta))

    def _start_phase(self, unit, phase, duration):
        if phase not in TRAVEL_PHASES:
            unit.path_x, unit.path_y, unit.path_t = [], [], []
        unit.phase = phase
        unit.phase_end = self.env.now + max(float(duration), 0.0)
        self._seq += 1
        unit.seq = self._seq
        self.env.process(self._phase_process(unit, unit.job, phase))

    def _phase_process(self, unit, job, phase):
        yield self.env.timeout(max(unit.phase_end - self.env.now, 0.0))
        if unit.job != job or unit.phase != phase:
            return   # the unit was re-dispatched meanwhile
        self._finish_phase(unit)

    def _finish_phase(self, unit):
        self._advance(unit)
        self._try_dispatch()

    def _advance(self, unit):
        now = self.env.now
        p = self.params
        uc = p.unit_classes[unit.kind]
        inc = self.incidents[unit.incident] if unit.incident >= 0 else None
        ph = unit.phase
        if ph == "to_scene":
            unit.x, unit.y, unit.node, unit.at_station = inc["x"], inc["y"], inc["node"], False
            inc["arrive_scene_s"] = now
            inc["response_time_s"] = now - inc["call_s"]
            self._log(now, unit, inc["incident_id"], "on_scene", unit.x, unit.y)
            self._start_phase(unit, "on_scene", uc.on_scene_s)
        elif ph == "on_scene":
            inc["depart_scene_s"] = now
            pm = self.people
            if inc["kind"] == "rescue":
                taken = pm.pick_up(inc["agent_id"], now, uc.capacity_persons) if pm is not None else inc["persons"]
                if taken == 0:
                    inc["outcome"] = "no_longer_trapped"
                    return self._go_home(unit)
                self._log(now, unit, inc["incident_id"], "picked_up", unit.x, unit.y, f"{taken} persons")
                self._to_shelter(unit, inc)
            elif inc["transport"]:
                self._to_hospital(unit, inc)
            else:
                inc["outcome"] = "treated_on_scene"
                inc["clear_s"] = now
                self._go_home(unit)
        elif ph == "to_hospital":
            h = unit.target
            unit.x, unit.y = float(self.hospitals["x"].iloc[h]), float(self.hospitals["y"].iloc[h])
            unit.node = int(self.hospital_node[h])
            if self.hospital_closed[h] or self.beds[h].level < 1:
                self._log(now, unit, inc["incident_id"], "hospital_full", unit.x, unit.y, f"hospital {h}")
                return self._to_hospital(unit, inc, exclude={h})
            self.beds[h].get(1)
            person = -1
            if self.people is not None and inc["agent_id"] >= 0:
                mem = self.people.hospitalise(inc["agent_id"], now, h, 1)
                person = mem[0] if mem else -1
            self._admit_bed(now + float(self.rng.exponential(p.hospital_stay_mean_s)), h, person)
            inc.update(at_hospital_s=now, hospital=int(h), outcome="hospital")
            self._log(now, unit, inc["incident_id"], "at_hospital", unit.x, unit.y, f"hospital {h}")
            self._start_phase(unit, "handover", p.handover_s)
        elif ph == "handover":
            inc["clear_s"] = now
            self._go_home(unit)
        elif ph == "to_shelter":
            s = unit.target
            pm = self.people
            if s >= 0:
                sx, sy = float(pm.shelter_x[s]), float(pm.shelter_y[s])
                unit.x, unit.y, unit.node = sx, sy, int(pm.shelter_node[s])
                if not pm.drop_off(inc["agent_id"], now, s):
                    self._log(now, unit, inc["incident_id"], "shelter_full", sx, sy, f"shelter {s}")
                    return self._to_shelter(unit, inc, exclude={s})
                inc.update(shelter=int(s), outcome="rescued_to_shelter")
            else:
                if pm is not None and inc["agent_id"] >= 0:
                    pm.move_with_unit(inc["agent_id"], unit.x, unit.y)
                    pm.drop_off(inc["agent_id"], now, None)
                inc["outcome"] = "rescued_to_safe_point"
            inc["clear_s"] = now
            self._log(now, unit, inc["incident_id"], "drop_off", unit.x, unit.y, inc["outcome"])
            self._go_home(unit)
        elif ph == "to_place":
            unit.x, unit.y, unit.node, unit.at_station = unit.goal_x, unit.goal_y, unit.goal_node, False
            unit.phase, unit.available = "idle", True
            self._log(now, unit, -1, "at_place", unit.x, unit.y, "manual dispatch")
        elif ph == "return":
            unit.x, unit.y, unit.node, unit.at_station = unit.home_x, unit.home_y, unit.home_node, True
            unit.phase = "idle"
            self._log(now, unit, -1, "at_station", unit.x, unit.y)

    def _travel(self, unit, x, y, node):
        """Travel time of ``unit`` from where it is to (x, y)/node now."""
        uc = self.params.unit_classes[unit.kind]
        if uc.mode == "boat":
            return float(self._boat_times(unit.x, unit.y)[int(self.grid.cell_of(x, y))])
        return float(self._times_from(unit.kind, unit.node)[int(node)])

    def _to_hospital(self, unit, inc, exclude=()):
        open_h = [h for h in range(len(self.hospitals))
                  if not self.hospital_closed[h] and self.beds[h].level >= 1 and h not in exclude]
        best, best_t = -1, math.inf
        for h in open_h:
            t = self._travel(unit, self.hospitals["x"].iloc[h], self.hospitals["y"].iloc[h], self.hospital_node[h])
            if t < best_t:
                best, best_t = h, t
        if best < 0:
            inc.update(outcome="no_hospital_reachable", clear_s=self.env.now)
            self._log(self.env.now, unit, inc["incident_id"], "no_hospital", unit.x, unit.y)
            return self._go_home(unit)
        unit.target = best
        self._log(self.env.now, unit, inc["incident_id"], "transport", unit.x, unit.y, f"to hospital {best}")
        self._route_path(unit, float(self.hospitals["x"].iloc[best]), float(self.hospitals["y"].iloc[best]),
                         int(self.hospital_node[best]), best_t)
        self._start_phase(unit, "to_hospital", best_t)

    def _to_shelter(self, unit, inc, exclude=()):
        pm = self.people
        best, best_t = -1, math.inf
        if pm is not None:
            for s in pm.shelter_with_room(int(pm.n_present[inc["agent_id"]])):
                if s in exclude:
                    continue
                t = self._travel(unit, pm.shelter_x[s], pm.shelter_y[s], pm.shelter_node[s])
                if t < best_t:
                    best, best_t = int(s), t
        uc = self.params.unit_classes[unit.kind]
        if best < 0:   # no shelter with room: nearest dry ground (a reception point) close to the scene
            best_t = uc.on_scene_s
        unit.target = best
        # more persons than the unit carries: shuttle (back, load, out again) until all are across
        persons = int(pm.n_present[inc["agent_id"]]) if pm is not None and inc["agent_id"] >= 0 else inc["persons"]
        trips = max(1, -(-persons // max(uc.capacity_persons, 1)))
        duration = best_t + (trips - 1) * (2.0 * best_t + uc.on_scene_s)
        if pm is not None and inc["agent_id"] >= 0:
            pm.move_with_unit(inc["agent_id"], unit.x, unit.y)
        self._log(self.env.now, unit, inc["incident_id"], "transport", unit.x, unit.y,
                  f"to shelter {best}" + (f" in {trips} trips" if trips > 1 else ""))
        if best >= 0:   # drawn on its first crossing (shuttles are not drawn back and forth)
            self._route_path(unit, float(pm.shelter_x[best]), float(pm.shelter_y[best]), int(pm.shelter_node[best]),
                             best_t)
        self._start_phase(unit, "to_shelter", duration)

    def _go_home(self, unit):
        """Available again at once (dispatchable while returning); back at station after the trip."""
        unit.available = True
        unit.incident = -1
        t = self._travel(unit, unit.home_x, unit.home_y, unit.home_node)
        if not math.isfinite(t):
            t = 3600.0
        self._log(self.env.now, unit, -1, "return", unit.x, unit.y, f"eta {t:.0f} s")
        self._route_path(unit, unit.home_x, unit.home_y, unit.home_node, t)
        self._start_phase(unit, "return", t)

    def _admit_bed(self, t_out, h, person):
        """Book the discharge of a bed taken in hospital ``h`` (the bed itself is already taken)."""
        self._seq += 1
        self._discharges[self._seq] = (float(t_out), int(h), int(person))
        self.env.process(self._discharge_process(self._seq))

    def _discharge_process(self, seq):
        yield self.env.timeout(max(self._discharges[seq][0] - self.env.now, 0.0))
        t_out, h, person = self._discharges.pop(seq)
        now = self.env.now
        if person >= 0 and self.people is not None and not self.people.discharge(person, now):
            # the household's shelter has no room for them yet: stay a day longer
            self._admit_bed(now + 86400.0, h, person)
            return
        if self.beds[h].level < self.beds[h].capacity:
            self.beds[h].put(1)
        self._log(now, None, -1, "discharge", self.hospitals["x"].iloc[h], self.hospitals["y"].iloc[h],
                  f"hospital {h} person {person}")
        self._try_dispatch()

    def _evacuate_hospital(self, h, t):
        """Move the model's patients of a closed hospital to the nearest open ones with beds."""
        hx, hy = self.hospitals["x"].to_numpy(float), self.hospitals["y"].to_numpy(float)
        dist = np.hypot(hx - hx[h], hy - hy[h])
        for seq in sorted(self._discharges):
            t_out, hh, person = self._discharges[seq]
            if hh != h:
                continue
            open_h = [k for k in np.argsort(dist, kind="stable")
                      if k != h and not self.hospital_closed[k] and self.beds[k].level >= 1]
            if not open_h:
                self._log(t, None, -1, "patient_not_transferred", hx[h], hy[h], f"hospital {h} person {person}")
                continue
            k = int(open_h[0])
            self.beds[k].get(1)
            if self.beds[h].level < self.beds[h].capacity:
                self.beds[h].put(1)
            self._discharges[seq] = (t_out, k, person)
            if person >= 0 and self.people is not None:
                self.people.p_hospital[person] = k
            self._log(t, None, -1, "patient_transfer", hx[h], hy[h], f"hospital {h} -> {k} person {person}")

    # ------------------------------------------------------------------ manual dispatch (a decision)
    def dispatch_unit(self, unit_id: int, target: tuple) -> str:
        """Send unit ``unit_id`` now, overriding the dispatcher: ``target`` is ``("incident", id)`` or
        ``("place", x, y)``. A unit on its way to another incident leaves it (that incident goes
        back to the queue); a unit working a scene or carrying people cannot be taken (ValueError).
        Returns what was done."""
        if not 0 <= int(unit_id) < len(self.units):
            raise ValueError(f"dispatch: no unit {unit_id} (units 0..{len(self.units) - 1})")
        u = self.units[int(unit_id)]
        if u.phase not in ("idle", "return", "to_scene", "to_place"):
            raise ValueError(f"dispatch: unit {u.uid} ({u.kind}) is busy ({u.phase}) and cannot be taken")
        now = self.env.now
        if u.phase == "to_scene" and u.incident >= 0:
            old = self.incidents[u.incident]
            old.update(unit_id=None, unit_kind=None, dispatch_s=None, travel_time_s=None, outcome="waiting")
            heapq.heappush(self._queue, (int(old["priority"]), float(old["call_s"]), int(old["incident_id"])))
            self._log(now, u, int(old["incident_id"]), "withdrawn", u.x, u.y, "manual dispatch elsewhere")
        u.incident = -1
        if target[0] == "incident":
            iid = int(target[1])
            inc = self.incidents[iid]
            if inc.get("clear_s") is not None:
                raise ValueError(f"dispatch: incident {iid} is already closed ({inc.get('outcome')})")
            if self.params.unit_classes[u.kind].mode != "boat" and inc["depth_m"] > self.params.unit_classes[u.kind].stall_depth_m:
                raise ValueError(f"dispatch: unit {u.uid} ({u.kind}) cannot reach incident {iid} "
                                 f"({inc['depth_m']:.2f} m of water there)")
            eta = self._eta(u, inc)
            if not math.isfinite(eta):
                raise ValueError(f"dispatch: unit {u.uid} ({u.kind}) has no route to incident {iid}")
            prev = inc.get("unit_id")
            if prev is not None and prev >= 0 and prev != u.uid:
                other = self.units[int(prev)]
                if other.phase == "to_scene" and other.incident == iid:
                    other.incident = -1
                    self._go_home(other)
            self._queue = [q for q in self._queue if q[2] != iid]
            heapq.heapify(self._queue)
            self._dispatch(u, inc, eta)
            self._log(now, u, iid, "manual_dispatch", u.x, u.y, f"eta {eta:.0f} s")
            return f"unit {u.uid} ({u.kind}) to incident {iid}, eta {eta:.0f} s"
        x, y = float(target[1]), float(target[2])
        node = int(self.graph.nearest_node(x, y)[0])
        eta = self._travel(u, x, y, node)
        if not math.isfinite(eta):
            raise ValueError(f"dispatch: unit {u.uid} ({u.kind}) has no route to ({x:.0f}, {y:.0f})")
        u.available = False
        u.job += 1
        u.goal_x, u.goal_y, u.goal_node = x, y, node
        self._log(now, u, -1, "manual_dispatch", u.x, u.y, f"to ({x:.0f}, {y:.0f}) eta {eta:.0f} s")
        self._route_path(u, x, y, node, eta)
        self._start_phase(u, "to_place", eta)
        return f"unit {u.uid} ({u.kind}) to ({x:.0f}, {y:.0f}), eta {eta:.0f} s"

    # ------------------------------------------------------------------ outputs
    def incident_table(self) -> pd.DataFrame:
        """One row per incident (``INCIDENT_COLUMNS``). Cached: rebuilt only when an incident's
        values differ from those the cached table was built from; each access returns a copy."""
        rows = [tuple(inc.get(c) for c in INCIDENT_COLUMNS) for inc in self.incidents]
        c = getattr(self, "_table_cache", None)
        if c is None or c[0] != rows:
            c = self._table_cache = (rows, self._incident_frame(rows))
        return c[1].copy()

    def _incident_frame(self, rows) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=INCIDENT_COLUMNS)
        for c in ("call_s", "x", "y", "depth_m", "dispatch_s", "arrive_scene_s", "depart_scene_s",
                  "at_hospital_s", "clear_s", "response_time_s", "route_length_m", "travel_time_s"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        for c in ("unit_id", "hospital", "shelter"):
            df[c] = pd.to_numeric(df[c], errors="coerce").fillna(-1).astype(np.int64)
        return df

    def action_table(self) -> pd.DataFrame:
        return self.actions.to_frame()

    def unit_table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(u) for u in self.units])

    def kpis(self) -> dict[str, Any]:
        df = self.incident_table()
        out: dict[str, Any] = {"t_s": self.time_s, "incidents": int(len(df))}
        for kind in ("rescue", "medical"):
            r = df.loc[df["kind"] == kind, "response_time_s"].dropna()
            out[f"{kind}_incidents"] = int((df["kind"] == kind).sum())
            out[f"{kind}_response_p50_s"] = float(r.quantile(0.5)) if len(r) else None
            out[f"{kind}_response_p90_s"] = float(r.quantile(0.9)) if len(r) else None
        out["waiting"] = int((df["outcome"] == "waiting").sum()) if len(df) else 0
        out["hospitals_closed"] = int(self.hospital_closed.sum())
        out["hospital_free_beds"] = [int(b.level) for b in self.beds]
        return out

    # ------------------------------------------------------------------ restart
    def get_state(self) -> dict:
        return {
            "time_s": self.time_s,
            "units": [dataclasses.asdict(u) for u in self.units],
            "incidents": [dict(i) for i in self.incidents],
            "actions": self.actions.get_state(),
            "queue": sorted(self._queue),
            "discharges": sorted((k,) + v for k, v in self._discharges.items()),
            "seq": self._seq,
            "future_calls": list(self._future_calls),
            "beds": [int(b.level) for b in self.beds],
            "hospital_closed": self.hospital_closed.copy(),
            "closed_links": sorted(self.closed_links),
            "depth": None if self._depth is None else self._depth.copy(),
            "road_depth": None if self._road_depth is None else self._road_depth.copy(),
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, s: dict) -> None:
        self.time_s = float(s["time_s"])
        self.units = [Unit(**u) for u in s["units"]]
        self.incidents = [dict(i) for i in s["incidents"]]
        self.actions = _action_log()
        self.actions.set_state(s["actions"])
        self._queue = list(s["queue"])
        heapq.heapify(self._queue)
        self._inc_agent = np.zeros(0, np.int64)
        self._inc_kinds = np.zeros(0, np.int64)
        self._discharges = {int(d[0]): (float(d[1]), int(d[2]), int(d[3])) for d in s["discharges"]}
        self._seq = int(s["seq"])
        self._future_calls = list(s["future_calls"])
        self.hospital_closed = np.array(s["hospital_closed"], bool)
        self.closed_links = set(s["closed_links"])
        self._depth = None if s["depth"] is None else np.array(s["depth"])
        rd = s.get("road_depth", s["depth"])  # older states: one field
        self._road_depth = None if rd is None else np.array(rd)
        self._cache.clear()
        self.rng.bit_generator.state = s["rng"]
        self.env = simpy.Environment(initial_time=self.time_s)
        self._dispatch_pending = False
        self.beds = [simpy.Container(self.env, capacity=max(int(b), 1), init=int(lv))
                     for b, lv in zip(self.hospital_beds, s["beds"])]
        # re-schedule pending timeouts in the order they were first scheduled
        pend: list[tuple[str, int, Any]] = [("unit", u.seq, u) for u in self.units if u.phase != "idle"]
        pend += [("dis", k, k) for k in self._discharges]
        for what, _, obj in sorted(pend, key=lambda z: z[1]):
            if what == "unit":
                self.env.process(self._phase_process(obj, obj.job, obj.phase))
            else:
                self.env.process(self._discharge_process(obj))


def _walk(pred, src: int, dst: int) -> list[int]:
    """Nodes (or cells) of the shortest path ``src`` → ``dst`` from a Dijkstra predecessor array
    rooted at ``src`` ([] when ``dst`` is unreachable)."""
    path = [int(dst)]
    guard = len(pred) + 1
    while path[-1] != src and guard > 0:
        p = int(pred[path[-1]])
        if p < 0:
            return []
        path.append(p)
        guard -= 1
    path.reverse()
    return path if path[0] == src else []
