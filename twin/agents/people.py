"""Residents and tourists: a Mesa model whose bulk state lives in numpy arrays (the behaviour).

The population itself (places, households, persons, vehicles, storeys, destinations) is synthesised
from the city in :mod:`twin.agents.population`; this module holds what happens each step: warnings,
decisions to evacuate, movement, trapping and rescue hand-over, and exposure to the flood hazard
(FD2321, :mod:`twin.hazard`, the same rule as the map). Events go to a :class:`twin.agents.EventLog`.

Each household (and each tourist party) is a Mesa agent registered with the model, so
``model.agents``, ``agents_by_type`` and the ``AgentSet`` verbs work as usual; the agent objects are
thin views onto rows of the model's arrays. The per-step behaviour (warning receipt, decision,
movement, hazard) is vectorised over all agents at once, which is what lets 120,000 people cost a few
milliseconds per step (a per-agent Python ``step`` costs ~1 µs per agent before doing anything).

States of a household (``STATES``): at home (ground floor), on an upper floor, walking, in a vehicle,
at a shelter, with relatives outside the hazard area, trapped (waiting for rescue), with a rescue
unit, dropped at a safe reception point. Persons additionally can be in hospital (a person-level
state); every person is in exactly one state and one place at any time.
"""
from __future__ import annotations

import math
from typing import Any

import mesa
import numpy as np
import pandas as pd

from twin.hazard import HAZARD_CLASSES, hazard_class, hazard_rating

from .eventlog import EventLog
from .params import CHANNELS, PeopleParams
from .population import AGE_GROUPS, KINDS, VEHICLES, PopulationSynthesis
from .routing import RoadGraph

HOME, UPPER, WALK, DRIVE, SHELTER, RELATIVES, TRAPPED, RESCUE, SAFE, HOSPITAL = range(10)
# names shared with the simulation's KPIs (twin.output.kpis SAFE_STATES / MOVING_STATES)
# logit boost of the compliance with a received evacuation order over a warning by the same channel
# (orders are obeyed more often than advice: e.g. Lindell & Perry 2012's protective action decision model)
ORDER_CREDIBILITY_BOOST = 1.5

STATES = ("home", "upper_floor", "walking", "driving", "sheltered", "evacuated", "trapped",
          "with_rescue_unit", "safe", "hospital")
ACTIONS = ("none", "upper_floor", "shelter", "relatives")
_MOVING = (WALK, DRIVE)
_LEFT = (WALK, DRIVE, SHELTER, RELATIVES, SAFE)
EVENT_COLUMNS = ["t_s", "agent_id", "event", "detail"]


def _people_event_log() -> EventLog:
    """The people model's event log: (time, agent, event, detail)."""
    return EventLog(EVENT_COLUMNS, kind="event",
                    dtypes={"t_s": "float64", "agent_id": "int64", "event": "object", "detail": "object"})


class Household(mesa.Agent):
    """A resident household: a view onto row ``idx`` of the model's arrays."""

    def __init__(self, model: PeopleModel, idx: int):
        super().__init__(model)
        self.idx = idx

    def _get(self, name):
        return getattr(self.model, name)[self.idx]

    state = property(lambda self: STATES[self._get("state")])
    members = property(lambda self: int(self._get("n_members")))
    storeys = property(lambda self: int(self._get("storeys")))
    vehicle = property(lambda self: VEHICLES[self._get("vehicle")])
    awareness = property(lambda self: float(self._get("awareness")))
    warned = property(lambda self: bool(np.isfinite(self._get("warned_s"))))
    position = property(lambda self: (float(self._get("x")), float(self._get("y"))))
    home = property(lambda self: (float(self._get("home_x")), float(self._get("home_y"))))

    def member_ages(self) -> list[str]:
        m = self.model
        return [AGE_GROUPS[a] for a in m.p_age[m.p_hh == self.idx]]


class TouristParty(Household):
    """A party of tourists staying at a hotel (``hotel`` is the place row)."""

    hotel = property(lambda self: int(self._get("hotel")))


class PeopleModel(PopulationSynthesis, mesa.Model):
    """Households and tourists that receive warnings, decide, move and are exposed to the flood.

    ``PeopleModel(city, params, rng, traffic=None)``; ``run_one_step(dt, flood_depth, flood_speed)``
    advances exactly ``dt`` seconds given the flood fields ``(ny, nx)`` on the city grid (None =
    dry). Vehicle trips go through ``traffic`` (a TrafficModel) when given; otherwise vehicles move
    on the road graph at free speed reduced by depth.
    """

    _name = "PeopleModel"
    _info = {
        "surface_water__depth": {"dtype": float, "intent": "in", "optional": True, "units": "m",
                                 "mapping": "cell", "doc": "flood depth on the city grid"},
        "surface_water__speed": {"dtype": float, "intent": "in", "optional": True, "units": "m/s",
                                 "mapping": "cell", "doc": "flood speed magnitude on the city grid"},
        "agent__state": {"dtype": np.int8, "intent": "out", "optional": False, "units": "-",
                         "mapping": "agent", "doc": "household state code (see STATES)"},
        "agent__x": {"dtype": float, "intent": "out", "optional": False, "units": "m",
                     "mapping": "agent", "doc": "easting EPSG:32649"},
        "agent__y": {"dtype": float, "intent": "out", "optional": False, "units": "m",
                     "mapping": "agent", "doc": "northing EPSG:32649"},
        "agent__hazard_rating": {"dtype": float, "intent": "out", "optional": False, "units": "-",
                                 "mapping": "agent", "doc": "HR = d(v+0.5)+DF at the agent (FD2321)"},
        "person__hours_by_hazard_class": {"dtype": float, "intent": "out", "optional": False,
                                          "units": "h", "mapping": "model",
                                          "doc": "person-hours spent in each hazard class"},
    }

    def __init__(self, city, params=None, rng=None, traffic=None):
        rng = np.random.default_rng(rng)
        super().__init__(rng=rng)
        self.params = PeopleParams.from_dict(params)
        self.city = city
        self.traffic = traffic
        self.terrain = city.terrain
        self.shape = tuple(self.terrain.shape)
        self._inv = ~self.terrain.transform
        # the road graph is the one traffic runs on (it may be the largest connected part of city.roads)
        self.network = traffic.network if traffic is not None and hasattr(traffic, "network") else city.roads
        self.graph = RoadGraph(self.network)
        self.time_s = 0.0
        self.n_steps = 0
        self._depth = None
        self._flood_depth = None
        self._speed = None
        self._build_places(city)
        self._build_population(city)
        self._build_destinations()
        self._init_dynamic()
        for i in range(self.n_households):
            Household(self, i)
        for i in range(self.n_households, self.n_agents):
            TouristParty(self, i)

    def _init_dynamic(self):
        H = self.n_agents
        self.state = np.zeros(H, np.int8)
        self.x = self.home_x.copy()
        self.y = self.home_y.copy()
        self.recv_s = np.full((H, len(CHANNELS)), np.inf)     # receipt time per channel
        self.evaluated = np.zeros((H, len(CHANNELS)), bool)  # receipt already turned into a decision
        self.warned_s = np.full(H, np.inf)
        self.act_s = np.full(H, np.inf)                      # when the household starts to act
        self.action = np.zeros(H, np.int8)
        self.dest = np.full(H, -1, np.int64)
        self.shelter = np.full(H, -1, np.int64)
        self.mv_node = np.full(H, -1, np.int64)
        self.mv_off = np.zeros(H)
        self.trip_id = np.full(H, -1, np.int64)
        self.drive_start_s = np.full(H, np.inf)
        self.trapped_s = np.full(H, np.inf)
        self.arrive_s = np.full(H, np.inf)
        self.hr = np.zeros(H)
        self.max_hr = np.zeros(H)
        self.p_hospital = np.full(self.n_persons, -1, np.int64)
        self.p_max_hr = np.zeros(self.n_persons)
        self.n_present = self.n_members.copy()
        self.shelter_occupancy = np.zeros(self.n_shelters, np.int64)
        self.person_hours = np.zeros((len(HAZARD_CLASSES), len(AGE_GROUPS)))
        self.pending_warnings: list[tuple] = []
        self.order_id = np.full(H, -1, np.int64)          # evacuation order a household is under (-1: none)
        self.orders: list[list[int]] = []                 # per order: its destination shelters (empty: any)
        self.warnings_log: list[dict] = []
        self.rescue_calls: list[dict] = []         # drained by EmergencyServices
        self.events = _people_event_log()
        self.redirections = 0
        self._stalled = np.zeros(H, bool)       # their vehicle was left behind
        self._redirected: list[tuple[int, int]] = []

    # ================================================================== warnings
    @property
    def flood_depth(self) -> np.ndarray | None:
        """The flood depth [m] (flat, per cell) the model last stepped with."""
        return getattr(self, "_flood_depth", None)

    @property
    def met_depth(self) -> np.ndarray | None:
        """The water a person meets [m] (flat, per cell): on bridges and bank roads the water above
        the banks (``twin.couplings.RoadWaterLevel``), elsewhere the flood depth."""
        return self._depth

    # ------------------------------------------------------------------ decisions
    def shelter_index(self, x: float, y: float) -> int:
        """Index of the shelter at (x, y) (within 1 m), or -1."""
        if not self.n_shelters:
            return -1
        hit = np.flatnonzero(np.hypot(self.shelter_x - float(x), self.shelter_y - float(y)) < 1.0)
        return int(hit[0]) if hit.size else -1

    def open_shelter(self, x: float, y: float, capacity: int, name: str = "") -> int:
        """Open a shelter for ``capacity`` persons at (x, y) from now (a decision): an existing one
        gets that capacity; a new one joins the destinations (walking and driving trees to it are
        computed now). Returns its index."""
        cap = int(max(round(float(capacity) * self.params.sample_fraction), 1))
        k = self.shelter_index(x, y)
        if k >= 0:
            self.shelter_capacity[k] = max(cap, int(self.shelter_occupancy[k]))
            return k
        g = self.graph
        node = int(g.nearest_node(np.array([float(x)]), np.array([float(y)]))[0])
        ns = self.n_shelters
        rows = self.destination_tables(np.array([node], np.int64))
        for attr, row in zip(("walk_cost", "walk_next", "drive_cost", "drive_next", "walk_len", "drive_len",
                              "drive_speed"), rows):
            a = getattr(self, attr)
            setattr(self, attr, np.insert(a, ns, row[0].astype(a.dtype), axis=0))
        self.dest_node = np.insert(self.dest_node, ns, node).astype(np.int64)
        self.dest[self.dest >= ns] += 1            # relatives' destinations move up by one
        row = {"x": float(x), "y": float(y), "kind": "shelter", "capacity": float(capacity), "name": name}
        self.shelters = pd.concat([self.shelters, pd.DataFrame([row])], ignore_index=True)
        self.shelter_capacity = np.append(self.shelter_capacity, cap).astype(np.int64)
        self.shelter_occupancy = np.append(self.shelter_occupancy, 0).astype(np.int64)
        self.shelter_node = np.append(self.shelter_node, node).astype(np.int64)
        self.shelter_cell = np.append(self.shelter_cell, self._cell_of(np.array([x]), np.array([y]))).astype(np.int64)
        self.shelter_x = np.append(self.shelter_x, float(x))
        self.shelter_y = np.append(self.shelter_y, float(y))
        self.n_shelters = ns + 1
        return ns

    def close_shelter(self, k: int) -> int:
        """Shelter ``k`` admits nobody more from now (those inside stay); returns persons inside."""
        self.shelter_capacity[k] = int(self.shelter_occupancy[k])
        return int(self.shelter_occupancy[k])

    def issue_order(self, t_s: float, channel: str, area=None, shelters=None) -> int:
        """A mandatory evacuation order through ``channel`` to ``area`` (as :meth:`issue_warning`):
        households who receive it weigh it above a warning (``order_credibility_boost``) and, when
        they act, leave (no moving upstairs), to ``shelters`` (indices) when given. Returns its id."""
        k = len(self.orders)
        self.orders.append([int(s) for s in shelters] if shelters else [])
        self.issue_warning(t_s, channel, area)
        t, ch, ar = self.pending_warnings.pop(next(i for i, w in enumerate(self.pending_warnings)
                                                    if w[0] == float(t_s) and w[1] == channel and len(w) == 3))
        self.pending_warnings.append((t, ch, ar, k))
        self.pending_warnings.sort(key=lambda w: w[0])
        return k

    def issue_warning(self, t_s: float, channel: str, area=None) -> None:
        """Issue an official warning at ``t_s`` through ``channel``.

        ``area``: None (everyone), a ward code or list of ward codes, a shapely geometry (homes
        inside), or a boolean ``(ny, nx)`` mask on the city grid. Hotels inside the area relay it
        to their guests through staff.
        """
        if channel not in CHANNELS or channel == "hotel_staff":
            raise ValueError(f"issue_warning: channel must be one of {CHANNELS[:-1]}, got {channel!r}")
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"issue_warning: t_s must be finite, got {t_s}")
        self._area_mask(area)  # validate now
        self.pending_warnings.append((t_s, channel, area))
        self.pending_warnings.sort(key=lambda w: w[0])

    def _area_mask(self, area):
        H = self.n_agents
        if area is None:
            return np.ones(H, bool)
        if hasattr(area, "geom_type"):
            import shapely
            return shapely.contains_xy(area, self.home_x, self.home_y)
        a = np.asarray(area)
        if a.dtype == bool and a.shape == self.shape:
            return a.ravel()[self.home_cell]
        if a.ndim <= 1 and a.dtype.kind in "iuUO":
            codes = []
            for w in np.atleast_1d(a).tolist():
                if isinstance(w, str):
                    if w not in self._ward_names:
                        raise ValueError(f"issue_warning: area ward {w!r} is not a ward of the city "
                                         f"(wards: {', '.join(self._ward_names)})")
                    w = self._ward_names[w]
                codes.append(w)
            return np.isin(self.ward, codes)
        raise ValueError(f"issue_warning: area must be None, ward code(s), a shapely geometry or a "
                         f"boolean {self.shape} mask; got {type(area).__name__} {getattr(a, 'shape', '')}")

    def _is_night(self, t_s) -> bool:
        h0 = self.params.start_hour_local
        if h0 is None:
            return False
        hour = (h0 + t_s / 3600.0) % 24.0
        return hour >= 22.0 or hour < 6.0

    def _apply_warning(self, t_s, channel, area, order: int = -1):
        p, rng = self.params, self.rng
        ci = CHANNELS.index(channel)
        cp = p.channels[channel]
        inside = self._area_mask(area)
        H = self.n_agents
        u = rng.random(H)
        delay = rng.exponential(cp.delay_mean_s, H)
        tourist = self.kind == 1
        night = self._is_night(t_s)
        f = cp.night_reach_factor if night else 1.0
        reach = np.where(tourist, cp.tourist_reach, cp.reach) * f
        got = inside & (u < reach)
        self.recv_s[:, ci] = np.where(got, np.minimum(self.recv_s[:, ci], t_s + delay), self.recv_s[:, ci])
        # hotel staff hear it like residents do, then brief their guests
        hs = p.channels["hotel_staff"]
        fs = hs.night_reach_factor if night else 1.0
        staff_got = inside & tourist & (rng.random(H) < cp.reach) & (rng.random(H) < hs.tourist_reach * fs)
        relay = t_s + delay + rng.exponential(hs.delay_mean_s, H)
        k = CHANNELS.index("hotel_staff")
        self.recv_s[:, k] = np.where(staff_got, np.minimum(self.recv_s[:, k], relay), self.recv_s[:, k])
        if order >= 0:   # an evacuation order: those it reached are under it
            self.order_id[got | staff_got] = order
        self.warnings_log.append({"t_s": t_s, "channel": channel, "night": night, "n_in_area": int(inside.sum()),
                                  "n_reached": int(got.sum() + staff_got.sum())})

    # ================================================================== stepping
    def step(self) -> None:
        """Mesa step: one 300-s people step with the last flood fields."""
        self.run_one_step(300.0, self._depth, self._speed)

    def run_one_step(self, dt: float, flood_depth=None, flood_speed=None) -> None:
        dt = float(dt)
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"PeopleModel.run_one_step: dt must be > 0, got {dt}")
        d = self._field(flood_depth, "flood_depth")
        v = self._field(flood_speed, "flood_speed")
        self._flood_depth = d  # the water itself (boats navigate on it)
        if d is not None and self._wet_cells.any():
            # People are in a river or lagoon cell only on a bridge or a road along it: what they
            # meet there is the water above the deck (bank level), not the channel depth.
            d = self._road_water.met_depth(d.reshape(self.shape)).ravel()
            d.flags.writeable = False   # handed on as it is (the services route road units on it)
        self._depth, self._speed = d, v
        t0, t1 = self.time_s, self.time_s + dt
        while self.pending_warnings and self.pending_warnings[0][0] < t1:
            self._apply_warning(*self.pending_warnings.pop(0))
        self._decide(t0, t1, dt, d)
        self._act(t1, d)
        self._move(t1, dt, d)
        self._poll_trips(t1, d)
        self._check_trapped(t1, d)
        self._hazard(dt, d, v)
        self.time_s = t1
        self.n_steps += 1

    def _field(self, a, name):
        if a is None:
            return None
        a = np.asarray(a, dtype=float)
        if a.shape != self.shape:
            raise ValueError(f"PeopleModel.run_one_step: {name} shape {a.shape} != city grid {self.shape}")
        a = a.ravel()
        ok = np.isfinite(a)
        if not ok.all():
            return np.where(ok, a, 0.0)   # NaN (no data) counts as dry
        # a read-only field (the step's shared depth and speed) is used as it is: nobody can change it
        return a if not a.flags.writeable else a.copy()

    def _depth_at(self, d, cells):
        return np.zeros(len(cells)) if d is None else d[cells]

    def _ward_left_fraction(self):
        nw = len(self._ward_codes) + 1
        left = np.isin(self.state, _LEFT) | (self.action > 0)
        tot = np.bincount(self._ward_ix, minlength=nw)
        return np.bincount(self._ward_ix, weights=left, minlength=nw) / np.maximum(tot, 1)

    def _decide(self, t0, t1, dt, d):
        p, rng = self.params, self.rng
        undecided = (self.state == HOME) & ~np.isfinite(self.act_s)
        frac = self._ward_left_fraction()[self._ward_ix]
        base = (p.comply_intercept + p.comply_awareness * (self.awareness - 0.5)
                + p.comply_vulnerable * self.vulnerable + p.comply_neighbours * frac)
        # each warning receipt is one chance to comply, weighted by the channel's credibility
        new = (self.recv_s < t1) & ~self.evaluated
        if new.any():
            self.warned_s = np.minimum(self.warned_s, np.where(new, self.recv_s, np.inf).min(axis=1))
            for ci, ch in enumerate(CHANNELS):
                m = new[:, ci] & undecided
                if not m.any():
                    continue
                idx = np.flatnonzero(m)
                z = base[idx] + p.channels[ch].credibility
                if self.orders:   # an evacuation order weighs more than a warning
                    z = z + np.where(self.order_id[idx] >= 0, ORDER_CREDIBILITY_BOOST, 0.0)
                comply = rng.random(idx.size) < 1.0 / (1.0 + np.exp(-z))
                go = idx[comply]
                self.act_s[go] = self.recv_s[go, ci] + rng.exponential(p.mobilisation_mean_s, go.size)
                undecided[go] = False
            self.evaluated |= new
        # environmental and social cues
        idx = np.flatnonzero(undecided)
        if idx.size:
            water = self._depth_at(d, self.home_cell[idx]) > p.water_cue_depth_m
            rate = (p.cue_water_rate_per_h * water + p.cue_neighbour_rate_per_h * frac[idx]) / 3600.0
            go = idx[rng.random(idx.size) < -np.expm1(-rate * dt)]
            self.act_s[go] = t1

    def _act(self, t1, d):
        p, rng = self.params, self.rng
        idx = np.flatnonzero((self.state == HOME) & (self.act_s <= t1))
        if idx.size == 0:
            return
        tourist = self.kind[idx] == 1
        depth = self._depth_at(d, self.home_cell[idx])
        can_walk = depth < self.walk_stop[idx]
        veh_stall = np.where(self.vehicle[idx] == 2, p.vehicle_stall_depth_m["car"],
                             p.vehicle_stall_depth_m["motorbike"])
        can_drive = (self.vehicle[idx] > 0) & (depth < veh_stall)
        has_veh = self.vehicle[idx] > 0
        mobile = can_walk | can_drive
        ns = self.n_shelters
        # nearest shelter with room, from the home node (walking distance)
        if ns:
            # (ns, n): one row per shelter, gathered row by row (the transposed copy of it cost ~0.2 s a step
            # with every household at home deciding)
            dist = self.walk_cost[:ns, self.home_node[idx]]
            dist[~self._shelter_open(1), :] = np.inf
            if self.orders:   # households under an order with named shelters go to those only
                oid = self.order_id[idx]
                for k in np.unique(oid[oid >= 0]):
                    if self.orders[k]:
                        off = np.ones(ns, bool)
                        off[self.orders[k]] = False
                        dist[np.ix_(off, oid == k)] = np.inf
            sh = np.argmin(dist, axis=0)
            sh_ok = np.isfinite(dist[sh, np.arange(idx.size)])
        else:
            sh = np.zeros(idx.size, np.int64); sh_ok = np.zeros(idx.size, bool)
        knows = ~tourist | np.isfinite(self.recv_s[idx][:, [CHANNELS.index("hotel_staff"),
                                                             CHANNELS.index("cell_broadcast")]]).any(axis=1)
        nr = len(self.relatives_node)
        if nr:
            rel = ns + rng.integers(0, nr, idx.size)
            rel_ok = np.isfinite(self.walk_cost[rel, self.home_node[idx]]) & ~tourist
        else:
            rel = np.zeros(idx.size, np.int64); rel_ok = np.zeros(idx.size, bool)
        w = np.zeros((idx.size, 4))
        w[:, 1] = np.where(self.storeys[idx] >= 2, np.where(tourist, p.tourist_w_upper, p.w_upper), 0.0)
        if self.orders:   # an evacuation order means leaving, not moving upstairs
            w[:, 1] = np.where(self.order_id[idx] >= 0, 0.0, w[:, 1])
        w[:, 2] = np.where(sh_ok & knows & mobile, np.where(tourist, p.tourist_w_shelter, p.w_shelter), 0.0)
        w[:, 3] = np.where(rel_ok & mobile, p.w_relatives * np.where(has_veh, 1.0, 0.3), 0.0)
        tot = w.sum(axis=1)
        u = rng.random(idx.size) * tot
        choice = np.where(tot > 0, 1 + (u[:, None] >= np.cumsum(w[:, 1:], axis=1)[:, :3]).sum(axis=1), 0)
        choice = np.minimum(choice, 3)
        self.action[idx] = choice
        up = idx[choice == 1]
        self.state[up] = UPPER
        # no feasible action: they stay (act_s stays set, so no further decisions)
        go = choice >= 2
        g = idx[go]
        if g.size == 0:
            return
        self.dest[g] = np.where(choice[go] == 2, sh[go], rel[go])
        self.shelter[g] = np.where(choice[go] == 2, sh[go], -1)
        self.events.append(t1, "leave", agent_id=g, detail=np.asarray(ACTIONS, dtype=object)[self.action[g]])
        self._depart(g, t1, use_vehicle=can_drive[go], from_node=self.home_node[g])

    def _depart(self, g, t, use_vehicle, from_node):
        """Start moving households ``g`` from ``from_node`` towards ``dest_node[self.dest[g]]``."""
        drive = g[use_vehicle]
        walk = g[~use_vehicle]
        self.mv_node[g] = from_node
        self.mv_off[g] = 0.0
        self.x[g] = self.graph.node_x[from_node]
        self.y[g] = self.graph.node_y[from_node]
        self.state[walk] = WALK
        self.state[drive] = DRIVE
        self.drive_start_s[drive] = t
        if drive.size and self.traffic is not None:
            df = pd.DataFrame({
                "origin": self._node_id(self.mv_node[drive]),
                "destination": self._node_id(self.dest_node[self.dest[drive]]),
                "depart_s": np.full(drive.size, float(t)),
                "vehicle_class": np.array(VEHICLES, dtype=object)[self.vehicle[drive]],
            })
            self.trip_id[drive] = np.asarray(self.traffic.add_trips(df), dtype=np.int64)

    def _node_id(self, pos):
        nodes = self.network.nodes
        ids = nodes["id"].to_numpy() if "id" in nodes.columns else nodes.index.to_numpy()
        return ids[pos]

    def _move(self, t1, dt, d):
        """Walkers (and vehicles when no traffic model is attached) follow the trees."""
        p, g = self.params, self.graph
        own_drive = self.traffic is None
        m = (self.state == WALK) | ((self.state == DRIVE) if own_drive else False)
        idx = np.flatnonzero(m)
        if idx.size == 0:
            return
        drive = self.state[idx] == DRIVE
        budget = np.full(idx.size, dt)
        node = self.mv_node[idx].copy()
        off = self.mv_off[idx].copy()
        dest = self.dest[idx]
        dnode = self.dest_node[dest]
        veh_stall = np.where(self.vehicle[idx] == 2, p.vehicle_stall_depth_m["car"],
                             p.vehicle_stall_depth_m["motorbike"])
        stop = np.where(drive, veh_stall, self.walk_stop[idx])
        active = node != dnode
        stalled = np.zeros(idx.size, bool)
        for _ in range(10_000):
            a = np.flatnonzero(active & (budget > 0))
            if a.size == 0:
                break
            da, na, dr = dest[a], node[a], drive[a]
            nxt = np.where(dr, self.drive_next[da, na], self.walk_next[da, na])
            bad = nxt < 0
            length = np.where(dr, self.drive_len[da, na], self.walk_len[da, na])
            dep = self._depth_at(d, self.node_cell[na])
            factor = np.clip(1.0 - dep / stop[a], 0.0, 1.0)
            speed = np.where(dr, self.drive_speed[da, na], self.walk_speed[idx[a]]) * factor
            st = (speed <= 0) | bad
            stalled[a[st]] = True
            active[a[st]] = False
            ok = ~st
            a, nxt, length, speed = a[ok], nxt[ok], length[ok], speed[ok]
            need = (length - off[a]) / speed
            passes = budget[a] >= need
            pa = a[passes]
            budget[pa] -= need[passes]
            node[pa] = nxt[passes]
            off[pa] = 0.0
            active[pa] = node[pa] != dnode[pa]
            sa = a[~passes]
            off[sa] += budget[sa] * speed[~passes]
            budget[sa] = 0.0
        off[stalled] = 0.0            # stopped movers wait at the node where the water stopped them
        self.mv_node[idx] = node
        self.mv_off[idx] = off
        # positions: interpolate along the edge towards the next node
        nxt = np.where(drive, self.drive_next[dest, node], self.walk_next[dest, node])
        has = (nxt >= 0) & (off > 0)
        nn = np.where(has, nxt, node)
        L = np.where(drive, self.drive_len[dest, node], self.walk_len[dest, node])
        f = np.where(has, np.clip(off / L, 0, 1), 0.0)
        self.x[idx] = g.node_x[node] + f * (g.node_x[nn] - g.node_x[node])
        self.y[idx] = g.node_y[node] + f * (g.node_y[nn] - g.node_y[node])
        arrived = idx[node == dnode]
        self._arrive(arrived, t1)
        # a stalled vehicle is left behind and its occupants walk on; a stopped walker is trapped
        st_drive = idx[stalled & drive]
        if st_drive.size:
            self.state[st_drive] = WALK
            self._stalled[st_drive] = True
            self.events.append(t1, "vehicle_stalled", agent_id=st_drive)
        st_walk = idx[stalled & ~drive]
        self._trap(st_walk, t1, "stranded_walking")

    def _poll_trips(self, t1, d):
        if self.traffic is None:
            return
        idx = np.flatnonzero((self.state == DRIVE) & (self.trip_id >= 0))
        if idx.size == 0:
            return
        state, arrive_s, link = self.traffic.trip_status(self.trip_id[idx])
        arrive_s = np.asarray(arrive_s, float)
        link = np.asarray(link, np.int64)
        g = self.graph
        on = link >= 0
        self.x[idx[on]] = g.link_mid_x[link[on]]
        self.y[idx[on]] = g.link_mid_y[link[on]]
        done = np.isfinite(arrive_s)
        arr = idx[done]
        self.mv_node[arr] = self.dest_node[self.dest[arr]]
        self.x[arr] = g.node_x[self.mv_node[arr]]
        self.y[arr] = g.node_y[self.mv_node[arr]]
        self.trip_id[arr] = -1
        self._arrive(arr, t1)
        # stalled or stranded by the traffic model, or stuck for too long (gridlock): leave the vehicle
        stuck = (t1 - self.drive_start_s[idx]) > self.params.abandon_vehicle_after_s
        stalled = (_is_stalled(state) | stuck) & ~done
        st = idx[stalled]
        if st.size:
            # occupants leave the vehicle and walk on from the link's upstream node
            lk = link[stalled]
            # the link's upstream node when on a link, else the trip's origin (home, or a full shelter)
            self.mv_node[st] = np.where(lk >= 0, g.link_from[np.maximum(lk, 0)], self.mv_node[st])
            self.mv_off[st] = 0.0
            self.trip_id[st] = -1
            self.state[st] = WALK
            self._stalled[st] = True
            self.events.append(t1, "vehicle_stalled", agent_id=st)

    def _arrive(self, idx, t1):
        if idx.size == 0:
            return
        ns = self.n_shelters
        to_rel = idx[self.dest[idx] >= ns]
        self.state[to_rel] = RELATIVES
        self.arrive_s[to_rel] = t1
        self.x[to_rel] = self.graph.node_x[self.mv_node[to_rel]]
        self.y[to_rel] = self.graph.node_y[self.mv_node[to_rel]]
        self.events.append(t1, "arrived", agent_id=to_rel, detail="evacuated")
        at_sh = np.sort(idx[self.dest[idx] < ns])
        if at_sh.size == 0:
            return
        # shelter admission in agent order: per shelter, the households that fit in the remaining room
        # (a running sum) are admitted at once; the rest are redirected one by one
        s = self.dest[at_sh]
        order = np.argsort(s, kind="stable")
        at_sh, s = at_sh[order], s[order]
        n = self.n_present[at_sh]
        cum = np.cumsum(n)
        first = np.searchsorted(s, s, side="left")
        before = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0)
        fits = (cum - before) <= (self.shelter_capacity[s] - self.shelter_occupancy[s])
        adm, sa = at_sh[fits], s[fits]
        np.add.at(self.shelter_occupancy, sa, self.n_present[adm])
        self.state[adm] = SHELTER
        self.shelter[adm] = sa
        self.arrive_s[adm] = t1
        self.x[adm] = self.shelter_x[sa]
        self.y[adm] = self.shelter_y[sa]
        self.events.append(t1, "arrived", agent_id=adm, detail=[f"shelter {k}" for k in sa])
        self._redirected = []
        for i, k in zip(at_sh[~fits], s[~fits]):
            i, k = int(i), int(k)
            if self.shelter_occupancy[k] + self.n_present[i] <= self.shelter_capacity[k]:
                self._admit(i, k, t1)
            else:
                self._redirect(i, k, t1)
        if self._redirected:
            g = np.array([r[0] for r in self._redirected], np.int64)
            nodes = np.array([r[1] for r in self._redirected], np.int64)
            self._depart(g, t1, use_vehicle=(self.vehicle[g] > 0) & ~self._stalled[g], from_node=nodes)
        self._redirected = []

    def _admit(self, i, s, t):
        self.shelter_occupancy[s] += int(self.n_present[i])
        self.state[i] = SHELTER
        self.shelter[i] = s
        self.arrive_s[i] = t
        self.x[i] = self.shelter_x[s]
        self.y[i] = self.shelter_y[s]
        self.events.append(t, "arrived", agent_id=i, detail=f"shelter {s}")

    def _redirect(self, i, s, t):
        """Shelter ``s`` is full: go on to the nearest shelter with room, else outside the area."""
        self.redirections += 1
        node = int(self.shelter_node[s])
        n = int(self.n_present[i])
        cost = np.where(self._shelter_open(n), self.walk_cost[: self.n_shelters, node], np.inf)
        if np.isfinite(cost).any():
            nd = int(np.argmin(cost))
        else:
            nr = len(self.relatives_node)
            cand = self.n_shelters + np.arange(nr)
            rc = self.walk_cost[cand, node] if nr else np.zeros(0)
            if nr == 0 or not np.isfinite(rc).any():
                self.state[i] = SAFE   # stays outside the full shelter
                self.events.append(t, "shelter_full_waiting", agent_id=i, detail=f"shelter {s}")
                return
            nd = int(cand[np.argmin(rc)])
        self.events.append(t, "redirected", agent_id=i, detail=f"from shelter {s} to dest {nd}")
        self.dest[i] = nd
        self.shelter[i] = nd if nd < self.n_shelters else -1
        self._redirected.append((i, node))   # departs with the others of this step (one add_trips)

    def _check_trapped(self, t1, d):
        p = self.params
        if d is None:
            return
        # water receded before a rescue unit came: home again, or walking on
        tr = np.flatnonzero(self.state == TRAPPED)
        if tr.size:
            home = (self.x[tr] == self.home_x[tr]) & (self.y[tr] == self.home_y[tr])
            cells = np.where(home, self.home_cell[tr], self._cell_of(self.x[tr], self.y[tr]))
            free = tr[d[cells] < p.release_depth_m]
            if free.size:
                at_home = (self.x[free] == self.home_x[free]) & (self.y[free] == self.home_y[free])
                self.state[free] = np.where(at_home, HOME, np.where(self.dest[free] >= 0, WALK, SAFE))
                self.events.append(t1, "water_receded", agent_id=free, detail="no longer trapped")
        dh = d[self.home_cell]
        up_depth = dh - (self.storeys - 1) * p.storey_height_m
        # people at home go upstairs when the water comes in, if they can
        go_up = (self.state == HOME) & (dh >= 0.5) & (self.storeys >= 2)
        self.state[go_up] = UPPER
        trapped = ((self.state == HOME) & (dh >= p.trapped_depth_m)) | (
            (self.state == UPPER) & (up_depth >= p.upper_floor_margin_m))
        self._trap(np.flatnonzero(trapped), t1, "trapped_at_home")
        # a shelter flooded above its upper floor: its evacuees call for rescue too
        at = np.flatnonzero(self.state == SHELTER)
        if at.size:
            ds = d[self.shelter_cell[self.shelter[at]]] - (p.shelter_storeys - 1) * p.storey_height_m
            tr = at[ds >= p.upper_floor_margin_m]
            if tr.size:
                np.subtract.at(self.shelter_occupancy, self.shelter[tr], self.n_present[tr])
                self.shelter[tr] = -1
                self._trap(tr, t1, "trapped_in_shelter")

    def _trap(self, idx, t, why):
        if idx.size == 0:
            return
        d = self._depth
        self.state[idx] = TRAPPED
        self.trapped_s[idx] = t
        cells = self._cell_of(self.x[idx], self.y[idx])
        dep = self._depth_at(d, cells)
        for k, i in enumerate(idx):
            i = int(i)
            self.events.append(t, "trapped", agent_id=i, detail=why)
            self.rescue_calls.append({"t_s": float(t), "agent": i, "x": float(self.x[i]), "y": float(self.y[i]),
                                      "persons": int(self.n_present[i]), "vulnerable": bool(self.vulnerable[i]),
                                      "depth_m": float(dep[k]), "reason": why})

    def _hazard(self, dt, d, v):
        p = self.params
        if d is None:
            self.hr[:] = 0.0
        else:
            st = self.state
            at_home = np.isin(st, (HOME, UPPER)) | ((st == TRAPPED) & (self.x == self.home_x) & (self.y == self.home_y))
            cells = np.where(at_home, self.home_cell, self._cell_of(self.x, self.y))
            dep = d[cells]
            spd = np.zeros_like(dep) if v is None else v[cells]
            upper = (st == UPPER) | ((st == TRAPPED) & at_home & (self.storeys >= 2))
            dep = np.where(upper, np.maximum(dep - (self.storeys - 1) * p.storey_height_m, 0.0), dep)
            sh = st == SHELTER
            dep = np.where(sh, np.maximum(dep - (p.shelter_storeys - 1) * p.storey_height_m, 0.0), dep)
            safe = np.isin(st, (RELATIVES, RESCUE, SAFE))
            dep = np.where(safe, 0.0, dep)
            lu = self._land_use[cells] if isinstance(self._land_use, np.ndarray) else self._land_use
            self.hr = hazard_rating(dep, spd, lu)
        np.maximum(self.max_hr, self.hr, out=self.max_hr)
        cls = hazard_class(self.hr, p.hazard_thresholds)
        in_hosp = self.p_hospital >= 0
        pcls = np.where(in_hosp, 0, cls[self.p_hh])
        phr = np.where(in_hosp, 0.0, self.hr[self.p_hh])
        np.maximum(self.p_max_hr, phr, out=self.p_max_hr)
        counts = np.bincount(pcls * len(AGE_GROUPS) + self.p_age, minlength=len(HAZARD_CLASSES) * len(AGE_GROUPS))
        self.person_hours += counts.reshape(len(HAZARD_CLASSES), len(AGE_GROUPS)) * (dt / 3600.0)

    # ================================================================== services interface
    def pop_rescue_calls(self, until_s: float = math.inf) -> list[dict]:
        """Remove and return the rescue calls made before ``until_s``."""
        out = [c for c in self.rescue_calls if c["t_s"] < until_s]
        self.rescue_calls = [c for c in self.rescue_calls if c["t_s"] >= until_s]
        return out

    def is_trapped(self, agent: int) -> bool:
        return bool(self.state[int(agent)] == TRAPPED)

    def are_trapped(self, agents: np.ndarray) -> np.ndarray:
        """:meth:`is_trapped` of many households at once."""
        return self.state[np.asarray(agents, dtype=np.int64)] == TRAPPED

    def pick_up(self, agent: int, t_s: float, capacity: int | None = None) -> int:
        """A rescue unit takes the household's members (up to ``capacity``); returns persons taken."""
        i = int(agent)
        if self.state[i] != TRAPPED:
            return 0
        n = int(self.n_present[i])
        self.state[i] = RESCUE
        self.events.append(t_s, "picked_up", agent_id=i, detail=f"{n} persons")
        return n

    def move_with_unit(self, agent: int, x: float, y: float) -> None:
        self.x[agent], self.y[agent] = x, y

    def drop_off(self, agent: int, t_s: float, shelter: int | None) -> bool:
        """Deliver a rescued household to shelter ``shelter`` (None = safe reception point).

        Returns False (household stays with the unit) when the shelter lacks room for them.
        """
        i = int(agent)
        if shelter is None:
            self.state[i] = SAFE
            self.arrive_s[i] = t_s
            self.events.append(t_s, "arrived", agent_id=i, detail="safe")
            return True
        s = int(shelter)
        if self.shelter_occupancy[s] + self.n_present[i] > self.shelter_capacity[s]:
            return False
        self._admit(i, s, t_s)
        return True

    def _shelter_open(self, persons) -> np.ndarray:
        """Shelters with room for ``persons`` more and not flooded at the door."""
        room = (self.shelter_capacity - self.shelter_occupancy) >= persons
        if self._depth is not None and self.n_shelters:
            room &= self._depth[self.shelter_cell] <= self.params.shelter_close_depth_m
        return room

    def shelter_with_room(self, persons: int) -> np.ndarray:
        return np.flatnonzero(self._shelter_open(persons))

    def hospitalise(self, agent: int, t_s: float, hospital: int, n: int = 1) -> list[int]:
        """Move ``n`` present members of household ``agent`` to hospital ``hospital``."""
        i = int(agent)
        mem = np.flatnonzero((self.p_hh == i) & (self.p_hospital < 0))[:n]
        self.p_hospital[mem] = hospital
        self.n_present[i] -= len(mem)
        if self.state[i] == SHELTER and self.shelter[i] >= 0:
            self.shelter_occupancy[self.shelter[i]] -= len(mem)
        self.events.append(t_s, "hospitalised", agent_id=i, detail=f"{len(mem)} to hospital {hospital}")
        return [int(m) for m in mem]

    def discharge(self, person: int, t_s: float) -> bool:
        """A patient leaves hospital and rejoins their household (False: its shelter has no room)."""
        j = int(person)
        if self.p_hospital[j] < 0:
            return True
        i = int(self.p_hh[j])
        if self.state[i] == SHELTER and self.shelter[i] >= 0:
            s = int(self.shelter[i])
            if self.shelter_occupancy[s] + 1 > self.shelter_capacity[s]:
                return False
            self.shelter_occupancy[s] += 1
        self.p_hospital[j] = -1
        self.n_present[i] += 1
        self.events.append(t_s, "discharged", agent_id=i, detail=f"person {j}")
        return True

    def random_person(self) -> int:
        """A person drawn uniformly among those not in hospital (background medical calls)."""
        cand = np.flatnonzero(self.p_hospital < 0)
        return int(cand[self.rng.integers(0, cand.size)])

    # ================================================================== outputs
    def person_state(self) -> np.ndarray:
        """State code of every person (household state, or HOSPITAL)."""
        return np.where(self.p_hospital >= 0, HOSPITAL, self.state[self.p_hh]).astype(np.int8)

    def person_xy(self, hospitals_xy=None):
        x, y = self.x[self.p_hh].copy(), self.y[self.p_hh].copy()
        if hospitals_xy is not None:
            h = self.p_hospital >= 0
            x[h] = hospitals_xy[0][self.p_hospital[h]]
            y[h] = hospitals_xy[1][self.p_hospital[h]]
        return x, y

    def counts(self) -> dict[str, int]:
        ps = self.person_state()
        c = np.bincount(ps, minlength=len(STATES))
        return {s: int(c[k]) for k, s in enumerate(STATES)}

    def person_hours_by_class(self) -> dict[str, float]:
        ph = self.person_hours.sum(axis=1)
        return {c: float(ph[k]) for k, c in enumerate(HAZARD_CLASSES)}

    def kpis(self) -> dict[str, Any]:
        """Run indicators; person numbers are scaled to the whole population (1/sample_fraction)."""
        rep = self._represents
        sc = lambda v: v * rep if rep != 1.0 else v  # noqa: E731
        return {
            "t_s": self.time_s,
            "sample_fraction": self.params.sample_fraction,
            "households": sc(int(self.n_households)),
            "tourist_parties": sc(int(self.n_agents - self.n_households)),
            "persons": sc(int(self.n_persons)),
            "persons_by_state": {k: sc(v) for k, v in self.counts().items()},
            "person_hours_by_hazard_class": {k: sc(v) for k, v in self.person_hours_by_class().items()},
            "persons_warned": sc(int(self.n_members[np.isfinite(self.warned_s)].sum())),
            "persons_max_hazard_class": {c: sc(int(n)) for c, n in zip(HAZARD_CLASSES, np.bincount(
                hazard_class(self.p_max_hr, self.params.hazard_thresholds), minlength=4))},
            "rescue_calls": sc(int(np.isfinite(self.trapped_s).sum())),
            "shelter_capacity": [sc(int(c)) for c in self.shelter_capacity],
            "shelter_occupancy": [sc(int(c)) for c in self.shelter_occupancy],
            "shelter_redirections": sc(int(self.redirections)),
        }

    def state_table(self) -> pd.DataFrame:
        """One row per household / tourist party at the current time (the recorder adds ``t_s``).

        ``persons`` are the persons present (members in hospital are not), scaled by
        ``1/sample_fraction`` when only a sample of households is simulated; ``members`` are the
        simulated persons.

        Cached: rebuilt only when an array it reads differs from the one the cached table was built
        from (any step, decision, pick-up or direct write shows); each access returns a copy."""
        src = (self.kind, self.state, self.x, self.y, self.n_present, self._represents, self.warned_s,
               self.action, self.shelter, self.hr, self.max_hr)
        c = getattr(self, "_table_cache", None)
        if c is None or not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(c[0], src)):
            c = self._table_cache = ([np.array(a, copy=True) for a in src], self._state_frame())
        return c[1].copy()

    def _state_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "agent_id": np.arange(self.n_agents, dtype=np.int64),
            "kind": pd.Categorical.from_codes(self.kind, KINDS),
            "state": pd.Categorical.from_codes(self.state, STATES),
            "x": self.x, "y": self.y,
            "persons": self.n_present * self._represents,
            "members": self.n_present,
            "warned": np.isfinite(self.warned_s),
            "warned_s": self.warned_s,
            "action": pd.Categorical.from_codes(self.action, ACTIONS),
            "shelter": self.shelter,
            "hazard_rating": self.hr,
            "max_hazard_rating": self.max_hr,
        })

    def road_space(self):
        """A ``mesa.discrete_space.Network`` of the road graph with every agent in the cell of the
        road node nearest to it now (positions at node coordinates, EPSG:32649).

        A snapshot for Mesa tools (visualisation, neighbourhood queries such as
        ``space[node].neighborhood``); the model itself keeps continuous positions in arrays and does
        not step through it, so build it when needed (about a second for the Tam Kỳ network).
        """
        import networkx as nx
        from mesa.discrete_space import Network

        g = self.graph
        G = nx.Graph()
        G.add_nodes_from(range(g.n_nodes))
        G.add_edges_from(zip(g.link_from.tolist(), g.link_to.tolist()))
        layout = {i: (float(g.node_x[i]), float(g.node_y[i])) for i in range(g.n_nodes)}
        space = Network(G, random=self.random, layout=layout)
        node = g.nearest_node(self.x, self.y)
        agents = sorted(self.agents, key=lambda a: a.idx)
        for a, n in zip(agents, node.tolist()):
            space[n].add_agent(a)
        return space

    def event_table(self) -> pd.DataFrame:
        return self.events.to_frame()

    # ================================================================== restart
    _DYNAMIC = ("state", "x", "y", "recv_s", "evaluated", "warned_s", "act_s", "action", "dest", "shelter",
                "mv_node", "mv_off", "trip_id", "drive_start_s", "trapped_s", "arrive_s", "hr", "max_hr", "p_hospital",
                "p_max_hr", "n_present", "shelter_occupancy", "person_hours", "_stalled", "shelter_capacity",
                "order_id")

    def get_state(self) -> dict:
        s = {k: getattr(self, k).copy() for k in self._DYNAMIC}
        s.update(time_s=self.time_s, n_steps=self.n_steps, redirections=self.redirections,
                 pending_warnings=list(self.pending_warnings), orders=[list(o) for o in self.orders],
                 warnings_log=[dict(w) for w in self.warnings_log],
                 rescue_calls=[dict(c) for c in self.rescue_calls], events=self.events.get_state(),
                 rng=self.rng.bit_generator.state, random=self.random.getstate(),
                 depth=None if self._depth is None else self._depth.copy(),
                 speed=None if self._speed is None else self._speed.copy())
        return s

    def set_state(self, s: dict) -> None:
        for k in self._DYNAMIC:
            cur = getattr(self, k)
            v = np.asarray(s[k])
            if v.shape != cur.shape:
                raise ValueError(f"PeopleModel.set_state: {k} has shape {v.shape}, expected {cur.shape}")
            setattr(self, k, v.astype(cur.dtype, copy=True))
        self.time_s, self.n_steps, self.redirections = s["time_s"], s["n_steps"], s["redirections"]
        self.pending_warnings = [tuple(w) for w in s["pending_warnings"]]
        self.orders = [list(o) for o in s.get("orders", [])]
        self.warnings_log = [dict(w) for w in s["warnings_log"]]
        self.rescue_calls = [dict(c) for c in s["rescue_calls"]]
        self.events = _people_event_log()
        ev = s["events"]
        if "t" in ev:  # states written before the shared EventLog: t, agent, event, detail
            ev = {"t_s": ev["t"], "agent_id": ev["agent"], "event": ev["event"], "detail": ev["detail"]}
        self.events.set_state(ev)
        self.rng.bit_generator.state = s["rng"]
        self.random.setstate(s["random"])
        self._depth = None if s["depth"] is None else np.array(s["depth"])
        self._speed = None if s["speed"] is None else np.array(s["speed"])


def _is_stalled(state) -> np.ndarray:
    st = np.asarray(state)
    if st.dtype.kind in "OUS":
        return np.isin(st.astype(str), ("stalled", "stranded"))
    return np.zeros(st.shape, bool)
