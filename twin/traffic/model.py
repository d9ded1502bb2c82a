"""TrafficModel: the traffic component (link transmission model with individual vehicles).

The physics and the stepping live in C++ (``twin._core.TrafficEngine``, see
``core_cpp/traffic_engine.cpp``); this class converts tables to arrays, validates, and exposes the
results as DataFrames and per-link arrays.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
import pandas as pd

from twin.constants import PCU, STALL_DEPTH_M, VEHICLE_CLASSES
from twin.roads import RoadNetwork
from twin.traffic.flood import link_flood_arrays

__all__ = ["TrafficModel", "VEHICLE_CLASSES", "TRIP_STATES", "TripStatus", "ACCEL_MPS2", "Route"]

_CLASS_DTYPE = pd.CategoricalDtype(VEHICLE_CLASSES)
# Acceleration from a stop per class (m/s^2): SUMO's vehicle-class defaults ("Vehicle Type Parameter
# Defaults", sumo.dlr.de/docs/Vehicle_Type_Parameter_Defaults.html; the values its Krauss model uses
# unless a vType sets accel): passenger 2.6, motorcycle 6, bus 1.2, truck 1.3, emergency 2.6. The
# motorbike takes SUMO's motorcycle value; SUMO's moped (1.1 m/s^2) is a <= 50 cm^3 machine limited to
# 45 km/h, not the 110-125 cm^3 step-through bikes that dominate Vietnamese traffic. No measured value
# for those was at hand: override it with TrafficModel(..., accel_mps2={"motorbike": ...}).
ACCEL_MPS2 = {"motorbike": 6.0, "car": 2.6, "bus": 1.2, "truck": 1.3, "emergency": 2.6}
TRIP_STATES = ("scheduled", "waiting", "on_link", "arrived", "stalled", "stranded")
_STATE_DTYPE = pd.CategoricalDtype(TRIP_STATES)
TripStatus = namedtuple("TripStatus", ["state", "arrive_s", "current_link"])
_CLASS_CODE = {c: k for k, c in enumerate(VEHICLE_CLASSES)}


def _class_code(vehicle_class) -> int:
    if isinstance(vehicle_class, (int, np.integer)) and 0 <= int(vehicle_class) < len(VEHICLE_CLASSES):
        return int(vehicle_class)
    try:
        return _CLASS_CODE[str(vehicle_class)]
    except KeyError:
        raise ValueError(f"vehicle_class: {vehicle_class!r} is not one of {VEHICLE_CLASSES}") from None


class Route(list):
    """A trip's route (link ids) in ``TrafficModel.trips``: a list that refuses changes, because
    the cached table shares it between accesses; ``list(route)`` is a changeable copy."""

    __slots__ = ()

    def _read_only(self, *args, **kwargs):
        raise TypeError("a route of TrafficModel.trips is read-only (shared by the cached table); "
                        "copy it with list(route)")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self):
        return (Route, (list(self),))


class TrafficModel:
    """Traffic on a :class:`~twin.roads.RoadNetwork`, every vehicle an individual.

    Parameters
    ----------
    network : RoadNetwork
    dt : float
        Internal step in seconds (the link transmission model is exact for ``dt <= L/v_f``; shorter
        links delay a vehicle by at most one step). ``run_one_step(dt)`` takes multiples of it.
    seed : int, SeedSequence or Generator
        Seeds the only randomness (who is informed, for periodic rerouting).
    informed_share : float
        Share of new trips that reroute by current travel times every ``reroute_interval_s``.
    reroute_interval_s : float or None
        Period of informed rerouting (a multiple of ``dt``); ``None`` turns it off.
    pcu, stall_depth_m : dict
        Override the passenger-car units and stall depths per class (defaults in
        :mod:`twin.traffic.flood`).
    route_on_departure : bool
        Route each trip when it departs, by the travel times of that moment (default: when it is
        added; both then reroute on closures and, if informed, periodically).
    emergency_overtake : bool
        Traffic pulls aside for emergency vehicles: an emergency vehicle leaves a link at its own
        free-flow time even with a queue ahead (default: strict FIFO, priority only at the head).
    time_to_teleport_s : float or None
        SUMO-style gridlock escape (SUMO's ``--time-to-teleport``, 300 s there), off by default
        (``None``): a vehicle that reached the end of its link and has stood at the link head this
        long (strict FIFO behind a full next link, e.g. a cycle of full links) jumps to the first
        link of its remaining route with room for it; the links it skips count as driven at their
        free-flow time. Rounded up to whole steps; counted in ``counts()["teleports"]``. The storage
        bound and conservation hold as without it.
    startup_lost_time_s : float
        Start-up lost time at every green of a fixed-time signal (Highway Capacity Manual,
        signalized intersections: HCM 2010 ch. 18 / HCM 6th ed. ch. 19, default 2.0 s there): the
        queue starts to discharge this long after the start of green, at the same saturation flow
        (the effective green is shorter by it). Default 0 (off): the first-order model discharges at
        capacity from the first second of green. Exact within the step: a step that holds the end
        of the lost time (or of a green) passes that share of a step's capacity.
    accel_mps2 : dict, float or None
        Acceleration from a stop per class (m/s^2), on by default with SUMO's vehicle-class defaults
        (``ACCEL_MPS2``: motorbike 6.0, car 2.6, bus 1.2, truck 1.3, emergency 2.6). A dict overrides
        single classes, a number sets every class, ``None`` (or ``float("inf")``, also per class)
        turns it off: the first-order model's flying start, bit-identical to the engine before this
        option. Rule: a vehicle held at a node (it crosses later than it reached the stop line at its
        link speed: a red, a queue ahead, no room downstream) or in its origin queue (it enters later
        than it departed) loses ``min(held, v / (2 a))`` on the link it enters next, ``v`` that
        link's current (flood-reduced) free speed: the time a constant-acceleration start costs
        against a flying start, capped by the time it was held (a vehicle held briefly only slowed
        down). It is added to that vehicle's earliest exit time from the link, so FIFO order and every
        capacity stay as they are (a link takes at most floor(L / (w dt)) dt - dt of a loss, the
        rest carries on to the next links; a vehicle never leaves a link before the one ahead). Departures are flying starts (SUMO ``departSpeed="max"``), so an
        empty link still takes exactly L/v. With acceleration on, keep ``startup_lost_time_s`` at 0:
        the lost time at green is what acceleration produces.
    record_links : bool
        Keep the link traversal log (``link_log``: entry and exit time of every vehicle on every
        link). Without it ``trips.route`` is the current plan.
    threads : int or None
        OpenMP threads for routing (None: the runtime default).

    Rules for vehicles when a link closes
    -------------------------------------
    * Manual closure (``close_links``): nobody enters the link afterwards; vehicles already on it
      drive out at its end; every vehicle whose remaining route uses it reroutes from the next node
      at once. A vehicle without any open route parks at the end of its current link (``stranded``).
    * Flood closure (``set_link_depth`` with depth >= the class stall depth): vehicles of that class
      on the link stall in place (state ``stalled``, an incident at ``current_link``) and leave the
      traffic; the other classes crawl out at the flooded speed; routes are changed as above.
    """

    _name = "TrafficModel"
    _unit_agnostic = False
    _info = {
        "road_link__water_depth": {
            "dtype": float, "intent": "in", "optional": True, "units": "m", "mapping": "link",
            "doc": "standing water depth on each link (set_link_depth)"},
        "road_link__vehicle_flow": {
            "dtype": float, "intent": "out", "optional": False, "units": "veh/s", "mapping": "link",
            "doc": "vehicles leaving the link per second over the last run_one_step (link_flow)"},
        "road_link__vehicle_density": {
            "dtype": float, "intent": "out", "optional": False, "units": "veh/m", "mapping": "link",
            "doc": "vehicles on the link per metre of link, all lanes (link_density)"},
        "road_link__mean_speed": {
            "dtype": float, "intent": "out", "optional": False, "units": "m/s", "mapping": "link",
            "doc": "speed of the triangular diagram at the link's mean PCU density (link_speed)"},
        "road_link__queue_length": {
            "dtype": float, "intent": "out", "optional": False, "units": "veh", "mapping": "link",
            "doc": "vehicles that reached the link end and wait to leave (link_queue)"},
        "road_link__speed_factor": {
            "dtype": float, "intent": "out", "optional": False, "units": "-", "mapping": "link",
            "doc": "flooded free speed / speed limit (link_speed_factor)"},
        "road_link__is_closed": {
            "dtype": bool, "intent": "out", "optional": False, "units": "-", "mapping": "link",
            "doc": "closed by close_links or to cars by flood depth (link_closed)"},
        "trip__travel_time": {
            "dtype": float, "intent": "out", "optional": False, "units": "s", "mapping": "agent",
            "doc": "travel time of each trip, NaN while unfinished (trips.travel_time_s)"},
    }

    VEHICLE_CLASSES = VEHICLE_CLASSES
    TRIP_STATES = TRIP_STATES

    def __init__(self, network: RoadNetwork, dt: float = 1.0, seed=0, *, informed_share: float = 0.0,
                 reroute_interval_s: float | None = None, pcu: dict | None = None,
                 stall_depth_m: dict | None = None, record_links: bool = True, threads: int | None = None,
                 route_on_departure: bool = False, emergency_overtake: bool = False,
                 time_to_teleport_s: float | None = None, startup_lost_time_s: float = 0.0,
                 accel_mps2: dict | float | str | None = "default"):
        from twin import _core

        if not isinstance(network, RoadNetwork):
            raise ValueError(f"network: expected a RoadNetwork, got {type(network).__name__}")
        dt = float(dt)
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt: must be finite and > 0, got {dt!r}")
        if not (0.0 <= informed_share <= 1.0):
            raise ValueError(f"informed_share: must be within [0, 1], got {informed_share!r}")
        self.network = network
        self.dt = dt
        if isinstance(seed, np.random.Generator):
            self.rng = seed
        else:
            self.rng = np.random.default_rng(seed)
        self.informed_share = float(informed_share)
        self.pcu = dict(PCU)
        self.stall_depth_m = dict(STALL_DEPTH_M)
        for name, given, target in (("pcu", pcu, self.pcu), ("stall_depth_m", stall_depth_m, self.stall_depth_m)):
            for k, v in (given or {}).items():
                if k not in target:
                    raise ValueError(f"{name}: unknown vehicle class {k!r}; classes are {VEHICLE_CLASSES}")
                target[k] = float(v)
        links, nodes = network.links, network.nodes
        phases = list(nodes["signal_phases_s"])
        sig_ptr = np.zeros(network.n_nodes + 1, dtype=np.int32)
        sig_ptr[1:] = np.cumsum([len(p) for p in phases])
        sig_dur = np.array([d for p in phases for d in p], dtype=np.float64)
        self._engine = _core.TrafficEngine(
            network.link_from_index.astype(np.int32), network.link_to_index.astype(np.int32),
            links["length_m"].to_numpy(np.float64), links["lanes"].to_numpy(np.float64),
            links["free_speed_mps"].to_numpy(np.float64), links["capacity_vph_per_lane"].to_numpy(np.float64),
            links["jam_density_vpm_per_lane"].to_numpy(np.float64),
            nodes["x"].to_numpy(np.float64), nodes["y"].to_numpy(np.float64), sig_ptr, sig_dur,
            nodes["signal_offset_s"].to_numpy(np.float64), links["signal_group"].to_numpy(np.int32), dt,
            np.array([self.pcu[c] for c in VEHICLE_CLASSES]))
        self._engine.record = bool(record_links)
        self._engine.route_on_departure = bool(route_on_departure)
        self._engine.emergency_overtake = bool(emergency_overtake)
        lost = float(startup_lost_time_s)
        if not (np.isfinite(lost) and lost >= 0):
            raise ValueError(f"startup_lost_time_s: must be finite and >= 0, got {startup_lost_time_s!r}")
        self.startup_lost_time_s = lost
        self._engine.startup_lost_s = lost
        self.accel_mps2 = self._accel_table(accel_mps2)
        self._engine.accel_mps2 = np.array([self.accel_mps2[c] for c in VEHICLE_CLASSES], dtype=np.float64)
        self.time_to_teleport_s = None
        if time_to_teleport_s is not None:
            tt = float(time_to_teleport_s)
            if not (np.isfinite(tt) and tt > 0):
                raise ValueError(f"time_to_teleport_s: must be finite and > 0 (or None: off), got {time_to_teleport_s!r}")
            self.time_to_teleport_s = tt
            self._engine.teleport_steps = int(np.ceil(tt / dt - 1e-9))
        if threads is not None:
            self._engine.threads = int(threads)
        self.reroute_interval_s = None
        if reroute_interval_s is not None:
            n = reroute_interval_s / dt
            if not (n >= 1 and abs(n - round(n)) < 1e-9):
                raise ValueError(f"reroute_interval_s: {reroute_interval_s!r} must be a positive multiple of "
                                 f"dt = {dt}")
            self.reroute_interval_s = float(reroute_interval_s)
            self._engine.reroute_every = int(round(n))
        self._exits_prev = np.zeros(network.n_links, dtype=np.int64)
        self._contraflow: dict = {}
        self._flow = np.zeros(network.n_links)
        self._depth = np.zeros(network.n_links)
        self._version = 0          # bumped by every change of the engine state (the trips cache key)
        self._trips_cache: tuple[tuple, pd.DataFrame] | None = None  # (key, DataFrame) of the last ``trips``
        self._rt: dict[str, Any] | None = None  # incremental route state of ``trips`` (see _routes)
        self._vfree = links["free_speed_mps"].to_numpy(np.float64)
        self._length = links["length_m"].to_numpy(np.float64)

    @staticmethod
    def _accel_table(accel_mps2) -> dict:
        """Per-class acceleration table (inf = off) from the ``accel_mps2`` argument."""
        def value(v, where):
            if v is None:
                return float("inf")
            try:
                a = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"accel_mps2{where}: expected a number or None, got {v!r}") from None
            if not (a > 0):  # also NaN
                raise ValueError(f"accel_mps2{where}: must be > 0 (inf or None: off), got {v!r}")
            return a

        if isinstance(accel_mps2, str) and accel_mps2 == "default":
            return dict(ACCEL_MPS2)
        if accel_mps2 is None or accel_mps2 is False:
            return {c: float("inf") for c in VEHICLE_CLASSES}
        if isinstance(accel_mps2, dict):
            table = dict(ACCEL_MPS2)
            for k, v in accel_mps2.items():
                if k not in table:
                    raise ValueError(f"accel_mps2: unknown vehicle class {k!r}; classes are {VEHICLE_CLASSES}")
                table[k] = value(v, f"[{k!r}]")
            return table
        a = value(accel_mps2, "")
        return {c: a for c in VEHICLE_CLASSES}

    # ------------------------------------------------------------------ time
    @property
    def time(self) -> float:
        """Model time in seconds (step counter x dt, no drift)."""
        return self._engine.step_k * self.dt

    def run_one_step(self, dt: float | None = None) -> float:
        """Advances exactly ``dt`` seconds (a multiple of the internal dt); returns ``dt``."""
        dt = self.dt if dt is None else float(dt)
        n = dt / self.dt
        if not (np.isfinite(n) and n >= 0 and abs(n - round(n)) < 1e-9):
            raise ValueError(f"run_one_step: dt = {dt!r} is not a multiple of the model's dt = {self.dt}")
        n = int(round(n))
        self._version += 1
        self._engine.step(n)
        if n > 0:
            exits = self._engine.get("exits_total")
            self._flow = (exits - self._exits_prev) / (n * self.dt)
            self._exits_prev = exits
        return dt

    def run_until_done(self, max_time_s: float, chunk_s: float | None = None) -> float:
        """Steps until every trip has ended (arrived, stalled or stranded) or ``max_time_s``."""
        chunk = chunk_s or max(self.dt, 60.0 // self.dt * self.dt)
        while self.time < max_time_s:
            c = self.counts()
            if c["scheduled"] + c["waiting"] + c["on_network"] == 0:
                break
            self.run_one_step(min(chunk, max_time_s - self.time))
        return self.time

    # ------------------------------------------------------------------ demand
    def add_trips(self, df: pd.DataFrame) -> np.ndarray:
        """Adds trips (columns ``origin, destination, depart_s`` as node ids and seconds, optional
        ``vehicle_class``, default car); returns their trip ids. Routes are computed now by the
        current travel times (again at departure with ``route_on_departure``); a trip whose
        departure time has passed leaves at once."""
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"add_trips: expected a DataFrame, got {type(df).__name__}")
        missing = [c for c in ("origin", "destination", "depart_s") if c not in df.columns]
        if missing:
            raise ValueError(f"add_trips: missing column(s) {missing}; has {list(df.columns)}")
        o = self.network.node_index(df["origin"].to_numpy(), "trips.origin")
        d = self.network.node_index(df["destination"].to_numpy(), "trips.destination")
        try:
            dep = pd.to_numeric(df["depart_s"], errors="raise").to_numpy(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trips.depart_s: not numeric ({exc})") from None
        bad = ~np.isfinite(dep)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"trips.depart_s: value {float(dep[k])!r} in row {df.index[k]!r} must be finite")
        if "vehicle_class" in df.columns:
            vc = df["vehicle_class"].to_numpy()
            codes = np.empty(len(df), dtype=np.uint8)
            for name in pd.unique(vc):
                try:
                    code = _class_code(name)
                except ValueError:
                    k = int(np.flatnonzero(vc == name)[0])
                    raise ValueError(f"trips.vehicle_class: {name!r} in row {df.index[k]!r} is not one of "
                                     f"{VEHICLE_CLASSES}") from None
                codes[vc == name] = code
        else:
            codes = np.full(len(df), _CLASS_CODE["car"], dtype=np.uint8)
        informed = (self.rng.random(len(df)) < self.informed_share).astype(np.uint8) \
            if self.informed_share > 0 else np.zeros(len(df), dtype=np.uint8)
        self._version += 1
        first = self._engine.add_trips(o, d, dep, codes, informed)
        return np.arange(first, first + len(df), dtype=np.int64)

    # ------------------------------------------------------------------ flood and closures
    def set_link_depth(self, depth_m) -> None:
        """Standing water depth per link (m): Pregnolato speed, closure per class stall depth.

        The rule is ``twin.traffic.flood.link_flood_arrays``; this hands its two arrays to the
        engine (``set_link_speeds``, then ``set_closed``)."""
        d = np.asarray(depth_m, dtype=np.float64)
        if d.shape != (self.network.n_links,):
            raise ValueError(f"set_link_depth: depth_m must have shape ({self.network.n_links},), got {d.shape}")
        bad = ~np.isfinite(d) | (d < 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"set_link_depth: depth_m[{k}] = {float(d[k])!r} must be finite and >= 0")
        self._depth = d.copy()
        self._version += 1
        speeds, mask = link_flood_arrays(d, self._vfree, self.stall_depth_m)
        self._engine.set_link_speeds(np.ascontiguousarray(speeds, dtype=np.float64))
        self._engine.set_closed(mask)

    def close_links(self, ids) -> None:
        """Closes links to every class; vehicles on them drive out, routes through them change."""
        self._version += 1
        self._engine.set_closed(self._link_ids(ids, "close_links"), True)

    def open_links(self, ids) -> None:
        """Reopens links closed by close_links (flood closures follow the depth)."""
        self._version += 1
        self._engine.set_closed(self._link_ids(ids, "open_links"), False)

    def set_lanes(self, ids, lanes) -> None:
        """Changes the lanes of links (lane closures, works): capacity and storage scale with them."""
        ids = self._link_ids(ids, "set_lanes")
        lanes = np.broadcast_to(np.asarray(lanes, dtype=np.float64), ids.shape).copy()
        bad = ~np.isfinite(lanes) | (lanes <= 0)
        if bad.any():
            raise ValueError(f"set_lanes: lanes = {float(lanes[bad][0])!r} for link {int(ids[bad][0])} must be > 0")
        self._version += 1
        self._engine.set_lanes(ids, lanes)

    @property
    def link_lanes(self) -> np.ndarray:
        return self._engine.get("lanes")

    def set_contraflow(self, ids, active: bool = True) -> None:
        """Contraflow for evacuation: each link in ``ids`` takes over the lanes of its reverse link
        (same end nodes, opposite direction), which closes (vehicles on it drive out). With
        ``active=False`` the reverse links reopen and the lanes return."""
        ids = self._link_ids(ids, "set_contraflow")
        fr, to = self.network.link_from_index, self.network.link_to_index
        rev_of = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(fr, to))}
        pairs = []
        for l in ids:
            r = rev_of.get((int(to[l]), int(fr[l])))
            if r is None:
                raise ValueError(f"set_contraflow: link {int(l)} has no reverse link to take over")
            pairs.append((int(l), r))
        lanes = self._engine.get("lanes")
        self._version += 1
        for l, r in pairs:
            if active and l not in self._contraflow:
                self._contraflow[l] = (r, float(lanes[l]), float(lanes[r]))
                self._engine.set_closed(np.array([r], np.int32), True)
                self._engine.set_lanes(np.array([l], np.int32), np.array([lanes[l] + lanes[r]]))
            elif not active and l in self._contraflow:
                r, nl, nr = self._contraflow.pop(l)
                self._engine.set_lanes(np.array([l], np.int32), np.array([nl]))
                self._engine.set_closed(np.array([r], np.int32), False)

    def _link_ids(self, ids, what) -> np.ndarray:
        a = np.atleast_1d(np.asarray(ids))
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{what}: link ids must be integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
        bad = (a < 0) | (a >= self.network.n_links)
        if bad.any():
            raise ValueError(f"{what}: link id {a[bad][0]} does not exist (0..{self.network.n_links - 1})")
        return a.astype(np.int32)

    # ------------------------------------------------------------------ link state
    @property
    def link_flow(self) -> np.ndarray:
        """Vehicles leaving each link per second over the last run_one_step [veh/s]."""
        return self._flow.copy()

    @property
    def link_vehicles(self) -> np.ndarray:
        """Vehicles on each link."""
        return self._engine.get("nveh").astype(np.int64)

    @property
    def link_density(self) -> np.ndarray:
        """Vehicles per metre of link, all lanes [veh/m]."""
        return self._engine.get("nveh") / self._length

    @property
    def link_pcu_density(self) -> np.ndarray:
        """Passenger-car units per metre of link, all lanes [PCU/m]."""
        return (self._engine.get("Nup") - self._engine.get("Ndown")) / self._length

    @property
    def link_speed(self) -> np.ndarray:
        """Speed of the triangular diagram at the mean PCU density [m/s] (free speed when empty)."""
        k = self.link_pcu_density
        v = self._engine.get("veff")
        w, kj = self._engine.get("w"), self._engine.get("kjam")
        q = np.minimum(v * k, w * (kj - k))
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(k > 1e-12, q / k, v)
        return np.clip(s, 0.0, v)

    @property
    def link_queue(self) -> np.ndarray:
        """Vehicles that reached the end of each link and wait to leave [veh]."""
        return self._engine.queue_counts()[0].astype(np.int64)

    @property
    def link_speed_factor(self) -> np.ndarray:
        """Flooded free speed / speed limit [-]."""
        return self._engine.get("veff") / self._vfree

    @property
    def link_closed(self) -> np.ndarray:
        """Closed manually, or to cars by flood depth."""
        return (self._engine.get("closed_manual") > 0) | ((self._engine.get("closed_mask") >> 1) & 1 > 0)

    def link_closed_to(self, vehicle_class="car") -> np.ndarray:
        c = _class_code(vehicle_class)
        return (self._engine.get("closed_manual") > 0) | ((self._engine.get("closed_mask") >> c) & 1 > 0)

    @property
    def link_depth(self) -> np.ndarray:
        return self._depth.copy()

    def link_state(self) -> pd.DataFrame:
        """All link outputs as one table (link_id index), e.g. for a ``links.parquet`` recorder."""
        return pd.DataFrame({
            "flow_vps": self.link_flow, "density_vpm": self.link_density, "speed_mps": self.link_speed,
            "queue_veh": self.link_queue, "vehicles": self.link_vehicles, "depth_m": self._depth,
            "speed_factor": self.link_speed_factor, "closed": self.link_closed,
        }, index=pd.RangeIndex(self.network.n_links, name="link_id"))

    # ------------------------------------------------------------------ routing
    def link_travel_time_s(self, vehicle_class="car") -> np.ndarray:
        """Current travel time per link for a class [s]: length / flooded speed plus the time to
        discharge the queue at the link end; ``inf`` where the link is closed to the class."""
        return self._engine.class_cost(_class_code(vehicle_class))

    def shortest_path(self, origin, destination, vehicle_class="car"):
        """Fastest path (A*) by current travel times: ``(node_ids, link_ids, time_s)``; empty lists and
        ``inf`` when no open path exists."""
        o = int(self.network.node_index(origin, "origin")[0])
        d = int(self.network.node_index(destination, "destination")[0])
        links, t = self._engine.shortest_path(o, d, _class_code(vehicle_class))
        links = links.astype(np.int64)
        if not np.isfinite(t):
            return [], links, float(t)
        ids = self.network.node_ids
        nodes = [ids[o]] + [ids[self.network.link_to_index[l]] for l in links]
        return nodes, links, float(t)

    def travel_time_tree(self, destinations, vehicle_class="car", *, return_next: bool = False):
        """Many-to-one: time from every node (row order of ``network.nodes``) to the nearest of
        ``destinations`` (node ids), ``inf`` where none is reachable. With ``return_next`` also the
        next link to take and the id of the nearest destination (-1 / None where unreachable)."""
        d = self.network.node_index(destinations, "destinations")
        dist, nxt, near = self._engine.tree(d, _class_code(vehicle_class))
        if not return_next:
            return dist
        dest_ids = np.asarray(destinations).ravel()
        nearest = np.array([dest_ids[k] if k >= 0 else None for k in near], dtype=object)
        return dist, nxt.astype(np.int64), nearest

    def reroute(self, trip_ids) -> None:
        """Reroutes these trips now by current travel times (from the node ahead of them)."""
        ids = np.atleast_1d(np.asarray(trip_ids, dtype=np.int64))
        bad = (ids < 0) | (ids >= self._engine.n_vehicles)
        if bad.any():
            raise ValueError(f"reroute: trip id {ids[bad][0]} does not exist")
        self._version += 1
        self._engine.reroute(ids.astype(np.int32))

    # ------------------------------------------------------------------ trips
    @property
    def n_trips(self) -> int:
        return self._engine.n_vehicles

    def trip_status(self, trip_ids) -> TripStatus:
        """Cheap polling: ``(state, arrive_s, current_link)`` arrays for these trip ids; state names in
        ``TRIP_STATES``; current_link is the link a vehicle is on, the link where it stalled, or the
        link at whose end it parked when stranded (-1 when it never entered the network or arrived)."""
        ids = np.atleast_1d(np.asarray(trip_ids, dtype=np.int64))
        bad = (ids < 0) | (ids >= self._engine.n_vehicles)
        if bad.any():
            raise ValueError(f"trip_status: trip id {ids[bad][0]} does not exist")
        st = self._engine.get("state")[ids]
        return TripStatus(np.asarray(TRIP_STATES)[st], self._engine.get("arrive")[ids],
                          self._engine.get("cur")[ids].astype(np.int64))

    def trip_eta_s(self, trip_ids) -> np.ndarray:
        """Expected arrival time of these trips by current link travel times (the arrival time once
        arrived, ``inf`` while no open route exists, NaN for stalled or stranded trips); for dispatchers."""
        ids = np.atleast_1d(np.asarray(trip_ids, dtype=np.int64))
        e = self._engine
        if ((ids < 0) | (ids >= e.n_vehicles)).any():
            raise ValueError(f"trip_eta_s: trip id {ids[(ids < 0) | (ids >= e.n_vehicles)][0]} does not exist")
        st, cls, arr = e.get("state"), e.get("cls"), e.get("arrive")
        pool, off, ln, pos = e.get("pool"), e.get("r_off"), e.get("r_len"), e.get("r_pos")
        dep, ready = e.get("depart"), e.get("t_ready")
        orig, dest = e.get("origin"), e.get("dest")
        to_idx = self.network.link_to_index
        costs: dict[int, np.ndarray] = {}
        out = np.full(len(ids), np.nan)
        now = self.time
        for k, v in enumerate(ids):
            s = st[v]
            if s == 3:
                out[k] = arr[v]
            elif s in (0, 1, 2):
                end = to_idx[pool[off[v] + ln[v] - 1]] if ln[v] > 0 else orig[v]
                if end != dest[v]:  # no open route yet
                    out[k] = np.inf
                    continue
                c = costs.setdefault(int(cls[v]), e.class_cost(int(cls[v])))
                if s == 2:
                    rest = pool[off[v] + pos[v] + 1:off[v] + ln[v]]
                    out[k] = max(ready[v], now) + c[rest].sum()
                else:
                    rest = pool[off[v]:off[v] + ln[v]]
                    out[k] = max(dep[v], now) + c[rest].sum()
        return out

    @property
    def n_departed(self) -> int:
        """Trips that have left their origin (en route or ended), from the engine's counters (no table)."""
        return int(self._engine.counts()["n_departed"])

    @property
    def n_arrived(self) -> int:
        """Trips that reached their destination, from the engine's counters (no table)."""
        return int(self._engine.counts()["n_arrived"])

    @property
    def n_en_route(self) -> int:
        """Trips departed and not ended: waiting to enter the network or on a link (no table)."""
        c = self._engine.counts()
        return int(c["n_waiting"]) + int(c["n_onlink"])

    @property
    def trips(self) -> pd.DataFrame:
        """One row per trip: origin, destination (node ids), vehicle_class, depart_s, arrive_s,
        travel_time_s (NaN while unfinished), state, current_link, route (link ids: driven so far
        and still planned; read-only ``Route`` lists), n_links.

        Built once per state: cached until the engine state changes (a step, new trips, closures,
        depths, lanes, contraflow, reroutes, ``set_state``), and the routes are rebuilt only for
        trips whose route changed. Each access returns a copy of the table whose ``route`` cells
        refuse changes (copy one with ``list(route)``), so a caller cannot change the cache. For polling in a loop, the counters ``n_departed``, ``n_arrived``, ``n_en_route``
        and ``trip_status(ids)`` cost no table at all."""
        e = self._engine
        key = (self._version, e.step_k, e.n_vehicles)
        if self._trips_cache is None or self._trips_cache[0] != key:
            self._trips_cache = (key, self._trips_frame())
        return self._trips_cache[1].copy()

    def _trips_frame(self) -> pd.DataFrame:
        e = self._engine
        n = e.n_vehicles
        ids = self.network.node_ids
        st = e.get("state")
        dep, arr = e.get("depart"), e.get("arrive")
        routes, n_links = self._routes(st)
        return pd.DataFrame({
            "origin": ids[e.get("origin")] if n else np.array([], dtype=ids.dtype),
            "destination": ids[e.get("dest")] if n else np.array([], dtype=ids.dtype),
            "vehicle_class": pd.Categorical.from_codes(e.get("cls").astype(np.int8), dtype=_CLASS_DTYPE),
            "depart_s": dep, "arrive_s": arr, "travel_time_s": arr - dep,
            "state": pd.Categorical.from_codes(st.astype(np.int8), dtype=_STATE_DTYPE),
            "current_link": e.get("cur").astype(np.int64),
            "route": routes, "n_links": n_links,
        }, index=pd.RangeIndex(n, name="trip_id"))

    def _routes_full(self, st) -> list:
        """The routes built from scratch (the reference for the incremental ``_routes``)."""
        e = self._engine
        n = e.n_vehicles
        pool, off, ln, pos = e.get("pool"), e.get("r_off"), e.get("r_len"), e.get("r_pos")
        if not e.record:
            return [pool[off[v]:off[v] + ln[v]].tolist() for v in range(n)]
        lv, ll = e.get("log_veh"), e.get("log_link")
        order = np.argsort(lv, kind="stable")
        lv, ll = lv[order], ll[order]
        starts = np.searchsorted(lv, np.arange(n + 1))
        out = []
        for v in range(n):
            driven = ll[starts[v]:starts[v + 1]].tolist()
            if st[v] == 2:  # on a link: the rest of the plan after the current link
                driven += pool[off[v] + pos[v] + 1:off[v] + ln[v]].tolist()
            elif st[v] <= 1:
                driven = pool[off[v]:off[v] + ln[v]].tolist()
            out.append(driven)
        return out

    def _routes(self, st) -> tuple[list, np.ndarray]:
        """Route lists and their lengths, incremental: the pool of planned routes and the link log are append-only, so
        a trip's route changes only when its state, route slice, position or log changes."""
        e = self._engine
        n = e.n_vehicles
        pool, off, ln, pos = e.get("pool"), e.get("r_off"), e.get("r_len"), e.get("r_pos")
        rt = self._rt
        if rt is None or rt["n"] > n:
            rt = self._rt = {"n": 0, "n_log": 0, "driven": [], "routes": [], "key": None,
                             "lens": np.zeros(0, dtype=np.int64)}
        m = rt["n"]
        rt["driven"].extend([] for _ in range(n - m))
        rt["routes"].extend([None] * (n - m))
        lens = np.zeros(n, dtype=np.int64)
        lens[:m] = rt["lens"]
        key = (st, off, ln, pos)
        dirty = np.ones(n, dtype=bool)
        if m:
            dirty[:m] = np.logical_or.reduce([a[:m] != b for a, b in zip(key, rt["key"])])
        record = e.record
        if record:
            lv, ll = e.get("log_veh"), e.get("log_link")
            nv, nl = lv[rt["n_log"]:], ll[rt["n_log"]:]
            driven = rt["driven"]
            for v, link in zip(nv.tolist(), nl.tolist()):
                driven[v].append(link)
            dirty[nv] = True
            rt["n_log"] = len(lv)
        routes, driven = rt["routes"], rt["driven"]
        for v in np.flatnonzero(dirty).tolist():
            a, b = int(off[v]), int(off[v] + ln[v])
            if not record or st[v] <= 1:
                r = pool[a:b].tolist()
            elif st[v] == 2:  # on a link: driven so far, then the rest of the plan after the current link
                r = driven[v] + pool[a + int(pos[v]) + 1:b].tolist()
            else:
                r = driven[v]
            routes[v] = Route(r)
            lens[v] = len(r)
        rt["n"], rt["key"], rt["lens"] = n, key, lens
        return list(routes), lens.copy()

    @property
    def link_log(self) -> pd.DataFrame:
        """Every link traversal: trip_id, link_id, enter_s, exit_s (NaN while on the link)."""
        e = self._engine
        return pd.DataFrame({"trip_id": e.get("log_veh").astype(np.int64), "link_id": e.get("log_link"),
                             "enter_s": e.get("log_tin"), "exit_s": e.get("log_tout")})

    def counts(self) -> dict:
        """Trip counts by state; ``departed == waiting + on_network + arrived + stalled + stranded``."""
        c = self._engine.counts()
        st = self._engine.get("state")
        return {
            "trips": int(self._engine.n_vehicles),
            "scheduled": int((st == 0).sum()),
            "departed": int(c["n_departed"]),
            "waiting": int(c["n_waiting"]),
            "on_network": int(c["n_onlink"]),
            "arrived": int(c["n_arrived"]),
            "stalled": int(c["n_stalled"]),
            "stranded": int(c["n_stranded"]),
            "reroutes": int(c["n_reroutes"]),
            "teleports": int(c["n_teleports"]),
            "accel_starts": int(c["n_accel_starts"]),
        }

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """The whole dynamic state (numpy arrays and plain values, picklable)."""
        return {
            "engine": self._engine.get_state(),
            "rng": self.rng.bit_generator.state,
            "exits_prev": self._exits_prev.copy(),
            "flow": self._flow.copy(),
            "depth": self._depth.copy(),
            "contraflow": dict(self._contraflow),
        }

    def set_state(self, state: dict) -> None:
        """Restores a state from ``get_state`` (same network and dt); the continuation is bit-identical."""
        for k in ("engine", "rng", "exits_prev", "flow", "depth"):
            if k not in state:
                raise ValueError(f"set_state: missing key {k!r}")
        self._version += 1
        self._rt = None
        self._engine.set_state(state["engine"])
        self.rng.bit_generator.state = state["rng"]
        self._exits_prev = np.array(state["exits_prev"], dtype=np.int64)
        self._flow = np.array(state["flow"], dtype=float)
        self._depth = np.array(state["depth"], dtype=float)
        self._contraflow = dict(state.get("contraflow", {}))

    def __repr__(self) -> str:
        c = self.counts()
        return (f"TrafficModel({self.network.n_nodes} nodes, {self.network.n_links} links, t={self.time:g} s, "
                f"{c['trips']} trips: {c['on_network']} on the network, {c['arrived']} arrived)")
